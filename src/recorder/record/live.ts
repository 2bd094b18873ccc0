/** `traffic-counter record` on an interface: live capture into the database. */
import { randomUUID } from 'node:crypto';
import * as engine from '../../native';
import { openForWrite, type WriteDb } from '../write/db';
import { endUncleanSessions, type SessionSpec } from '../write/writer';
import { BatchSink } from '../write/sink';
import { defaultRouteInterface, interfaceDown } from './iface';
import { Logger } from '../observe/log';
import { Metrics } from '../observe/metrics';
import type { WriterLock } from '../write/lock';
import { DEFAULT_RETENTION } from '../upkeep/retention';
import { closeDb, countOptions, diskBudget, queueBounds, startMetrics, type RecordOptions } from './options';
import { IntervalPrinter } from './interval-line';
import { describeBudget, describeKernelMaps, memoryBudget } from '../budget/memory';
import { dropPrivileges } from './privileges';
import { StopSignals } from './stop';
import { TcError } from '../../errors';
import { LocalNetworkWatch, networkText } from './local-networks';
import type { LocalNetwork, LocalNetworkChange } from '../write/local-networks';

/** `localNetworks`: the networks of --local-networks FILE, in place of the interface's. */
export async function recordLive(o: RecordOptions, lock: WriterLock, localNetworks?: LocalNetwork[]): Promise<void> {
  const log = new Logger(o.logFormat);
  // Signal handlers come first: a stop requested while the capture is being set up is carried
  // out as soon as it runs.
  const stop = new StopSignals({ secondKills: false, hup: true });
  try {
    await capture(o, log, lock, stop, localNetworks);
  } finally {
    stop.dispose();
  }
}

async function capture(o: RecordOptions, log: Logger, lock: WriterLock, stop: StopSignals, localNetworks: LocalNetwork[] | undefined): Promise<void> {
  const iface = o.iface ?? defaultRouteInterface();
  if (!iface) throw new TcError('no default route found to pick an interface; pass --iface IF (see `ip -br link`)', 'ERR_TC_NO_INTERFACE');
  const spec: SessionSpec = {
    key: `live:${randomUUID()}`,
    kind: 'live',
    source: iface,
    intervalMs: o.intervalSecs * 1000,
    flows: o.flows,
    options: { ...countOptions(o), workers: o.workers ?? null, ebpf: o.ebpf, blockSize: o.blockSize ?? null, blockCount: o.blockCount ?? null, frameSize: o.frameSize ?? null, localNetworks: o.localNetworks ?? null },
  };
  // This host's networks: changes go to the sink once it is open (none are seen before: the
  // interface is read first once the sink is ready).
  const onNetworks = (changes: LocalNetworkChange[]) => {
    sink!.localNetworkChanges(changes);
    for (const c of changes) {
      log.info(`local network ${c.kind === 'add' ? 'added' : 'removed'}: ${networkText(c.net)}${c.net.origin === 'interface' ? ` on ${c.net.source}` : ` (${c.net.source})`}`, {
        event: 'local-network',
        change: c.kind,
        network: c.net.network,
        address: c.net.address,
        at: new Date(c.atMs).toISOString(),
      });
    }
  };
  const warnNetworks = (m: string) => log.warn(m, { event: 'local-networks' });
  const nets =
    localNetworks && o.localNetworks !== undefined
      ? LocalNetworkWatch.ofFile(o.localNetworks, localNetworks, onNetworks, warnNetworks)
      : LocalNetworkWatch.ofInterface(iface, onNetworks, warnNetworks);
  const metrics = new Metrics(o.db);
  // Listening first: a taken port is refused before the capture starts or the database is made.
  const stopMetrics = await startMetrics(o, metrics, log);
  const printer = new IntervalPrinter(log, o.quiet);
  const bounds = queueBounds(o);
  // The capture starts first, so every option (interface, ring shape, fanout group, filter) is
  // checked before the database is touched; batches wait for the sink.
  let sinkReady: Promise<BatchSink> | undefined;
  let live: engine.LiveHandle;
  try {
    live = engine.startLive(
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
          // Once an interval: the interface's addresses again (off this thread).
          nets.poll();
        },
        dropped: async (intervals) => {
          const sink = await sinkReady!;
          for (const d of intervals) sink.lose(d.startMs, d.endMs, 'engine queue full (the recorder was busy for several intervals)');
        },
        warning: (m) => log.warn(m),
      },
    );
  } catch (err) {
    stopMetrics?.();
    throw err;
  }
  // Where this session counts, as the engine settled `--count-in` (tc-query status reads it).
  spec.options.countedIn = live.info.countIn;
  let db: WriteDb;
  let sink: BatchSink;
  let budget: ReturnType<typeof diskBudget>;
  try {
    sinkReady = openForWrite(o.db, o.nodeId).then((d) => {
      db = d;
      budget = diskBudget(o, true, d);
      sink = new BatchSink({
        db: d,
        spec,
        retention: o.retention ?? DEFAULT_RETENTION,
        ...bounds,
        maxDbBytes: budget.maxBytes,
        log,
        metrics,
      });
      return sink;
    });
    await sinkReady;
  } catch (err) {
    live.stop();
    await live.done.catch(() => undefined);
    stopMetrics?.();
    throw err;
  }
  lock.setSession(sink!.sessionId);
  sink!.event('start', `live capture on ${iface}`);
  const startNets = await nets.start();
  sink!.addLocalNetworks(startNets, Date.now());
  // This process holds the writer lock: a live session that never ended was killed or crashed.
  for (const detail of endUncleanSessions(db!.sqlite, sink!.sessionId)) log.warn(detail);
  // Close rollup buckets a crashed session left open.
  sink!.closeStaleBuckets(Date.now());
  const info = live.info;
  const kernel = info.countIn === 'kernel';
  metrics.kernelFlows = kernel && o.flows;
  const memory = memoryBudget({ ...o, countIn: info.countIn }, true);
  log.info(
    `recording ${info.iface} into ${o.db}: ${kernel ? kernelSockets(o, info) : `${info.workers} worker(s), fanout group ${info.fanoutGroup}`}, ` +
      `${kernel ? '' : info.ebpfAttachedSockets > 0 ? `eBPF filter attached to ${info.ebpfAttachedSockets} socket(s), ` : 'no eBPF filter (userspace rules), '}` +
      `${o.intervalSecs}s intervals${o.flows ? ', flows' : ''}, ${countedIn(o, info)}; ${budget!.text}; ${describeBudget(memory)}${kernel ? `; ${describeKernelMaps(o, info.kernelMapBytes)}` : ''}; ${nets.describe()}`,
    {
      event: 'start',
      iface: info.iface,
      workers: info.workers,
      // Kernel counting's one socket joins no fanout group.
      fanout_group: kernel ? null : info.fanoutGroup,
      ebpf_sockets: info.ebpfAttachedSockets,
      ...budget!.fields,
      memory_max_bytes: memory.total,
      local_networks: startNets.map((n) => ({ network: n.network, address: n.address, origin: n.origin, source: n.source })),
      count_in: info.countIn,
      ...(info.countInWhy ? { count_in_why: info.countInWhy } : {}),
      ...(kernel ? { kernel_map_bytes: info.kernelMapBytes } : {}),
    },
  );
  const down = interfaceDown(info.iface);
  if (down) log.warn(down, { event: 'interface-down', iface: info.iface });
  if (o.user) dropPrivileges(o.user, o.db, log);
  stop.onReload(() => {
    if (!o.ignoreFile && !o.acceptSourceFile && !nets.fromFile) {
      log.info('SIGHUP: nothing to reload (no --ignore-file, --accept-source-file or --local-networks was given)', { event: 'reload' });
      return;
    }
    if (o.ignoreFile || o.acceptSourceFile) {
      try {
        live.reloadRules();
        log.info('SIGHUP: CIDR files reloaded', { event: 'reload' });
      } catch (err) {
        log.error(`SIGHUP: reload failed, keeping the previous rules: ${(err as Error).message}`, { event: 'reload-failed' });
      }
    }
    if (nets.fromFile) {
      try {
        const changes = nets.reload();
        log.info(`SIGHUP: ${o.localNetworks} reloaded (${changes.length === 0 ? 'no change' : `${changes.length} change${changes.length === 1 ? '' : 's'}`})`, { event: 'reload' });
      } catch (err) {
        log.error(`SIGHUP: reload failed, keeping the previous local networks: ${(err as Error).message}`, { event: 'reload-failed' });
      }
    }
  });
  stop.onStop((name) => {
    log.info(`${name}: flushing the partial interval`, { event: 'stop', signal: name });
    nets.stop();
    live.stop();
  });
  try {
    const failure = await live.done;
    nets.stop();
    await sink!.close(Date.now() + 1500);
    sink!.event('stop', failure ? failure.message : 'clean stop');
    // After the last interval is written: the process exits non-zero, for a service manager.
    if (failure) throw failure;
  } finally {
    stopMetrics?.();
    await sink!.release();
    closeDb(db!);
  }
}

/** Where frames are counted, and why there when `auto` chose the ring. */
function countedIn(o: RecordOptions, info: engine.CaptureInfo): string {
  const asked = o.countIn ?? 'auto';
  if (info.countIn === 'kernel') return `counted in the kernel (--count-in ${asked}; the ring gets only the frames the kernel cannot count exactly${info.namesSockets ? ', and the names socket DNS answers and ClientHellos for names only' : ''})`;
  return `counted in the ring (--count-in ${asked}${info.countInWhy ? `: ${info.countInWhy}` : ''})`;
}

/** Kernel mode's sockets; --workers asks for more rings than kernel counting needs. */
function kernelSockets(o: RecordOptions, info: engine.CaptureInfo): string {
  const why = [
    ...(o.workers !== undefined && o.workers > 1 ? [`--workers ${o.workers} is moot: the program counts every frame where it arrives, so one socket is enough`] : []),
    ...(o.fanoutGroup !== undefined ? [`--fanout-group ${o.fanoutGroup} is moot: that one socket joins no fanout group`] : []),
  ];
  const moot = why.length ? ` (${why.join('; ')})` : '';
  return `counting program attached to 1 socket${info.namesSockets ? `, names filter to 1 more` : ''}${moot}`;
}
