/**
 * How a traffic-counter database identifies itself, shared by the recorder (which writes it)
 * and tc-query (which only reads it).
 */
import type BetterSqlite3 from 'better-sqlite3';
import { accessSync, constants, readFileSync, statSync, type Stats } from 'node:fs';
import * as path from 'node:path';
import { SCHEMA_VERSION } from '../migrations/version';
import { TcError } from './errors';

/** PRAGMA application_id of every traffic-counter database: "TCNT". */
export const APPLICATION_ID = 0x54434e54;

/**
 * Checks that `db` is a traffic-counter database this version can read. `allowEmpty`: a new,
 * empty file is fine (the recorder is about to create the schema).
 */
export function checkIdentity(db: BetterSqlite3.Database, file: string, allowEmpty: boolean): 'empty' | 'ok' {
  let tables: number;
  try {
    tables = (db.prepare('select count(*) as n from sqlite_master').get() as { n: number }).n;
  } catch (err) {
    throw new TcError(`${file} is not a SQLite database (${(err as Error).message}); ${notOurs(allowEmpty)}`, 'ERR_TC_NOT_A_DATABASE');
  }
  const appId = db.pragma('application_id', { simple: true }) as number;
  const version = db.pragma('user_version', { simple: true }) as number;
  if (tables === 0 && appId === 0) {
    if (allowEmpty) return 'empty';
    throw new TcError(`${file} is an empty database, not a traffic-counter database; ${notOurs(allowEmpty)}`, 'ERR_TC_NOT_A_DATABASE');
  }
  if (appId !== APPLICATION_ID) {
    throw new TcError(`${file} is a SQLite database but not a traffic-counter database (application_id ${appId}); ${notOurs(allowEmpty)}`, 'ERR_TC_NOT_A_DATABASE');
  }
  if (version > SCHEMA_VERSION) {
    throw new TcError(
      `${file} was written by a newer traffic-counter (schema version ${version}; this one knows up to ${SCHEMA_VERSION}); upgrade traffic-counter to read it`,
      'ERR_TC_NEWER_SCHEMA',
    );
  }
  return 'ok';
}

/**
 * What to do about a --db that is not a traffic-counter database: the recorder (which may
 * create one) never writes into another program's file; tc-query needs one the recorder wrote.
 */
export function notOurs(recorder: boolean): string {
  return recorder ? 'the recorder never writes into another file: record into a new --db' : 'pass a file that `traffic-counter record` wrote (--db FILE, or TC_DB)';
}

/** The user name of `uid` from /etc/passwd, else the number. */
function ownerName(uid: number): string {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length > 2 && Number(f[2]) === uid) return f[0];
    }
  } catch {
    // No passwd file (a container): the number says it.
  }
  return `uid ${uid}`;
}

/** "owner root, mode 0644": who may do what with a file, for messages. */
export const modeOf = (st: Stats) => `owner ${ownerName(st.uid)}, mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}`;

/**
 * Why `file` cannot be opened to read (or, with `write`, to write) by this process, in words
 * that follow "FILE: " ("does not exist", "is a directory", "permission denied (owner root,
 * mode 0600): ..."), or undefined when the file system allows it. Says nothing about the
 * content: that is checkIdentity's part.
 */
export function accessProblem(file: string, write = false): string | undefined {
  let st: Stats;
  try {
    st = statSync(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') return 'does not exist';
    if (e.code === 'EACCES') {
      // A folder on the way cannot be searched: name the first one from the root.
      const parts = path.resolve(file).split(path.sep).slice(1, -1);
      for (let i = 0, dir: string = path.sep; i <= parts.length; dir = path.join(dir, parts[i] ?? ''), i++) {
        try {
          accessSync(dir, constants.X_OK);
        } catch {
          return `permission denied on the folder ${dir} (${modeOf(statSync(dir))}): this user cannot reach the file`;
        }
      }
    }
    return e.message;
  }
  if (st.isDirectory()) return 'is a directory';
  try {
    accessSync(file, write ? constants.R_OK | constants.W_OK : constants.R_OK);
  } catch {
    return write ? `is read-only for this user (${modeOf(st)})` : `permission denied (${modeOf(st)}): this user cannot read it`;
  }
  return undefined;
}
