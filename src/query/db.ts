/**
 * Opens a traffic-counter database read-only; never changes the file. The one way tc-query
 * opens it: every command goes through here.
 */
import Database from 'better-sqlite3';
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { accessProblem, checkIdentity, notOurs } from '../db-identity';
import { TcError } from '../errors';
import { SCHEMA_VERSION } from '../../migrations/version';


/** A WAL file this size or smaller holds no frame (its header is 32 bytes): nothing to replay. */
const WAL_HEADER_BYTES = 32;

/** Bytes 18 and 19 of a SQLite header: the file format versions, 2 = WAL, 1 = rollback journal. */
const FORMAT_VERSION_BYTES = [18, 19];

const walSize = (file: string): number => {
  try {
    return statSync(`${file}-wal`).size;
  } catch {
    return 0;
  }
};

function header(file: string): Buffer {
  const buf = Buffer.alloc(100);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, buf, 0, 100, 0);
  } finally {
    closeSync(fd);
  }
  return buf;
}

/** SQLite could not set up the WAL's shared memory (the -shm file): the folder is not writable here. */
const NEEDS_SHM = new Set(['SQLITE_CANTOPEN', 'SQLITE_READONLY_DIRECTORY', 'SQLITE_READONLY_CANTINIT', 'SQLITE_READONLY_CANTLOCK', 'SQLITE_IOERR_LOCK']);

/**
 * A WAL database in a folder this user cannot write (read-only media, an analyst's mount, a
 * root-owned folder) and without a -shm file to share: SQLite cannot read it in place, and the
 * `immutable` open that would is out of reach (better-sqlite3 is built without URI filenames).
 * When the -wal holds no frame the main file is the whole database: it is read into memory
 * with its header marked as a rollback-journal file. Otherwise the main file alone would miss
 * the last changes: refused, saying what to do.
 */
function openInMemory(file: string, cause: Error): Database.Database {
  const dir = path.dirname(path.resolve(file));
  const head = header(file);
  if (head.subarray(0, 16).toString('latin1') !== 'SQLite format 3\0') {
    throw new TcError(`${file} is not a SQLite database; ${notOurs(false)}`, 'ERR_TC_NOT_A_DATABASE');
  }
  if (!FORMAT_VERSION_BYTES.every((i) => head[i] === 2)) throw new TcError(`cannot open database ${file}: ${cause.message}`, 'ERR_TC_OPEN_DB');
  const unreadable = () =>
    new TcError(
      `${file} has changes in ${file}-wal that cannot be read here: SQLite needs to create ${path.basename(file)}-shm beside it and the folder ${dir} is not writable for this user; ` +
        `copy ${file} and ${file}-wal together to a writable folder and query the copy (or run \`tc-query copy --out FILE\` where the folder is writable)`,
      'ERR_TC_WAL_UNREADABLE',
    );
  if (walSize(file) > WAL_HEADER_BYTES) throw unreadable();
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (err) {
    const size = statSync(file).size;
    throw new TcError(
      `cannot read ${file} (${(size / 2 ** 30).toFixed(1)} GiB) without a writable folder: ${(err as Error).message}; copy it to a writable folder and query the copy`,
      'ERR_TC_OPEN_DB',
    );
  }
  // A writer that started while the file was read would have left its changes in the -wal.
  if (walSize(file) > WAL_HEADER_BYTES) throw unreadable();
  for (const i of FORMAT_VERSION_BYTES) buf[i] = 1;
  return new Database(buf, { readonly: true });
}

export function openReadOnly(file: string, o: { anySchema?: boolean } = {}): Database.Database {
  const problem = accessProblem(file);
  if (problem === 'does not exist') {
    throw new TcError(`database ${file} does not exist (record into it with \`traffic-counter record --db ${file}\`, or pass --db / TC_DB)`, 'ERR_TC_NO_DATABASE');
  }
  if (problem === 'is a directory') throw new TcError(`${file} is a directory, not a database file (pass the file: --db ${path.join(file, 'traffic.db')})`, 'ERR_TC_OPEN_DB');
  if (problem) throw new TcError(`cannot open database ${file}: ${problem}; ask its owner for read access, or query a copy (\`tc-query copy\` where it is readable)`, 'ERR_TC_OPEN_DB');
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new TcError(`cannot open database ${file}: ${(err as Error).message}`, 'ERR_TC_OPEN_DB');
  }
  try {
    // SQLite opens lazily: the first read is where a WAL file without its -shm fails.
    db.prepare('select 1 from sqlite_master limit 1').get();
  } catch (err) {
    db.close();
    if (!NEEDS_SHM.has((err as { code?: string }).code ?? '')) {
      if ((err as { code?: string }).code === 'SQLITE_NOTADB') throw new TcError(`${file} is not a SQLite database; ${notOurs(false)}`, 'ERR_TC_NOT_A_DATABASE');
      throw new TcError(`cannot open database ${file}: ${(err as Error).message}`, 'ERR_TC_OPEN_DB');
    }
    db = openInMemory(file, err as Error);
  }
  try {
    checkIdentity(db, file, false);
    if (!o.anySchema) checkCurrent(db, file);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/**
 * A file an older recorder wrote lacks the tables and columns of later migrations, and the query
 * side never migrates (it cannot write): the recorder upgrades it in place, once.
 */
function checkCurrent(db: Database.Database, file: string): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version >= SCHEMA_VERSION) return;
  throw new TcError(
    `${file} was written by an older traffic-counter (schema version ${version}; this one reads ${SCHEMA_VERSION}); upgrade it once with \`traffic-counter rebuild --db ${file}\` (on a copy, \`tc-query --db ${file} copy --out NEW\`, if the original must stay as it is), then query it`,
    'ERR_TC_OLDER_SCHEMA',
  );
}
