/** Worker side of prefetch.ts: reads its part of a planned window from SQLite. */
import { parentPort, workerData } from 'node:worker_threads';
import { openReadOnly } from './db';
import { readSegments } from './plan';
import type { ReadRequest } from './prefetch';

const req = workerData as ReadRequest;
const db = openReadOnly(req.db);
try {
  const rows = readSegments(db, req.family, req.segments, req.where, req.params);
  // The column buffers move to the main thread; nothing is copied.
  parentPort!.postMessage(rows, rows.columns.map((c) => c.buffer as ArrayBuffer));
} finally {
  db.close();
}
