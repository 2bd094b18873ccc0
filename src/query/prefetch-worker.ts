/** Worker side of prefetch.ts: plans the window and reads its segments from SQLite. */
import { parentPort, workerData } from 'node:worker_threads';
import { openReadOnly } from './db';
import { plan, resolveWindow, segmentSql, seriesSql } from './plan';
import { matchingIds, whereFor } from './filters';
import type { PrefetchRequest, PrefetchResult } from './prefetch';

const req = workerData as PrefetchRequest;
const db = openReadOnly(req.db);
try {
  const window = resolveWindow(db, req.window);
  const match = matchingIds(db, req.filters);
  const rows: unknown[][] = [];
  const ids = new Set<number>();
  if (window.toMs > window.fromMs) {
    if (req.stepMs !== undefined) {
      const w = whereFor('ip', match, {});
      for (const s of plan(db, 'ip', window.fromMs, window.toMs, req.stepMs)) {
        for (const r of db.prepare(seriesSql(s, w.where)).safeIntegers(true).raw(true).iterate(s.fromMs, s.toMs, ...w.params) as Iterable<unknown[]>) rows.push(r);
      }
    } else {
      const w = whereFor(req.family, match, req.filters);
      for (const s of plan(db, req.family, window.fromMs, window.toMs)) {
        for (const r of db.prepare(segmentSql(req.family, s, w.where)).safeIntegers(true).raw(true).iterate(s.fromMs, s.toMs, ...w.params) as Iterable<unknown[]>) {
          ids.add(Number(r[0] as bigint));
          if (req.family === 'flow') ids.add(Number(r[1] as bigint));
          rows.push(r);
        }
      }
    }
  }
  const result: PrefetchResult = { rows, ids: [...ids], match, window };
  parentPort!.postMessage(result);
} finally {
  db.close();
}
