/**
 * Local and remote through the built CLIs. A generated capture replayed with --local-networks
 * (IPv4 and IPv6, nested and repeated networks, one host): the `local` field of every per-address
 * row equals an independent prefix match; `top --side local` and `--side remote` are exact and
 * complementary for --by ip|src|dst|flow|net|label and --proto; series in_bytes/out_bytes equal
 * the rx/tx bytes of that side's addresses step by step. Bad files name file:line; a missing
 * file, a --side typo and --side over a time without local networks are refused with what to do,
 * in text and json. Live, in a namespace pair: the interface's address is recorded as local, an
 * address added while recording is local from the time it was seen, and remote again once it is
 * removed.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { exited, needRoot, query, RECORDER, recorder, sh, sleep, spawnIn, tmp, waitForStderr } from './helpers';
import { generate } from './support/gen';
import { vethPair, type VethPair } from './support/netns';
import { parseAddr } from '../src/addr';

type Row = Record<string, unknown>;
const COUNTERS = ['tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes', 'packets', 'bytes'] as const;

let dir = '';
let db = ''; // the generated capture, replayed with --local-networks
let plain = ''; // the same capture without --local-networks
let mixed = ''; // one capture with local networks and one (an hour later) without
let nets = '';
const START = 1_790_000_000; // the generated capture's first second
const LATER = START + 3600;

/** The networks of the file (as an independent check reads them): IPv4, IPv6, nested, repeated, one host. */
const NETWORKS: [string, number][] = [
  ['192.168.0.0', 30],
  ['192.168.0.2', 31],
  ['2001:db8::c0a8:0', 125],
  ['10.1.0.64', 26],
  ['10.1.0.96', 27],
  ['10.1.0.100', 32],
];

/** Whether `ip` lies in one of NETWORKS: its leading bits compared as text, independent of tc-query's ranges. */
function isLocal(ip: string): boolean {
  const bits = (b: Uint8Array) => [...b].map((x) => x.toString(2).padStart(8, '0')).join('');
  const a = parseAddr(ip)!;
  return NETWORKS.some(([n, p]) => {
    const b = parseAddr(n)!;
    return b.length === a.length && bits(a).slice(0, p) === bits(b).slice(0, p);
  });
}

function json(args: string[]): Row[] {
  const r = query([...args, '--format', 'json']);
  if (r.status !== 0) throw new Error(`tc-query ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as Row[];
}

const totals = (rows: Row[], keys: readonly string[] = COUNTERS) => Object.fromEntries(keys.map((c) => [c, rows.reduce((a, r) => a + BigInt(r[c] as number), 0n)]));
const flowKey = (r: Row) => `${r.src}|${r.dst}|${r.proto}|${r.sport}|${r.dport}`;
const iso = (secs: number) => new Date(secs * 1000).toISOString();
/** A time as tc-query's json prints it: whole seconds without a fraction. */
const utc = (secs: number) => iso(secs).replace('.000Z', 'Z');

function replay(cap: string, file: string, extra: string[] = []): void {
  const r = recorder(['record', '--pcap', cap, '--db', file, '--flows', '--quiet', '--interval-secs', '1', ...extra]);
  assert.equal(r.status, 0, r.stderr);
}

before(() => {
  dir = tmp('tc-local-');
  const cap = path.join(dir, 'gen.pcap');
  generate(cap, { packets: 20_000, hosts: 300, flows: 900, seconds: 20, startSecs: START });
  nets = path.join(dir, 'local.txt');
  writeFileSync(
    nets,
    [
      '# this host',
      '192.168.0.0/30',
      '192.168.0.2/31   # inside the /30: counted once',
      '',
      '2001:db8::c0a8:0/125',
      '10.1.0.64/26',
      '10.1.0.96/27',
      '10.1.0.100',
      '10.1.0.64/26     # given twice',
    ].join('\n'),
  );
  db = path.join(dir, 'local.db');
  replay(cap, db, ['--local-networks', nets]);
  plain = path.join(dir, 'plain.db');
  replay(cap, plain);
  mixed = path.join(dir, 'mixed.db');
  const later = path.join(dir, 'later.pcap');
  generate(later, { packets: 2_000, hosts: 30, flows: 60, seconds: 10, startSecs: LATER });
  replay(cap, mixed, ['--local-networks', nets]);
  replay(later, mixed);
});

test('the local field of per-address rows: true in a local network (nested, repeated, one host, IPv6), false outside', () => {
  const ips = json(['--db', db, 'top', '--all', '--limit', '0']);
  assert.ok(ips.length > 300, `${ips.length} addresses`);
  assert.deepEqual(Object.keys(ips[0]), ['ip', ...COUNTERS, 'local', 'name']);
  for (const r of ips) assert.equal(r.local, isLocal(r.ip as string), r.ip as string);
  const local = new Map(ips.map((r) => [r.ip, r.local]));
  for (const [ip, want] of Object.entries({
    '192.168.0.1': true,
    '192.168.0.3': true,
    '192.168.0.4': false,
    '10.1.0.63': false,
    '10.1.0.65': true,
    '10.1.0.100': true,
    '10.1.0.127': true,
    '10.1.0.129': false,
    '2001:db8::c0a8:1': true,
    '2001:db8::a01:40': false,
  })) {
    assert.equal(local.get(ip), want, ip);
  }
  for (const by of ['src', 'dst']) for (const r of json(['--db', db, 'top', '--by', by, '--all', '--limit', '0'])) assert.equal(r.local, isLocal(r.ip as string), `${by} ${r.ip}`);
  // Shown in the table beside the address.
  const table = query(['--db', db, 'top', '--all', '--limit', '0']).stdout;
  assert.match(table, /│ ip +│ name +│ side +│/);
  assert.match(table, /│ 192\.168\.0\.1 +│ +│ local +│/);
  assert.match(table, /│ 192\.168\.0\.4 +│ +│ remote +│/);
  // No local networks for the window: null (json), empty (csv).
  for (const r of json(['--db', plain, 'top', '--all', '--limit', '0'])) assert.equal(r.local, null);
  assert.match(query(['--db', plain, 'top', '--all', '--format', 'csv']).stdout, /^ip,tx_packets,tx_bytes,rx_packets,rx_bytes,packets,bytes,local,name\n[^\n]*,\d+,,[^,\n]*\n/);
});

test('top --side local and --side remote: exactly the local and the other rows, their union every row', () => {
  const all = json(['--db', db, 'top', '--all', '--limit', '0']);
  const local = json(['--db', db, 'top', '--all', '--limit', '0', '--side', 'local']);
  const remote = json(['--db', db, 'top', '--all', '--limit', '0', '--side', 'remote']);
  assert.deepEqual(local, all.filter((r) => r.local === true));
  assert.deepEqual(remote, all.filter((r) => r.local === false));
  assert.ok(local.length > 60 && remote.length > 200, `${local.length} local, ${remote.length} remote`);
  const sum = (a: Row[], b: Row[]) => Object.fromEntries(COUNTERS.map((c) => [c, totals(a)[c] + totals(b)[c]]));
  assert.deepEqual(sum(local, remote), totals(all));
  // As sender and receiver.
  for (const by of ['src', 'dst']) {
    const rows = json(['--db', db, 'top', '--by', by, '--all', '--limit', '0']);
    assert.deepEqual(json(['--db', db, 'top', '--by', by, '--all', '--limit', '0', '--side', 'local']), rows.filter((r) => isLocal(r.ip as string)), by);
    assert.deepEqual(json(['--db', db, 'top', '--by', by, '--all', '--limit', '0', '--side', 'remote']), rows.filter((r) => !isLocal(r.ip as string)), by);
  }
  // --limit ranks within the side.
  assert.deepEqual(json(['--db', db, 'top', '--all', '--limit', '3', '--side', 'local']), local.slice(0, 3));
  const table = query(['--db', db, 'top', '--all', '--limit', '3', '--side', 'local']);
  assert.match(table.stdout, new RegExp(`3 of ${local.length} addresses`));
});

test('top --by flow --side: a flow is on the side of its source; local and remote flows make every flow', () => {
  const all = json(['--db', db, 'top', '--by', 'flow', '--all', '--limit', '0']);
  const local = json(['--db', db, 'top', '--by', 'flow', '--all', '--limit', '0', '--side', 'local']);
  const remote = json(['--db', db, 'top', '--by', 'flow', '--all', '--limit', '0', '--side', 'remote']);
  assert.deepEqual(local, all.filter((f) => isLocal(f.src as string)));
  assert.deepEqual(remote, all.filter((f) => !isLocal(f.src as string)));
  assert.ok(local.length > 0 && remote.length > 0);
  assert.equal(local.length + remote.length, all.length);
  assert.deepEqual(new Set([...local, ...remote].map(flowKey)), new Set(all.map(flowKey)));
  assert.deepEqual(Object.keys(local[0]), ['src', 'dst', 'proto', 'sport', 'dport', 'packets', 'bytes', 'src_name', 'dst_name']);
  // --proto answers from flow rows: the side's addresses of the flows of that protocol.
  const tcp = json(['--db', db, 'top', '--all', '--limit', '0', '--proto', 'tcp']);
  assert.deepEqual(json(['--db', db, 'top', '--all', '--limit', '0', '--proto', 'tcp', '--side', 'local']), tcp.filter((r) => isLocal(r.ip as string)));
  assert.deepEqual(json(['--db', db, 'top', '--all', '--limit', '0', '--proto', 'tcp', '--side', 'remote']), tcp.filter((r) => !isLocal(r.ip as string)));
});

test('top --by net and --by label --side: the groups of that side\'s addresses only', () => {
  const labels = path.join(dir, 'labels.txt');
  writeFileSync(labels, '10.1.0.0/16 remote-hosts\n192.168.0.0/24 lan\n2001:db8::/32 doc\n');
  const all = json(['--db', db, '--labels', labels, 'top', '--all', '--limit', '0']);
  for (const side of ['local', 'remote'] as const) {
    const mine = all.filter((r) => r.local === (side === 'local'));
    const byLabel = json(['--db', db, '--labels', labels, 'top', '--by', 'label', '--all', '--limit', '0', '--side', side]);
    const want = new Map<unknown, Row[]>();
    for (const r of mine) want.set(r.label, [...(want.get(r.label) ?? []), r]);
    assert.deepEqual(new Map(byLabel.map((r) => [r.label, totals([r])])), new Map([...want].map(([k, rs]) => [k, totals(rs)])), `label ${side}`);
    const byNet = json(['--db', db, 'top', '--by', 'net', '--v4-prefix', '26', '--all', '--limit', '0', '--side', side]);
    assert.deepEqual(totals(byNet), totals(mine), `net ${side}`);
  }
  // 10.1.0.64/26 is local as a whole: on the local side only.
  const nets = (side: string) => json(['--db', db, 'top', '--by', 'net', '--v4-prefix', '26', '--all', '--limit', '0', '--side', side]).map((r) => r.net);
  assert.ok(nets('local').includes('10.1.0.64/26'));
  assert.ok(!nets('remote').includes('10.1.0.64/26'));
  assert.ok(nets('remote').includes('10.1.0.0/26'));
});

/** Per step of `stepMs`: the rx and tx bytes of the addresses `pick` chooses, from the interval rows. */
function stepSums(file: string, stepMs: number, pick: (ip: string) => boolean): Map<number, { rx: bigint; tx: bigint }> {
  const r = query(['--db', file, 'sql', 'select epoch_ms(start) as t, ip, tx_bytes, rx_bytes from ip_deltas', '--format', 'json']);
  assert.equal(r.status, 0, r.stderr);
  const out = new Map<number, { rx: bigint; tx: bigint }>();
  for (const row of JSON.parse(r.stdout) as { t: number; ip: string; tx_bytes: number; rx_bytes: number }[]) {
    if (!pick(row.ip)) continue;
    const step = Math.floor(row.t / stepMs) * stepMs;
    const s = out.get(step) ?? { rx: 0n, tx: 0n };
    s.rx += BigInt(row.rx_bytes);
    s.tx += BigInt(row.tx_bytes);
    out.set(step, s);
  }
  return out;
}

test('series --side: in_bytes and out_bytes are the bytes received and sent by that side\'s addresses, step by step', () => {
  const window = ['--since', iso(START), '--until', iso(START + 20)];
  const plainSeries = json(['--db', db, 'series', ...window, '--step', '5s']);
  for (const side of ['local', 'remote'] as const) {
    const rows = json(['--db', db, 'series', ...window, '--step', '5s', '--side', side]);
    assert.deepEqual(Object.keys(rows[0]), ['start', 'end', 'packets', 'bytes', 'in_bytes', 'out_bytes']);
    // The existing fields are as they were.
    assert.deepEqual(rows.map(({ in_bytes: _i, out_bytes: _o, ...r }) => r), plainSeries);
    const want = stepSums(db, 5000, (ip) => ip !== 'overflow' && isLocal(ip) === (side === 'local'));
    assert.ok(want.size >= 4);
    for (const r of rows) {
      const w = want.get(Date.parse(r.start as string)) ?? { rx: 0n, tx: 0n };
      assert.equal(BigInt(r.in_bytes as number), w.rx, `${side} in ${r.start}`);
      assert.equal(BigInt(r.out_bytes as number), w.tx, `${side} out ${r.start}`);
    }
    // The whole window's in and out equal the side's rx and tx (the networks do not change in it).
    const top = json(['--db', db, 'top', ...window, '--limit', '0', '--side', side]);
    assert.equal(totals(rows, ['in_bytes'])['in_bytes'], totals(top)['rx_bytes']);
    assert.equal(totals(rows, ['out_bytes'])['out_bytes'], totals(top)['tx_bytes']);
  }
  // With an address: its own traffic, and in/out when it is on the side asked for.
  const one = json(['--db', db, 'series', ...window, '--step', '5s', '--ip', '192.168.0.1', '--side', 'local']);
  assert.deepEqual(Object.keys(one[0]), ['start', 'end', 'packets', 'bytes', 'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes', 'in_bytes', 'out_bytes']);
  for (const r of one) assert.deepEqual([r.in_bytes, r.out_bytes], [r.rx_bytes, r.tx_bytes]);
  for (const r of json(['--db', db, 'series', ...window, '--step', '5s', '--ip', '192.168.0.1', '--side', 'remote'])) assert.deepEqual([r.in_bytes, r.out_bytes], [0, 0]);
  // A step outside every session's networks (before and after the capture) has no side: null.
  const around = json(['--db', db, 'series', '--since', iso(START - 10), '--until', iso(START + 30), '--step', '5s', '--side', 'local']);
  assert.deepEqual(around.map((r) => r.in_bytes === null), [true, true, false, false, false, false, true, true]);
  assert.ok(around.every((r) => (r.in_bytes === null) === (r.out_bytes === null)));
  // The table shows them.
  const table = query(['--db', db, 'series', ...window, '--step', '5s', '--side', 'local']).stdout;
  assert.match(table, /│ start +│ +bytes │ +pkts │ +bit\/s │ local in │ local out │/);
});

test('a window of a session without local networks: --side is refused with what to do, in text and json; the local field is null', () => {
  const later = ['--since', iso(LATER - 60), '--until', iso(LATER + 60)];
  for (const [cmd, file, window] of [['top', plain, ['--all']], ['series', plain, ['--all', '--step', '1h']], ['top', mixed, later], ['series', mixed, later]] as [string, string, string[]][]) {
    const what = `${cmd} ${path.basename(file)} ${window.join(' ')}`;
    const t = query(['--db', file, cmd, ...window, '--side', 'local']);
    assert.equal(t.status, 1, what);
    assert.equal(t.stdout, '', what);
    assert.match(t.stderr, /^tc-query: error: --side local: the file has no local networks for \S+ to \S+ \(.*\); record them with `traffic-counter record --local-networks FILE` .*\n$/, what);
    const j = query(['--db', file, cmd, ...window, '--side', 'remote', '--format', 'json']);
    assert.equal(j.status, 1, what);
    const doc = JSON.parse(j.stdout) as { error: { message: string; code: string } };
    assert.equal(doc.error.code, 'ERR_TC_NO_LOCAL_NETWORKS', what);
    assert.match(doc.error.message, /^--side remote: the file has no local networks for .*--local-networks FILE/, what);
  }
  for (const r of json(['--db', mixed, 'top', ...later, '--limit', '0'])) assert.equal(r.local, null);
  // The session with networks still answers for its own time; over both, the others' intervals are said.
  assert.deepEqual(json(['--db', mixed, 'top', '--since', iso(START), '--until', iso(START + 30), '--limit', '0', '--side', 'local']), json(['--db', db, 'top', '--all', '--limit', '0', '--side', 'local']));
  const both = query(['--db', mixed, 'top', '--all', '--side', 'local', '--format', 'json']);
  assert.equal(both.status, 0, both.stderr);
  assert.match(both.stderr, /tc-query: \d+ intervals of the window's [\d,]+ intervals come from sessions without local networks/);
  // An empty window is answered by its note, not refused.
  const empty = query(['--db', plain, 'top', '--since', '2001-01-01', '--until', '2001-01-02', '--side', 'local', '--format', 'json']);
  assert.equal(empty.status, 0, empty.stderr);
  assert.equal(empty.stdout, '[]\n');
});

test('a --side typo is a usage error naming the choices, in text and json', () => {
  for (const cmd of ['top', 'series']) {
    const t = query(['--db', db, cmd, '--all', '--side', 'lokal']);
    assert.equal(t.status, 1);
    assert.match(t.stderr, new RegExp(`^tc-query: error: option '--side <side>' argument 'lokal' is invalid\\. Allowed choices are local, remote; see \`tc-query ${cmd} --help\`\\n$`));
    const j = query(['--db', db, cmd, '--all', '--side', 'lokal', '--format', 'json']);
    assert.equal(j.status, 1);
    assert.deepEqual(JSON.parse(j.stdout), { error: { message: "option '--side <side>' argument 'lokal' is invalid. Allowed choices are local, remote", code: 'ERR_TC_USAGE' } });
  }
});

test('bad --local-networks files name file:line; a missing file says what to do; nothing is recorded; text and json', () => {
  const cap = path.join(dir, 'gen.pcap');
  const bad = path.join(dir, 'bad.txt');
  const cases: [string, RegExp][] = [
    ['10.0.0.0/8\n\n10.1.0.0/16 office\n', /bad\.txt:3: "10\.1\.0\.0\/16 office" is more than one CIDR; each line is one CIDR \(e\.g\. "192\.168\.1\.0\/24", "2001:db8:1::\/48" or one address\); # starts a comment/],
    ['# x\nten.0.0.0/8\n', /bad\.txt:2: "ten\.0\.0\.0\/8" is not a CIDR/],
    ['10.0.0.0/33\n', /bad\.txt:1: "10\.0\.0\.0\/33" is not a CIDR/],
    ['2001:db8::/200\n', /bad\.txt:1: "2001:db8::\/200" is not a CIDR/],
    ['10.1.2.3/16\n', /bad\.txt:1: 10\.1\.2\.3\/16 has bits set past its \/16; write the network, 10\.1\.0\.0\/16/],
  ];
  for (const [text, msg] of cases) {
    writeFileSync(bad, text);
    const out = path.join(tmp(), 'x.db');
    const t = recorder(['record', '--pcap', cap, '--db', out, '--local-networks', bad]);
    assert.equal(t.status, 1, text);
    assert.match(t.stderr, new RegExp(`^traffic-counter: error: .*${msg.source}.* \\[ERR_TC_LOCAL_NETWORKS\\]\\n$`), text);
    assert.equal(existsSync(out), false, 'checked before the database is touched');
    const j = recorder(['record', '--pcap', cap, '--db', out, '--local-networks', bad, '--log-format', 'json']);
    assert.equal(j.status, 1);
    const doc = JSON.parse(j.stdout) as { error: { message: string; code: string } };
    assert.equal(doc.error.code, 'ERR_TC_LOCAL_NETWORKS');
    assert.match(doc.error.message, msg);
  }
  const missing = path.join(dir, 'none.txt');
  const m = recorder(['record', '--pcap', cap, '--db', path.join(tmp(), 'x.db'), '--local-networks', missing, '--log-format', 'json']);
  assert.equal(m.status, 1);
  assert.deepEqual(JSON.parse(m.stdout), {
    error: {
      message: `cannot read local networks file ${missing}: no such file; give --local-networks FILE (one CIDR a line, e.g. "192.168.1.0/24" or "2001:db8:1::/48"; # starts a comment)`,
      code: 'ERR_TC_LOCAL_NETWORKS',
    },
  });
});

test('status and sql show each session\'s local networks; --replace records a capture again with the networks given now', () => {
  const st = JSON.parse(query(['--db', mixed, 'status', '--format', 'json']).stdout) as { sessions: { local_networks: Row[] }[] };
  assert.equal(st.sessions.length, 2);
  assert.deepEqual(st.sessions[0].local_networks.map((n) => n.network), ['192.168.0.0/30', '192.168.0.2/31', '2001:db8::c0a8:0/125', '10.1.0.64/26', '10.1.0.96/27', '10.1.0.100/32']);
  const n0 = st.sessions[0].local_networks[0];
  assert.deepEqual(n0, { network: '192.168.0.0/30', address: null, origin: 'file', source: nets, from: utc(START), to: utc(START + 20) });
  assert.deepEqual(st.sessions[1].local_networks, []);
  const table = query(['--db', mixed, 'status']).stdout;
  assert.match(table, new RegExp(`local networks from ${nets.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: 192\\.168\\.0\\.0/30, 192\\.168\\.0\\.2/31, 2001:db8::c0a8:0/125, 10\\.1\\.0\\.64/26, 10\\.1\\.0\\.96/27, 10\\.1\\.0\\.100/32`));
  assert.match(table, /no local networks/);
  const sql = json(['--db', mixed, 'sql', 'select session, network, origin, "from", "to" from local_networks order by session, network']);
  assert.equal(sql.length, 6);
  assert.deepEqual(sql[0], { session: 1, network: '10.1.0.100/32', origin: 'file', from: iso(START), to: iso(START + 20) });
  // Replaced with another file: the new networks only.
  const copy = path.join(tmp(), 'r.db');
  const cap = path.join(dir, 'gen.pcap');
  replay(cap, copy, ['--local-networks', nets]);
  const other = path.join(dir, 'other.txt');
  writeFileSync(other, '192.168.0.4\n');
  replay(cap, copy, ['--local-networks', other, '--replace']);
  const local = json(['--db', copy, 'top', '--all', '--limit', '0', '--side', 'local']);
  assert.deepEqual(local.map((r) => r.ip), ['192.168.0.4']);
  assert.deepEqual(json(['--db', copy, 'sql', 'select network from local_networks']), [{ network: '192.168.0.4/32' }]);
});

describe('live: the interface\'s networks as they change', () => {
  const N = `tcl${process.pid}`;
  const MAC_A = '02:00:00:00:66:01';
  const MAC_B = '02:00:00:00:66:02';
  let pair: VethPair | undefined;
  let sink: ChildProcess | undefined;
  const UDP = path.join(__dirname, 'fixtures', 'udp.js');
  const send = (target: string, count: number) => sh('ip', ['netns', 'exec', pair!.a, process.execPath, UDP, 'send', target, '9000', '40000', String(count), '200']);
  /** Waits until the next whole second (interval boundary at --interval-secs 1) and returns it, ms. */
  const nextSecond = async () => {
    const b = Math.ceil(Date.now() / 1000) * 1000;
    await sleep(b - Date.now() + 100);
    return b;
  };

  before(async () => {
    if (process.getuid?.() !== 0) return;
    pair = vethPair(N, `tl${process.pid % 10000}`, { a: MAC_A, b: MAC_B });
    sh('ip', ['-n', pair.a, 'addr', 'add', '10.66.0.1/24', 'dev', pair.devA]);
    sh('ip', ['-n', pair.b, 'addr', 'add', '10.66.0.2/24', 'dev', pair.devB]);
    // Static neighbours and a route to the address B gets later: only the test's datagrams.
    sh('ip', ['-n', pair.a, 'neigh', 'replace', '10.66.0.2', 'lladdr', MAC_B, 'dev', pair.devA, 'nud', 'permanent']);
    sh('ip', ['-n', pair.a, 'route', 'add', '10.99.0.0/24', 'dev', pair.devA]);
    sh('ip', ['-n', pair.a, 'neigh', 'replace', '10.99.0.1', 'lladdr', MAC_B, 'dev', pair.devA, 'nud', 'permanent']);
    sh('ip', ['-n', pair.b, 'neigh', 'replace', '10.66.0.1', 'lladdr', MAC_A, 'dev', pair.devB, 'nud', 'permanent']);
    sink = spawnIn(pair.b, process.execPath, [UDP, 'sink', '9000']);
    await new Promise<void>((res) => sink!.stdout!.once('data', () => res()));
  });
  after(() => {
    sink?.kill('SIGTERM');
    pair?.remove();
  });

  test('the interface\'s address is local from the start; an address added while recording is local from when it was seen, and remote once removed', async (t: TestContext) => {
    if (!needRoot(t)) return;
    const p = pair!;
    const file = path.join(tmp(), 'live.db');
    const child = spawnIn(p.b, process.execPath, [RECORDER, 'record', '--iface', p.devB, '--db', file, '--interval-secs', '1', '--workers', '1']);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    // A line the recorder may have printed already, or will.
    const logged = (re: RegExp) => (re.test(stderr) ? Promise.resolve() : waitForStderr(child, re).then(() => undefined));
    try {
      await logged(/recording /);
      assert.match(stderr, new RegExp(`; local networks 10\\.66\\.0\\.0/24 \\(10\\.66\\.0\\.2\\) of ${p.devB}\\n`));
      const started = Date.now();
      send('10.66.0.2', 10);
      send('10.99.0.1', 20); // not B's address yet: captured, then dropped by B's kernel
      const added = await nextSecond();
      const tAdd = Date.now();
      sh('ip', ['-n', p.b, 'addr', 'add', '10.99.0.1/24', 'dev', p.devB]);
      await logged(new RegExp(`local network added: 10\\.99\\.0\\.0/24 \\(10\\.99\\.0\\.1\\) on ${p.devB}`));
      const seenAdd = Date.now();
      send('10.99.0.1', 30);
      const removed = await nextSecond();
      const tDel = Date.now();
      sh('ip', ['-n', p.b, 'addr', 'del', '10.99.0.1/24', 'dev', p.devB]);
      await logged(new RegExp(`local network removed: 10\\.99\\.0\\.0/24 \\(10\\.99\\.0\\.1\\) on ${p.devB}`));
      const seenDel = Date.now();
      const after = await nextSecond();
      send('10.99.0.1', 40);
      await sleep(1500);
      child.kill('SIGINT');
      assert.equal(await exited(child, 10_000), 0, stderr);

      const st = JSON.parse(query(['--db', file, 'status', '--format', 'json']).stdout) as { sessions: { local_networks: { network: string; address: string; origin: string; source: string; from: string; to: string | null }[] }[] };
      const rows = st.sessions[0].local_networks;
      assert.deepEqual(rows.map((n) => [n.network, n.address, n.origin, n.source]), [
        ['10.66.0.0/24', '10.66.0.2', 'interface', p.devB],
        ['10.99.0.0/24', '10.99.0.1', 'interface', p.devB],
      ]);
      assert.ok(Date.parse(rows[0].from) <= started, `${rows[0].from}: seen at the start`);
      assert.ok(Date.parse(rows[1].from) >= tAdd && Date.parse(rows[1].from) <= seenAdd, `added ${rows[1].from}, between ${iso(tAdd / 1000)} and ${iso(seenAdd / 1000)}`);
      assert.ok(Date.parse(rows[1].to!) >= tDel && Date.parse(rows[1].to!) <= seenDel, `removed ${rows[1].to}`);
      assert.ok(rows[0].to !== null && Date.parse(rows[0].to) >= seenDel, 'the start address is local to the end');

      const size = 228; // 200 bytes of payload + UDP and IPv4 headers
      const at = (since: number | undefined, until: number | undefined) => {
        const w = [...(since ? ['--since', iso(since / 1000)] : ['--since', '0']), ...(until ? ['--until', iso(until / 1000)] : [])];
        return new Map(json(['--db', file, 'top', ...w, '--limit', '0']).map((r) => [r.ip, r]));
      };
      // Before it was added: remote; while it was there: local; after: remote again.
      const before = at(undefined, added);
      assert.deepEqual([before.get('10.99.0.1')?.local, before.get('10.99.0.1')?.rx_bytes], [false, 20 * size]);
      assert.deepEqual([before.get('10.66.0.2')?.local, before.get('10.66.0.1')?.local], [true, true], 'the interface\'s network: B and its on-link peer');
      const during = at(added, removed);
      assert.deepEqual([during.get('10.99.0.1')?.local, during.get('10.99.0.1')?.rx_bytes], [true, 30 * size]);
      const later = at(after, undefined);
      assert.deepEqual([later.get('10.99.0.1')?.local, later.get('10.99.0.1')?.rx_bytes], [false, 40 * size]);
      // Over the whole recording the address was local at some time: local.
      const all = at(undefined, undefined);
      assert.deepEqual([all.get('10.99.0.1')?.local, all.get('10.99.0.1')?.rx_bytes], [true, 90 * size]);
      assert.deepEqual(json(['--db', file, 'top', '--all', '--side', 'remote']), []);

      // Step by step: 10.99.0.1's bytes count as received locally only while it was B's.
      const series = json(['--db', file, 'series', '--all', '--step', '1s', '--side', 'local']);
      const inBytes = series.reduce((a, r) => a + Number(r.in_bytes ?? 0), 0);
      const outBytes = series.reduce((a, r) => a + Number(r.out_bytes ?? 0), 0);
      assert.equal(inBytes, (10 + 30) * size, 'received by 10.66.0.2, and by 10.99.0.1 while it was local');
      assert.equal(outBytes, (10 + 20 + 30 + 40) * size, 'sent by 10.66.0.1, local the whole time');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  test('--local-networks FILE replaces the interface\'s networks live; SIGHUP reads it again, a bad file keeps the networks', async (t: TestContext) => {
    if (!needRoot(t)) return;
    const p = pair!;
    const d = tmp();
    const file = path.join(d, 'live.db');
    const list = path.join(d, 'mine.txt');
    writeFileSync(list, '10.66.0.2   # B alone\n');
    const child = spawnIn(p.b, process.execPath, [RECORDER, 'record', '--iface', p.devB, '--db', file, '--interval-secs', '1', '--workers', '1', '--local-networks', list]);
    let stderr = '';
    child.stderr!.on('data', (x: Buffer) => (stderr += x.toString()));
    const logged = (re: RegExp) => (re.test(stderr) ? Promise.resolve() : waitForStderr(child, re).then(() => undefined));
    try {
      await logged(/recording /);
      assert.match(stderr, new RegExp(`; local networks 10\\.66\\.0\\.2/32 from ${list.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\n`));
      send('10.66.0.2', 10);
      writeFileSync(list, '10.66.0.2\n10.99.0.0/24\n');
      const tHup = Date.now();
      child.kill('SIGHUP');
      await logged(/SIGHUP: .*mine\.txt reloaded \(1 change\)/);
      assert.match(stderr, /local network added: 10\.99\.0\.0\/24 \(/);
      writeFileSync(list, '10.99.0.0/33\n');
      child.kill('SIGHUP');
      await logged(/SIGHUP: reload failed, keeping the previous local networks: .*mine\.txt:1: "10\.99\.0\.0\/33" is not a CIDR/);
      await sleep(1200);
      child.kill('SIGINT');
      assert.equal(await exited(child, 10_000), 0, stderr);
      const st = JSON.parse(query(['--db', file, 'status', '--format', 'json']).stdout) as { sessions: { local_networks: { network: string; address: string | null; origin: string; from: string; to: string | null }[] }[] };
      const rows = st.sessions[0].local_networks;
      assert.deepEqual(rows.map((n) => [n.network, n.address, n.origin]), [
        ['10.66.0.2/32', null, 'file'],
        ['10.99.0.0/24', null, 'file'],
      ]);
      assert.ok(Date.parse(rows[1].from) >= tHup, 'the reloaded network from the reload');
      assert.ok(rows.every((n) => n.to !== null), 'closed when the session stopped');
      // The interface's own network is not stored: its peer is remote.
      const ips = new Map(json(['--db', file, 'top', '--all']).map((r) => [r.ip, r.local]));
      assert.deepEqual([ips.get('10.66.0.2'), ips.get('10.66.0.1')], [true, false]);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
