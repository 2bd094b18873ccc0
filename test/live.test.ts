/**
 * Live capture counted in the ring (`--count-in ring`; test/kernel-live.test.ts has kernel
 * mode) in two network namespaces joined by a veth pair: known UDP and ICMP packets,
 * IPv4 and IPv6, of known sizes and bounded count, recorded on one end; exact per-IP and
 * per-flow counts, 0 kernel drops, the filter attached, --ignore-file, --accept-source-file and
 * SIGHUP reload honoured. Traffic stays inside the namespaces.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import { existsSync, statfsSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import * as engine from '../src/native';
import { exited, needRoot, queryJson, RECORDER, sh, sleep, spawnIn, tmp, waitForStderr } from './helpers';
import { spawn, type ChildProcess } from 'node:child_process';

const A = `tc${process.pid}a`;
const B = `tc${process.pid}b`;
const UDP = path.join(__dirname, 'fixtures', 'udp.js');
const V4A = '10.77.0.1';
const V4B = '10.77.0.2';
const V6A = 'fd77::1';
const V6B = 'fd77::2';

let ready = false;
let sink: ChildProcess | undefined;

function setupNetns(): void {
  sh('ip', ['netns', 'add', A]);
  sh('ip', ['netns', 'add', B]);
  sh('ip', ['link', 'add', 'veth-a', 'netns', A, 'type', 'veth', 'peer', 'name', 'veth-b', 'netns', B]);
  const macA = '02:00:00:00:77:01';
  const macB = '02:00:00:00:77:02';
  for (const [ns, dev, mac, v4, v6, peerV4, peerV6, peerMac] of [
    [A, 'veth-a', macA, V4A, V6A, V4B, V6B, macB],
    [B, 'veth-b', macB, V4B, V6B, V4A, V6A, macA],
  ]) {
    // No router solicitations, no DAD, static neighbours: the only traffic of the test
    // addresses is the traffic the test sends.
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.router_solicitations=0', 'net.ipv6.conf.default.router_solicitations=0']);
    sh('ip', ['-n', ns, 'link', 'set', dev, 'address', mac]);
    sh('ip', ['-n', ns, 'addr', 'add', `${v4}/24`, 'dev', dev]);
    sh('ip', ['-n', ns, 'addr', 'add', `${v6}/64`, 'dev', dev, 'nodad']);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    sh('ip', ['-n', ns, 'neigh', 'replace', peerV4, 'lladdr', peerMac, 'dev', dev, 'nud', 'permanent']);
    sh('ip', ['-n', ns, 'neigh', 'replace', peerV6, 'lladdr', peerMac, 'dev', dev, 'nud', 'permanent']);
  }
}

function ping(target: string, count: number, size: number): void {
  sh('ip', ['netns', 'exec', A, 'ping', '-n', '-q', '-c', String(count), '-i', '0.005', '-s', String(size), '-W', '2', target]);
}

function udp(target: string, port: number, sport: number, count: number, size: number): void {
  sh('ip', ['netns', 'exec', A, process.execPath, UDP, 'send', target, String(port), String(sport), String(count), String(size)]);
}

interface Recording {
  db: string;
  stderr: string;
  child: ChildProcess;
}

async function startRecorder(extra: string[]): Promise<Recording> {
  const db = path.join(tmp(), 'live.db');
  const child = spawnIn(B, process.execPath, [RECORDER, 'record', '--iface', 'veth-b', '--db', db, '--interval-secs', '1', '--flows', '--workers', '2', '--count-in', 'ring', ...extra]);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await waitForStderr(child, /recording veth-b/);
  const rec: Recording = { db, child, get stderr() { return stderr; } } as Recording;
  return rec;
}

async function stopRecorder(r: Recording): Promise<void> {
  await sleep(300);
  r.child.kill('SIGINT');
  const code = await exited(r.child, 5000);
  assert.equal(code, 0, r.stderr);
}

type IpRow = { ip: string; tx_packets: number; tx_bytes: number; rx_packets: number; rx_bytes: number; packets: number; bytes: number; local?: boolean | null; name?: string | null };
type FlowRow = { src: string; dst: string; proto: number; sport: number; dport: number; packets: number; bytes: number };

function ipRows(db: string): Map<string, IpRow> {
  return new Map(queryJson<IpRow[]>(['--db', db, 'top', '--by', 'ip', '--all', '--limit', '0']).map((r) => [r.ip, r]));
}

/** The flows and their counters (names have tests of their own, test/names.test.ts). */
function flowRows(db: string): FlowRow[] {
  return queryJson<(FlowRow & { src_name?: string | null; dst_name?: string | null })[]>(['--db', db, 'top', '--by', 'flow', '--all', '--limit', '0']).map(({ src_name: _s, dst_name: _d, ...f }) => f);
}

function sums(db: string): Record<string, number | null> {
  const d = new Database(db, { readonly: true });
  try {
    return d
      .prepare(
        `select sum(ring_drops) as ring_drops, sum(ring_packets) as ring_packets, sum(filter_passed) as filter_passed,
                sum(filter_ignored) as filter_ignored, sum(filter_not_accepted) as filter_not_accepted,
                sum(ignored) as ignored, count(*) as batches from batches`,
      )
      .get() as Record<string, number | null>;
  } finally {
    d.close();
  }
}

const ip = (tx: number, txb: number, rx: number, rxb: number) => ({ tx_packets: tx, tx_bytes: txb, rx_packets: rx, rx_bytes: rxb, packets: tx + rx, bytes: txb + rxb });
const pick = (m: Map<string, IpRow>, k: string) => {
  const r = m.get(k);
  if (!r) return undefined;
  // The counters (local networks and names have tests of their own, test/local.test.ts and test/names.test.ts).
  const { ip: _ip, local: _local, name: _name, ...rest } = r;
  return rest;
};
const flow = (rows: FlowRow[], src: string, dst: string, proto: number, sport: number, dport: number) =>
  rows.find((f) => f.src === src && f.dst === dst && f.proto === proto && f.sport === sport && f.dport === dport);

/** The standard traffic: pings and UDP both ways of IPv4 and IPv6. */
function standardTraffic(): void {
  ping(V4B, 20, 100); // 20 requests + 20 replies of 100 + 8 + 20 = 128 bytes
  ping(V6B, 20, 200); // 20 + 20 of 200 + 8 + 40 = 248 bytes
  udp(V4B, 9000, 40000, 50, 300); // 50 x 328 bytes
  udp(V6B, 9001, 40001, 30, 500); // 30 x 548 bytes
}

describe('live capture in network namespaces', () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    setupNetns();
    sink = spawnIn(B, process.execPath, [UDP, 'sink', '9000', '9001']);
    await new Promise<void>((res) => sink!.stdout!.once('data', () => res()));
    ready = true;
  });
  after(() => {
    sink?.kill('SIGTERM');
    if (ready) {
      spawnSyncQuiet('ip', ['netns', 'del', A]);
      spawnSyncQuiet('ip', ['netns', 'del', B]);
    }
  });

  const guard = (t: TestContext) => needRoot(t) && (assert.ok(ready, 'namespaces set up'), true);

  test('exact per-IP and per-flow counts, both directions, 0 kernel drops, filter attached', async (t) => {
    if (!guard(t)) return;
    const r = await startRecorder([]);
    assert.match(r.stderr, /eBPF filter attached to 2 socket\(s\)/);
    standardTraffic();
    await stopRecorder(r);

    const ips = ipRows(r.db);
    assert.deepEqual(pick(ips, V4A), ip(20 + 50, 20 * 128 + 50 * 328, 20, 20 * 128));
    assert.deepEqual(pick(ips, V4B), ip(20, 20 * 128, 20 + 50, 20 * 128 + 50 * 328));
    assert.deepEqual(pick(ips, V6A), ip(20 + 30, 20 * 248 + 30 * 548, 20, 20 * 248));
    assert.deepEqual(pick(ips, V6B), ip(20, 20 * 248, 20 + 30, 20 * 248 + 30 * 548));

    const flows = flowRows(r.db);
    assert.deepEqual(flow(flows, V4A, V4B, 17, 40000, 9000), { src: V4A, dst: V4B, proto: 17, sport: 40000, dport: 9000, packets: 50, bytes: 50 * 328 });
    assert.deepEqual(flow(flows, V6A, V6B, 17, 40001, 9001), { src: V6A, dst: V6B, proto: 17, sport: 40001, dport: 9001, packets: 30, bytes: 30 * 548 });
    assert.equal(flow(flows, V4A, V4B, 1, 0, 0)?.bytes, 20 * 128);
    assert.equal(flow(flows, V4B, V4A, 1, 0, 0)?.bytes, 20 * 128);
    assert.equal(flow(flows, V6A, V6B, 58, 0, 0)?.packets, 20);
    assert.equal(flow(flows, V6B, V6A, 58, 0, 0)?.bytes, 20 * 248);

    const s = sums(r.db);
    assert.equal(s.ring_drops, 0);
    assert.ok((s.ring_packets ?? 0) >= 160, `ring saw ${s.ring_packets} packets`);
    assert.ok((s.filter_passed ?? 0) >= 160, `filter passed ${s.filter_passed}`);
  });

  test('--ignore-file drops an address in the kernel filter and with --no-ebpf in userspace', async (t) => {
    if (!guard(t)) return;
    const dir = tmp();
    const ignore = path.join(dir, 'ignore.txt');
    writeFileSync(ignore, `# test\n\n${V4A}/32   # the IPv4 sender\n192.0.2.0/24\n`);
    for (const ebpf of [true, false]) {
      const r = await startRecorder(['--ignore-file', ignore, ...(ebpf ? [] : ['--no-ebpf'])]);
      standardTraffic();
      await stopRecorder(r);
      const ips = ipRows(r.db);
      assert.equal(ips.get(V4A), undefined, 'ignored address absent');
      assert.equal(ips.get(V4B), undefined, 'its only peer absent too');
      assert.deepEqual(pick(ips, V6A), ip(50, 20 * 248 + 30 * 548, 20, 20 * 248));
      const s = sums(r.db);
      if (ebpf) {
        assert.equal(s.filter_ignored, 20 + 20 + 50);
      } else {
        assert.equal(s.filter_ignored, null, 'no filter counters without eBPF');
        assert.equal(s.ignored, 20 + 20 + 50);
      }
    }
  });

  test('--accept-source-file keeps only the listed sources', async (t) => {
    if (!guard(t)) return;
    const accept = path.join(tmp(), 'accept.txt');
    writeFileSync(accept, `${V4B}\n${V6B}/128\n`);
    const r = await startRecorder(['--accept-source-file', accept]);
    standardTraffic();
    await stopRecorder(r);
    const ips = ipRows(r.db);
    assert.deepEqual(pick(ips, V4A), ip(0, 0, 20, 20 * 128));
    assert.deepEqual(pick(ips, V6A), ip(0, 0, 20, 20 * 248));
    for (const row of ips.values()) assert.ok([V4A, V4B, V6A, V6B].includes(row.ip), `unexpected address ${row.ip}`);
    assert.ok((sums(r.db).filter_not_accepted ?? 0) >= 20 + 50 + 20 + 30);
  });

  test('SIGHUP reloads the CIDR files without re-attaching; a bad file keeps the old rules', async (t) => {
    if (!guard(t)) return;
    const ignore = path.join(tmp(), 'ignore.txt');
    writeFileSync(ignore, '192.0.2.0/24\n');
    const r = await startRecorder(['--ignore-file', ignore]);
    udp(V4B, 9000, 40010, 10, 100);
    writeFileSync(ignore, `${V4A}/32\n`);
    r.child.kill('SIGHUP');
    await waitForStderr(r.child, /SIGHUP: CIDR files reloaded/);
    udp(V4B, 9000, 40011, 15, 100);
    writeFileSync(ignore, 'not-a-cidr\n');
    r.child.kill('SIGHUP');
    await waitForStderr(r.child, /SIGHUP: reload failed, keeping the previous rules: .*ignore\.txt:1/);
    udp(V4B, 9000, 40012, 5, 100);
    await stopRecorder(r);
    const flows = flowRows(r.db);
    assert.equal(flow(flows, V4A, V4B, 17, 40010, 9000)?.packets, 10);
    assert.equal(flow(flows, V4A, V4B, 17, 40011, 9000), undefined);
    assert.equal(flow(flows, V4A, V4B, 17, 40012, 9000), undefined);
    assert.equal(sums(r.db).filter_ignored, 15 + 5);
    assert.match(r.stderr, /eBPF filter attached to 2 socket\(s\)/);
    assert.equal((r.stderr.match(/eBPF filter attached/g) ?? []).length, 1, 'attached once');
  });

  test('SIGTERM flushes and exits 0 within 2 s; SIGKILL leaves a sound file and the gap is recorded', async (t) => {
    if (!guard(t)) return;
    const r = await startRecorder([]);
    udp(V4B, 9000, 40020, 10, 100);
    await sleep(1200);
    const t0 = Date.now();
    r.child.kill('SIGTERM');
    assert.equal(await exited(r.child, 5000), 0);
    assert.ok(Date.now() - t0 < 2000, `stopped in ${Date.now() - t0} ms`);
    assert.equal(flow(flowRows(r.db), V4A, V4B, 17, 40020, 9000)?.packets, 10);

    const child = spawnIn(B, process.execPath, [RECORDER, 'record', '--iface', 'veth-b', '--db', r.db, '--interval-secs', '1', '--flows']);
    await waitForStderr(child, /recording veth-b/);
    udp(V4B, 9000, 40021, 7, 100);
    await sleep(1500);
    child.kill('SIGKILL');
    await exited(child);
    const d = new Database(r.db);
    assert.equal(d.pragma('integrity_check', { simple: true }), 'ok');
    d.close();

    const again = spawnIn(B, process.execPath, [RECORDER, 'record', '--iface', 'veth-b', '--db', r.db, '--interval-secs', '1', '--flows']);
    await waitForStderr(again, /ended without a clean stop[\s\S]*recording veth-b/);
    again.kill('SIGINT');
    assert.equal(await exited(again), 0);
    const e = new Database(r.db, { readonly: true });
    const kinds = e.prepare('select kind from events order by id').pluck().all();
    e.close();
    assert.ok(kinds.includes('unclean-shutdown'), `events: ${kinds.join(',')}`);
    assert.equal(flow(flowRows(r.db), V4A, V4B, 17, 40021, 9000)?.packets, 7, 'intervals written before the kill are kept');
  });

  test('a locked database: capture goes on, the oldest batches past --queue-max are recorded as lost; metrics tell', async (t) => {
    if (!guard(t)) return;
    const r = await startRecorder(['--queue-max', '2', '--metrics-listen', '127.0.0.1:9464']);
    const lock = new Database(r.db);
    lock.exec('begin exclusive');
    for (let i = 0; i < 5; i++) {
      udp(V4B, 9000, 40030, 5, 100);
      await sleep(1000);
    }
    const during = scrape();
    lock.exec('commit');
    lock.close();
    udp(V4B, 9000, 40031, 9, 100);
    await sleep(3500);
    const after = scrape();
    await stopRecorder(r);
    assert.ok(metric(during, 'tc_write_errors_total') > 0, during);
    assert.ok(metric(during, 'tc_write_queue_depth') <= 2);
    const lost = metric(after, 'tc_lost_intervals_total');
    assert.ok(lost >= 1, after);
    assert.ok(metric(after, 'tc_batches_written_total') > 0);
    assert.match(r.stderr, /cannot write to .*SQLITE_BUSY/);
    const d = new Database(r.db, { readonly: true });
    assert.equal(d.pragma('integrity_check', { simple: true }), 'ok');
    assert.equal(d.prepare("select count(*) from events where kind = 'lost-interval'").pluck().get(), lost);
    d.close();
    assert.equal(flow(flowRows(r.db), V4A, V4B, 17, 40031, 9000)?.packets, 9, 'capture went on');
  });

  test('--user drops root and every capability after setup; --log-format json', async (t) => {
    if (!guard(t)) return;
    const dir = tmp();
    sh('chmod', ['0777', dir]);
    const db = path.join(dir, 'user.db');
    const child = spawnIn(B, process.execPath, [RECORDER, 'record', '--iface', 'veth-b', '--db', db, '--interval-secs', '1', '--flows', '--user', 'nobody', '--log-format', 'json']);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await waitForStderr(child, /running as nobody/);
    const status = sh('cat', [`/proc/${child.pid}/status`]);
    assert.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
    assert.match(status, /^CapEff:\s+0+$/m);
    assert.match(status, /^CapPrm:\s+0+$/m);
    udp(V4B, 9000, 40040, 12, 100);
    await sleep(1300);
    child.kill('SIGINT');
    assert.equal(await exited(child), 0, err);
    const lines = err.trim().split('\n');
    for (const l of lines) JSON.parse(l);
    assert.ok(lines.some((l) => JSON.parse(l).level === 'interval' && 'kernel_drops' in JSON.parse(l)));
    assert.equal(flow(flowRows(db), V4A, V4B, 17, 40040, 9000)?.packets, 12);
  });

  test('retention: old raw rows leave in small steps while the rollups keep the totals', async (t) => {
    if (!guard(t)) return;
    const dir = tmp();
    const db = path.join(dir, 'ret.db');
    const smtp = path.join(__dirname, '..', '..', '..', 'shared', 'pcaps', 'zeek_smtp.pcap');
    const rr = spawnSyncQuiet(process.execPath, [RECORDER, 'record', '--pcap', process.env.TC_PCAPS_DIR ? path.join(process.env.TC_PCAPS_DIR, 'zeek_smtp.pcap') : smtp, '--db', db, '--flows', '--quiet']);
    assert.equal(rr.status, 0, rr.stderr);
    const before = ipRows(db);
    const child = spawnIn(B, process.execPath, [RECORDER, 'record', '--iface', 'veth-b', '--db', db, '--interval-secs', '1', '--flows', '--retain-raw-ip', '48h', '--retain-minutes', '14d', '--retain-hours', '400d']);
    await waitForStderr(child, /recording veth-b/);
    udp(V4B, 9000, 40050, 3, 100);
    await sleep(2500);
    child.kill('SIGINT');
    assert.equal(await exited(child), 0);
    const d = new Database(db, { readonly: true });
    const oldRaw = d.prepare("select count(*) from ip_deltas x join batches b on b.id = x.batch_id where b.start_ms < 1500000000000").pluck().get();
    const oldMinutes = d.prepare('select count(*) from ip_1m where bucket_ms < 1500000000000').pluck().get();
    const oldDays = d.prepare('select count(*) from ip_1d where bucket_ms < 1500000000000').pluck().get() as number;
    d.close();
    assert.equal(oldRaw, 0, 'raw rows older than 48 h removed');
    assert.equal(oldMinutes, 0, 'minute rollups older than 14 d removed');
    assert.ok(oldDays > 0, 'day rollups kept');
    const after = ipRows(db);
    // The counters: `local` follows the live session's networks, which apply to every --all window now.
    for (const ip of before.keys()) assert.deepEqual(pick(after, ip), pick(before, ip), `${ip} totals unchanged (answered from day rollups)`);
  });

  test('a full disk: a replay stops with a clear error, the file stays sound, and works again once space is back', async (t) => {
    if (!guard(t)) return;
    const dir = tmp();
    const mnt = path.join(dir, 'small');
    sh('mkdir', ['-p', mnt]);
    sh('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mnt]);
    try {
      const db = path.join(mnt, 'full.db');
      const pc = (f: string) => path.join(process.env.TC_PCAPS_DIR ?? path.join(__dirname, '..', '..', '..', 'shared', 'pcaps'), f);
      let r = spawnSyncQuiet(process.execPath, [RECORDER, 'record', '--pcap', pc('zeek_smtp.pcap'), '--db', db, '--flows', '--quiet']);
      assert.equal(r.status, 0, r.stderr);
      const before = ipRows(db);
      // Leave about 160 KiB: enough to open the database, not enough for the replay.
      const st = statfsSync(mnt);
      const blocks = Math.max(0, Math.floor((st.bavail * st.bsize - 160 * 1024) / 4096));
      spawnSyncQuiet('dd', ['if=/dev/zero', `of=${path.join(mnt, 'filler')}`, 'bs=4k', `count=${blocks}`]);
      r = spawnSyncQuiet(process.execPath, [RECORDER, 'record', '--pcap', pc('ndpi_gnutella.pcap'), '--db', db, '--flows', '--quiet', '--interval-secs', '1']);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /cannot write to .*full\.db.*(SQLITE_FULL|disk is full|database or disk is full)/i);
      const d = new Database(db, { readonly: true });
      assert.equal(d.pragma('integrity_check', { simple: true }), 'ok');
      d.close();
      for (const [ip, row] of before) assert.deepEqual(ipRows(db).get(ip), row, 'earlier data intact');
      sh('rm', ['-f', path.join(mnt, 'filler')]);
      r = spawnSyncQuiet(process.execPath, [RECORDER, 'record', '--pcap', pc('ndpi_gnutella.pcap'), '--db', db, '--flows', '--quiet', '--interval-secs', '1']);
      assert.equal(r.status, 0, r.stderr);
      assert.ok(ipRows(db).has('10.0.2.15'));
    } finally {
      spawnSyncQuiet('umount', [mnt]);
    }
  });

  test('without CAP_BPF the error names the capability; --no-ebpf still records', async (t) => {
    if (!guard(t)) return;
    const db = path.join(tmp(), 'cap.db');
    const noBpf = ['netns', 'exec', B, 'setpriv', '--bounding-set=-bpf,-sys_admin,-perfmon', '--', process.execPath, RECORDER, 'record', '--iface', 'veth-b', '--db', db];
    const r = spawnSyncQuiet('ip', noBpf);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /needs CAP_BPF .*--no-ebpf/);
    assert.equal(existsSync(db), false);
    const child = spawn('ip', [...noBpf, '--no-ebpf', '--interval-secs', '1', '--flows'], { stdio: ['ignore', 'pipe', 'pipe'] });
    await waitForStderr(child, /recording veth-b .*no eBPF filter/);
    udp(V4B, 9000, 40060, 4, 100);
    // tc-query reads while the recorder writes
    await sleep(1300);
    assert.equal(flow(flowRows(db), V4A, V4B, 17, 40060, 9000)?.packets, 4);
    child.kill('SIGINT');
    assert.equal(await exited(child), 0);
  });

  test('bad ring parameters, a missing interface and a taken fanout group: clear errors, no database', async (t) => {
    if (!guard(t)) return;
    const dir = tmp();
    const db = path.join(dir, 'x.db');
    const run = (args: string[]) => spawnSyncQuiet('ip', ['netns', 'exec', B, process.execPath, RECORDER, 'record', '--db', db, ...args]);
    let res = run(['--iface', 'veth-b', '--block-size', '1000']);
    assert.equal(res.status, 1);
    assert.match(res.stderr, /--block-size 1000 must be a positive multiple of the page size \d+/);
    res = run(['--iface', 'veth-b', '--frame-size', '4096', '--block-size', '4096', '--block-count', '0']);
    assert.equal(res.status, 1);
    assert.match(res.stderr, /--block-count/);
    res = run(['--iface', 'nope0']);
    assert.equal(res.status, 1);
    assert.match(res.stderr, /interface "nope0" does not exist/);
    assert.equal(existsSync(db), false, 'nothing written');

    // Both in the ring: counting in the kernel joins no fanout group.
    const first = await startRecorder(['--fanout-group', '4242']);
    res = run(['--iface', 'veth-b', '--fanout-group', '4242', '--count-in', 'ring']);
    assert.equal(res.status, 1);
    assert.match(res.stderr, /PACKET_FANOUT group 4242 is already in use/);
    assert.equal(existsSync(db), false, 'nothing written');
    await stopRecorder(first);
  });
});

import { spawnSync } from 'node:child_process';
function spawnSyncQuiet(cmd: string, args: string[]) {
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
}

/** Scrapes the recorder's metrics from inside namespace B. */
function scrape(): string {
  const js = "require('http').get('http://127.0.0.1:9464/metrics', (r) => { let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => process.stdout.write(b)); })";
  return sh('ip', ['netns', 'exec', B, process.execPath, '-e', js]);
}

function metric(text: string, name: string): number {
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  if (!m) throw new Error(`metric ${name} missing:\n${text}`);
  return Number(m[1]);
}

/**
 * Live capture in this process, on loopback, no traffic sent (the engine closes an empty batch
 * each second); the JS thread is then blocked for 6.5 intervals, as by a long synchronous write.
 * Returns the batches delivered, the intervals named as dropped, and how many of the batches
 * made during the block were delivered after it (the ones that waited).
 */
async function blockedLive(fanoutGroup: number, handover: { handoverMaxBatches?: number; handoverMaxBytes?: number }) {
  const got: number[] = [];
  const dropped: number[] = [];
  const live = engine.startLive(
    { iface: 'lo', workers: 1, ebpf: false, fanoutGroup, count: { intervalMs: 1000 }, ...handover },
    {
      batch: (b) => void got.push(b.startMs),
      dropped: (d) => void dropped.push(...d.map((x) => x.startMs)),
    },
  );
  while (got.length === 0) await sleep(50);
  const from = Date.now();
  const until = from + 6500;
  while (Date.now() < until);
  await sleep(3300);
  live.stop();
  await live.done;
  // Intervals that ended well inside the block were closed while JS was blocked.
  const waited = got.filter((s) => s + 1000 > from && s + 1000 <= until - 500).length;
  // Once JS is free, batches flow again (the last one, flushed on stop, always goes: not counted).
  assert.ok(got.slice(0, -1).some((s) => s >= until), `batches delivered after the block: ${got.join(' ')}`);
  // Every interval from the first to the last was either delivered or named as dropped, once.
  const all = [...got, ...dropped].sort((a, b) => a - b);
  for (let i = 1; i < all.length; i++) assert.equal(all[i] - all[i - 1], 1000, `intervals ${all.join(' ')}`);
  return { waited, dropped };
}

test('a JS thread busy for many intervals: batches wait for it up to the hand-over bound (in batches, in bytes), the engine names every interval it dropped', async (t) => {
  if (!needRoot(t)) return;
  const byCount = await blockedLive(0xb0e1, { handoverMaxBatches: 2 });
  assert.ok(byCount.waited <= 2, `${byCount.waited} batches had waited (bound 2 batches)`);
  assert.ok(byCount.dropped.length >= 3, `intervals dropped while blocked: ${byCount.dropped.length}`);
  // A byte bound below one batch: one batch may always wait, no second.
  const byBytes = await blockedLive(0xb0e2, { handoverMaxBytes: 1 });
  assert.ok(byBytes.waited <= 1, `${byBytes.waited} batches had waited (bound 1 byte)`);
  assert.ok(byBytes.dropped.length >= 4, `intervals dropped while blocked: ${byBytes.dropped.length}`);
});

test('a deleted interface ends the recording (kernel and ring): the last interval is written, the error names the interface, the exit is non-zero', async (t) => {
  if (!needRoot(t)) return;
  const ns = `tc${process.pid}del`;
  sh('ip', ['netns', 'add', ns]);
  try {
    for (const countIn of ['kernel', 'ring']) {
      sh('ip', ['-n', ns, 'link', 'add', 'tcgone', 'type', 'veth', 'peer', 'name', 'tcpeer']);
      sh('ip', ['-n', ns, 'link', 'set', 'tcgone', 'up']);
      const db = path.join(tmp(), `${countIn}.db`);
      const child = spawnIn(ns, process.execPath, [RECORDER, 'record', '--iface', 'tcgone', '--db', db, '--interval-secs', '1', '--count-in', countIn]);
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      await waitForStderr(child, /recording tcgone/);
      // Down first: the recorder waits on (the interface may come back).
      sh('ip', ['-n', ns, 'link', 'set', 'tcgone', 'down']);
      await sleep(1200);
      assert.equal(child.exitCode, null, `still running while the interface is down: ${stderr}`);
      sh('ip', ['-n', ns, 'link', 'del', 'tcgone']);
      const code = await exited(child, 5000);
      assert.notEqual(code, 0, stderr);
      assert.match(stderr, /interface tcgone was removed: .*the recorder exits so its service manager restarts it/);
      const d = new Database(db, { readonly: true });
      const stop = d.prepare("select detail from events where kind = 'stop'").pluck().all() as string[];
      const last = d.prepare('select count(*) from batches').pluck().get() as number;
      d.close();
      assert.ok(last > 0, 'intervals written');
      assert.equal(stop.length, 1);
      assert.match(stop[0], /interface tcgone was removed/);
    }
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
});
