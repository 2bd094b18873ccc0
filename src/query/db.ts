/** Opens a traffic-counter database read-only; never changes the file. */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { checkIdentity, DbError } from '../db-identity';

export { DbError };

export function openReadOnly(file: string): Database.Database {
  if (!existsSync(file)) throw new DbError(`database ${file} does not exist (record into it with \`traffic-counter record --db ${file}\`, or pass --db / TC_DB)`, 'ERR_TC_NO_DATABASE');
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new DbError(`cannot open database ${file}: ${(err as Error).message}`, 'ERR_TC_OPEN_DB');
  }
  try {
    checkIdentity(db, file, false);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}
