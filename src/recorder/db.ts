/** Opens the database for writing: identity check, WAL, kysely migrations. Recorder only. */
import Database from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from 'kysely';
import * as os from 'node:os';
import { randomUUID } from 'node:crypto';
import { migrations, SCHEMA_VERSION } from '../../migrations';
import { APPLICATION_ID, checkIdentity, DbError } from '../db-identity';
import type { Database as Schema } from './schema';
import { AUTOCHECKPOINT_PAGES } from './checkpointer';
import { loadRowsExtension } from './rows';

export { DbError };

export interface WriteDb {
  file: string;
  sqlite: Database.Database;
  kysely: Kysely<Schema>;
  nodeId: string;
}

export async function openForWrite(file: string): Promise<WriteDb> {
  let sqlite: Database.Database;
  try {
    sqlite = new Database(file);
  } catch (err) {
    throw new DbError(`cannot open database ${file}: ${(err as Error).message}`, 'ERR_TC_OPEN_DB');
  }
  try {
    // Checked before anything writes to the file: a foreign or newer file is never altered.
    checkIdentity(sqlite, file, true);
    // No auto_vacuum: pages freed by retention are reused by later writes, so the file levels
    // off at the size its retention holds. (Measured here: auto_vacuum = INCREMENTAL and its
    // pointer-map pages cost ~15% of the insert rate, and handing pages back only for later
    // writes to grow the file again is churn. Files made with it by earlier versions keep it
    // and retention still vacuums them in small steps.)
    sqlite.pragma('journal_mode = WAL');
    // Keep the WAL small: checkpoint every ~4 MiB of commits (the sink moves this to a thread of
    // its own, see checkpointer.ts) and truncate it to 64 MiB after.
    sqlite.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
    sqlite.pragma('journal_size_limit = 67108864');
    sqlite.pragma('synchronous = NORMAL');
    // Short: a locked database must not stall the event loop; the sink retries with back-off.
    sqlite.pragma('busy_timeout = 100');
    // Rollup closes that group in SQL (flow minutes, fallbacks) sort many rows: their sorters
    // spill to temp files past the cache (the default temp_store). Measured here on a flow
    // minute of 6M rows: peak RSS 278-301 MiB and 11-12 s, against 554 MiB and 12.5 s with
    // temp_store = MEMORY, which keeps every sorted run in RAM however many rows there are.
    sqlite.pragma('cache_size = -65536');
    // The bulk-insert table function tc_rows (rows.ts); loaded into this connection only.
    loadRowsExtension(sqlite);
    const kysely = new Kysely<Schema>({ dialect: new SqliteDialect({ database: sqlite }) });
    const migrator = new Migrator({ db: kysely, provider: { getMigrations: async () => migrations } });
    const { error, results } = await migrator.migrateToLatest();
    if (error) {
      const failed = results?.find((r) => r.status === 'Error')?.migrationName;
      throw new DbError(`migrating ${file} failed${failed ? ` at ${failed}` : ''}: ${(error as Error).message ?? error}`, 'ERR_TC_MIGRATION');
    }
    sqlite.pragma(`application_id = ${APPLICATION_ID}`);
    sqlite.pragma(`user_version = ${SCHEMA_VERSION}`);
    const nodeId = ensureMeta(sqlite);
    return { file, sqlite, kysely, nodeId };
  } catch (err) {
    sqlite.close();
    if (err instanceof DbError) throw err;
    throw new DbError(`cannot prepare database ${file} for writing: ${(err as Error).message}`, 'ERR_TC_OPEN_DB');
  }
}

/** The node id is made once per file (hostname + random suffix) and kept. */
function ensureMeta(db: Database.Database): string {
  const get = db.prepare('select value from meta where key = ?').pluck();
  const put = db.prepare('insert or ignore into meta (key, value) values (?, ?)');
  db.transaction(() => {
    put.run('node_id', `${os.hostname()}-${randomUUID().slice(0, 8)}`);
    put.run('created_at', String(Date.now()));
  })();
  db.prepare("insert or replace into meta (key, value) values ('schema_version', ?)").run(String(SCHEMA_VERSION));
  return get.get('node_id') as string;
}
