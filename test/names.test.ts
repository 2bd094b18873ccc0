/**
 * Names in the database and in tc-query, driven by synthetic batches (the shape the engine
 * hands the recorder): a pair (address, name, source) per session with its first and last
 * interval; the name of an address is the one seen last up to a window's end, the last in
 * capture order within an interval; `--by name` totals equal `--by ip`; `names --ip/--name`
 * (wildcards too) and every error they give; `sql` names and labels; `export --what names`
 * and the name columns of exports; rebuild and a replaced session keep names right, a failed
 * write group leaves none behind; retention and the disk budget drop a name only with its
 * address's last traffic, and a flood of names keeps within the budget. And end to end: a replay
 * of the generated capture of names (test/support/names-pcap.ts) gives exactly its names through
 * top, flows, names, sql and status; live in a namespace pair with the eBPF filter on, a DNS
 * answer and a ClientHello, then traffic to the addresses they name: top shows the names.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { exited, needRoot, query, queryJson, RECORDER, recorder, sleep, spawnIn, tmp, waitForStderr } from './helpers';
import { sendFrames, vethPair } from './support/netns';
import { DST_MAC, SRC_MAC } from './fixtures/frames';
import { makeBatch, traffic, withNames, type NameEntry } from './support/synth';
import { A, clientHello, dnsResponse, tcp, udp, writeNamesPcap } from './support/names-pcap';
import { openForWrite, type WriteDb } from '../src/recorder/write/db';
import { BatchSink } from '../src/recorder/write/sink';
import { deleteSession } from '../src/recorder/write/writer';
import { Logger } from '../src/recorder/observe/log';
import { Metrics } from '../src/recorder/observe/metrics';
import { DEFAULT_RETENTION, Pruner, type Retention } from '../src/recorder/upkeep/retention';
import { DAY_MS, HOUR_MS } from '../src/schema/levels';
import type { Batch } from '../src/native';

const MiB = 2 ** 20;
const T0 = Date.UTC(2026, 10, 2, 10, 0);
const S = 5000;
const COUNTERS = ['tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes', 'packets', 'bytes'] as const;
type Row = Record<string, unknown>;

interface Recording {
  kind?: 'live' | 'replay';
  key?: string;
  retention?: Retention;
  maxDbBytes?: number;
  budgetEstimateScale?: number;
}

function sinkOn(db: WriteDb, file: string, o: Recording = {}, metrics = new Metrics(file)): BatchSink {
  return new BatchSink({
    db,
    spec: { key: o.key ?? `synth:${file}`, kind: o.kind ?? 'replay', source: 'synth', intervalMs: S, flows: true, options: {} },
    retention: o.retention ?? DEFAULT_RETENTION,
    queueMax: 1e9,
    maxDbBytes: o.maxDbBytes,
    budgetEstimateScale: o.budgetEstimateScale,
    log: new Logger('text'),
    metrics,
    checkpointThread: false,
  });
}

/** Writes the batches as one session, one write group each (as live capture at its own pace), and closes it. */
async function record(file: string, batches: Batch[], o: Recording = {}): Promise<Metrics> {
  const db = await openForWrite(file);
  const metrics = new Metrics(file);
  const sink = sinkOn(db, file, o, metrics);
  try {
    for (const b of batches) {
      await sink.write(b);
      await sink.idle();
    }
    await sink.close(Date.now() + 60_000);
  } finally {
    db.sqlite.close();
  }
  return metrics;
}

function json(args: string[]): Row[] {
  return queryJson<Row[]>(args);
}

function sql<T = Row>(file: string, text: string, ...params: unknown[]): T[] {
  const d = new Database(file, { readonly: true });
  try {
    return d.prepare(text).all(...params) as T[];
  } finally {
    d.close();
  }
}

const names = (file: string) => sql<{ ip: string; name: string; source: string; first_utc: string; last_utc: string; session_id: number }>(file, 'select * from v_names order by ip, name, source, session_id');
const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');

describe('stored names and the name of an address at a time', () => {
  const file = path.join(tmp(), 'names.db');
  const A = '10.0.0.1';
  const B = '10.0.0.2';
  const host = (ip: string, bytes = 1000) => ({ ip, tx: bytes, rx: bytes });
  // A: x then y in the first interval (y last), y then x in the second (x last), then x alone
  // four intervals later; B: an address without a name; C: a name without traffic; D: IPv6 by SNI.
  const batches = [
    traffic(T0, S, [host(A), host(B, 500)], [], [{ ip: A, name: 'x.example.com' }, { ip: '10.0.0.3', name: 'c.example.com' }, { ip: A, name: 'y.example.com' }]),
    traffic(T0 + S, S, [host(A)], [], [{ ip: A, name: 'y.example.com' }, { ip: A, name: 'x.example.com' }, { ip: '2001:db8::1', name: 'v6.example.org', source: 'sni' }]),
    traffic(T0 + 2 * S, S, [host(A), host('2001:db8::1', 300)]),
    traffic(T0 + 5 * S, S, [host(A)], [], [{ ip: A, name: 'x.example.com', source: 'sni' }]),
  ];
  const recorded = record(file, batches);

  test('a row per session, address, name and source, with the first and last interval it was seen in', async () => {
    await recorded;
    assert.deepEqual(
      names(file).map((n) => [n.ip, n.name, n.source, n.first_utc, n.last_utc]),
      [
        ['10.0.0.1', 'x.example.com', 'dns', '2026-11-02T10:00:00.000Z', '2026-11-02T10:00:05.000Z'],
        ['10.0.0.1', 'x.example.com', 'sni', '2026-11-02T10:00:25.000Z', '2026-11-02T10:00:25.000Z'],
        ['10.0.0.1', 'y.example.com', 'dns', '2026-11-02T10:00:00.000Z', '2026-11-02T10:00:05.000Z'],
        ['10.0.0.3', 'c.example.com', 'dns', '2026-11-02T10:00:00.000Z', '2026-11-02T10:00:00.000Z'],
        ['2001:db8::1', 'v6.example.org', 'sni', '2026-11-02T10:00:05.000Z', '2026-11-02T10:00:05.000Z'],
      ],
    );
    // The address of a name without traffic is in the dictionary; each name once.
    assert.deepEqual(sql(file, 'select count(*) as n from addresses')[0], { n: 4 });
    assert.deepEqual(sql(file, 'select count(*) as n from hostnames')[0], { n: 4 });
  });

  test('top --by ip: the name seen last up to the end of the window, the last in capture order within an interval', async () => {
    await recorded;
    const nameOf = (args: string[], ip = A) => json(['--db', file, 'top', ...args]).find((r) => r.ip === ip)?.name;
    assert.equal(nameOf(['--all']), 'x.example.com');
    // Up to the end of the first interval: y came after x in it (both were seen again later:
    // a pair seen both before and after the end counts as seen at the end, the one first seen
    // latest winning; x and y were first seen in the same interval, so the name order decides).
    assert.equal(nameOf(['--since', iso(T0), '--until', iso(T0 + S)]), 'x.example.com');
    // Up to the end of the second interval: exact, every sighting of y and the dns x is in it, x last.
    assert.equal(nameOf(['--since', iso(T0), '--until', iso(T0 + 2 * S)]), 'x.example.com');
    // A window after the pair's last sighting: the names seen before the window count.
    assert.equal(nameOf(['--since', iso(T0 + 2 * S), '--until', iso(T0 + 3 * S)]), 'x.example.com');
    assert.equal(nameOf(['--all'], '2001:db8::1'), 'v6.example.org');
    assert.equal(nameOf(['--all'], B), null);
    // The table shows the name beside the address.
    const t = query(['--db', file, 'top', '--all']);
    assert.match(t.stdout, /│ ip +│ name +│ side │ tx pkts/);
    assert.match(t.stdout, /│ 10\.0\.0\.1 +│ x\.example\.com +│/);
  });

  test('the last in capture order decides within an interval, and a window ending before a sighting does not see it', async () => {
    const f = path.join(tmp(), 'order.db');
    await record(f, [
      traffic(T0, S, [host(A)], [], [{ ip: A, name: 'first.test' }, { ip: A, name: 'second.test' }]),
      traffic(T0 + S, S, [host(A)]),
      traffic(T0 + 2 * S, S, [host(A)], [], [{ ip: A, name: 'third.test' }]),
    ]);
    const nameOf = (until: number) => json(['--db', f, 'top', '--since', iso(T0), '--until', iso(until)])[0].name;
    assert.equal(nameOf(T0 + S), 'second.test');
    assert.equal(nameOf(T0 + 2 * S), 'second.test');
    assert.equal(nameOf(T0 + 3 * S), 'third.test');
    const g = path.join(tmp(), 'order2.db');
    await record(g, [traffic(T0, S, [host(A)], [], [{ ip: A, name: 'second.test' }, { ip: A, name: 'first.test' }])]);
    assert.equal(json(['--db', g, 'top', '--all'])[0].name, 'first.test');
  });

  test('--by name: rows name and the --by ip counters; its totals equal --by ip, an address without a name under null', async () => {
    await recorded;
    for (const w of [['--all'], ['--since', iso(T0), '--until', iso(T0 + S)]]) {
      const ips = json(['--db', file, 'top', '--limit', '0', ...w]);
      const byName = json(['--db', file, 'top', '--by', 'name', '--limit', '0', ...w]);
      assert.deepEqual(Object.keys(byName[0]), ['name', ...COUNTERS]);
      const want = new Map<unknown, Record<string, bigint>>();
      for (const r of ips) {
        const sums = want.get(r.name) ?? Object.fromEntries(COUNTERS.map((c) => [c, 0n]));
        for (const c of COUNTERS) sums[c] += BigInt(r[c] as number);
        want.set(r.name, sums);
      }
      assert.deepEqual(new Map(byName.map((r) => [r.name, Object.fromEntries(COUNTERS.map((c) => [c, BigInt(r[c] as number)]))])), want, w.join(' '));
    }
    const t = query(['--db', file, 'top', '--by', 'name', '--all']);
    assert.match(t.stdout, /│ \(no name\) +│/);
  });

  test('names --ip: every name of the address; --name: every address of the name; *.example.com: the names below it', async () => {
    await recorded;
    const rows = json(['--db', file, 'names', '--ip', A]);
    assert.deepEqual(rows, [
      { ip: A, name: 'x.example.com', source: 'sni', first: '2026-11-02T10:00:25Z', last: '2026-11-02T10:00:25Z' },
      { ip: A, name: 'x.example.com', source: 'dns', first: '2026-11-02T10:00:00Z', last: '2026-11-02T10:00:05Z' },
      { ip: A, name: 'y.example.com', source: 'dns', first: '2026-11-02T10:00:00Z', last: '2026-11-02T10:00:05Z' },
    ]);
    assert.deepEqual(json(['--db', file, 'names', '--name', 'V6.Example.org.']).map((r) => [r.ip, r.source]), [['2001:db8::1', 'sni']]);
    assert.deepEqual(
      json(['--db', file, 'names', '--name', '*.example.com']).map((r) => `${r.ip} ${r.name}`),
      ['10.0.0.1 x.example.com', '10.0.0.1 x.example.com', '10.0.0.1 y.example.com', '10.0.0.3 c.example.com'],
    );
    assert.deepEqual(json(['--db', file, 'names', '--name', '*.com']).length, 4);
    assert.deepEqual(json(['--db', file, 'names', '--name', 'example.com']), [], 'a name is not the names below it');
    // A window holds the pairs seen in it (first before its end, last at or after its start).
    assert.deepEqual(json(['--db', file, 'names', '--ip', A, '--since', iso(T0 + 3 * S), '--until', iso(T0 + 6 * S)]).map((r) => r.source), ['sni']);
    const t = query(['--db', file, 'names', '--ip', A]);
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /│ ip +│ name +│ source │ first +│ last +│\n│ 10\.0\.0\.1 │ x\.example\.com │ sni +│ 2026-11-02T10:00:25Z │/);
    assert.match(t.stdout, /\n3 names; /);
    const csv = query(['--db', file, 'names', '--name', 'c.example.com', '--format', 'csv']);
    assert.equal(csv.stdout, 'ip,name,source,first,last\n10.0.0.3,c.example.com,dns,2026-11-02T10:00:00Z,2026-11-02T10:00:00Z\n');
    const tz = query(['--db', file, 'names', '--name', 'c.example.com', '--tz', '+02:00']);
    assert.match(tz.stdout, /2026-11-02T12:00:00\+02:00/);
  });

  test('names: errors in text and json, and notes that say what the file holds', async () => {
    await recorded;
    const cases: [string[], RegExp][] = [
      [['names'], /names needs --ip ADDR or --name NAME/],
      [['names', '--ip', A, '--name', 'x.example.com'], /give --ip or --name, not both/],
      [['names', '--ip', '10.0.0'], /"10\.0\.0" is not an IPv4 or IPv6 address/],
      [['names', '--name', 'a*.example.com'], /--name "a\*\.example\.com" is not a name: give a host name .*\*\.example\.com/],
      [['names', '--name', 'bad name'], /is not a name/],
      [['names', '--ip', A, '--since', 'yesterday'], /"yesterday" is not a duration/],
    ];
    for (const [args, re] of cases) {
      const t = query(['--db', file, ...args]);
      assert.equal(t.status, 1, args.join(' '));
      assert.match(t.stderr, new RegExp(`^tc-query: error: .*${re.source}.*; see \`tc-query names --help\`\\n$`), args.join(' '));
      assert.equal(t.stdout, '');
      const j = query(['--db', file, ...args, '--format', 'json']);
      assert.equal(j.status, 1, args.join(' '));
      const doc = JSON.parse(j.stdout) as { error: { message: string; code: string } };
      assert.equal(doc.error.code, 'ERR_TC_USAGE');
      assert.match(doc.error.message, re);
    }
    const none = query(['--db', file, 'names', '--ip', '10.9.9.9']);
    assert.equal(none.status, 0);
    assert.equal(none.stdout, '');
    assert.match(none.stderr, /^tc-query: no names seen for 10\.9\.9\.9 in the file; the file has 4 names of 3 addresses seen 2026-11-02T10:00:00Z to 2026-11-02T10:00:25Z\n$/);
    const win = query(['--db', file, 'names', '--name', 'c.example.com', '--since', iso(T0 + S), '--until', iso(T0 + 9 * S), '--format', 'json']);
    assert.equal(win.stdout, '[]\n');
    assert.match(win.stderr, /no address seen for c\.example\.com from .*; the file has .*; widen the window, or try --all/);
    // A file without names: what it covers.
    const plain = path.join(tmp(), 'plain.db');
    await record(plain, [makeBatch(T0, S, 3)]);
    for (const fmt of ['table', 'json']) {
      const r = query(['--db', plain, 'names', '--name', 'x.example.com', '--format', fmt]);
      assert.equal(r.status, 0);
      assert.equal(r.stdout, fmt === 'json' ? '[]\n' : '');
      assert.match(r.stderr, /^tc-query: the file holds no names \(the recorder reads them from the DNS answers and TLS ClientHellos in the traffic it counts\); it covers 2026-11-02T10:00:00Z to 2026-11-02T10:00:05Z\n$/);
    }
    const missing = query(['--db', path.join(tmp(), 'nope.db'), 'names', '--ip', A, '--format', 'json']);
    assert.equal(JSON.parse(missing.stdout).error.code, 'ERR_TC_NO_DATABASE');
  });

  test('names: most recently seen first (interval, then capture order), as top names it; --until alone reads from the start; notes in whole seconds', async () => {
    const f = path.join(tmp(), 'recent.db');
    const B = '192.0.2.2';
    const C = '192.0.2.3';
    await record(f, [
      traffic(T0, S, [host(B), host(C)], [], [{ ip: C, name: 'shared.test' }, { ip: B, name: 'alpha.test' }, { ip: B, name: 'zeta.test' }, { ip: B, name: 'shared.test' }, { ip: B, name: 'both.test' }, { ip: C, name: 'both.test' }]),
      traffic(T0 + S, S, [host(B), host(C)], [], [{ ip: B, name: 'mid.test' }, { ip: C, name: 'shared.test' }]),
      traffic(T0 + 2 * S, S, [host(B), host(C)], [], [{ ip: B, name: 'alpha.test' }, { ip: B, name: 'zeta.test' }]),
    ]);
    const top = json(['--db', f, 'top', '--all']).find((r) => r.ip === B)!.name;
    assert.equal(top, 'zeta.test');
    const want = ['zeta.test', 'alpha.test', 'mid.test', 'both.test', 'shared.test'];
    assert.deepEqual(json(['--db', f, 'names', '--ip', B]).map((r) => r.name), want);
    assert.equal(json(['--db', f, 'names', '--ip', B])[0].name, top);
    const t = query(['--db', f, 'names', '--ip', B]);
    assert.equal(t.status, 0, t.stderr);
    assert.deepEqual([...t.stdout.matchAll(/│ 192\.0\.2\.2 │ (\S+) /g)].map((m) => m[1]), want);
    // --name: both last seen in the first interval, C later in it; then by the last interval.
    assert.deepEqual(json(['--db', f, 'names', '--name', 'both.test']).map((r) => r.ip), [C, B]);
    assert.deepEqual(json(['--db', f, 'names', '--name', 'shared.test']).map((r) => r.ip), [C, B]);
    // --until alone: from the start of the file, as status, sql and export.
    for (const fmt of ['table', 'json']) {
      const u = query(['--db', f, 'names', '--ip', B, '--until', iso(T0 + S), '--format', fmt]);
      assert.equal(u.status, 0, u.stderr);
      if (fmt === 'json') assert.deepEqual((JSON.parse(u.stdout) as Row[]).map((r) => r.name), ['zeta.test', 'alpha.test', 'both.test', 'shared.test']);
      else assert.match(u.stdout, /\n4 names; /);
      const e = query(['--db', f, 'names', '--ip', '10.9.9.9', '--since', '2h', '--format', fmt]);
      assert.equal(e.status, 0, e.stderr);
      assert.match(e.stderr, /^tc-query: no names seen for 10\.9\.9\.9 from \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ to \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; /);
    }
  });

  test('flow rows gain src_name and dst_name; flows --ip also name, the peer\'s', async () => {
    const f = path.join(tmp(), 'flows.db');
    const C = '192.0.2.10';
    await record(f, [
      traffic(T0, S, [host(A), host(C)], [{ src: A, dst: C, bytes: 900 }, { src: C, dst: A, sport: 443, dport: 40000, bytes: 400 }], [{ ip: C, name: 'cdn.example.net' }]),
    ]);
    const rows = json(['--db', f, 'flows', '--ip', A, '--all']);
    assert.deepEqual(Object.keys(rows[0]), ['src', 'dst', 'proto', 'sport', 'dport', 'packets', 'bytes', 'src_name', 'dst_name', 'name']);
    assert.deepEqual(rows.map((r) => [r.src, r.src_name, r.dst_name, r.name]), [[A, null, 'cdn.example.net', 'cdn.example.net'], [C, 'cdn.example.net', null, 'cdn.example.net']]);
    const top = json(['--db', f, 'top', '--by', 'flow', '--all']);
    assert.deepEqual(Object.keys(top[0]), ['src', 'dst', 'proto', 'sport', 'dport', 'packets', 'bytes', 'src_name', 'dst_name']);
    const t = query(['--db', f, 'flows', '--ip', A, '--all']);
    assert.match(t.stdout, /│ src +│ src_name +│ dst +│ dst_name +│ proto │/);
    assert.doesNotMatch(t.stdout, /│ name /);
  });

  test('sql: the names table (readable), and labels (ip, label) with --labels', async () => {
    await recorded;
    const rows = json(['--db', file, 'sql', "select ip, name, source, first, last, session from names where ip = '10.0.0.3'"]);
    assert.deepEqual(rows, [{ ip: '10.0.0.3', name: 'c.example.com', source: 'dns', first: '2026-11-02T10:00:00.000Z', last: '2026-11-02T10:00:00.000Z', session: 1 }]);
    assert.deepEqual(json(['--db', file, 'sql', 'select count(*)::int as n from names', '--since', iso(T0 + 3 * S), '--until', iso(T0 + 9 * S)]), [{ n: 1 }]);
    const labels = path.join(tmp(), 'labels.txt');
    writeFileSync(labels, '10.0.0.0/31 pair\n10.0.0.0/24 lan\n');
    const joined = json(['--db', file, '--labels', labels, 'sql', 'select l.label, sum(d.tx_bytes)::bigint as tx from ip_deltas d join labels l using (ip) group by 1 order by 1']);
    assert.deepEqual(joined, [{ label: 'lan', tx: 500 }, { label: 'pair', tx: 4000 }]);
    assert.deepEqual(json(['--db', file, '--labels', labels, 'sql', 'select * from labels order by ip']).map((r) => `${r.ip} ${r.label}`), ['10.0.0.1 pair', '10.0.0.2 lan', '10.0.0.3 lan']);
    const no = query(['--db', file, 'sql', 'select * from labels', '--format', 'json']);
    assert.equal(no.status, 1);
    assert.deepEqual(JSON.parse(no.stdout), { error: { message: 'sql: the labels table needs a label file: give --labels FILE (lines "CIDR label"), or set TC_LABELS', code: 'ERR_TC_USAGE' } });
  });

  test('export --what names; per-IP and flow exports gain the name of each row\'s address at the row\'s end', async () => {
    await recorded;
    const r = query(['--db', file, 'export', '--what', 'names', '--out', '-', '--format', 'csv']);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines[0], 'node,ip,name,source,first,last,session');
    assert.equal(lines.length, 6);
    assert.ok(lines.includes(`${lines[1].split(',')[0]},2001:db8::1,v6.example.org,sni,2026-11-02T10:00:05Z,2026-11-02T10:00:05Z,1`));
    const refused = query(['--db', file, 'export', '--what', 'names', '--resolution', '1h', '--out', '-', '--format', 'csv']);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /names have no rollups/);
    const out = path.join(tmp(), 'names.parquet');
    assert.equal(query(['--db', file, 'export', '--what', 'names', '--out', out]).status, 0);
    assert.equal(readFileSync(out).subarray(0, 4).toString(), 'PAR1');
    // Raw per-IP rows: the name up to each interval's end.
    const ip = query(['--db', file, 'export', '--out', '-', '--format', 'jsonl']).stdout.trim().split('\n').map((l) => JSON.parse(l) as Row);
    const ofA = ip.filter((x) => x.ip === A).map((x) => [x.start, x.name]);
    assert.deepEqual(ofA, [
      ['2026-11-02T10:00:00Z', 'x.example.com'],
      ['2026-11-02T10:00:05Z', 'x.example.com'],
      ['2026-11-02T10:00:10Z', 'x.example.com'],
      ['2026-11-02T10:00:25Z', 'x.example.com'],
    ]);
    assert.deepEqual(ip.filter((x) => x.ip === '2001:db8::1').map((x) => x.name), ['v6.example.org']);
    const day = query(['--db', file, 'export', '--resolution', '1d', '--out', '-', '--format', 'csv']).stdout;
    assert.match(day.split('\n')[0], /,rx_bytes,name$/);
    assert.match(day, /,10\.0\.0\.1,(\d+,){4}x\.example\.com\n/);
  });

  test('status: the names the file holds', async () => {
    await recorded;
    const st = queryJson<{ names: Row }>(['--db', file, 'status']);
    assert.deepEqual(st.names, { rows: 5, names: 4, addresses: 3, first: '2026-11-02T10:00:00Z', last: '2026-11-02T10:00:25Z', recorded: 7, overflowed: 0, malformed: 0, incomplete: 0 });
    assert.match(query(['--db', file, 'status']).stdout, /\nnames +4 names of 3 addresses seen 2026-11-02T10:00:00Z to 2026-11-02T10:00:25Z \(`tc-query names`\); in the window 7 recorded, 0 past --max-names, 0 messages malformed, 0 split ClientHellos given up\n/);
    assert.match(query(['--db', file, 'status', '--format', 'csv']).stdout, /\nnames_recorded,7\nnames_overflowed,0\nnames_malformed,0\nnames_incomplete,0\n/);
  });

  test('rebuild keeps every name and every answer', async () => {
    await recorded;
    const before = [names(file), json(['--db', file, 'top', '--all', '--limit', '0']), json(['--db', file, 'top', '--by', 'name', '--all'])];
    const r = recorder(['rebuild', '--db', file]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual([names(file), json(['--db', file, 'top', '--all', '--limit', '0']), json(['--db', file, 'top', '--by', 'name', '--all'])], before);
  });
});

describe('writes: a group goes in whole or not at all, a replaced session takes its names along', () => {
  test('a group that fails leaves no name, no address and no dictionary name behind; its retry writes each once', async () => {
    const file = path.join(tmp(), 'retry.db');
    const db = await openForWrite(file);
    const sink = sinkOn(db, file);
    try {
      const ok = traffic(T0, S, [{ ip: '10.0.0.1', tx: 100 }], [], [{ ip: '10.0.0.1', name: 'one.test' }]);
      await sink.write(ok);
      await sink.idle();
      // The next group fails once its names are in (a trigger on the writer's connection), as a
      // full disk or a lock would fail it part-way.
      db.sqlite.exec("create temp trigger fail after insert on names when (select name from hostnames where id = new.name_id) = 'three.test' begin select raise(abort, 'injected failure'); end");
      const next = traffic(T0 + S, S, [{ ip: '10.0.0.2', tx: 100 }], [], [{ ip: '10.0.0.2', name: 'two.test' }, { ip: '10.0.0.9', name: 'three.test' }, { ip: '10.0.0.1', name: 'one.test' }]);
      const writing = sink.write(next);
      await writing;
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(sql(file, 'select count(*) as n from batches'), [{ n: 1 }], 'the failed group is not in the file');
      const during = new Database(file, { readonly: true });
      assert.deepEqual(during.prepare('select name from hostnames order by id').pluck().all(), ['one.test']);
      assert.deepEqual(during.prepare('select text from addresses order by id').pluck().all(), ['10.0.0.1']);
      during.close();
      db.sqlite.exec('drop trigger fail');
      await sink.idle();
      await sink.close(Date.now() + 10_000);
    } finally {
      db.sqlite.close();
    }
    assert.deepEqual(
      names(file).map((n) => [n.ip, n.name, n.first_utc, n.last_utc]),
      [
        ['10.0.0.1', 'one.test', '2026-11-02T10:00:00.000Z', '2026-11-02T10:00:05.000Z'],
        ['10.0.0.2', 'two.test', '2026-11-02T10:00:05.000Z', '2026-11-02T10:00:05.000Z'],
        ['10.0.0.9', 'three.test', '2026-11-02T10:00:05.000Z', '2026-11-02T10:00:05.000Z'],
      ],
    );
    assert.deepEqual(sql(file, 'select name from hostnames order by name').map((r) => r.name), ['one.test', 'three.test', 'two.test']);
    assert.deepEqual(sql(file, "select n.last_pos from names n join hostnames h on h.id = n.name_id where h.name = 'one.test'"), [{ last_pos: 2 }]);
  });

  test('appending a session\'s batches again changes no name', async () => {
    const file = path.join(tmp(), 'again.db');
    const batches = [
      traffic(T0, S, [{ ip: '10.0.0.1', tx: 100 }], [], [{ ip: '10.0.0.1', name: 'a.test' }, { ip: '10.0.0.1', name: 'b.test' }]),
      traffic(T0 + S, S, [{ ip: '10.0.0.1', tx: 100 }], [], [{ ip: '10.0.0.1', name: 'a.test' }]),
    ];
    await record(file, batches, { key: 'same' });
    const once = sql(file, 'select * from names order by 1, 2, 3, 4');
    const m = await record(file, batches, { key: 'same' });
    assert.equal(m.batchesSkipped, 2);
    assert.deepEqual(sql(file, 'select * from names order by 1, 2, 3, 4'), once);
  });

  test('a replaced session\'s names go with it, in the transaction that records it again; names other sessions saw stay', async () => {
    const file = path.join(tmp(), 'replace.db');
    await record(file, [traffic(T0, S, [{ ip: '10.0.0.1', tx: 100 }], [], [{ ip: '10.0.0.1', name: 'old.test' }, { ip: '10.0.0.1', name: 'shared.test' }])], { key: 'capture' });
    await record(file, [traffic(T0 + DAY_MS, S, [{ ip: '10.0.0.1', tx: 100 }], [], [{ ip: '10.0.0.1', name: 'shared.test' }])], { key: 'other' });
    // As `record --pcap --replace` does: the old session out and the new one in, one transaction.
    const db = await openForWrite(file);
    try {
      db.sqlite.exec('begin immediate');
      const id = db.sqlite.prepare("select id from sessions where session_key = 'capture'").pluck().get() as number;
      deleteSession(db.sqlite, id);
      const sink = sinkOn(db, file, { key: 'capture' });
      await sink.write(traffic(T0, S, [{ ip: '10.0.0.1', tx: 100 }], [], [{ ip: '10.0.0.1', name: 'new.test' }]));
      await sink.idle();
      await sink.close(Date.now() + 10_000);
      db.sqlite.exec('commit');
    } finally {
      db.sqlite.close();
    }
    assert.deepEqual(names(file).map((n) => `${n.name} ${n.first_utc.slice(0, 10)}`), ['new.test 2026-11-02', 'shared.test 2026-11-03']);
    assert.deepEqual(sql(file, 'select name from hostnames order by name').map((r) => r.name), ['new.test', 'shared.test']);
    assert.equal(json(['--db', file, 'top', '--since', iso(T0), '--until', iso(T0 + S)])[0].name, 'new.test');
  });

  test('/metrics counts the names recorded and overflowed (the batches\' counters)', async () => {
    const file = path.join(tmp(), 'metrics.db');
    const b = withNames(makeBatch(T0, S, 2), [{ ip: '10.0.0.1', name: 'a.test' }, { ip: '10.0.0.1', name: 'a.test', source: 'sni' }]);
    b.counters.namesOverflowed = 5n;
    const m = await record(file, [b]);
    assert.equal(m.namesRecorded, 2);
    assert.match(m.render(), /\ntc_names_recorded_total 2\n/);
    assert.match(m.render(), /\ntc_names_overflowed_total 5\n/);
  });
});

describe('retention and the disk budget drop a name only with its address\'s last traffic', () => {
  test('retention (every level kept for a while): a name goes once its address has no traffic row left and its own sighting is as old', async () => {
    const file = path.join(tmp(), 'retention.db');
    const H = (n: number) => n * HOUR_MS;
    const retention: Retention = { rawIpMs: H(1), rawFlowMs: H(1), minutesMs: H(2), hoursMs: DAY_MS, daysMs: 2 * DAY_MS };
    const D0 = Date.UTC(2026, 10, 2);
    const at = (ms: number, hosts: { ip: string; tx: number }[], n: NameEntry[] = [], flows: { src: string; dst: string; bytes: number }[] = []) => traffic(ms, S, hosts, flows, n);
    await record(file, [
      // A and B with traffic and a name on day 0, C a name without traffic, E only in flows.
      at(D0, [{ ip: '10.0.0.1', tx: 100 }, { ip: '10.0.0.2', tx: 100 }], [{ ip: '10.0.0.1', name: 'a.test' }, { ip: '10.0.0.2', name: 'b.test' }, { ip: '10.0.0.3', name: 'c.test' }, { ip: '10.0.0.5', name: 'e.test' }], [{ src: '10.0.0.5', dst: '10.0.0.2', bytes: 50 }]),
      // Day 2: B has traffic again (no name), D a name without traffic, E a flow again.
      at(D0 + 2 * DAY_MS + H(12), [{ ip: '10.0.0.2', tx: 100 }], [{ ip: '10.0.0.4', name: 'd.test' }], [{ src: '10.0.0.2', dst: '10.0.0.5', bytes: 50 }]),
    ]);
    const db = await openForWrite(file);
    const pruner = new Pruner(db.sqlite, retention);
    const prune = (now: number) => {
      for (let i = 0; i < 1000 && pruner.step(now) > 0; i++);
    };
    const left = () => db.sqlite.prepare('select h.name from names n join hostnames h on h.id = n.name_id order by 1').pluck().all();
    try {
      prune(D0 + DAY_MS);
      assert.deepEqual(left(), ['a.test', 'b.test', 'c.test', 'd.test', 'e.test'], 'day 1: day 0 is still kept (days are kept 2 days)');
      prune(D0 + 3 * DAY_MS + H(6));
      // Day 0 is gone: A has no traffic left, C never had any (its sighting as old); B's day 2 and
      // E's flow hour of day 2 are kept; D was seen on day 2.
      assert.deepEqual(left(), ['b.test', 'd.test', 'e.test']);
      prune(D0 + 3 * DAY_MS + H(13));
      assert.deepEqual(left(), ['b.test', 'd.test'], 'E\'s flow hour left after a day (hours are kept 1 day): its name with it');
      prune(D0 + 4 * DAY_MS + H(1));
      assert.deepEqual(left(), ['d.test'], 'B\'s day 2 left after 2 days: its name with it; D\'s sighting is 2 days old at 12:00');
      prune(D0 + 4 * DAY_MS + H(13));
      assert.deepEqual(left(), []);
      assert.deepEqual(db.sqlite.prepare('select count(*) from hostnames').pluck().get(), 0, 'names no row uses leave the dictionary');
    } finally {
      db.sqlite.close();
    }
  });

  test('budget: a compaction that folds an address\'s last traffic away takes its names; names of addresses with traffic stay; names without traffic are shed', async () => {
    // 23:00 UTC: the recording crosses midnight, so a day closes and is compacted.
    const start = Date.UTC(2026, 10, 1, 23, 0);
    const N = 2600;
    // 40 new addresses an interval, every 8th with a name; every 10th interval also 20 names of
    // addresses without traffic; a heavy address with its name throughout.
    const batches = Array.from({ length: N }, (_, i) => {
      const hosts = Array.from({ length: 40 }, (_, k) => {
        const v = 0x0b000000 + i * 40 + k;
        return { ip: `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`, tx: 100 + ((i * 7 + k) % 50) };
      });
      const named: NameEntry[] = hosts.filter((_, k) => k % 8 === 0).map((h) => ({ ip: h.ip, name: `h${h.ip.replace(/\./g, '-')}.example.com` }));
      if (i % 10 === 0) for (let k = 0; k < 20; k++) named.push({ ip: `172.16.${(i / 10) & 255}.${k}`, name: `idle-${i}-${k}.example.net` });
      named.push({ ip: '192.0.2.1', name: 'heavy.example.org' });
      return traffic(start + i * S, S, [...hosts, { ip: '192.0.2.1', tx: 1e6, rx: 1e6 }], [], named);
    });
    const full = path.join(tmp(), 'full.db');
    const small = path.join(tmp(), 'small.db');
    await record(full, batches);
    const BUDGET = 10 * MiB;
    const m = await record(small, batches, { maxDbBytes: BUDGET });
    assert.equal(m.budgetFoldedIntervals, 0, 'the budget holds the present whole: names took no traffic detail');
    assert.equal(m.batchesWritten, N);
    assert.equal(m.writeErrors, 0);
    const d = new Database(small, { readonly: true });
    const page = d.pragma('page_size', { simple: true }) as number;
    assert.ok((d.pragma('page_count', { simple: true }) as number) * page <= BUDGET, 'the file is within the budget');
    const shed = d.prepare("select json_extract(detail, '$.level') as level, count(*) as n from events where kind = 'budget-shed' group by 1").all() as { level: string; n: number }[];
    assert.ok(shed.some((s) => s.level === 'names'), `the names of addresses without traffic were shed: ${JSON.stringify(shed)}`);
    assert.ok(shed.some((s) => s.level === 'ip_1d'), `days were compacted: ${JSON.stringify(shed)}`);
    const hour = Math.floor((start + (N - 1) * S) / HOUR_MS) * HOUR_MS;
    const refs = "(select ip_id from ip_deltas union select ip_id from ip_1m union select ip_id from ip_1h union select ip_id from ip_1d union select src_id from flow_deltas union select dst_id from flow_deltas union select src_id from flow_1m union select dst_id from flow_1m union select src_id from flow_1h union select dst_id from flow_1h)";
    // Every name left has traffic of its address in the file, or was seen in the last hour.
    const orphans = d.prepare(`select count(*) from names where ip_id not in ${refs} and last_ms < ?`).pluck().get(hour);
    assert.equal(orphans, 0, 'no name outlives its address\'s traffic');
    // Every address with traffic in the file keeps every name it had.
    const kept = d.prepare(`select a.text || ' ' || h.name from names n join addresses a on a.id = n.ip_id join hostnames h on h.id = n.name_id where n.ip_id in ${refs} order by 1`).pluck().all() as string[];
    const withTraffic = d.prepare(`select a.text from addresses a where a.id in ${refs}`).pluck().all() as string[];
    d.close();
    const f = new Database(full, { readonly: true });
    const wanted = (f.prepare('select a.text || \' \' || h.name from names n join addresses a on a.id = n.ip_id join hostnames h on h.id = n.name_id where a.text in (select value from json_each(?)) order by 1').pluck().all(JSON.stringify(withTraffic)) as string[]);
    f.close();
    assert.deepEqual(kept, wanted);
    assert.ok(kept.includes('192.0.2.1 heavy.example.org'));
    assert.ok(withTraffic.length > 40 && withTraffic.length < 40 * N, `${withTraffic.length} addresses with traffic kept`);
    // Answers show the kept names.
    const top = json(['--db', small, 'top', '--all', '--limit', '3']);
    assert.equal(top[0].ip, '192.0.2.1');
    assert.equal(top[0].name, 'heavy.example.org');
  });

  test('budget: a flood of names without traffic stays within the budget, at the hard stop too, and the traffic totals stay exact', async () => {
    const start = Date.UTC(2026, 10, 2, 8, 0);
    // 3,000 new names an interval for 2 hours, beside a little traffic.
    const batches = Array.from({ length: 1440 }, (_, i) => {
      const named: NameEntry[] = Array.from({ length: 3000 }, (_, k) => {
        const v = i * 3000 + k;
        return { ip: `100.${(v >>> 16) & 63}.${(v >>> 8) & 255}.${v & 255}`, name: `n${v}.flood.example` };
      });
      return withNames(makeBatch(start + i * S, S, 20, 10, i), named);
    });
    const want = batches.reduce((s, b) => s + Number(b.counters.ipBytes), 0);
    const BUDGET = 3 * MiB;
    // 1: as estimated, an interval's names within their share of it; 0 (the hard stop alone):
    // every write that reaches it is rolled back and retried, names shed oldest first.
    for (const scale of [1, 0]) {
      const file = path.join(tmp(), `flood-${scale}.db`);
      const m = await record(file, batches, { maxDbBytes: BUDGET, budgetEstimateScale: scale });
      assert.equal(m.batchesWritten, batches.length, `scale ${scale}`);
      assert.equal(m.writeErrors, 0, `scale ${scale}`);
      assert.ok(statSync(file).size <= BUDGET, `scale ${scale}: ${statSync(file).size} bytes`);
      assert.ok(m.budgetFoldedNames > 0, `scale ${scale}: names past the interval's share were not stored`);
      const series = json(['--db', file, 'series', '--all', '--step', '1h']);
      assert.equal(series.reduce((s, r) => s + Number(r.bytes), 0), want, `scale ${scale}: totals exact`);
      const d = new Database(file, { readonly: true });
      const left = d.prepare('select count(*) from names').pluck().get() as number;
      const unused = d.prepare('select count(*) from hostnames where id not in (select name_id from names)').pluck().get() as number;
      const levels = d.prepare("select distinct json_extract(detail, '$.level') from events where kind = 'budget-shed'").pluck().all();
      d.close();
      assert.ok(left > 0, `scale ${scale}: ${left} names kept`);
      assert.equal(unused, 0, 'no dictionary name without a row');
      if (scale === 0) {
        assert.ok(m.budgetFullWrites > 0, 'the hard stop was reached');
        assert.ok(levels.includes('names'), `names were shed: ${levels.join(', ')}`);
      }
    }
  });

  test('retention keeps names while a level is kept forever (the defaults)', async () => {
    const file = path.join(tmp(), 'forever.db');
    await record(file, [traffic(T0, S, [{ ip: '10.0.0.1', tx: 100 }], [], [{ ip: '10.0.0.1', name: 'a.test' }, { ip: '10.0.0.7', name: 'idle.test' }])]);
    const db = await openForWrite(file);
    try {
      const pruner = new Pruner(db.sqlite, DEFAULT_RETENTION);
      for (let i = 0; i < 100 && pruner.step(T0 + 3650 * DAY_MS) > 0; i++);
      assert.equal(db.sqlite.prepare('select count(*) from names').pluck().get(), 2);
    } finally {
      db.sqlite.close();
    }
  });
});

describe('a replay of the generated capture of names', () => {
  const dir = tmp();
  const cap = path.join(dir, 'names.pcap');
  const c = writeNamesPcap(cap);
  const db = path.join(dir, 'names.db');
  const r = recorder(['record', '--pcap', cap, '--db', db, '--flows', '--quiet']);
  // The name of each address: its pair last in the capture order of last sightings.
  const last = new Map(c.expected.map((e) => [e.ip, e.name]));

  test('the file holds exactly the capture\'s names', () => {
    assert.equal(r.status, 0, r.stderr);
    const rows = json(['--db', db, 'sql', 'select ip, name, source from names order by ip, name, source']);
    const want = [...c.expected].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : a.source < b.source ? -1 : 1));
    assert.deepEqual(rows, want);
    const st = queryJson<{ names: Row }>(['--db', db, 'status']);
    assert.deepEqual(
      [st.names.rows, st.names.recorded, st.names.overflowed, st.names.malformed, st.names.incomplete],
      [c.expected.length, c.expected.length, 0, c.malformed, c.incomplete],
    );
  });

  test('top --by ip: every address with traffic shows the name seen last for it, or null', () => {
    const rows = json(['--db', db, 'top', '--all', '--limit', '0']);
    assert.ok(rows.length > 5);
    for (const row of rows) assert.equal(row.name, last.get(row.ip as string) ?? null, String(row.ip));
    assert.deepEqual(
      rows.filter((x) => x.name !== null).map((x) => `${x.ip} ${x.name}`).sort(),
      ['192.0.2.80 one.example.com', '192.0.2.81 pq.example.com', '2001:db8:443::1 three.example.net'],
      'the TLS servers the client connected to; the answered addresses saw no traffic',
    );
    const byName = json(['--db', db, 'top', '--by', 'name', '--all', '--limit', '0']);
    const sum = (xs: Row[]) => xs.reduce((a, x) => a + BigInt(x.bytes as number), 0n);
    assert.equal(sum(byName), sum(rows), '--by name totals equal --by ip');
    assert.equal(byName.find((x) => x.name === 'pq.example.com')?.bytes, rows.find((x) => x.ip === '192.0.2.81')?.bytes);
  });

  test('flows --ip: the names of both ends, and the peer\'s', () => {
    const rows = json(['--db', db, 'flows', '--ip', '10.1.0.2', '--all', '--limit', '0']);
    const toTls = rows.filter((x) => x.dst === '192.0.2.80' || x.dst === '192.0.2.81');
    assert.deepEqual(toTls.map((x) => [x.dst, x.dst_name, x.name, x.src_name]).sort(), [
      ['192.0.2.80', 'one.example.com', 'one.example.com', null],
      ['192.0.2.81', 'pq.example.com', 'pq.example.com', null],
    ]);
    for (const x of rows) assert.equal(x.name, last.get((x.src === '10.1.0.2' ? x.dst : x.src) as string) ?? null);
  });

  test('names --ip and --name: the pairs of an address (two names, the last in capture order second), of a name and below it', () => {
    assert.deepEqual(json(['--db', db, 'names', '--ip', '198.51.100.20']).map((x) => `${x.name} ${x.source}`).sort(), ['first.example dns', 'second.example dns']);
    assert.equal(json(['--db', db, 'top', '--all', '--by', 'name', '--limit', '0']).some((x) => x.name === 'first.example'), false, 'an address without traffic is in no traffic answer');
    assert.deepEqual(json(['--db', db, 'names', '--name', 'alias.example.org']).map((x) => x.ip).sort(), ['198.51.100.10', '198.51.100.11'], 'a CNAME chain resolved to the question name');
    assert.deepEqual(
      json(['--db', db, 'names', '--name', '*.example.com']).map((x) => `${x.ip} ${x.name} ${x.source}`).sort(),
      c.expected.filter((e) => e.name.endsWith('.example.com')).map((e) => `${e.ip} ${e.name} ${e.source}`).sort(),
    );
    assert.deepEqual(json(['--db', db, 'names', '--ip', '2001:db8:5::1']).map((x) => x.name), ['v6.example.net']);
  });
});

test('live, eBPF filter on: a DNS answer and a split ClientHello across a namespace pair, then traffic to their addresses: top and flows show the names', async (t) => {
  if (!needRoot(t)) return;
  const net = vethPair(`tcnd${process.pid}`, 'nd', { a: SRC_MAC, b: DST_MAC });
  try {
    const db = path.join(tmp(), 'live-names.db');
    const child = spawnIn(net.b, process.execPath, [RECORDER, 'record', '--iface', net.devB, '--db', db, '--flows', '--workers', '2', '--interval-secs', '1', '--snaplen', '128', '--quiet']);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitForStderr(child, /recording nd-b/);
    // 16 answers: most lie past byte 128 of the frame, which the filter passes whole.
    const answers = Array.from({ length: 16 }, (_, i) => A(`198.51.100.${100 + i}`));
    const hello = clientHello('split.live.example', 1650);
    const frames = [
      udp('10.9.0.53', '10.9.0.2', 53, 41000, dnsResponse('live.example.com', answers)),
      tcp('10.9.0.2', '198.51.100.100', 52000, 80, 1, Buffer.alloc(300, 0x41)),
      tcp('198.51.100.100', '10.9.0.2', 80, 52000, 1, Buffer.alloc(1200, 0x42)),
      tcp('10.9.0.2', '192.0.2.200', 51000, 443, 5000, hello.subarray(0, 1448)),
      tcp('10.9.0.2', '192.0.2.200', 51000, 443, 5000 + 1448, hello.subarray(1448)),
      tcp('192.0.2.200', '10.9.0.2', 443, 51000, 1, Buffer.alloc(1200, 0x17)),
    ].map((f) => f.toString('hex'));
    assert.equal(sendFrames(net, frames, 10), frames.length);
    await sleep(2500);
    child.kill('SIGINT');
    assert.equal(await exited(child), 0, stderr);
    const rows = json(['--db', db, 'top', '--all', '--limit', '0']);
    const nameOf = (ip: string) => rows.find((r) => r.ip === ip)?.name;
    assert.equal(nameOf('198.51.100.100'), 'live.example.com');
    assert.equal(nameOf('192.0.2.200'), 'split.live.example');
    assert.equal(nameOf('10.9.0.2'), null);
    const flows = json(['--db', db, 'flows', '--ip', '10.9.0.2', '--all', '--limit', '0']);
    assert.deepEqual(flows.filter((f) => f.src === '10.9.0.2' && f.dport !== 41000).map((f) => [f.dst, f.dst_name, f.name]).sort(), [
      ['192.0.2.200', 'split.live.example', 'split.live.example'],
      ['198.51.100.100', 'live.example.com', 'live.example.com'],
    ]);
    assert.equal(json(['--db', db, 'names', '--name', 'live.example.com']).length, 16, 'every answered address');
  } finally {
    net.remove();
  }
});
