/**
 * How a traffic-counter database identifies itself, shared by the recorder (which writes it)
 * and tc-query (which only reads it).
 */
import type BetterSqlite3 from 'better-sqlite3';
import { SCHEMA_VERSION } from '../migrations/version';

/** PRAGMA application_id of every traffic-counter database: "TCNT". */
export const APPLICATION_ID = 0x54434e54;

export class DbError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

/**
 * Checks that `db` is a traffic-counter database this version can read. `allowEmpty`: a new,
 * empty file is fine (the recorder is about to create the schema).
 */
export function checkIdentity(db: BetterSqlite3.Database, file: string, allowEmpty: boolean): 'empty' | 'ok' {
  let tables: number;
  try {
    tables = (db.prepare('select count(*) as n from sqlite_master').get() as { n: number }).n;
  } catch (err) {
    throw new DbError(`${file} is not a SQLite database (${(err as Error).message})`, 'ERR_TC_NOT_A_DATABASE');
  }
  const appId = db.pragma('application_id', { simple: true }) as number;
  const version = db.pragma('user_version', { simple: true }) as number;
  if (tables === 0 && appId === 0) {
    if (allowEmpty) return 'empty';
    throw new DbError(`${file} is an empty database, not a traffic-counter database`, 'ERR_TC_NOT_A_DATABASE');
  }
  if (appId !== APPLICATION_ID) {
    throw new DbError(`${file} is a SQLite database but not a traffic-counter database (application_id ${appId})`, 'ERR_TC_NOT_A_DATABASE');
  }
  if (version > SCHEMA_VERSION) {
    throw new DbError(
      `${file} was written by a newer traffic-counter (schema version ${version}; this one knows up to ${SCHEMA_VERSION}); upgrade traffic-counter to read it`,
      'ERR_TC_NEWER_SCHEMA',
    );
  }
  return 'ok';
}
