/**
 * `tc-query copy`: a consistent single-file snapshot of the database, taken while the recorder
 * writes, that opens anywhere (read-only media included): how an analyst takes the file off a
 * box. SQLite's VACUUM INTO writes it from one read transaction of a read-only connection, so
 * it holds every committed interval up to that moment (those still in the -wal as well) and
 * nothing half written; the recorder is never blocked (WAL readers do not block the writer).
 * The copy is in rollback-journal mode: it has no -wal and needs no -shm to be read.
 */
import Database from 'better-sqlite3';
import { statSync } from 'node:fs';
import { openReadOnly } from '../db';
import { checkFileOut, discard, publish, stagingPath, writeFailed } from '../out';
import { TcError } from '../../errors';

export interface CopyResult {
  out: string;
  bytes: number;
  intervals: number;
  firstMs: number | null;
  lastMs: number | null;
}

export function copyDatabase(o: { db: string; out: string; force: boolean }): CopyResult {
  if (o.out === '-') throw new TcError('--out -: a database copy is a file; name one (e.g. --out traffic-copy.db)', 'ERR_TC_USAGE');
  // The database first: a file that cannot be read is the problem to say, whatever --out is.
  // A copy is byte for byte: an older file is copied as it is, to be upgraded there.
  const src = openReadOnly(o.db, { anySchema: true });
  try {
    checkFileOut(o.out, o.db, o.force, true);
  } catch (err) {
    src.close();
    throw err;
  }
  const tmp = stagingPath(o.out);
  try {
    src.prepare('vacuum into ?').run(tmp);
    const copy = new Database(tmp, { fileMustExist: true });
    let r: { n: number; first: number | null; last: number | null };
    try {
      // VACUUM INTO writes a rollback-journal file; said here rather than assumed.
      if (copy.pragma('journal_mode', { simple: true }) !== 'delete') copy.pragma('journal_mode = delete');
      r = copy.prepare('select count(*) as n, min(start_ms) as first, max(end_ms) as last from batches').get() as typeof r;
    } finally {
      copy.close();
    }
    publish(tmp, o.out, true);
    return { out: o.out, bytes: statSync(o.out).size, intervals: r.n, firstMs: r.first, lastMs: r.last };
  } catch (err) {
    discard(tmp);
    throw writeFailed(o.out, tmp, err);
  } finally {
    src.close();
  }
}
