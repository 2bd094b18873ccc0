/**
 * IP inside PPPoE sessions (ethertype 0x8864, PPP 0x0021 IPv4 / 0x0057 IPv6, also behind 802.1Q,
 * 802.1ad and the old 0x9100 tags), as DSL and fibre uplinks deliver it, is counted under its IP
 * addresses; PPPoE discovery, PPP control frames and IPv4 headers whose Total Length is below
 * their own length are non-IP (MANIFEST rules 2 and 3). Replay: a capture built here. Live: the
 * same frames flooded from an AF_PACKET sender in one network namespace to a recorder in the
 * other (veth), with the eBPF filter and with --no-ebpf. Counts exact, per address and per flow.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { exited, needRoot, queryJson, RECORDER, recorder, ROOT, sleep, spawnIn, tmp, waitForStderr } from './helpers';
import { DST_MAC, SRC_MAC, ethernet, ipcpRequest, ipv4WithTotal, lcpEcho, padi, pppoe, udp, writePcap } from './fixtures/frames';
import { vethPair, type VethPair } from './support/netns';

const S4 = '100.64.0.1';
const S4_VLAN = '100.64.0.2';
const S4_9100 = '100.64.0.3';
const D4 = '198.51.100.7';
const S6 = '2001:db8:1::1';
const S6_QINQ = '2001:db8:1::3';
const D6 = '2001:db8:2::7';
const BAD_SRC = '192.0.2.99';
const BAD_DST = '192.0.2.100';

/** Each frame and how many times it goes out: 2200 IP packets in PPPoE, 28 non-IP frames. */
const MIX: { frame: Buffer; count: number }[] = [
  { frame: pppoe([], 0x0021, udp(S4, D4, 40000, 9000, 328)), count: 1000 },
  { frame: pppoe([], 0x0057, udp(S6, D6, 40001, 9001, 548)), count: 600 },
  { frame: pppoe([0x8100], 0x0021, udp(S4_VLAN, D4, 40002, 9000, 128)), count: 300 },
  { frame: pppoe([0x9100], 0x0021, udp(S4_9100, D4, 40003, 9000, 200)), count: 200 },
  { frame: pppoe([0x88a8, 0x8100], 0x0057, udp(S6_QINQ, D6, 40004, 9001, 100)), count: 100 },
  { frame: padi(), count: 5 },
  { frame: lcpEcho([0x8100]), count: 7 },
  { frame: ipcpRequest(), count: 3 },
  { frame: ethernet([], 0x0800, ipv4WithTotal(BAD_SRC, BAD_DST, 12)), count: 11 },
  { frame: pppoe([], 0x0021, ipv4WithTotal(BAD_SRC, BAD_DST, 12)), count: 2 },
];
const IP_PACKETS = 2200;
const NON_IP = 28;

const ip = (tx: number, txb: number, rx: number, rxb: number) => ({ tx_packets: tx, tx_bytes: txb, rx_packets: rx, rx_bytes: rxb, packets: tx + rx, bytes: txb + rxb });
/** Every address of MIX with its exact counts; the unusable headers' addresses are absent. */
const EXPECTED: Record<string, ReturnType<typeof ip>> = {
  [S4]: ip(1000, 1000 * 328, 0, 0),
  [S4_VLAN]: ip(300, 300 * 128, 0, 0),
  [S4_9100]: ip(200, 200 * 200, 0, 0),
  [D4]: ip(0, 0, 1500, 1000 * 328 + 300 * 128 + 200 * 200),
  [S6]: ip(600, 600 * 548, 0, 0),
  [S6_QINQ]: ip(100, 100 * 100, 0, 0),
  [D6]: ip(0, 0, 700, 600 * 548 + 100 * 100),
};

type IpRow = { ip: string; local?: boolean | null; name?: string | null } & ReturnType<typeof ip>;
type FlowRow = { src: string; dst: string; proto: number; sport: number; dport: number; packets: number; bytes: number };

function ipTable(db: string): Record<string, ReturnType<typeof ip>> {
  const rows = queryJson<IpRow[]>(['--db', db, 'top', '--by', 'ip', '--all', '--limit', '0']);
  // The counters (local networks and names have tests of their own, test/local.test.ts and test/names.test.ts).
  return Object.fromEntries(rows.map(({ ip: a, local: _local, name: _name, ...rest }) => [a, rest]));
}

function assertFlows(db: string): void {
  const flows = queryJson<FlowRow[]>(['--db', db, 'top', '--by', 'flow', '--all', '--limit', '0']);
  const key = (f: FlowRow) => `${f.src} ${f.dst} ${f.proto} ${f.sport} ${f.dport} ${f.packets} ${f.bytes}`;
  assert.deepEqual(flows.map(key).sort(), [
    `${S4} ${D4} 17 40000 9000 1000 ${1000 * 328}`,
    `${S4_VLAN} ${D4} 17 40002 9000 300 ${300 * 128}`,
    `${S4_9100} ${D4} 17 40003 9000 200 ${200 * 200}`,
    `${S6} ${D6} 17 40001 9001 600 ${600 * 548}`,
    `${S6_QINQ} ${D6} 17 40004 9001 100 ${100 * 100}`,
  ].sort());
}

/** The frames of MIX in the order the sender sends them (round-robin). */
function roundRobin(): Buffer[] {
  const left = MIX.map((m) => m.count);
  const out: Buffer[] = [];
  while (left.some((n) => n > 0)) MIX.forEach((m, i) => left[i]-- > 0 && out.push(m.frame));
  return out;
}

function sums(db: string): Record<string, number | null> {
  const d = new Database(db, { readonly: true });
  try {
    return d
      .prepare(
        `select sum(frames) as frames, sum(ip_packets) as ip_packets, sum(non_ip) as non_ip, sum(ip_header_incomplete) as ip_header_incomplete,
                sum(filter_passed) as filter_passed, sum(filter_non_ip) as filter_non_ip, sum(filter_ignored) as filter_ignored, sum(ring_drops) as ring_drops, sum(ring_packets) as ring_packets from batches`,
      )
      .get() as Record<string, number | null>;
  } finally {
    d.close();
  }
}

test('replay: IP in PPPoE sessions (untagged, 802.1Q, 0x9100, QinQ) counts per address; discovery, LCP, IPCP and Total Length 12 are non-IP', () => {
  const dir = tmp();
  const cap = path.join(dir, 'pppoe.pcap');
  writePcap(cap, roundRobin());
  const db = path.join(dir, 'pppoe.db');
  const r = recorder(['record', '--pcap', cap, '--db', db, '--flows', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(ipTable(db), EXPECTED);
  assertFlows(db);
  const totals = queryJson<Record<string, number>[]>(['--db', db, 'sql', 'select sum(frames) as frames, sum(ip_packets) as ip_packets, sum(non_ip) as non_ip from intervals']);
  assert.deepEqual(totals, [{ frames: IP_PACKETS + NON_IP, ip_packets: IP_PACKETS, non_ip: NON_IP }]);
  assert.equal(sums(db).ip_header_incomplete, 0, 'whole but unusable headers are not "incomplete"');
});

const SENDER = path.join(ROOT, 'test', 'fixtures', 'afpacket_send.py');
let net: VethPair | undefined;

describe('live: a PPPoE-framed flood from an AF_PACKET sender in a namespace pair', () => {
  before(() => {
    if (process.getuid?.() === 0) net = vethPair(`tcpp${process.pid}`, 'pp', { a: SRC_MAC, b: DST_MAC });
  });
  after(() => net?.remove());

  /** Records pp-b while the sender floods MIX from pp-a; returns the database. */
  async function recordFlood(extra: string[]): Promise<string> {
    const db = path.join(tmp(), 'live.db');
    const child = spawnIn(net!.b, process.execPath, [RECORDER, 'record', '--iface', 'pp-b', '--db', db, '--interval-secs', '1', '--flows', '--workers', '2', ...(extra.includes('--count-in') ? [] : ['--count-in', 'ring']), ...extra]);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitForStderr(child, /recording pp-b/);
    if (!extra.includes('--no-ebpf') && !extra.includes('kernel')) assert.match(stderr, /eBPF filter attached to 2 socket\(s\)/);
    const input = MIX.map((m) => `${m.count} ${m.frame.toString('hex')}`).join('\n');
    const send = spawnSync('ip', ['netns', 'exec', net!.a, 'python3', SENDER, 'pp-a', '20'], { input, encoding: 'utf8', timeout: 30_000 });
    assert.equal(send.status, 0, send.stderr);
    assert.equal(Number(send.stdout), IP_PACKETS + NON_IP, 'all frames sent within the time bound');
    await sleep(300);
    child.kill('SIGINT');
    assert.equal(await exited(child, 5000), 0, stderr);
    return db;
  }

  for (const ebpf of [true, false]) {
    test(`exact per-address and per-flow counts ${ebpf ? 'through the eBPF filter' : 'with --no-ebpf'}; the non-IP frames counted once`, async (t: TestContext) => {
      if (!needRoot(t)) return;
      assert.ok(net, 'namespaces set up');
      const db = await recordFlood(ebpf ? [] : ['--no-ebpf']);
      assert.deepEqual(ipTable(db), EXPECTED);
      assertFlows(db);
      const s = sums(db);
      assert.equal(s.ring_drops, 0);
      assert.equal(s.ip_packets, IP_PACKETS);
      if (ebpf) {
        // The filter drops and counts the non-IP frames; userspace sees only what it passed.
        assert.deepEqual([s.filter_non_ip, s.non_ip, s.filter_passed, s.frames], [NON_IP, 0, IP_PACKETS, IP_PACKETS]);
      } else {
        assert.deepEqual([s.filter_non_ip, s.non_ip, s.frames], [null, NON_IP, IP_PACKETS + NON_IP]);
      }
    });
  }

  test('--count-in kernel: the counting program counts the PPPoE-framed flood exactly, the non-IP frames once, and hands none back', async (t: TestContext) => {
    if (!needRoot(t)) return;
    assert.ok(net, 'namespaces set up');
    const db = await recordFlood(['--count-in', 'kernel', '--max-names', '0']);
    assert.deepEqual(ipTable(db), EXPECTED);
    assertFlows(db);
    const s = sums(db);
    assert.deepEqual([s.ip_packets, s.non_ip, s.frames, s.ring_packets, s.ring_drops], [IP_PACKETS, NON_IP, IP_PACKETS + NON_IP, 0, 0]);
  });

  test('--ignore-file: the eBPF filter finds an address behind a 0x9100 tag and PPPoE and drops it as ignored', async (t: TestContext) => {
    if (!needRoot(t)) return;
    assert.ok(net, 'namespaces set up');
    const ignore = path.join(tmp(), 'ignore.txt');
    writeFileSync(ignore, `${S4_9100}/32\n${BAD_SRC}/32\n`);
    const db = await recordFlood(['--ignore-file', ignore]);
    const { [S4_9100]: _ignored, ...rest } = EXPECTED;
    assert.deepEqual(ipTable(db), { ...rest, [D4]: ip(0, 0, 1300, 1000 * 328 + 300 * 128) });
    const s = sums(db);
    // The unusable headers from an ignored source are still non-IP, not ignored (as in userspace).
    assert.deepEqual([s.filter_ignored, s.filter_non_ip, s.filter_passed, s.ring_drops], [200, NON_IP, IP_PACKETS - 200, 0]);
  });
});
