/** What `traffic-counter record` is given, and what its live and replay paths share. */
import * as engine from '../../native';
import type { WriteDb } from '../write/db';
import { DEFAULT_QUEUE_MAX, DEFAULT_QUEUE_MAX_BYTES } from '../write/sink';
import type { Logger, LogFormat } from '../observe/log';
import type { Metrics } from '../observe/metrics';
import type { Retention } from '../upkeep/retention';
import { resolveBudget, WAL_SIZE_LIMIT } from '../budget/disk';
import { bytes } from '../../units';

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
  /** New (address, name, source) pairs per interval; 0: names off. */
  maxNames: number;
  flows: boolean;
  ignoreFile?: string;
  acceptSourceFile?: string;
  /** A file of this host's networks (one CIDR a line), in place of the capture interface's addresses; replays have none without it. */
  localNetworks?: string;
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
  /** --max-db-size in bytes (0 = no budget); undefined: the default (budget/disk.ts resolveBudget). */
  maxDbSize?: number;
}

/**
 * The recording's disk budget, resolved (budget/disk.ts) and said: one line for the log, and the
 * fields JSON logs carry. Also kept in the file's `meta` (`max_db_size`) for `tc-query status`.
 */
export function diskBudget(o: RecordOptions, live: boolean, db: WriteDb): { maxBytes: number; text: string; fields: Record<string, number> } {
  const r = resolveBudget(o.maxDbSize, live, o.db);
  const text = r.maxBytes > 0 ? `disk budget ${bytes(r.maxBytes)} (${r.why}) + WAL up to ${bytes(WAL_SIZE_LIMIT)}` : `${r.why}; WAL up to ${bytes(WAL_SIZE_LIMIT)}`;
  const put = db.sqlite.prepare("insert or replace into meta (key, value) values ('max_db_size', ?)");
  put.run(String(r.maxBytes));
  return { maxBytes: r.maxBytes, text, fields: { max_db_size: r.maxBytes, wal_size_limit: WAL_SIZE_LIMIT } };
}

export function countOptions(o: RecordOptions): engine.CountOptions {
  return {
    intervalMs: o.intervalSecs * 1000,
    maxKeys: o.maxKeys,
    maxNames: o.maxNames,
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
