/**
 * WAL checkpoints on a worker thread with a connection of its own, so that copying the WAL
 * into the database file (and the fsync that ends it) never stalls the thread that writes
 * batches: inline auto-checkpoints take a share of the writer's time, and an fsync on a busy
 * disk can take much longer. PASSIVE checkpoints never block the writer or readers.
 *
 * While the worker runs, the writing connection's auto-checkpoint threshold is raised (not
 * removed): should the worker fall behind or fail, SQLite still checkpoints inline and the
 * WAL stays bounded.
 */
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import type Database from 'better-sqlite3';
import type { Logger } from '../observe/log';

/** How often the worker checkpoints. */
const EVERY_MS = 500;
/** The writer's own auto-checkpoint (pages): the default, and the fallback while the worker runs. */
export const AUTOCHECKPOINT_PAGES = 1000;
export const FALLBACK_PAGES = 16384;

export interface CheckpointWorkerData {
  file: string;
  everyMs: number;
}

export class Checkpointer {
  private worker: Worker | undefined;
  private stopping = false;
  /** Set once the worker failed: the writer checkpoints inline from then on. */
  private failed = false;

  constructor(
    private readonly file: string,
    private readonly db: Database.Database,
    private readonly log: Logger,
  ) {}

  get running(): boolean {
    return this.worker !== undefined;
  }

  start(): void {
    if (this.worker || this.stopping || this.failed) return;
    const data: CheckpointWorkerData = { file: this.file, everyMs: EVERY_MS };
    const w = new Worker(path.join(__dirname, 'checkpoint-worker.js'), { workerData: data });
    w.on('message', (m: { error?: string }) => {
      if (m.error) this.log.warn(`WAL checkpoint failed: ${m.error}`, { event: 'checkpoint-failed' });
    });
    w.on('error', (err) => this.fallBack(`WAL checkpoint thread failed: ${err.message}; checkpoints run inline`));
    w.on('exit', (code) => {
      if (!this.stopping) this.fallBack(`WAL checkpoint thread exited (code ${code}); checkpoints run inline`);
    });
    // After the listeners (adding one refs the port again): the thread never holds the process.
    w.unref();
    this.worker = w;
    this.db.pragma(`wal_autocheckpoint = ${FALLBACK_PAGES}`);
  }

  private fallBack(msg: string): void {
    if (!this.worker) return;
    this.worker = undefined;
    this.failed = true;
    this.log.warn(msg, { event: 'checkpoint-failed' });
    try {
      this.db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
    } catch {
      /* the connection is closing */
    }
  }

  /** Stops the worker (its connection closes); the writer checkpoints inline again. */
  async stop(): Promise<void> {
    this.stopping = true;
    const w = this.worker;
    if (!w) return;
    this.worker = undefined;
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    w.postMessage('stop');
    const timer = setTimeout(() => void w.terminate(), 1000);
    await exited;
    clearTimeout(timer);
    try {
      this.db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
    } catch {
      /* closed */
    }
  }
}
