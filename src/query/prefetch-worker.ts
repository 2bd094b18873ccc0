/** Worker side of prefetch.ts: plans the window and reads its segments from SQLite. */
import { parentPort, workerData } from 'node:worker_threads';
import { openReadOnly } from './db';
import { plan, readSegments, resolveWindow } from './plan';
import { matchingIds, whereFor } from './filters';
import type { PrefetchRequest, PrefetchResult } from './prefetch';

const req = workerData as PrefetchRequest;
const db = openReadOnly(req.db);
try {
  const window = resolveWindow(db, req.window);
  const match = matchingIds(db, req.filters);
  const w = whereFor(req.family, match, req.filters);
  const segments = window.toMs > window.fromMs ? plan(db, req.family, window.fromMs, window.toMs) : [];
  const rows = readSegments(db, req.family, segments, w.where, w.params);
  const result: PrefetchResult = { rows, match, window };
  // The column buffers move to the main thread; nothing is copied.
  parentPort!.postMessage(result, rows.columns.map((c) => c.buffer as ArrayBuffer));
} finally {
  db.close();
}
