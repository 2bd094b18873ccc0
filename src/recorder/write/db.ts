/** Opens the database for writing: identity check, WAL, kysely migrations. Recorder only. */
import Database from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from '../../schema/kysely';
import * as os from 'node:os';
import * as path from 'node:path';
import { accessSync, constants, statSync, type Stats } from 'node:fs';
import { migrations, SCHEMA_VERSION } from '../../../migrations';
import { APPLICATION_ID, checkIdentity, modeOf } from '../../db-identity';
import { build, get, run, type Database as Schema } from '../../schema/database';
import { AUTOCHECKPOINT_PAGES } from '../upkeep/checkpointer';
import { loadSqliteExtension } from '../../native';
import { TcError } from '../../errors';
import { WAL_SIZE_LIMIT } from '../budget/disk';


/**
 * SQLite's page cache of the writer's connection. Rows go in in key order (appends), so a small
 * cache holds the pages being written; a sorter of a rollup grouped in SQL may take as much
 * again before it spills to a temp file (`budget/memory.ts` counts both).
 */
export const SQLITE_CACHE_BYTES = 32 * 2 ** 20;

export interface WriteDb {
  file: string;
  sqlite: Database.Database;
  kysely: Kysely<Schema>;
  nodeId: string;
}

function readOnlyWhy(err: NodeJS.ErrnoException, st: Stats): string {
  return err.code === 'EROFS' ? 'read-only file system' : modeOf(st);
}

/**
 * Says, before SQLite is asked, why the recorder cannot write `file`: it is a directory, it is
 * read-only, or its directory is (SQLite creates FILE-wal and FILE-shm, and the recorder
 * FILE.lock, beside it). Otherwise SQLite says only "unable to open database file" or
 * "attempt to write a readonly database".
 */
export function checkWritable(file: string): void {
  const dir = path.dirname(path.resolve(file));
  let st: Stats | undefined;
  try {
    st = statSync(file);
  } catch {
    /* a new file */
  }
  if (st?.isDirectory()) throw new TcError(`${file} is a directory; pass a database file to --db (e.g. --db ${path.join(file, 'traffic.db')})`, 'ERR_TC_OPEN_DB');
  if (st) {
    try {
      accessSync(file, constants.W_OK);
      // Root passes access(2) whatever the mode: a file nobody may write (chmod a-w) was made
      // read-only on purpose, and is said so as for anyone else.
      if ((st.mode & 0o222) === 0) throw Object.assign(new Error('no write permission bits'), { code: 'EACCES' });
    } catch (err) {
      throw new TcError(
        `${file} is read-only (${readOnlyWhy(err as NodeJS.ErrnoException, st)}): the recorder writes to it; make it writable, or record into another --db (tc-query reads it as it is)`,
        'ERR_TC_READ_ONLY',
      );
    }
  }
  let dst: Stats;
  try {
    dst = statSync(dir);
  } catch {
    throw new TcError(`cannot create ${file}: the directory ${dir} does not exist; create it first (mkdir -p ${dir}), or give --db a file in a folder that exists`, 'ERR_TC_OPEN_DB');
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch (err) {
    throw new TcError(
      `${file} is read-only: its directory ${dir} is not writable (${readOnlyWhy(err as NodeJS.ErrnoException, dst)}), and the recorder creates ${path.basename(file)}-wal, -shm and .lock beside it; make the directory writable, or record into another --db`,
      'ERR_TC_READ_ONLY',
    );
  }
}

/**
 * Opens `file` for writing. `nodeId`: the node id of a new file (default: this host's name);
 * a file keeps the one it was created with, and a different `nodeId` is refused.
 */
export async function openForWrite(file: string, nodeId?: string): Promise<WriteDb> {
  checkWritable(file);
  let sqlite: Database.Database;
  try {
    sqlite = new Database(file);
  } catch (err) {
    throw new TcError(`cannot open database ${file}: ${(err as Error).message}`, 'ERR_TC_OPEN_DB');
  }
  try {
    // Checked before anything writes to the file: a foreign or newer file is never altered.
    if (checkIdentity(sqlite, file, true) === 'ok' && nodeId !== undefined) checkNodeId(sqlite, file, nodeId);
    // No auto_vacuum: pages freed by retention are reused by later writes, so the file levels
    // off at the size its retention holds, and inserts skip the pointer-map pages it costs.
    sqlite.pragma('journal_mode = WAL');
    // Keep the WAL small: checkpoint every ~4 MiB of commits (the sink moves this to a thread of
    // its own, see checkpointer.ts) and truncate it to WAL_SIZE_LIMIT after (the bound the
    // start line names beside the disk budget).
    sqlite.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
    sqlite.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
    sqlite.pragma('synchronous = NORMAL');
    // Short: a locked database must not stall the event loop; the sink retries with back-off.
    sqlite.pragma('busy_timeout = 100');
    // Rollup closes that group in SQL (flow minutes, fallbacks) sort many rows: their sorters
    // spill to temp files past the cache (the default temp_store), where temp_store = MEMORY
    // would keep every sorted run in RAM however many rows there are.
    sqlite.pragma(`cache_size = -${SQLITE_CACHE_BYTES / 1024}`);
    // The bulk-insert table function tc_rows (rows.ts); loaded into this connection only.
    loadSqliteExtension(sqlite);
    const kysely = new Kysely<Schema>({ dialect: new SqliteDialect({ database: sqlite }) });
    const migrator = new Migrator({ db: kysely, provider: { getMigrations: async () => migrations } });
    const { error, results } = await migrator.migrateToLatest();
    if (error) {
      const failed = results?.find((r) => r.status === 'Error')?.migrationName;
      throw new TcError(`migrating ${file} failed${failed ? ` at ${failed}` : ''}: ${(error as Error).message ?? error}`, 'ERR_TC_MIGRATION');
    }
    sqlite.pragma(`application_id = ${APPLICATION_ID}`);
    sqlite.pragma(`user_version = ${SCHEMA_VERSION}`);
    return { file, sqlite, kysely, nodeId: ensureMeta(sqlite, nodeId) };
  } catch (err) {
    sqlite.close();
    if (err instanceof TcError) throw err;
    const busy = (err as { code?: string }).code?.startsWith('SQLITE_BUSY');
    const todo = busy ? '; another program holds its write lock (an open transaction, e.g. in a sqlite3 shell): end that, then start again' : '';
    throw new TcError(`cannot prepare database ${file} for writing: ${(err as Error).message}${todo}`, 'ERR_TC_OPEN_DB');
  }
}

/** Refuses, before anything is written, a `--node-id` other than the one the file has. */
function checkNodeId(db: Database.Database, file: string, wanted: string): void {
  const stored = metaValue(db, 'node_id');
  if (stored !== undefined && stored !== wanted) {
    throw new TcError(
      `--node-id ${wanted}: ${file} is the history of node ${stored} (set when it was created); record node ${wanted} into another --db`,
      'ERR_TC_NODE_ID',
    );
  }
}

/** This host's name as a node id: characters a path component cannot hold become "-". */
export function hostNodeId(): string {
  const h = os.hostname().replace(/[^A-Za-z0-9._-]/g, '-');
  return h === '' || h === '.' || h === '..' ? 'localhost' : h;
}

/**
 * The node id is set once per file, when it is created (the host's name, or `record --node-id`),
 * and kept: it names the node of every session and of the `node=` partitions of an export, so
 * one file is one node's history.
 */
function ensureMeta(db: Database.Database, wanted: string | undefined): string {
  const put = (key: string, value: string) => run(db, build.insertInto('meta').orIgnore().values({ key, value }));
  db.transaction(() => {
    put('node_id', wanted ?? hostNodeId());
    put('created_at', String(Date.now()));
  })();
  run(db, build.replaceInto('meta').values({ key: 'schema_version', value: String(SCHEMA_VERSION) }));
  return metaValue(db, 'node_id')!;
}

function metaValue(db: Database.Database, key: string): string | undefined {
  return get(db, build.selectFrom('meta').select('value').where('key', '=', key))?.value;
}
