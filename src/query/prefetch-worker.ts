/** Worker side of prefetch.ts: reads its parts of planned windows from SQLite, one request a message. */
import { parentPort } from 'node:worker_threads';
import { openReadOnly } from './db';
import { readSegments, type SegmentRows } from './plan';
import type { ReadRequest } from './prefetch';

parentPort!.on('message', ({ id, req }: { id: number; req: ReadRequest }) => {
  let rows: SegmentRows;
  try {
    const db = openReadOnly(req.db);
    try {
      rows = readSegments(db, req.family, req.segments, req.where, req.params, req.ext);
    } finally {
      db.close();
    }
  } catch (err) {
    const e = err as Error & { code?: string };
    parentPort!.postMessage({ id, error: { message: e.message, code: e.code ?? 'ERR_TC_READ' } });
    return;
  }
  // The column buffers move to the main thread; nothing is copied (most columns share one).
  parentPort!.postMessage({ id, rows }, [...new Set(rows.columns.map((c) => c.buffer as ArrayBuffer))]);
});
