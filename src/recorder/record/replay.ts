/** `traffic-counter record --pcap FILE...`: replays capture files into the database. */
import * as path from 'node:path';
import { statSync } from 'node:fs';
import { SingleBar } from 'cli-progress';
import * as engine from '../../native';
import { openForWrite } from '../write/db';
import { deleteSession, type PriorSession, type SessionSpec } from '../write/writer';
import { BatchSink } from '../write/sink';
import { Logger } from '../observe/log';
import { Metrics } from '../observe/metrics';
import type { WriterLock } from '../write/lock';
import { DEFAULT_RETENTION } from '../upkeep/retention';
import { grouped, isoUtc, plural } from '../../units';
import { closeDb, countOptions, diskBudget, queueBounds, startMetrics, type RecordOptions } from './options';
import { IntervalPrinter } from './interval-line';
import { describeBudget, memoryBudget } from '../budget/memory';
import { describeOptions, priorSession, replaySessionKeyAsync } from './session-key';
import { StopSignals } from './stop';
import { describeNetworks } from './local-networks';
import type { LocalNetwork } from '../write/local-networks';

/**
 * Replays the files one after the other, each as its own session keyed by its content: the
 * result equals replaying them one by one, in any order. A capture already recorded (by any
 * options) is skipped, or with `replace` recorded again in place of its earlier session; one
 * whose replay was stopped or killed before the end of the file is recorded again in its place.
 * `localNetworks` (of --local-networks FILE) are each session's local networks over its
 * capture's time; without them a replay has none.
 */
export async function recordReplay(o: RecordOptions, files: string[], lock: WriterLock, localNetworks?: LocalNetwork[]): Promise<void> {
  const log = new Logger(o.logFormat);
  const countedIn = o.countIn === 'kernel' ? 'kernel' : 'ring';
  const counting = {
    intervalMs: o.intervalSecs * 1000,
    maxKeys: o.maxKeys,
    flows: o.flows,
    ignoreFile: o.ignoreFile ?? null,
    acceptSourceFile: o.acceptSourceFile ?? null,
    localNetworks: o.localNetworks ?? null,
    countedIn,
  };
  const metrics = new Metrics(o.db);
  // Listening first: a taken port is refused before the database is made.
  const stopMetrics = await startMetrics(o, metrics, log);
  const db = await openForWrite(o.db, o.nodeId).catch((err) => {
    stopMetrics?.();
    throw err;
  });
  const budget = diskBudget(o, false, db);
  if (budget.maxBytes > 0 && !o.quiet) log.info(`replaying into ${o.db}: ${budget.text}`, { event: 'budget', ...budget.fields });
  const printer = new IntervalPrinter(log, o.quiet);
  const showBar = o.progress ?? (process.stderr.isTTY === true && !o.quiet);
  // noTTYOutput: a bar asked for with --progress is drawn on a pipe or file too.
  const bar = showBar ? new SingleBar({ format: 'replay [{bar}] {percentage}% | {value}/{total} MiB | {eta}s left', stream: process.stderr, hideCursor: true, noTTYOutput: true }) : undefined;
  const sizes = files.map((f) => statSync(f).size);
  const total = sizes.reduce((a, b) => a + b, 0);
  const mib = (n: number) => Math.round(n / (1 << 20));
  let before = 0;
  const stop = new StopSignals({ secondKills: true, hup: false });
  const netsText = localNetworks && o.localNetworks !== undefined ? `; ${describeNetworks(localNetworks, { file: o.localNetworks })}` : '';
  if (!o.quiet) {
    const where =
      countedIn === 'kernel'
        ? '; counted in the kernel (every Ethernet frame through its counting program, BPF_PROG_TEST_RUN)'
        : `; counted in userspace (--count-in ${o.countIn ?? 'auto'}${o.countIn === 'ring' ? '' : ': a replay counts in the kernel only with --count-in kernel'})`;
    log.info(`replaying ${plural(files.length, 'file')} into ${o.db}: ${describeBudget(memoryBudget(o, false))}${netsText}${where}`, {
      event: 'start',
      memory_max_bytes: memoryBudget(o, false).total,
      local_networks: (localNetworks ?? []).map((n) => ({ network: n.network, origin: n.origin, source: n.source })),
      count_in: countedIn,
    });
  }
  try {
    const given = new Map<string, string>();
    for (const [i, file] of files.entries()) {
      if (stop.stopped) break;
      // Which session the file is (its content's identity, a read of all of it) is found while
      // the engine counts it; nothing is written before it is known.
      const decided = replaySessionKeyAsync(file).then((key): Decided | undefined => {
        const same = given.get(key);
        if (same !== undefined) {
          log.info(`${file} has the same content as ${same}, given before it; skipped`);
          return undefined;
        }
        given.set(key, file);
        const prior = priorSession(db, key);
        if (prior && prior.ended_at !== null && !o.replace) {
          const when = `replayed ${isoUtc(prior.started_at)}${prior.source !== path.resolve(file) ? ` from ${prior.source}` : ''}`;
          log.info(
            `${file} is already recorded in ${o.db} as session ${prior.id} (${when}, ${describeOptions(prior.options)}); skipped, nothing counted twice (--replace records it again with the options given now)`,
            { event: 'skipped', file, session: prior.id },
          );
          return undefined;
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
        return { spec, replaced: prior };
      });
      const summary = await replayFile(file, decided);
      before += sizes[i];
      if (!o.quiet && summary) log.info(`${summary.path}: ${plural(summary.frames, 'frame')} (${summary.format})${summary.truncated ? ', ends early' : ''}`);
    }
    bar?.stop();
    if (!o.quiet) log.info(`${plural(metrics.batchesWritten, 'interval')} written to ${o.db}${metrics.batchesSkipped ? `, ${grouped(metrics.batchesSkipped)} already recorded (skipped)` : ''}`);
  } finally {
    bar?.stop();
    stop.dispose();
    stopMetrics?.();
    closeDb(db);
  }

  /**
   * One file as one session, counted from the start while `decided` finds which session it is
   * (undefined: it is skipped, its counting stopped and nothing written). Replacing, its earlier
   * session's rows go and the new ones come in one transaction (the sink's group commits are
   * savepoints inside it): a reader sees the old session or the new one, never a part of either.
   */
  async function replayFile(file: string, decided: Promise<Decided | undefined>): Promise<engine.FileSummary | undefined> {
    let sink: BatchSink | undefined;
    let replaced: PriorSession | undefined;
    const newSink = (spec: SessionSpec) =>
      new BatchSink({
        db,
        spec,
        retention: o.retention ?? DEFAULT_RETENTION,
        ...queueBounds(o),
        giveUpAfter: 6,
        maxDbBytes: budget.maxBytes,
        log,
        metrics,
        onWritten: (wb) => {
          if (!bar) printer.observe(wb);
        },
      });
    const ready = decided.then((d) => {
      if (!d) return undefined;
      replaced = d.replaced;
      if (replaced) {
        db.sqlite.exec('begin immediate');
        try {
          deleteSession(db.sqlite, replaced.id);
          sink = newSink(d.spec);
          lock.setSession(sink.sessionId);
        } catch (err) {
          db.sqlite.exec('rollback');
          replaced = undefined;
          throw err;
        }
        log.info(
          `${file}: replacing session ${replaced.id} (${describeOptions(replaced.options)}${replaced.ended_at === null ? '; stopped before the end of the file' : ''})`,
          { event: 'replace', file, session: replaced.id },
        );
      }
      return d.spec;
    });
    let netsWritten = false;
    const run = engine.replay([file], countOptions(o), {
      batch: async (b) => {
        const spec = await ready;
        if (!spec) return;
        if (!sink) {
          sink = newSink(spec);
          lock.setSession(sink.sessionId);
        }
        // The networks span the capture's own times: from its first interval (the session's
        // end sets the span from every interval written).
        if (!netsWritten && localNetworks) sink.addLocalNetworks(localNetworks, b.startMs);
        netsWritten = true;
        await sink.write(b);
      },
      warning: (m) => log.warn(m),
      progress: (done) => {
        if (!bar) return;
        if (!bar.isActive) bar.start(mib(total), 0);
        bar.update(mib(before + done));
      },
    });
    // Skipped, or its session could not be found: the counting stops (`ready` says why).
    ready.then(
      (spec) => spec || run.stop(),
      () => run.stop(),
    );
    const unlisten = stop.onStop(() => run.stop());
    try {
      const [summary] = await run.done;
      if (!(await ready)) return undefined;
      // Everything queued is written (or writing gave up: the error ends the replay).
      await sink?.idle();
      // A replay stopped before the end of the file stays open (ended_at NULL): the next
      // replay of the file records it again in its place.
      await sink?.close(Date.now() + 60_000, !stop.stopped);
      if (replaced) db.sqlite.exec('commit');
      return summary;
    } catch (err) {
      if (replaced && db.sqlite.inTransaction) db.sqlite.exec('rollback');
      // The file's own failure (it cannot be read) before one the counting met because of it.
      await ready;
      throw err;
    } finally {
      unlisten();
      await sink?.release();
    }
  }
}

/** Which session a replayed file is: the spec to write it under, and the session it replaces. */
interface Decided {
  spec: SessionSpec;
  replaced: PriorSession | undefined;
}
