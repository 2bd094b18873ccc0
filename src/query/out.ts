/**
 * Where `export` and `copy` write, the only two tc-query commands that write anything: the
 * output named by --out, never the database itself. An existing output is refused unless
 * --force; the output is written under a hidden name beside it and renamed into place, so a
 * failed run leaves nothing half written and a reader of --out sees the old or the new whole.
 */
import { accessSync, constants, existsSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { modeOf } from '../db-identity';
import { TcError } from '../errors';

const usage = (msg: string) => new TcError(msg, 'ERR_TC_USAGE');

const real = (p: string): string | undefined => {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
};

/** The files that belong to database `db`: it and its -wal, -shm and -journal. */
const dbFiles = (db: string) => ['', '-wal', '-shm', '-journal'].map((s) => real(db + s)).filter((p): p is string => p !== undefined);

/** Refuses --out when it is (a file of) the database itself: no --force writes over the data. */
export function refuseDatabase(out: string, db: string): void {
  const o = real(out);
  if (o !== undefined && dbFiles(db).includes(o)) throw usage(`--out ${out} is the database being read; name another file`);
}

/**
 * Checks a file output before anything is written: not the database, not a folder, and not an
 * existing file unless `force`. `sidecars`: also refuse (or with `force` remove, on replace)
 * the -wal/-shm/-journal files of an earlier database at `out`, which SQLite would otherwise
 * apply to the new file.
 */
export function checkFileOut(out: string, db: string, force: boolean, sidecars = false): void {
  refuseDatabase(out, db);
  checkParent(out);
  if (existsSync(out) && statSync(out).isDirectory()) throw usage(`--out ${out} is a folder; name a file${sidecars ? '' : ' (or pass --partition to write a partitioned folder)'}`);
  const present = [out, ...(sidecars ? ['-wal', '-shm', '-journal'].map((s) => out + s) : [])].filter((p) => existsSync(p));
  if (present.length > 0 && !force) throw usage(`--out ${out}: ${present.join(', ')} already exist${present.length === 1 ? 's' : ''}; pass --force to replace ${present.length === 1 ? 'it' : 'them'}`);
}

/** Checks a folder output: not a file, and empty unless `force`. */
export function checkFolderOut(out: string, db: string, force: boolean): void {
  refuseDatabase(out, db);
  checkParent(out);
  if (!existsSync(out)) return;
  if (!statSync(out).isDirectory()) throw usage(`--out ${out} is a file; --partition writes a folder`);
  if (!force && readdirSync(out).length > 0) throw usage(`--out ${out} is not empty; pass --force to replace this database's node= folder in it`);
}

/**
 * The folder that will hold --out exists and this user may write in it. No folder is created on
 * the way: a mistyped path is said, not scattered over the file system.
 */
function checkParent(out: string): void {
  const dir = path.dirname(path.resolve(out));
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw usage(`--out ${out}: the folder ${dir} does not exist; create it first (mkdir -p ${dir}) or name another path`);
  }
  if (!st.isDirectory()) throw usage(`--out ${out}: ${dir} is not a folder`);
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch {
    throw usage(`--out ${out}: the folder ${dir} is not writable for this user (${modeOf(st)}); name a path in a folder you can write`);
  }
}

/** A hidden name beside `out` to write to before the rename. */
export function stagingPath(out: string): string {
  return path.join(path.dirname(path.resolve(out)), `.${path.basename(out)}.tc-${process.pid}`);
}

/** A failure while writing the staged `tmp`, said of --out (the hidden name means nothing to a user). */
export function writeFailed(out: string, tmp: string, err: unknown): TcError {
  if (err instanceof TcError) return err;
  const msg = ((err as Error).message ?? String(err)).split(tmp).join(out).replace(/^IO Error: /, '');
  return new TcError(`cannot write --out ${out}: ${msg}`, 'ERR_TC_WRITE_OUT');
}

/**
 * Moves the staged `tmp` to `out` (replacing a folder or file there, and with `sidecars` the
 * earlier database's -wal/-shm/-journal at `out`).
 */
export function publish(tmp: string, out: string, sidecars = false): void {
  if (sidecars) for (const s of ['-wal', '-shm', '-journal']) rmSync(out + s, { force: true });
  if (existsSync(out) && statSync(out).isDirectory()) rmSync(out, { recursive: true });
  renameSync(tmp, out);
}

/** Removes a staged output after a failure. */
export function discard(tmp: string): void {
  rmSync(tmp, { recursive: true, force: true });
}
