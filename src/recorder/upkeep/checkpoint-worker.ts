/** The checkpoint thread of `checkpointer.ts`: PASSIVE checkpoints on its own connection. */
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';
import type { CheckpointWorkerData } from './checkpointer';

const { file, everyMs } = workerData as CheckpointWorkerData;
const db = new Database(file, { fileMustExist: true });
db.pragma('busy_timeout = 1000');
let lastError = '';
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
    lastError = '';
  } catch (err) {
    const msg = (err as Error).message;
    // One report per kind of failure, not one every tick.
    if (msg !== lastError) parentPort!.postMessage({ error: msg });
    lastError = msg;
  }
}, everyMs);
parentPort!.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort!.close();
});
