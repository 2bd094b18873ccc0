/**
 * A file as an older traffic-counter wrote it: the schema of the migrations up to `last`, with
 * the rows of a file recorded now copied into it (the columns both have). Later migrations then
 * upgrade it the way they upgrade a real old file, whichever migrations come after `last`.
 */
import Database from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from '../../src/schema/kysely';
import { renameSync, rmSync } from 'node:fs';
import { migrations } from '../../migrations';
import { APPLICATION_ID } from '../../src/db-identity';

export async function downgrade(file: string, last: string): Promise<void> {
  const names = Object.keys(migrations);
  const keep = names.slice(0, names.indexOf(last) + 1);
  if (keep.length === 0) throw new Error(`no migration ${last}`);
  const old = `${file}.old`;
  const sqlite = new Database(old);
  const kysely = new Kysely<any>({ dialect: new SqliteDialect({ database: sqlite }) });
  const { error } = await new Migrator({ db: kysely, provider: { getMigrations: async () => Object.fromEntries(keep.map((n) => [n, migrations[n]])) } }).migrateToLatest();
  if (error) throw error;
  sqlite.exec(`attach database '${file.replace(/'/g, "''")}' as now`);
  const tables = sqlite.prepare("select name from main.sqlite_master where type = 'table' and name not like 'sqlite_%' and name not like 'kysely_%'").pluck().all() as string[];
  for (const t of tables) {
    const cols = (sqlite.prepare(`select name from main.pragma_table_info(?)`).pluck().all(t) as string[]).filter((c) =>
      (sqlite.prepare(`select count(*) from now.pragma_table_info(?) where name = ?`).pluck().get(t, c) as number) > 0,
    );
    const list = cols.map((c) => `"${c}"`).join(', ');
    sqlite.exec(`insert into main."${t}" (${list}) select ${list} from now."${t}"`);
  }
  sqlite.exec('detach database now');
  sqlite.pragma(`application_id = ${APPLICATION_ID}`);
  sqlite.pragma(`user_version = ${keep.length}`);
  sqlite.close();
  for (const ext of ['', '-wal', '-shm']) rmSync(`${file}${ext}`, { force: true });
  renameSync(old, file);
}
