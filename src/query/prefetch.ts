/**
 * Reads a window's planned segments on a worker thread, so that SQLite's work overlaps with
 * loading and starting DuckDB on the main thread (each takes ~0.1 s). Light on purpose: this
 * module loads no DuckDB.
 */
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import type { Window } from './window';
import type { Filters } from './filters';
import type { SegmentRows } from './plan';

export interface PrefetchRequest {
  db: string;
  family: 'ip' | 'flow';
  window: Window;
  filters: Filters;
}

export interface PrefetchResult {
  /** The segments' rows, column by column, and the dictionary ids they refer to. */
  rows: SegmentRows;
  /** The address filter's ids (undefined without --ip / --cidr). */
  match: number[] | undefined;
  /** The window with `--all` resolved. */
  window: Window;
}

export function prefetch(req: PrefetchRequest): Promise<PrefetchResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(path.join(__dirname, 'prefetch-worker.js'), { workerData: req });
    w.once('message', resolve);
    w.once('error', reject);
    w.once('exit', (code) => {
      if (code !== 0) reject(new Error(`segment reader stopped with code ${code}`));
    });
  });
}
