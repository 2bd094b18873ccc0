/**
 * `traffic-counter record`: runs the capture engine (live or replay) and hands every interval
 * batch to the sink, which appends it to the database.
 */
import { createHash, randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chownSync, closeSync, existsSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { SingleBar } from 'cli-progress';
import * as engine from '../native';
import { checkWritable, openForWrite, type WriteDb } from './db';
import { deleteSession, type SessionSpec } from './writer';
import { BatchSink, DEFAULT_QUEUE_MAX, DEFAULT_QUEUE_MAX_BYTES } from './sink';
import { defaultRouteInterface, interfaceDown } from './iface';
import { Logger, type LogFormat } from './log';
import { Metrics, notCounted } from './metrics';
import { missingCapabilities } from './caps';
import { WriterLock } from './lock';
import { DEFAULT_RETENTION, type Retention } from './retention';
import { Rollups } from './rollups';
import { bytes, grouped, isoUtc, plural, si } from '../units';

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

export class RecordError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

/** A replay's session key: the capture file's content alone, whatever its name or the options. */
function replaySessionKey(file: string): string {
  return `replay:${engine.captureIdentity(file)}`;
}

interface PriorSession {
  id: number;
  session_key: string;
  source: string;
  started_at: number;
  /** NULL: the replay was stopped or killed before the end of the file. */
  ended_at: number | null;
  options: string;
}

const PRIOR = 'select id, session_key, source, started_at, ended_at, options from sessions';

/**
 * The session that already holds this capture, if any: keyed by its content, or by the key
 * earlier versions gave a replay of this one file (its size, first and last 4 MiB, and the
 * session's counting options as stored).
 */
function priorSession(db: WriteDb, file: string, key: string): PriorSession | undefined {
  const byContent = db.sqlite.prepare(`${PRIOR} where session_key = ?`).get(key) as PriorSession | undefined;
  if (byContent) return byContent;
  const legacy = db.sqlite.prepare(`${PRIOR} where kind = 'replay' and session_key not like 'replay:%:%' order by id`).all() as PriorSession[];
  if (legacy.length === 0) return undefined;
  const h = createHash('sha256');
  const CHUNK = 4 << 20;
  const fd = openSync(file, 'r');
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
  return legacy.find((s) => `replay:${h.copy().update(s.options).digest('hex').slice(0, 32)}` === s.session_key);
}

/** The counting options of a replay session, as the command line gives them. */
function describeOptions(json: string): string {
  let c: { intervalMs?: number; maxKeys?: number; flows?: boolean; ignoreFile?: string | null; acceptSourceFile?: string | null };
  try {
    c = JSON.parse(json);
  } catch {
    return json;
  }
  return [
    `--interval-secs ${(c.intervalMs ?? 0) / 1000}`,
    c.flows ? '--flows' : 'without --flows',
    `--max-keys ${c.maxKeys}`,
    ...(c.ignoreFile ? [`--ignore-file ${c.ignoreFile}`] : []),
    ...(c.acceptSourceFile ? [`--accept-source-file ${c.acceptSourceFile}`] : []),
  ].join(', ');
}

class IntervalPrinter {
  private prevIps = 0;
  private prevFlows = 0;
  constructor(private readonly log: Logger, private readonly quiet: boolean) {}
  observe(b: engine.Batch): void {
    const c = b.counters;
    if (this.quiet) return;
    const nc = notCounted(c);
    const drops = b.hasRing ? grouped(c.ringDrops) : '-';
    const filterDrops = b.hasFilter ? c.filterNonIp + c.filterIgnored + c.filterNotAccepted + c.ignored : c.ignored;
    const ipKeys = b.ip.count;
    const flowKeys = b.flow.count;
    const d = (n: number, p: number) => `${n - p >= 0 ? '+' : ''}${n - p}`;
    this.log.interval(
      `${isoUtc(b.startMs)}  ${bytes(c.ipBytes).padStart(10)}  ${si(c.ipPackets, 'pkt').padStart(9)}  ` +
        `kernel drops ${drops}  non-IP ${grouped(nc.nonIp)}  filtered by CIDR rules ${grouped(nc.cidrFiltered)}  ips ${grouped(ipKeys)} (${d(ipKeys, this.prevIps)})  ` +
        `flows ${grouped(flowKeys)} (${d(flowKeys, this.prevFlows)})` +
        (c.ipOverflowKeys + c.flowOverflowKeys > 0n ? `  overflowed keys ${c.ipOverflowKeys}/${c.flowOverflowKeys}` : ''),
      {
        start: new Date(b.startMs).toISOString(),
        end: new Date(b.endMs).toISOString(),
        bytes: c.ipBytes,
        packets: c.ipPackets,
        kernel_drops: b.hasRing ? c.ringDrops : null,
        filter_drops: filterDrops,
        non_ip: nc.nonIp,
        cidr_filtered: nc.cidrFiltered,
        ip_keys: ipKeys,
        ip_keys_growth: ipKeys - this.prevIps,
        flow_keys: flowKeys,
        flow_keys_growth: flowKeys - this.prevFlows,
        ip_overflow_keys: c.ipOverflowKeys,
        flow_overflow_keys: c.flowOverflowKeys,
      },
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
  if (o.user) userIds(o.user);
  const replaying = o.pcap !== undefined && o.pcap.length > 0;
  if (o.replace && !replaying) throw new RecordError('--replace applies to replays only (--pcap FILE...)', 'ERR_TC_BAD_OPTION');
  if (replaying) engine.probeCaptures(o.pcap!);
  else {
    const missing = missingCapabilities({ ebpf: o.ebpf, user: o.user });
    if (missing.length > 0) {
      throw new RecordError(
        `live capture needs ${missing.join(', ')}, which this process does not have; run as root, or grant ${missing.length === 1 ? 'it' : 'them'} (AmbientCapabilities= in contrib/traffic-counter.service)`,
        'ERR_TC_PERMISSION',
      );
    }
  }
  // One writer per file, checked before the database is opened (no migration, event or scan
  // of unclean shutdowns happens under another writer).
  checkWritable(o.db);
  const lock = WriterLock.acquire(o.db, replaying ? `replay of ${o.pcap!.map((f) => path.basename(f)).join(' ')}` : `live capture on ${o.iface ?? 'the default-route interface'}`);
  try {
    if (replaying) await recordReplay(o, o.pcap!, lock);
    else await recordLive(o, lock);
  } finally {
    lock.release();
  }
}

async function startMetrics(o: RecordOptions, metrics: Metrics, log: Logger): Promise<(() => void) | undefined> {
  if (!o.metricsListen) return undefined;
  const server = await metrics.listen(o.metricsListen);
  const a = server.address();
  log.info(`metrics on http://${typeof a === 'object' && a ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : o.metricsListen}/metrics`);
  return () => server.close();
}

/** The write queue's bounds (batches, bytes); live capture bounds the engine's hand-over the same way. */
function queueBounds(o: RecordOptions): { queueMax: number; queueMaxBytes: number } {
  return { queueMax: o.queueMax ?? DEFAULT_QUEUE_MAX, queueMaxBytes: o.queueMaxMib === undefined ? DEFAULT_QUEUE_MAX_BYTES : o.queueMaxMib * 2 ** 20 };
}

/**
 * Replays the files one after the other, each as its own session keyed by its content: the
 * result equals replaying them one by one, in any order. A capture already recorded (by any
 * options) is skipped, or with `replace` recorded again in place of its earlier session; one
 * whose replay was stopped or killed before the end of the file is recorded again in its place.
 */
async function recordReplay(o: RecordOptions, files: string[], lock: WriterLock): Promise<void> {
  const log = new Logger(o.logFormat);
  const counting = { intervalMs: o.intervalSecs * 1000, maxKeys: o.maxKeys, flows: o.flows, ignoreFile: o.ignoreFile ?? null, acceptSourceFile: o.acceptSourceFile ?? null };
  const db = await openForWrite(o.db, o.nodeId);
  const metrics = new Metrics(o.db);
  const stopMetrics = await startMetrics(o, metrics, log);
  const printer = new IntervalPrinter(log, o.quiet);
  const showBar = o.progress ?? (process.stderr.isTTY === true && !o.quiet);
  // noTTYOutput: a bar asked for with --progress is drawn on a pipe or file too.
  const bar = showBar ? new SingleBar({ format: 'replay [{bar}] {percentage}% | {value}/{total} MiB | {eta}s left', stream: process.stderr, hideCursor: true, noTTYOutput: true }) : undefined;
  const sizes = files.map((f) => statSync(f).size);
  const total = sizes.reduce((a, b) => a + b, 0);
  const mib = (n: number) => Math.round(n / (1 << 20));
  let before = 0;
  let stopped = false;
  let current: { stop(): void } | undefined;
  const onSignal = () => {
    stopped = true;
    current?.stop();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const given = new Map<string, string>();
    for (const [i, file] of files.entries()) {
      if (stopped) break;
      const key = replaySessionKey(file);
      const same = given.get(key);
      if (same !== undefined) {
        log.info(`${file} has the same content as ${same}, given before it; skipped`);
        continue;
      }
      given.set(key, file);
      const prior = priorSession(db, file, key);
      if (prior && prior.ended_at !== null && !o.replace) {
        const when = `replayed ${isoUtc(prior.started_at)}${prior.source !== path.resolve(file) ? ` from ${prior.source}` : ''}`;
        log.info(
          `${file} is already recorded in ${o.db} as session ${prior.id} (${when}, ${describeOptions(prior.options)}); skipped, nothing counted twice (--replace records it again with the options given now)`,
          { event: 'skipped', file, session: prior.id },
        );
        continue;
      }
      const spec: SessionSpec = {
        key,
        kind: 'replay',
        source: path.resolve(file),
        intervalMs: o.intervalSecs * 1000,
        flows: o.flows,
        options: counting,
      };
      // A session stopped before the end of its file holds partial intervals (flushed on the
      // stop): it is recorded again in its place.
      const summary = await replayFile(file, spec, prior, (run) => (current = run));
      current = undefined;
      before += sizes[i];
      if (!o.quiet && summary) log.info(`${summary.path}: ${plural(summary.frames, 'frame')} (${summary.format})${summary.truncated ? ', ends early' : ''}`);
    }
    bar?.stop();
    if (!o.quiet) log.info(`${plural(metrics.batchesWritten, 'interval')} written to ${o.db}${metrics.batchesSkipped ? `, ${grouped(metrics.batchesSkipped)} already recorded (skipped)` : ''}`);
  } finally {
    bar?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    stopMetrics?.();
    closeDb(db);
  }

  /**
   * One file as one session. Replacing, its earlier session's rows go and the new ones come in
   * one transaction (the sink's group commits are savepoints inside it): a reader sees the
   * old session or the new one, never a part of either.
   */
  async function replayFile(file: string, spec: SessionSpec, replaced: PriorSession | undefined, started: (run: { stop(): void }) => void): Promise<engine.FileSummary | undefined> {
    let sink: BatchSink | undefined;
    const newSink = () =>
      new BatchSink({
        db,
        spec,
        retention: o.retention ?? DEFAULT_RETENTION,
        ...queueBounds(o),
        giveUpAfter: 6,
        log,
        metrics,
        onWritten: (wb) => {
          if (!bar) printer.observe(wb);
        },
      });
    if (replaced) {
      db.sqlite.exec('begin immediate');
      try {
        deleteSession(db.sqlite, replaced.id);
        sink = newSink();
        lock.setSession(sink.sessionId);
      } catch (err) {
        db.sqlite.exec('rollback');
        throw err;
      }
      log.info(
        `${file}: replacing session ${replaced.id} (${describeOptions(replaced.options)}${replaced.ended_at === null ? '; stopped before the end of the file' : ''})`,
        { event: 'replace', file, session: replaced.id },
      );
    }
    const run = engine.replay([file], countOptions(o), {
      batch: async (b) => {
        if (!sink) {
          sink = newSink();
          lock.setSession(sink.sessionId);
        }
        await sink.write(b);
      },
      warning: (m) => log.warn(m),
      progress: (done) => {
        if (!bar) return;
        if (!bar.isActive) bar.start(mib(total), 0);
        bar.update(mib(before + done));
      },
    });
    started(run);
    if (stopped) run.stop();
    try {
      const [summary] = await run.done;
      // Everything queued is written (or writing gave up: the error ends the replay).
      await sink?.idle();
      // A replay stopped before the end of the file stays open (ended_at NULL): the next
      // replay of the file records it again in its place.
      await sink?.close(Date.now() + 60_000, !stopped);
      if (replaced) db.sqlite.exec('commit');
      return summary;
    } catch (err) {
      if (replaced && db.sqlite.inTransaction) db.sqlite.exec('rollback');
      throw err;
    } finally {
      await sink?.release();
    }
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

function userIds(name: string): { uid: number; gid: number } {
  const r = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) throw new RecordError(`--user ${name}: no such user`, 'ERR_TC_BAD_OPTION');
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/**
 * Drops root after the sockets, rings and filter exist: the database files are handed to the
 * user, then gid and uid change. Changing every uid from 0 to non-zero clears the permitted,
 * effective and ambient capability sets (capabilities(7), "Effect of user ID changes").
 */
function dropPrivileges(user: string, dbFile: string, log: Logger): void {
  const { uid, gid } = userIds(user);
  for (const f of [dbFile, `${dbFile}-wal`, `${dbFile}-shm`, WriterLock.lockFile(dbFile)]) if (existsSync(f)) chownSync(f, uid, gid);
  (process as unknown as { initgroups(u: string, g: number): void }).initgroups(user, gid);
  process.setgid!(gid);
  process.setuid!(uid);
  log.info(`running as ${user} (uid ${uid}, gid ${gid}) without capabilities`);
}

/**
 * Marks live sessions of this database that never ended as unclean shutdowns (a gap). This
 * process holds the writer lock, so none of them is still running.
 */
function recordUncleanShutdowns(db: WriteDb, sink: BatchSink, log: Logger): void {
  const rows = db.sqlite
    .prepare(
      `select s.id, s.source, (select max(end_ms) from batches b where b.session_id = s.id) as last_end
       from sessions s where s.kind = 'live' and s.ended_at is null and s.id != ?`,
    )
    .all(sink.sessionId) as { id: number; source: string; last_end: number | null }[];
  for (const r of rows) {
    const detail = `session ${r.id} on ${r.source} ended without a clean stop (killed or crashed); the interval in flight was lost`;
    db.sqlite.transaction(() => {
      db.sqlite.prepare("insert into events (at_ms, session_id, kind, start_ms, end_ms, detail) values (?, ?, 'unclean-shutdown', ?, ?, ?)").run(Date.now(), r.id, r.last_end, Date.now(), detail);
      db.sqlite.prepare('update sessions set ended_at = coalesce(?, started_at) where id = ?').run(r.last_end, r.id);
    })();
    log.warn(detail);
  }
}

async function recordLive(o: RecordOptions, lock: WriterLock): Promise<void> {
  const log = new Logger(o.logFormat);
  // Signal handlers come first: a stop requested while the capture is being set up is carried
  // out as soon as it runs, instead of killing the process half-way.
  let pendingStop: string | undefined;
  let stop: ((sig: string) => void) | undefined;
  let hup: (() => void) | undefined;
  const onInt = () => (stop ? stop('SIGINT') : (pendingStop = 'SIGINT'));
  const onTerm = () => (stop ? stop('SIGTERM') : (pendingStop = 'SIGTERM'));
  const onHup = () => hup?.();
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  process.on('SIGHUP', onHup);
  try {
    await recordLiveInner(o, log, lock, {
      setStop: (f) => (stop = f),
      setHup: (f) => (hup = f),
      pending: () => pendingStop,
    });
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    process.off('SIGHUP', onHup);
  }
}

interface SignalHooks {
  setStop(f: (sig: string) => void): void;
  setHup(f: () => void): void;
  pending(): string | undefined;
}

async function recordLiveInner(o: RecordOptions, log: Logger, lock: WriterLock, sig: SignalHooks): Promise<void> {
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
  const metrics = new Metrics(o.db);
  const printer = new IntervalPrinter(log, o.quiet);
  const bounds = queueBounds(o);
  // The capture starts first, so every option (interface, ring shape, fanout group, filter) is
  // checked before the database is touched; batches wait for the sink.
  let sinkReady: Promise<BatchSink> | undefined;
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
      // Batches waiting for this thread (while one write runs long) are bounded as the write queue is.
      handoverMaxBatches: bounds.queueMax,
      handoverMaxBytes: bounds.queueMaxBytes,
    },
    {
      batch: async (b) => {
        const sink = await sinkReady!;
        printer.observe(b);
        sink.push(b);
      },
      dropped: async (intervals) => {
        const sink = await sinkReady!;
        for (const d of intervals) sink.lose(d.startMs, d.endMs, 'engine queue full (the recorder was busy for several intervals)');
      },
      warning: (m) => log.warn(m),
    },
  );
  let db: WriteDb;
  let sink: BatchSink;
  try {
    sinkReady = openForWrite(o.db, o.nodeId).then((d) => {
      db = d;
      sink = new BatchSink({
        db: d,
        spec,
        retention: o.retention ?? DEFAULT_RETENTION,
        ...bounds,
        log,
        metrics,
      });
      return sink;
    });
    await sinkReady;
  } catch (err) {
    live.stop();
    await live.done.catch(() => undefined);
    throw err;
  }
  const stopMetrics = await startMetrics(o, metrics, log).catch((err) => {
    live.stop();
    throw err;
  });
  lock.setSession(sink!.sessionId);
  sink!.event('start', `live capture on ${iface}`);
  recordUncleanShutdowns(db!, sink!, log);
  // Close rollup buckets a crashed session left open.
  sink!.closeStaleBuckets(Date.now());
  const info = live.info;
  log.info(
    `recording ${info.iface} into ${o.db}: ${info.workers} worker(s), fanout group ${info.fanoutGroup}, ` +
      `${info.ebpfAttachedSockets > 0 ? `eBPF filter attached to ${info.ebpfAttachedSockets} socket(s)` : 'no eBPF filter (userspace rules)'}, ` +
      `${o.intervalSecs}s intervals${o.flows ? ', flows' : ''}`,
    { event: 'start', iface: info.iface, workers: info.workers, fanout_group: info.fanoutGroup, ebpf_sockets: info.ebpfAttachedSockets },
  );
  const down = interfaceDown(info.iface);
  if (down) log.warn(down, { event: 'interface-down', iface: info.iface });
  if (o.user) dropPrivileges(o.user, o.db, log);
  let stopping = false;
  const stop = (name: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${name}: flushing the partial interval`, { event: 'stop', signal: name });
    live.stop();
  };
  sig.setStop(stop);
  sig.setHup(() => {
    if (!o.ignoreFile && !o.acceptSourceFile) {
      log.info('SIGHUP: nothing to reload (no --ignore-file or --accept-source-file was given)', { event: 'reload' });
      return;
    }
    try {
      live.reloadRules();
      log.info('SIGHUP: CIDR files reloaded', { event: 'reload' });
    } catch (err) {
      log.error(`SIGHUP: reload failed, keeping the previous rules: ${(err as Error).message}`, { event: 'reload-failed' });
    }
  });
  const pending = sig.pending();
  if (pending) stop(pending);
  try {
    await live.done;
    await sink!.close(Date.now() + 1500);
    sink!.event('stop', 'clean stop');
  } finally {
    stopMetrics?.();
    await sink!.release();
    closeDb(db!);
  }
}

/** `traffic-counter rebuild`: recomputes every projection from the log. */
export async function rebuild(dbFile: string): Promise<{ buckets: number }> {
  if (!existsSync(dbFile)) throw new RecordError(`database ${dbFile} does not exist`, 'ERR_TC_NO_DATABASE');
  checkWritable(dbFile);
  const lock = WriterLock.acquire(dbFile, 'rebuild');
  try {
    const db = await openForWrite(dbFile);
    try {
      return new Rollups(db.sqlite).rebuild();
    } finally {
      closeDb(db);
    }
  } finally {
    lock.release();
  }
}
