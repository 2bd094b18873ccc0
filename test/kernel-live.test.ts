/**
 * Live `--count-in kernel` in two network namespaces joined by a veth pair: known frames (IPv4
 * and IPv6 UDP, TCP and ICMP, VLAN-tagged both ways) of known sizes and bounded count, and real
 * TCP and ICMP from the namespaces' own stacks (GSO segments included). A kernel-mode recorder
 * and a ring-mode recorder capture the same interface at once, so every count is checked twice:
 * against the frames sent, and kernel against ring. Also the CIDR files and SIGHUP, interval
 * boundaries crossed under traffic with every frame in one interval, --max-keys overflow with
 * balanced totals, DNS answers still giving names, and `auto`. Traffic stays in the namespaces.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { spawnSync, type ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import { exited, needRoot, QUERY, queryJson, RECORDER, sh, sleep, spawnIn, tmp, waitForStderr } from './helpers';
import { vethPair, type VethPair } from './support/netns';
import { DST_MAC, ethernet, SRC_MAC } from './fixtures/frames';
import { A as answerA, dnsResponse, ipFrame, tcp, udp } from './support/names-pcap';

const SENDER = path.join(__dirname, '..', '..', 'test', 'fixtures', 'afpacket_send.py');
const V4A = '10.80.0.1';
const V4B = '10.80.0.2';
const V4C = '10.80.0.3';
const V6A = 'fd80::1';
const V6B = 'fd80::2';
/** Real traffic between the namespaces' own stacks. */
const STACK_A = '10.81.0.1';
const STACK_B = '10.81.0.2';

let net: VethPair | undefined;

/** Sends each frame `count` times from namespace `ns` on `dev` (AF_PACKET, bounded in time). */
function send(ns: string, dev: string, jobs: [number, Buffer][]): number {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'python3', SENDER, dev, '20'], { input: jobs.map(([n, f]) => `${n} ${f.toString('hex')}`).join('\n'), encoding: 'utf8', timeout: 40_000 });
  if (r.status !== 0) throw new Error(`afpacket_send.py: ${r.stderr}`);
  return Number(r.stdout.trim());
}

const pad = (n: number) => Buffer.alloc(n, 0x61);
/** ICMP (v4: 1, v6: 58) of `ipBytes` in all. */
const icmp = (src: string, dst: string, ipBytes: number) => ipFrame(src, dst, src.includes(':') ? 58 : 1, Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 1, 0, 1]), pad(ipBytes - (src.includes(':') ? 40 : 20) - 8)]));
/** UDP of `ipBytes` in all. */
const udpOf = (src: string, dst: string, sport: number, dport: number, ipBytes: number) => udp(src, dst, sport, dport, pad(ipBytes - (src.includes(':') ? 40 : 20) - 8));
/** The same frame behind VLAN tags of these TPIDs (802.1ad 0x88a8, 802.1Q 0x8100). */
const tagged = (tags: number[], f: Buffer) => ethernet(tags, f.readUInt16BE(12), f.subarray(14));

/** The known frames from A, and from B (outgoing on the captured end: its VLAN tags stay in the frame). */
function knownTraffic(n: VethPair): void {
  const fromA: [number, Buffer][] = [
    [50, udpOf(V4A, V4B, 40000, 9000, 328)],
    [30, udpOf(V6A, V6B, 40001, 9001, 548)],
    [20, icmp(V4A, V4B, 128)],
    [20, icmp(V6A, V6B, 248)],
    [10, tcp(V4C, V4B, 51000, 443, 1000, pad(500))],
    // The receiving end takes the outer tag off into the skb's metadata: one stays in the frame.
    [15, tagged([0x88a8, 0x8100], udpOf(V4A, V4B, 40002, 9002, 200))],
  ];
  const fromB: [number, Buffer][] = [[12, tagged([0x8100], udpOf(V4B, V4A, 9003, 40003, 300))], [8, tagged([0x88a8, 0x8100, 0x8100], udpOf(V6B, V6A, 9004, 40004, 400))]];
  assert.equal(send(n.a, n.devA, fromA), 145);
  assert.equal(send(n.b, n.devB, fromB), 20);
}

type IpRow = { tx_packets: number; tx_bytes: number; rx_packets: number; rx_bytes: number };
type FlowRow = { src: string; dst: string; proto: number; sport: number; dport: number; packets: number; bytes: number };

function ipRows(db: string): Map<string, IpRow> {
  return new Map(queryJson<(IpRow & Record<string, unknown>)[]>(['--db', db, 'top', '--by', 'ip', '--all', '--limit', '0']).map((r) => [r.ip as string, { tx_packets: r.tx_packets, tx_bytes: r.tx_bytes, rx_packets: r.rx_packets, rx_bytes: r.rx_bytes }]));
}

function flowRows(db: string): FlowRow[] {
  return queryJson<(FlowRow & Record<string, unknown>)[]>(['--db', db, 'top', '--by', 'flow', '--all', '--limit', '0'])
    .map((f) => ({ src: f.src, dst: f.dst, proto: f.proto, sport: f.sport, dport: f.dport, packets: f.packets, bytes: f.bytes }))
    .sort((a, b) => `${a.src} ${a.dst} ${a.proto} ${a.sport} ${a.dport}`.localeCompare(`${b.src} ${b.dst} ${b.proto} ${b.sport} ${b.dport}`));
}

function sums(db: string): Record<string, number> {
  const d = new Database(db, { readonly: true });
  try {
    return d
      .prepare(
        `select coalesce(sum(frames), 0) as frames, coalesce(sum(ip_packets), 0) as ip_packets, coalesce(sum(ip_bytes), 0) as ip_bytes, coalesce(sum(ring_drops), 0) as ring_drops,
                coalesce(sum(ring_packets), 0) as ring_packets, coalesce(sum(ignored), 0) as ignored, coalesce(sum(filter_ignored), 0) + coalesce(sum(filter_not_accepted), 0) as filter_dropped,
                coalesce(sum(ip_overflow_keys), 0) as ip_overflow_keys, coalesce(sum(flow_overflow_keys), 0) as flow_overflow_keys, count(*) as batches,
                sum(case when ip_packets > 0 then 1 else 0 end) as busy_batches from batches`,
      )
      .get() as Record<string, number>;
  } finally {
    d.close();
  }
}

interface Recording {
  db: string;
  child: ChildProcess;
  readonly stderr: string;
}

async function start(n: VethPair, countIn: string, extra: string[]): Promise<Recording> {
  const db = path.join(tmp(), `${countIn}.db`);
  const child = spawnIn(n.b, process.execPath, [RECORDER, 'record', '--iface', n.devB, '--db', db, '--flows', '--count-in', countIn, ...extra]);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await waitForStderr(child, new RegExp(`recording ${n.devB}`));
  return {
    db,
    child,
    get stderr() {
      return stderr;
    },
  };
}

async function stop(r: Recording): Promise<void> {
  r.child.kill('SIGINT');
  assert.equal(await exited(r.child, 10_000), 0, r.stderr);
}

/** Runs `traffic` under a kernel-mode and a ring-mode recorder at once; both stopped after it. */
async function both(n: VethPair, extra: string[], traffic: () => void | Promise<void>): Promise<{ kernel: Recording; ring: Recording }> {
  const kernel = await start(n, 'kernel', extra);
  const ring = await start(n, 'ring', extra);
  try {
    await traffic();
    await sleep(400);
  } finally {
    await stop(kernel);
    await stop(ring);
  }
  return { kernel, ring };
}

const ip = (tx: number, txb: number, rx: number, rxb: number) => ({ tx_packets: tx, tx_bytes: txb, rx_packets: rx, rx_bytes: rxb });

describe('live --count-in kernel in network namespaces', () => {
  before(() => {
    if (process.getuid?.() !== 0) return;
    net = vethPair(`tckl${process.pid}`, 'kl', { a: SRC_MAC, b: DST_MAC });
    // Addresses for the stacks' own traffic, static neighbours (no ARP).
    sh('ip', ['-n', net.a, 'addr', 'add', `${STACK_A}/24`, 'dev', net.devA]);
    sh('ip', ['-n', net.b, 'addr', 'add', `${STACK_B}/24`, 'dev', net.devB]);
    sh('ip', ['-n', net.a, 'neigh', 'replace', STACK_B, 'lladdr', DST_MAC, 'dev', net.devA, 'nud', 'permanent']);
    sh('ip', ['-n', net.b, 'neigh', 'replace', STACK_A, 'lladdr', SRC_MAC, 'dev', net.devB, 'nud', 'permanent']);
    sh('ip', ['-n', net.b, 'link', 'set', 'lo', 'up']);
  });
  after(() => net?.remove());
  const guard = (t: TestContext) => needRoot(t) && (assert.ok(net, 'namespaces set up'), true);

  test('exact per-IP and per-flow counts of IPv4/IPv6 UDP, TCP, ICMP and VLAN-tagged frames, the same in kernel and ring mode; nothing handed back', async (t) => {
    if (!guard(t)) return;
    const { kernel, ring } = await both(net!, ['--interval-secs', '1', '--max-names', '0', '--workers', '2'], () => knownTraffic(net!));
    assert.match(kernel.stderr, /counted in the kernel \(--count-in kernel/);
    assert.match(kernel.stderr, /--workers 2 is moot: .* one socket is enough/);
    assert.match(kernel.stderr, /kernel maps \d+ MiB \(memlock/);
    assert.match(ring.stderr, /counted in the ring \(--count-in ring\)/);
    for (const r of [kernel, ring]) {
      const ips = ipRows(r.db);
      const label = path.basename(r.db);
      // A: 50 x 328 + 20 x 128 + 15 x 200 sent, 12 x 300 received; B: the other side of those and of C's TCP.
      assert.deepEqual(ips.get(V4A), ip(50 + 20 + 15, 50 * 328 + 20 * 128 + 15 * 200, 12, 12 * 300), label);
      assert.deepEqual(ips.get(V4B), ip(12, 12 * 300, 50 + 20 + 15 + 10, 50 * 328 + 20 * 128 + 15 * 200 + 10 * 540), label);
      assert.deepEqual(ips.get(V4C), ip(10, 10 * 540, 0, 0), label);
      assert.deepEqual(ips.get(V6A), ip(30 + 20, 30 * 548 + 20 * 248, 8, 8 * 400), label);
      assert.deepEqual(ips.get(V6B), ip(8, 8 * 400, 30 + 20, 30 * 548 + 20 * 248), label);
      const flows = flowRows(r.db);
      const f = (src: string, dst: string, proto: number, sport: number, dport: number) => flows.find((x) => x.src === src && x.dst === dst && x.proto === proto && x.sport === sport && x.dport === dport);
      assert.deepEqual([f(V4A, V4B, 17, 40000, 9000)?.packets, f(V4A, V4B, 17, 40000, 9000)?.bytes], [50, 50 * 328], label);
      assert.deepEqual([f(V6A, V6B, 17, 40001, 9001)?.packets, f(V6A, V6B, 17, 40001, 9001)?.bytes], [30, 30 * 548], label);
      assert.deepEqual([f(V4A, V4B, 1, 0, 0)?.packets, f(V6A, V6B, 58, 0, 0)?.bytes], [20, 20 * 248], label);
      assert.deepEqual([f(V4C, V4B, 6, 51000, 443)?.packets, f(V4C, V4B, 6, 51000, 443)?.bytes], [10, 5400], label);
      assert.deepEqual([f(V4A, V4B, 17, 40002, 9002)?.packets, f(V4B, V4A, 17, 9003, 40003)?.packets, f(V6B, V6A, 17, 9004, 40004)?.bytes], [15, 12, 8 * 400], label);
      assert.equal(sums(r.db).ring_drops, 0, label);
    }
    assert.deepEqual(ipRows(kernel.db), ipRows(ring.db));
    assert.deepEqual(flowRows(kernel.db), flowRows(ring.db));
    // Every header the program reads is in the linear part of these skbs: it handed none back,
    // so (with names off) its ring received nothing.
    assert.equal(sums(kernel.db).ring_packets, 0, 'the counting program handed frames back to the ring');
    assert.ok(sums(ring.db).ring_packets >= 165);
  });

  test('real TCP (GSO segments on veth) and ICMP from the stacks: kernel and ring count alike, nothing handed back', async (t) => {
    if (!guard(t)) return;
    const server = spawnIn(net!.b, process.execPath, ['-e', "require('net').createServer((s) => s.on('data', () => {}).on('error', () => {})).listen(7777, () => console.log('ready'))"]);
    await new Promise<void>((res) => server.stdout!.once('data', () => res()));
    try {
      const client = "const s = require('net').connect(7777, process.argv[1], () => { for (let i = 0; i < 64; i++) s.write(Buffer.alloc(32768, 7)); s.end(); }); s.on('close', () => process.exit(0)); setTimeout(() => process.exit(1), 10000);";
      const { kernel, ring } = await both(net!, ['--interval-secs', '1', '--max-names', '0'], () => {
        sh('ip', ['netns', 'exec', net!.a, process.execPath, '-e', client, STACK_B]);
        sh('ip', ['netns', 'exec', net!.a, 'ping', '-n', '-q', '-c', '10', '-i', '0.01', '-s', '1000', STACK_B]);
      });
      const k = ipRows(kernel.db);
      assert.deepEqual(k, ipRows(ring.db));
      assert.deepEqual(flowRows(kernel.db), flowRows(ring.db));
      // 2 MiB of payload went from A to B (its segments' IP lengths sum to more: headers).
      assert.ok(k.get(STACK_A)!.tx_bytes > 64 * 32768, JSON.stringify(k.get(STACK_A)));
      assert.equal(sums(kernel.db).ring_packets, 0, 'headers of GSO segments are linear: nothing handed back');
    } finally {
      server.kill('SIGTERM');
    }
  });

  test('IPv4 fragments from the stack are counted one by one by their own IP headers, in kernel and ring mode (no fanout reassembly)', async (t) => {
    if (!guard(t)) return;
    const { kernel, ring } = await both(net!, ['--interval-secs', '1', '--max-names', '0'], () => {
      // 4,008 bytes of ICMP in 1,500-byte frames: fragments of IP length 1500, 1500 and 1068.
      sh('ip', ['netns', 'exec', net!.a, 'ping', '-n', '-q', '-c', '3', '-i', '0.05', '-s', '4000', STACK_B]);
    });
    for (const r of [kernel, ring]) {
      const rows = ipRows(r.db);
      assert.deepEqual(rows.get(STACK_A), ip(9, 3 * 4068, 9, 3 * 4068), `${r.db}: each echo and reply is 3 fragments`);
      assert.deepEqual(rows.get(STACK_B), ip(9, 3 * 4068, 9, 3 * 4068), r.db);
      const d = new Database(r.db, { readonly: true });
      const [first, nonFirst] = d.prepare('select sum(fragments_first), sum(fragments_non_first) from batches').raw().get() as number[];
      d.close();
      assert.deepEqual([first, nonFirst], [6, 12], r.db);
    }
    assert.deepEqual(flowRows(kernel.db), flowRows(ring.db));
  });

  test('frames from a TX_RING sender (trafgen: headers in page fragments) are counted in the kernel, none handed back', async (t) => {
    if (!guard(t)) return;
    if (spawnSync('trafgen', ['--version']).error) {
      // contrib/install.sh installs netsniff-ng; without it this sender cannot be made.
      t.skip('trafgen (netsniff-ng) is not installed');
      return;
    }
    const conf = path.join(tmp(), 'paged.trafgen');
    // 60-byte UDP/IPv4 frames from 10.82.0.1-10.82.0.10: trafgen's TX_RING frames reach the
    // packet socket with the IP header outside the skb's linear part.
    writeFileSync(conf, `{ eth(da=${DST_MAC}, sa=02:00:00:00:82:01), ipv4(sa=dinc(173146113, 173146122), da=10.82.0.99, ttl=64), udp(sp=5000, dp=6000), fill(0, 18) }\n`);
    const N = 500;
    const { kernel } = await both(net!, ['--interval-secs', '1', '--max-names', '0'], () => {
      sh('ip', ['netns', 'exec', net!.a, 'timeout', '20', 'trafgen', '--dev', net!.devA, '--conf', conf, '--num', String(N), '--cpus', '1', '--no-sock-mem']);
    });
    const k = ipRows(kernel.db);
    let sent = 0;
    for (let i = 1; i <= 10; i++) sent += k.get(`10.82.0.${i}`)?.tx_packets ?? 0;
    assert.equal(sent, N, 'every frame counted');
    assert.equal(k.get('10.82.0.99')?.rx_bytes, N * 46);
    assert.equal(sums(kernel.db).ring_packets, 0, 'the counting program read the paged headers: nothing handed back');
  });

  test('--ignore-file and --accept-source-file are applied in the kernel; SIGHUP swaps them; a bad file keeps the old', async (t) => {
    if (!guard(t)) return;
    const dir = tmp();
    const ignore = path.join(dir, 'ignore.txt');
    writeFileSync(ignore, `${V4A}/32\n`);
    let r = await start(net!, 'kernel', ['--interval-secs', '1', '--ignore-file', ignore]);
    knownTraffic(net!);
    await sleep(300);
    await stop(r);
    let ips = ipRows(r.db);
    assert.equal(ips.get(V4A), undefined, 'ignored address absent');
    assert.deepEqual(ips.get(V4C), ip(10, 5400, 0, 0));
    assert.deepEqual(ips.get(V4B), ip(0, 0, 10, 5400), 'B only by C');
    assert.equal(sums(r.db).ignored, 50 + 20 + 15 + 12, 'the kernel counts what the rules dropped');

    const accept = path.join(dir, 'accept.txt');
    writeFileSync(accept, `${V4C}/32\n${V6B}/128\n`);
    r = await start(net!, 'kernel', ['--interval-secs', '1', '--accept-source-file', accept]);
    knownTraffic(net!);
    await sleep(300);
    await stop(r);
    ips = ipRows(r.db);
    assert.deepEqual([...ips.keys()].sort(), [V4B, V4C, V6A, V6B].sort());
    assert.deepEqual(ips.get(V6B), ip(8, 3200, 0, 0));

    writeFileSync(ignore, '192.0.2.0/24\n');
    r = await start(net!, 'kernel', ['--interval-secs', '1', '--ignore-file', ignore]);
    assert.equal(send(net!.a, net!.devA, [[10, udpOf(V4A, V4B, 40010, 9000, 100)]]), 10);
    writeFileSync(ignore, `${V4A}/32\n`);
    r.child.kill('SIGHUP');
    await waitForStderr(r.child, /SIGHUP: CIDR files reloaded/);
    assert.equal(send(net!.a, net!.devA, [[15, udpOf(V4A, V4B, 40011, 9000, 100)]]), 15);
    writeFileSync(ignore, 'not-a-cidr\n');
    r.child.kill('SIGHUP');
    await waitForStderr(r.child, /SIGHUP: reload failed, keeping the previous rules/);
    assert.equal(send(net!.a, net!.devA, [[5, udpOf(V4A, V4B, 40012, 9000, 100)]]), 5);
    await sleep(300);
    await stop(r);
    const flows = flowRows(r.db);
    assert.equal(flows.find((f) => f.sport === 40010)?.packets, 10);
    assert.equal(flows.find((f) => f.sport === 40011), undefined);
    assert.equal(flows.find((f) => f.sport === 40012), undefined);
    assert.equal(sums(r.db).ignored, 15 + 5);
  });

  test('interval boundaries crossed under traffic: each frame in exactly one interval, the switch measured', async (t) => {
    if (!guard(t)) return;
    for (const mode of ['kernel', 'ring']) await boundaries(mode);
  });

  async function boundaries(mode: string): Promise<void> {
    const r = await start(net!, mode, ['--interval-secs', '1', '--log-format', 'json']);
    // 8 bursts of 100 frames, 400 ms apart: about 3 s, so at least two boundaries fall inside.
    let sent = 0;
    for (let burst = 0; burst < 8; burst++) {
      const jobs: [number, Buffer][] = [];
      for (let i = 0; i < 100; i++) jobs.push([1, udpOf(V4A, V4B, 20000 + burst * 100 + i, 9000, 100)]);
      sent += send(net!.a, net!.devA, jobs);
      await sleep(400);
    }
    await stop(r);
    assert.equal(sent, 800);
    const d = new Database(r.db, { readonly: true });
    try {
      // One flow per frame (its own source port): a frame counted twice would be a flow in two
      // intervals, a frame lost a port missing.
      const rows = d.prepare('select sport, count(*) as intervals, sum(packets) as packets from flow_deltas where dport = 9000 group by sport').all() as { sport: number; intervals: number; packets: number }[];
      assert.equal(rows.length, 800, mode);
      assert.ok(rows.every((x) => x.intervals === 1 && x.packets === 1));
      const busy = d.prepare('select count(distinct batch_id) from flow_deltas where dport = 9000').pluck().get() as number;
      assert.ok(busy >= 3, `${mode}: the traffic spans ${busy} intervals`);
    } finally {
      d.close();
    }
    // Each interval's line says how late after the boundary the switch completed.
    const lates = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((l) => l.level === 'interval' && 'kernel_switch_late_us' in l)
      .map((l) => l.kernel_switch_late_us as number);
    if (mode === 'ring') return;
    assert.ok(lates.length >= 3, r.stderr);
    assert.ok(lates.every((x) => Number.isInteger(x) && x >= 0));
  }

  test('--max-keys overflow: the overflow rows balance the totals; the estimate is near the keys refused; /metrics shows the map fill', async (t) => {
    if (!guard(t)) return;
    const jobs: [number, Buffer][] = [];
    for (let s = 1; s <= 40; s++) jobs.push([3, udpOf(`10.82.0.${s}`, V4B, 1000 + s, 9000, 100)]);
    const r = await start(net!, 'kernel', ['--interval-secs', '2', '--max-keys', '5', '--metrics-listen', '127.0.0.1:9466']);
    // Sent early in an interval, so that it falls in one.
    while (Date.now() % 2000 > 300) await sleep(20);
    assert.equal(send(net!.a, net!.devA, jobs), 120);
    // The interval's batch has gone out once the next boundary has passed.
    await sleep(2000 - (Date.now() % 2000) + 700);
    const js = "require('http').get('http://127.0.0.1:9466/metrics', (r) => { let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => process.stdout.write(b)); })";
    const metrics = sh('ip', ['netns', 'exec', net!.b, process.execPath, '-e', js]);
    await stop(r);
    assert.match(metrics, /^tc_kernel_map_capacity\{map="ips"\} 5$/m);
    assert.match(metrics, /^tc_kernel_map_capacity\{map="flows"\} 5$/m);
    assert.match(metrics, /^tc_kernel_map_entries\{map="ips"\} 5$/m, 'full');
    assert.match(metrics, /^tc_kernel_map_fill_ratio\{map="flows"\} 1$/m);
    const d = new Database(r.db, { readonly: true });
    try {
      const ipSum = d.prepare('select sum(tx_packets) as tx, sum(rx_packets) as rx, count(*) as rows from ip_deltas').get() as { tx: number; rx: number; rows: number };
      const flowSum = d.prepare('select sum(packets) as p, sum(bytes) as b, count(*) as rows from flow_deltas').get() as { p: number; b: number; rows: number };
      assert.deepEqual([ipSum.tx, ipSum.rx], [120, 120], 'every frame counted once as sent and once as received');
      assert.deepEqual([flowSum.p, flowSum.b], [120, 12_000]);
      const b = d.prepare('select sum(ip_packets) as p, max(ip_overflow_keys) as ik, max(flow_overflow_keys) as fk from batches').get() as { p: number; ik: number; fk: number };
      assert.equal(b.p, 120);
      const kept = d.prepare('select count(*) from ip_deltas x join addresses a on a.id = x.ip_id where length(a.addr) > 0').pluck().get() as number;
      assert.equal(kept, 5, 'five addresses kept, the rest in the overflow row');
      assert.ok(b.ik >= 25 && b.ik <= 40, `about 36 addresses overflowed: ${b.ik}`);
      assert.ok(b.fk >= 25 && b.fk <= 40, `about 35 flows overflowed: ${b.fk}`);
    } finally {
      d.close();
    }
  });

  test('DNS answers still give names in kernel mode, and are counted once', async (t) => {
    if (!guard(t)) return;
    const answers = Array.from({ length: 16 }, (_, i) => answerA(`198.51.100.${100 + i}`));
    const dns = udp('10.9.0.53', '10.9.0.2', 53, 41000, dnsResponse('kernel.example.com', answers));
    assert.ok(dns.length > 300, 'longer than the snap length');
    const { kernel, ring } = await both(net!, ['--interval-secs', '1'], () => {
      assert.equal(send(net!.a, net!.devA, [[3, dns]]), 3);
    });
    assert.match(kernel.stderr, /names filter to 1 more/);
    for (const r of [kernel, ring]) {
      const names = queryJson<{ ip: string; name: string }[]>(['--db', r.db, 'names', '--name', 'kernel.example.com', '--all']);
      assert.equal(names.filter((n) => n.name === 'kernel.example.com').length, 16, `${path.basename(r.db)}: ${JSON.stringify(names)}`);
      assert.deepEqual(ipRows(r.db).get('10.9.0.53'), ip(3, 3 * (dns.length - 14), 0, 0));
    }
    // The names socket's ring got the answers whole; the counting ring got nothing.
    assert.equal(sums(kernel.db).ring_packets, 3);
    assert.equal(sums(kernel.db).ring_drops, 0);
  });

  test('loopback: each frame is seen sent and received, and counted once, in kernel mode as in ring mode', async (t) => {
    if (!guard(t)) return;
    const lo: VethPair = { ...net!, devB: 'lo' };
    const sink = spawnIn(net!.b, process.execPath, ['-e', "const s = require('dgram').createSocket('udp4'); s.on('message', () => {}); s.bind(9100, '127.0.0.1', () => console.log('ready')); setTimeout(() => process.exit(0), 30000)"]);
    await new Promise<void>((res) => sink.stdout!.once('data', () => res()));
    try {
      const sender = "const s = require('dgram').createSocket('udp4'); let n = 0; const go = () => s.send(Buffer.alloc(72), 9100, '127.0.0.1', () => (++n < 25 ? go() : s.close())); s.bind(9101, go);";
      const { kernel, ring } = await both(lo, ['--interval-secs', '1', '--max-names', '0'], () => void sh('ip', ['netns', 'exec', net!.b, process.execPath, '-e', sender]));
      for (const r of [kernel, ring]) {
        const f = flowRows(r.db).find((x) => x.sport === 9101 && x.dport === 9100);
        assert.deepEqual([f?.packets, f?.bytes], [25, 25 * 100], path.basename(r.db));
      }
      assert.equal(sums(kernel.db).ring_packets, 0);
    } finally {
      sink.kill('SIGTERM');
    }
  });

  test('auto counts in the kernel here and says so; --no-ebpf makes it the ring; kernel with --no-ebpf is refused', async (t) => {
    if (!guard(t)) return;
    let r = await start(net!, 'auto', ['--interval-secs', '1']);
    await stop(r);
    assert.match(r.stderr, /counted in the kernel \(--count-in auto/);
    r = await start(net!, 'auto', ['--interval-secs', '1', '--no-ebpf']);
    await stop(r);
    assert.match(r.stderr, /counted in the ring \(--count-in auto: --no-ebpf loads no eBPF program/);
    const db = path.join(tmp(), 'x.db');
    const res = spawnSync('ip', ['netns', 'exec', net!.b, process.execPath, RECORDER, 'record', '--iface', net!.devB, '--db', db, '--count-in', 'kernel', '--no-ebpf', '--log-format', 'json'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(res.status, 1);
    const err = JSON.parse(res.stdout.trim()).error;
    assert.equal(err.code, 'ERR_TC_BAD_OPTION');
    assert.match(err.message, /--count-in kernel: --no-ebpf .*use --count-in ring/);
    // tc-query status says what the ring's counters mean in a kernel-mode session.
    const k = await start(net!, 'kernel', ['--interval-secs', '1']);
    await sleep(1200);
    await stop(k);
    const status = spawnSync(process.execPath, [QUERY, '--db', k.db, 'status'], { encoding: 'utf8' });
    assert.equal(status.status, 0, status.stderr);
    assert.match(status.stdout, /counted in the kernel \(live --count-in kernel\): these are the frames the counting program handed to userspace .* 0 drops expected/);
  });
});
