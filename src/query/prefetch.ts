/**
 * Read-ahead for `tc-query top`: plans the window, then reads about half of its segments on a
 * worker thread while the main thread loads DuckDB and reads the other half, so SQLite's work
 * runs on both cores and overlaps with DuckDB's start-up (of the same order). Light on purpose:
 * this module loads no DuckDB.
 */
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import type Database from 'better-sqlite3';
import type { Window } from './window';
import { matchingIds, whereFor, type AddressMatch, type Filters } from './filters';
import type { LabelTable } from './labels';
import { BUCKET_MS, planWindow, readSegments, resolveWindow, type Extension, type Family, type Segment, type SegmentRows } from './plan';
import { sqliteExtension } from '../native';
import { openReadOnly } from './db';
import { checkSide, type Side } from './local';
import { TcError } from '../errors';

export interface ReadRequest {
  db: string;
  family: Family;
  segments: Segment[];
  where: string;
  params: unknown[];
  /** The extension of tc_group, which the worker loads into its connection. */
  ext: Extension;
}

export interface ReadAhead {
  /** The window with `--all` resolved. */
  window: Window;
  /** The address filter's conditions (undefined without --ip / --cidr / --label). */
  match: AddressMatch | undefined;
  family: Family;
  where: string;
  params: unknown[];
  /** Segments left for the caller to read. */
  mine: Segment[];
  /** The caller's part once read. */
  mineRows?: SegmentRows;
  /** The worker's part, summed per key. */
  theirs: Promise<SegmentRows>;
}

/** Buckets (or intervals) a segment reads: rows are roughly proportional. */
function cost(db: Database.Database, s: Segment): number {
  if (s.source !== 'raw') return (s.toMs - s.fromMs) / BUCKET_MS[s.source];
  return db.prepare('select count(*) from batches where start_ms >= ? and start_ms < ?').pluck().get(s.fromMs, s.toMs) as number;
}

/** Splits segments into two parts of about equal cost, cutting one rollup segment at a bucket boundary. */
export function split(db: Database.Database, segments: Segment[]): [Segment[], Segment[]] {
  const costs = segments.map((s) => cost(db, s));
  let left = costs.reduce((a, b) => a + b, 0) / 2;
  const a: Segment[] = [];
  const b: Segment[] = [];
  segments.forEach((s, i) => {
    if (left <= 0) b.push(s);
    else if (costs[i] <= left) {
      a.push(s);
      left -= costs[i];
    } else if (s.source !== 'raw' && costs[i] > 1) {
      const cut = s.fromMs + Math.round(left) * BUCKET_MS[s.source];
      if (cut > s.fromMs) a.push({ ...s, toMs: cut });
      b.push({ ...s, fromMs: Math.max(cut, s.fromMs) });
      left = 0;
    } else {
      b.push(s);
      left = 0;
    }
  });
  return [a, b];
}

/**
 * The read-ahead's worker thread, started on first use and kept: starting one costs ~40 ms (its
 * own V8 and modules), which a server answering many requests (`tc-query serve`) would pay on
 * each. It holds the process open only while it has requests to answer.
 */
class SegmentReader {
  private readonly worker = new Worker(path.join(__dirname, 'prefetch-worker.js'));
  private readonly pending = new Map<number, { resolve: (r: SegmentRows) => void; reject: (e: Error) => void }>();
  private next = 0;

  constructor(onGone: () => void) {
    this.worker.unref();
    this.worker.on('message', (m: { id: number; rows?: SegmentRows; error?: { message: string; code: string } }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (this.pending.size === 0) this.worker.unref();
      if (m.rows) p?.resolve(m.rows);
      else p?.reject(new TcError(m.error!.message, m.error!.code));
    });
    const fail = (err: Error) => {
      onGone();
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.once('error', fail);
    this.worker.once('exit', (code) => fail(new TcError(`segment reader stopped with code ${code}`, 'ERR_TC_READ')));
  }

  read(req: ReadRequest): Promise<SegmentRows> {
    const id = this.next++;
    this.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, req });
    });
  }
}

let reader: SegmentReader | undefined;
const segmentReader = (): SegmentReader => (reader ??= new SegmentReader(() => (reader = undefined)));

export function readAhead(sqlite: Database.Database, file: string, family: Family, w: Window, filters: Filters, labels?: LabelTable): ReadAhead {
  const window = resolveWindow(sqlite, w);
  const match = matchingIds(sqlite, filters, labels);
  const { where, params } = whereFor(family, match, filters);
  const segments = planWindow(sqlite, family, window);
  if (sqlite.memory) {
    // The file was read into memory (openReadOnly: a WAL file in a folder that is not writable):
    // a worker would read it all again, so this thread reads every segment.
    return { window, match, family, where, params, mine: segments, theirs: Promise.resolve(readSegments(sqlite, family, [], where, params, sqliteExtension())) };
  }
  const [theirs, mine] = split(sqlite, segments);
  const rows = segmentReader().read({ db: file, family, segments: theirs, where, params, ext: sqliteExtension() });
  rows.catch(() => undefined);
  return { window, match, family, where, params, mine, theirs: rows };
}

/**
 * The read-ahead of a `top` answer from its options (`tc-query top`, `chart --what top`): the
 * family its grouping and filters read, the window planned and refused (--side needs local
 * networks) before a worker starts reading it.
 */
export function readAheadTop(file: string, o: { by: string; window: Window; filters: Filters; labels?: LabelTable; side?: Side; tz?: string }): ReadAhead {
  const family: Family = o.by === 'flow' || o.filters.proto !== undefined || o.filters.port !== undefined ? 'flow' : 'ip';
  const planning = openReadOnly(file);
  try {
    const resolved = resolveWindow(planning, o.window);
    checkSide(planning, o.side, resolved.fromMs, resolved.toMs, o.tz);
    return readAhead(planning, file, family, o.window, o.filters, o.labels);
  } finally {
    planning.close();
  }
}
