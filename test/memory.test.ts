/**
 * The memory budget: the recorder states what it may use at most (start line, `record --help`),
 * and a flood of distinct sources keeps its peak RSS (VmHWM, read from /proc while it runs)
 * under that figure, with the totals exact (keys past --max-keys in the overflow row).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { needRoot, RECORDER, recorder, sleep, spawnIn, tmp } from './helpers';
import { generate } from './support/gen';
import { sendFrames, spoofedUdp, vethPair } from './support/netns';

const MIB = 2 ** 20;

/** Polls the peak RSS of `child` (VmHWM in /proc) until it exits; `peak()` is the largest read. */
function watchPeak(child: ChildProcess): { peak(): number; stop(): void } {
  let hwm = 0;
  const poll = setInterval(() => {
    try {
      hwm = Math.max(hwm, Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) * 1024);
    } catch {
      /* exited */
    }
  }, 20);
  return { peak: () => hwm, stop: () => clearInterval(poll) };
}

function statedMiB(text: string): number {
  const m = /memory at most (\d+) MiB \(([^)]*)\)/.exec(text);
  assert.ok(m, `no "memory at most N MiB (...)" in: ${text}`);
  return Number(m[1]);
}

test('record --help states the memory the recorder may use at most, live and in replays, at most 512 MiB with the defaults and --flows on a 2-CPU host', () => {
  const r = recorder(['record', '--help']);
  assert.equal(r.status, 0, r.stderr);
  const flows = /live, defaults and --flows: (memory at most \d+ MiB \([^)]*\))/.exec(r.stdout);
  assert.ok(flows, r.stdout);
  for (const part of ['rings', 'tables', 'queues', 'dictionary', 'rollup sums', 'sqlite', 'runtime']) assert.match(flows[1], new RegExp(`${part} \\d+ MiB`), part);
  assert.match(r.stdout, /replay, defaults and --flows: memory at most \d+ MiB/);
  // The figure grows with the workers (one ring and one table set each): the bound is this host's.
  if (os.cpus().length <= 2) assert.ok(statedMiB(flows[1]) <= 512, flows[1]);
});

test('a replayed flood of distinct sources keeps the peak RSS under the stated figure, with exact totals and the overflow counted', async (t) => {
  const dir = tmp();
  const cap = path.join(dir, 'flood.pcap');
  // ~100k packets a second from up to 600k sources, 1 s intervals: each interval's sources and
  // flows overflow --max-keys 20000. The capture (~150 MiB) is larger than the figure leaves
  // room for, so its pages must leave the process as they are read.
  const packets = 2_000_000;
  generate(cap, { packets, hosts: 600_000, flows: 600_000, seconds: 20 });
  const db = path.join(dir, 'flood.db');
  const child = spawn(process.execPath, [RECORDER, 'record', '--pcap', cap, '--db', db, '--flows', '--no-progress', '--interval-secs', '1', '--max-keys', '20000'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const watch = watchPeak(child);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  watch.stop();
  assert.equal(code, 0, stderr);
  const stated = statedMiB(stderr);
  assert.ok(watch.peak() > 0, 'VmHWM was read while the recorder ran');
  t.diagnostic(`peak RSS ${(watch.peak() / MIB).toFixed(0)} MiB, stated ${stated} MiB`);
  assert.ok(watch.peak() <= stated * MIB, `peak RSS ${(watch.peak() / MIB).toFixed(0)} MiB over the stated ${stated} MiB`);

  const d = new Database(db, { readonly: true });
  try {
    const b = d.prepare('select sum(ip_packets) as ip, sum(ip_overflow_keys) as ipo, sum(flow_overflow_keys) as flo from batches').get() as Record<string, number>;
    assert.equal(b.ip, packets, 'every packet in the batches');
    assert.ok(b.ipo > 0 && b.flo > 0, 'keys past --max-keys are counted as folded');
    const ip = d.prepare('select sum(tx_packets) as tx, sum(rx_packets) as rx from ip_deltas').get() as Record<string, number>;
    assert.deepEqual(ip, { tx: packets, rx: packets }, 'per-IP rows and the overflow row hold every packet once each way');
    assert.equal(d.prepare('select sum(packets) from flow_deltas').pluck().get(), packets, 'flow rows and the overflow row hold every packet');
    const most = d.prepare('select max(ip_rows) from batches').pluck().get() as number;
    assert.ok(most <= 20_001, `at most --max-keys addresses and the overflow row per interval (${most})`);
  } finally {
    d.close();
  }
});

const NS = 'tcmem';
const MAC_B = '02:00:00:00:78:02';

test('a live flood of distinct sources keeps the peak RSS under the figure of the start line, with exact totals and the overflow counted', async (t) => {
  if (!needRoot(t)) return;
  const net = vethPair(NS, 'veth', { b: MAC_B });
  try {
    const db = path.join(tmp(), 'flood.db');
    const child = spawnIn(net.b, process.execPath, [RECORDER, 'record', '--iface', 'veth-b', '--db', db, '--flows', '--workers', '2', '--interval-secs', '1', '--max-keys', '20000', '--quiet']);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const watch = watchPeak(child);
    for (let i = 0; i < 100 && !/recording veth-b/.test(stderr); i++) await sleep(100);
    const stated = statedMiB(stderr);
    // 60,000 frames from 60,000 sources, sent within 20 s at most.
    const N = 60_000;
    const sent = sendFrames(net, Array.from({ length: N }, (_, i) => spoofedUdp(MAC_B, i)), 20);
    assert.equal(sent, N, 'every frame sent');
    await sleep(2500);
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    watch.stop();
    assert.equal(code, 0, stderr);
    t.diagnostic(`peak RSS ${(watch.peak() / MIB).toFixed(0)} MiB, stated ${stated} MiB`);
    assert.ok(watch.peak() <= stated * MIB, `peak RSS ${(watch.peak() / MIB).toFixed(0)} MiB over the stated ${stated} MiB`);
    const d = new Database(db, { readonly: true });
    try {
      const b = d.prepare('select sum(ipv4_packets) as v4, sum(ip_packets) as ip, sum(ring_drops) as drops, sum(ip_overflow_keys) as ipo, sum(flow_overflow_keys) as flo from batches').get() as Record<string, number>;
      // The kernel may drop frames on a loaded host (counted as drops); none is lost in between.
      assert.equal(b.v4 + b.drops, N, `counted ${b.v4} + dropped ${b.drops} of ${N}`);
      assert.ok(b.ipo > 0 && b.flo > 0, 'keys past --max-keys are counted as folded');
      const ip = d.prepare('select sum(tx_packets) as tx, sum(rx_packets) as rx from ip_deltas').get() as Record<string, number>;
      assert.deepEqual(ip, { tx: b.ip, rx: b.ip }, 'per-IP rows and the overflow row hold every packet once each way');
      assert.equal(d.prepare('select sum(packets) from flow_deltas').pluck().get(), b.ip, 'flow rows and the overflow row hold every packet');
    } finally {
      d.close();
    }
  } finally {
    net.remove();
  }
});
