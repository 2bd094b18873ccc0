/** What `traffic-counter record` is given, and what its live and replay paths share. */
import * as engine from '../../native';
import type { WriteDb } from '../write/db';
import { DEFAULT_QUEUE_MAX, DEFAULT_QUEUE_MAX_BYTES } from '../write/sink';
import type { Logger, LogFormat } from '../observe/log';
import type { Metrics } from '../observe/metrics';
import type { Retention } from '../upkeep/retention';

export interface RecordOptions {
  db: string;
  iface?: string;
  pcap?: string[];
  workers?: number;
  blockSize?: number;
  blockCount?: number;
  frameSize?: number;
  fanoutGroup?: number;
  intervalSecs: number;
  maxKeys: number;
  flows: boolean;
  ignoreFile?: string;
  acceptSourceFile?: string;
  ebpf: boolean;
  snaplen?: number;
  quiet: boolean;
  progress?: boolean;
  /** Replay: record a capture already in the file again, in place of its earlier session. */
  replace?: boolean;
  retention?: Retention;
  queueMax?: number;
  /** MiB of batch data the live write queue may hold. */
  queueMaxMib?: number;
  logFormat?: LogFormat;
  metricsListen?: string;
  user?: string;
  /** The node id of a new database file (default: the host's name); an existing file keeps its own. */
  nodeId?: string;
}

export function countOptions(o: RecordOptions): engine.CountOptions {
  return {
    intervalMs: o.intervalSecs * 1000,
    maxKeys: o.maxKeys,
    flows: o.flows,
    ignoreFile: o.ignoreFile,
    acceptSourceFile: o.acceptSourceFile,
  };
}

/** The write queue's bounds (batches, bytes); live capture bounds the engine's hand-over the same way. */
export function queueBounds(o: RecordOptions): { queueMax: number; queueMaxBytes: number } {
  return { queueMax: o.queueMax ?? DEFAULT_QUEUE_MAX, queueMaxBytes: o.queueMaxMib === undefined ? DEFAULT_QUEUE_MAX_BYTES : o.queueMaxMib * 2 ** 20 };
}

export async function startMetrics(o: RecordOptions, metrics: Metrics, log: Logger): Promise<(() => void) | undefined> {
  if (!o.metricsListen) return undefined;
  const server = await metrics.listen(o.metricsListen);
  const a = server.address();
  log.info(`metrics on http://${typeof a === 'object' && a ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : o.metricsListen}/metrics`);
  return () => server.close();
}

export function closeDb(db: WriteDb): void {
  try {
    db.sqlite.pragma('wal_checkpoint(TRUNCATE)');
  } catch {
    /* a reader holds the WAL; the next writer checkpoints */
  }
  db.sqlite.close();
}
