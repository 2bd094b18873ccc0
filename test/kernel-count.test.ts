/**
 * `record --pcap FILE --count-in kernel`: every Ethernet frame runs through the kernel's counting
 * program (ebpf/count.c) with BPF_PROG_TEST_RUN, and what its maps counted is recorded. Every
 * Ethernet capture of ../shared/pcaps must reproduce its expected JSON exactly this way, with and
 * without --flows; a full map folds into the overflow row with the totals balanced; interval
 * boundaries in packet time switch the maps with nothing of one interval in the next. Root only
 * (bpf()), like the other eBPF tests.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { needRoot, pcapsDir, queryJson, RECORDER, recorder, tmp } from './helpers';
import { generate } from './support/gen';

interface Expected {
  totals: Record<string, number>;
  link_types: Record<string, number>;
  hosts: Record<string, { tx_packets: number; tx_bytes: number; rx_packets: number; rx_bytes: number }>;
  flows: { src: string; dst: string; proto: number; sport: number; dport: number; packets: number; bytes: number }[];
}

const dir = pcapsDir();
const expected = (name: string) => JSON.parse(readFileSync(path.join(dir, 'expected', `${name}.json`), 'utf8')) as Expected;
const all = readdirSync(path.join(dir, 'expected')).map((f) => f.replace(/\.json$/, '')).sort();
const ethernet = all.filter((n) => Object.keys(expected(n).link_types).every((k) => k === 'LINKTYPE_ETHERNET (1)'));

test('the corpus has 30 Ethernet captures', () => assert.equal(ethernet.length, 30));

const flowKey = (f: Expected['flows'][number]) => `${f.src}|${f.dst}|${f.proto}|${f.sport}|${f.dport}`;

/** The batches' totals of a database, summed. */
function totals(db: string): Record<string, number> {
  const d = new Database(db, { readonly: true });
  try {
    return d
      .prepare(
        'select sum(frames) frames, sum(ip_packets) ip_packets, sum(non_ip) non_ip_frames, sum(ip_header_incomplete) ip_header_incomplete, sum(ipv4_packets) ipv4_packets, sum(ipv6_packets) ipv6_packets, sum(ip_bytes) ip_bytes, sum(ipv4_bytes) ipv4_bytes, sum(ipv6_bytes) ipv6_bytes, sum(fragments_first) fragments_first, sum(fragments_non_first) fragments_non_first, sum(ip_length_field_zero) ip_length_field_zero from batches',
      )
      .get() as Record<string, number>;
  } finally {
    d.close();
  }
}

for (const name of ethernet) {
  for (const flows of [true, false]) {
    test(`kernel count ${name}${flows ? ' --flows' : ''}`, (t) => {
      if (!needRoot(t)) return;
      const exp = expected(name);
      const db = path.join(tmp(), 'k.db');
      const r = recorder(['record', '--pcap', path.join(dir, name), '--db', db, '--count-in', 'kernel', '--quiet', ...(flows ? ['--flows'] : [])]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '', 'no warnings for a complete capture');

      const got = totals(db);
      for (const k of Object.keys(got)) assert.equal(got[k], exp.totals[k], `totals.${k}`);
      const ips = queryJson<Record<string, number | string | null>[]>(['--db', db, 'top', '--by', 'ip', '--all', '--limit', '0']);
      const want = Object.entries(exp.hosts)
        .map(([ip, h]) => ({ ip, ...h, packets: h.tx_packets + h.rx_packets, bytes: h.tx_bytes + h.rx_bytes }))
        .sort((a, b) => a.ip.localeCompare(b.ip));
      const counts = ips.map(({ local: _local, name: _name, ...c }) => c).sort((a, b) => String(a.ip).localeCompare(String(b.ip)));
      assert.deepEqual(counts, want);
      const named = queryJson<(Expected['flows'][number] & { src_name: string | null; dst_name: string | null })[]>(['--db', db, 'top', '--by', 'flow', '--all', '--limit', '0']);
      const fl = named.map(({ src_name: _s, dst_name: _d, ...flow }) => flow);
      const sortK = (a: Expected['flows'][number], b: Expected['flows'][number]) => flowKey(a).localeCompare(flowKey(b));
      assert.deepEqual([...fl].sort(sortK), flows ? [...exp.flows].sort(sortK) : []);
    });
  }
}

test('a replay stores where it counted: tc-query status says counted_in kernel or ring', (t) => {
  if (!needRoot(t)) return;
  for (const mode of ['kernel', 'ring']) {
    const db = path.join(tmp(), `${mode}.db`);
    const r = recorder(['record', '--pcap', path.join(dir, 'zeek_smtp.pcap'), '--db', db, '--count-in', mode, '--quiet']);
    assert.equal(r.status, 0, r.stderr);
    const s = queryJson<{ sessions: { counted_in: string }[] }>(['--db', db, 'status']);
    assert.deepEqual(s.sessions.map((x) => x.counted_in), [mode]);
  }
});

test('--count-in kernel refuses a capture that is not Ethernet before touching the database', (t) => {
  if (!needRoot(t)) return;
  const db = path.join(tmp(), 'raw.db');
  const r = recorder(['record', '--pcap', path.join(dir, 'ndpi_ocs_raw.pcap'), '--db', db, '--count-in', 'kernel', '--quiet']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /ndpi_ocs_raw\.pcap: link type 101 cannot be counted with --count-in kernel.*--count-in ring \[ERR_TC_BAD_OPTION\]/);
  assert.ok(!existsSync(db));
  // A pcapng file with one interface of another link type among Ethernet ones: refused as well.
  const r2 = recorder(['record', '--pcap', path.join(dir, 'libtrace_complex.pcapng'), '--db', db, '--count-in', 'kernel', '--quiet']);
  assert.notEqual(r2.status, 0);
  assert.match(r2.stderr, /link type 0 cannot be counted with --count-in kernel/);
});

test('live --count-in kernel on an interface without an Ethernet header is refused before the database is created; auto counts in the ring there and says why', (t) => {
  const db = path.join(tmp(), 'live.db');
  const bad = recorder(['record', '--pcap', path.join(dir, 'zeek_smtp.pcap'), '--db', db, '--count-in', 'bpf']);
  assert.notEqual(bad.status, 0);
  assert.equal(bad.stderr, "traffic-counter: error: option '--count-in <where>' argument 'bpf' is invalid. Allowed choices are kernel, ring, auto; see `traffic-counter record --help` [ERR_TC_USAGE]\n");
  if (!needRoot(t)) return;
  const ns = `tckc${process.pid}`;
  spawnSync('ip', ['netns', 'add', ns]);
  try {
    // A tun device: raw IP, no link header (ARPHRD_NONE).
    assert.equal(spawnSync('ip', ['netns', 'exec', ns, 'ip', 'tuntap', 'add', 'dev', 'tctun', 'mode', 'tun']).status, 0);
    spawnSync('ip', ['-n', ns, 'link', 'set', 'tctun', 'up']);
    const run = (countIn: string) => spawnSync('ip', ['netns', 'exec', ns, process.execPath, RECORDER, 'record', '--iface', 'tctun', '--db', db, '--count-in', countIn, '--interval-secs', '1'], { encoding: 'utf8', timeout: 3000, killSignal: 'SIGINT' });
    const r = run('kernel');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--count-in kernel: the counting program reads Ethernet frames and interface tctun has no Ethernet header; use --count-in ring/);
    assert.match(r.stderr, /ERR_TC_BAD_OPTION/);
    assert.ok(!existsSync(db));
    const auto = run('auto');
    assert.match(auto.stderr, /counted in the ring \(--count-in auto: the counting program reads Ethernet frames/);
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
});

test('--count-in kernel with a full map: keys fold into the overflow row, totals balance, as in userspace', (t) => {
  if (!needRoot(t)) return;
  const gnutella = path.join(dir, 'ndpi_gnutella.pcap');
  const exp = expected('ndpi_gnutella.pcap');
  const rows = (mode: string) => {
    const db = path.join(tmp(), `${mode}.db`);
    const r = recorder(['record', '--pcap', gnutella, '--db', db, '--flows', '--quiet', '--max-keys', '10', '--interval-secs', '86400', '--count-in', mode]);
    assert.equal(r.status, 0, r.stderr);
    const ips = queryJson<{ ip: string; tx_bytes: number; rx_bytes: number }[]>(['--db', db, 'top', '--all', '--limit', '0']);
    const flows = queryJson<{ bytes: number }[]>(['--db', db, 'top', '--all', '--by', 'flow', '--limit', '0']);
    const d = new Database(db, { readonly: true });
    const [ipo, flo] = d.prepare('select sum(ip_overflow_keys), sum(flow_overflow_keys) from batches').raw().get() as number[];
    d.close();
    return { ips, flows, ipo, flo };
  };
  const k = rows('kernel');
  assert.equal(k.ips.length, 11, '10 addresses and the overflow row');
  assert.ok(k.ips.some((r) => r.ip === 'overflow'));
  assert.equal(k.ips.reduce((s, r) => s + r.tx_bytes, 0), exp.totals.ip_bytes);
  assert.equal(k.ips.reduce((s, r) => s + r.rx_bytes, 0), exp.totals.ip_bytes);
  assert.equal(k.flows.length, 11);
  assert.equal(k.flows.reduce((s, r) => s + r.bytes, 0), exp.totals.ip_bytes);
  // The same first 10 flows as the userspace count, the same flow overflow row. The addresses
  // come from the flows the map kept and the frames of those it refused, so which 10 are kept
  // can differ from packet order's (as with several ring workers); their totals cannot.
  const ring = rows('ring');
  assert.deepEqual(k.flows, ring.flows);
  const sums = (xs: { tx_bytes: number; rx_bytes: number }[]) => [xs.reduce((s, r) => s + r.tx_bytes, 0), xs.reduce((s, r) => s + r.rx_bytes, 0)];
  assert.deepEqual(sums(k.ips), sums(ring.ips));
  // 521 addresses and 937 flows: about 511 and 927 overflowed (the kernel's own sketch).
  assert.ok(Math.abs(k.ipo - 511) < 30, `ip overflow estimate ${k.ipo}`);
  assert.ok(Math.abs(k.flo - 927) < 50, `flow overflow estimate ${k.flo}`);
});

test('--count-in kernel switches the maps at each interval boundary of packet time: every interval as userspace counts it', (t) => {
  if (!needRoot(t)) return;
  const work = tmp();
  const cap = path.join(work, 'g.pcap');
  // 40,000 packets over 23 s in 5 s intervals: 5 intervals, each boundary crossed mid-stream.
  generate(cap, { packets: 40_000, hosts: 300, flows: 900, seconds: 23, startSecs: 1_790_000_002 });
  const dump = (mode: string) => {
    const db = path.join(work, `${mode}.db`);
    const r = recorder(['record', '--pcap', cap, '--db', db, '--flows', '--quiet', '--count-in', mode]);
    assert.equal(r.status, 0, r.stderr);
    const d = new Database(db, { readonly: true });
    try {
      const batches = d.prepare('select start_ms, end_ms, frames, ip_packets, ip_bytes, ipv4_packets, ipv6_packets, non_ip, late, ip_rows, flow_rows from batches order by start_ms').all();
      const ips = d.prepare('select start_utc, ip, tx_packets, tx_bytes, rx_packets, rx_bytes from v_ip_deltas order by start_utc, ip').all();
      const flows = d.prepare('select start_utc, src, dst, proto, sport, dport, packets, bytes from v_flow_deltas order by start_utc, src, dst, proto, sport, dport').all();
      return { batches, ips, flows };
    } finally {
      d.close();
    }
  };
  const k = dump('kernel');
  assert.equal(k.batches.length, 5);
  assert.equal((k.batches as { frames: number }[]).reduce((s, b) => s + b.frames, 0), 40_000, 'every frame counted once');
  assert.deepEqual(k, dump('ring'));
});
