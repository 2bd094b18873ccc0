/**
 * `traffic-counter record`: runs the capture engine (live or replay) and appends every interval
 * batch to the database.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, fstatSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { SingleBar } from 'cli-progress';
import * as engine from '../native';
import { openForWrite, type WriteDb } from './db';
import { BatchWriter, type SessionSpec } from './writer';
import { defaultRouteInterface } from './iface';
import { bytes, grouped, isoUtc, si } from '../units';

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
}

export class RecordError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

const log = (msg: string) => process.stderr.write(`traffic-counter: ${msg}\n`);

/** Replay session key: derived from the files' content (size, first and last 4 MiB) and the
 * counting options, so replaying the same capture again appends nothing new. */
function replaySessionKey(files: string[], opts: Record<string, unknown>): string {
  const h = createHash('sha256');
  const CHUNK = 4 << 20;
  for (const f of files) {
    const fd = openSync(f, 'r');
    try {
      const size = fstatSync(fd).size;
      h.update(`${size}\0`);
      const buf = Buffer.alloc(Math.min(CHUNK, size));
      readSync(fd, buf, 0, buf.length, 0);
      h.update(buf);
      if (size > CHUNK) {
        const tail = Buffer.alloc(Math.min(CHUNK, size - CHUNK));
        readSync(fd, tail, 0, tail.length, size - tail.length);
        h.update(tail);
      }
    } finally {
      closeSync(fd);
    }
  }
  h.update(JSON.stringify(opts));
  return `replay:${h.digest('hex').slice(0, 32)}`;
}

class IntervalPrinter {
  private prevIps = 0;
  private prevFlows = 0;
  constructor(private readonly quiet: boolean) {}
  print(b: engine.Batch): void {
    if (this.quiet) return;
    const c = b.counters;
    const drops = b.hasRing ? grouped(c.ringDrops) : '-';
    const filterDrops = b.hasFilter ? grouped(c.filterNonIp + c.filterIgnored + c.filterNotAccepted) : grouped(c.ignored);
    const ipKeys = b.ip.count;
    const flowKeys = b.flow.count;
    const d = (n: number, p: number) => `${n - p >= 0 ? '+' : ''}${n - p}`;
    process.stderr.write(
      `${isoUtc(b.startMs)}  ${bytes(c.ipBytes).padStart(10)}  ${si(c.ipPackets, 'pkt').padStart(9)}  ` +
        `kernel drops ${drops}  filter drops ${filterDrops}  ips ${grouped(ipKeys)} (${d(ipKeys, this.prevIps)})  ` +
        `flows ${grouped(flowKeys)} (${d(flowKeys, this.prevFlows)})` +
        (c.ipOverflowKeys + c.flowOverflowKeys > 0n ? `  overflowed keys ${c.ipOverflowKeys}/${c.flowOverflowKeys}` : '') +
        '\n',
    );
    this.prevIps = ipKeys;
    this.prevFlows = flowKeys;
  }
}

function countOptions(o: RecordOptions): engine.CountOptions {
  return {
    intervalMs: o.intervalSecs * 1000,
    maxKeys: o.maxKeys,
    flows: o.flows,
    ignoreFile: o.ignoreFile,
    acceptSourceFile: o.acceptSourceFile,
  };
}

export async function record(o: RecordOptions): Promise<void> {
  // Everything the user gave is checked before the database is touched.
  if (o.ignoreFile) engine.checkCidrFile(o.ignoreFile);
  if (o.acceptSourceFile) engine.checkCidrFile(o.acceptSourceFile);
  if (o.pcap && o.pcap.length > 0) {
    engine.probeCaptures(o.pcap);
    return recordReplay(o, o.pcap);
  }
  return recordLive(o);
}

async function recordReplay(o: RecordOptions, files: string[]): Promise<void> {
  const counting = { intervalMs: o.intervalSecs * 1000, maxKeys: o.maxKeys, flows: o.flows, ignoreFile: o.ignoreFile ?? null, acceptSourceFile: o.acceptSourceFile ?? null };
  const spec: SessionSpec = {
    key: replaySessionKey(files, counting),
    kind: 'replay',
    source: files.map((f) => path.resolve(f)).join(' '),
    intervalMs: o.intervalSecs * 1000,
    flows: o.flows,
    options: counting,
  };
  const db = await openForWrite(o.db);
  const printer = new IntervalPrinter(o.quiet);
  const showBar = o.progress ?? (process.stderr.isTTY === true && !o.quiet);
  const bar = showBar ? new SingleBar({ format: 'replay [{bar}] {percentage}% | {value}/{total} MiB | {eta}s left', stream: process.stderr, hideCursor: true }) : undefined;
  let writer: BatchWriter | undefined;
  let written = 0;
  let skipped = 0;
  const run = engine.replay(files, countOptions(o), {
    batch: (b) => {
      writer ??= new BatchWriter(db.sqlite, db.nodeId, spec);
      const r = writer.write(b);
      if (r.written) written++;
      else skipped++;
      if (!bar) printer.print(b);
    },
    warning: (m) => log(`warning: ${m}`),
    progress: (done, total) => {
      if (!bar) return;
      const mib = (n: number) => Math.round(n / (1 << 20));
      if (!bar.isActive) bar.start(mib(total), 0);
      bar.update(mib(done));
    },
  });
  const onSignal = () => run.stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const summaries = await run.done;
    bar?.stop();
    writer?.end();
    if (!o.quiet) {
      for (const s of summaries) log(`${s.path}: ${grouped(s.frames)} frames (${s.format})${s.truncated ? ', ends early' : ''}`);
      log(`${written} intervals written to ${o.db}${skipped ? `, ${skipped} already recorded (skipped)` : ''}`);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    closeDb(db);
  }
}

function closeDb(db: WriteDb): void {
  try {
    db.sqlite.pragma('wal_checkpoint(TRUNCATE)');
  } catch {
    /* a reader holds the WAL; the next writer checkpoints */
  }
  db.sqlite.close();
}

async function recordLive(o: RecordOptions): Promise<void> {
  const iface = o.iface ?? defaultRouteInterface();
  if (!iface) throw new RecordError('no default route found to pick an interface; pass --iface IF (see `ip -br link`)', 'ERR_TC_NO_INTERFACE');
  const spec: SessionSpec = {
    key: `live:${randomUUID()}`,
    kind: 'live',
    source: iface,
    intervalMs: o.intervalSecs * 1000,
    flows: o.flows,
    options: { ...countOptions(o), workers: o.workers ?? null, ebpf: o.ebpf, blockSize: o.blockSize ?? null, blockCount: o.blockCount ?? null, frameSize: o.frameSize ?? null },
  };
  const printer = new IntervalPrinter(o.quiet);
  let writer: BatchWriter | undefined;
  // The capture starts first, so every option (interface, ring shape, fanout group, filter) is
  // checked before the database is touched; the first batch waits for the database.
  let dbOpen: Promise<WriteDb> | undefined;
  const live = engine.startLive(
      {
        iface,
        workers: o.workers,
        blockSize: o.blockSize,
        blockCount: o.blockCount,
        frameSize: o.frameSize,
        fanoutGroup: o.fanoutGroup,
        ebpf: o.ebpf,
        snaplen: o.snaplen,
        count: countOptions(o),
      },
      {
        batch: async (b) => {
          const db = await dbOpen!;
          writer ??= new BatchWriter(db.sqlite, db.nodeId, spec);
          writer.write(b);
          printer.print(b);
        },
        warning: (m) => log(`warning: ${m}`),
      },
    );
  dbOpen = openForWrite(o.db);
  let db: WriteDb;
  try {
    db = await dbOpen;
  } catch (err) {
    live.stop();
    await live.done.catch(() => undefined);
    throw err;
  }
  const info = live.info;
  if (!o.quiet) {
    log(
      `recording ${info.iface} into ${o.db}: ${info.workers} worker(s), fanout group ${info.fanoutGroup}, ` +
        `${info.ebpfAttachedSockets > 0 ? `eBPF filter attached to ${info.ebpfAttachedSockets} socket(s)` : 'no eBPF filter (userspace rules)'}, ` +
        `${o.intervalSecs}s intervals${o.flows ? ', flows' : ''}`,
    );
  }
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    if (!o.quiet) log(`${sig}: flushing the partial interval`);
    live.stop();
  };
  const onInt = () => stop('SIGINT');
  const onTerm = () => stop('SIGTERM');
  const onHup = () => {
    try {
      live.reloadRules();
      log('SIGHUP: CIDR files reloaded');
    } catch (err) {
      log(`SIGHUP: reload failed, keeping the previous rules: ${(err as Error).message}`);
    }
  };
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  process.on('SIGHUP', onHup);
  try {
    await live.done;
    (writer as BatchWriter | undefined)?.end();
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    process.off('SIGHUP', onHup);
    closeDb(db);
  }
}
