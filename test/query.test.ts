/**
 * tc-query commands end to end: windows planned over rollups equal the raw log, series,
 * top --by src/dst and filters, flows, status, sql, export (Hive-partitioned parquet read back
 * by DuckDB), parameters only (no injection through options).
 */
import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { DuckDBInstance } from '@duckdb/node-api';
import { pcapsDir, query, queryJson, recordGenerated, recorder, seeded, tmp } from './helpers';
import { ethernet, udp, writePcap } from './fixtures/frames';
import { plan } from '../src/query/plan';
import { coverage } from '../src/query/coverage';

let db = '';
const P = (f: string) => path.join(pcapsDir(), f);

before(() => {
  db = path.join(tmp(), 'q.db');
  // 1 s intervals over many minutes: windows mix day/hour/minute rollups and raw edges.
  const r = recorder(['record', '--pcap', P('ndpi_alexa-app.pcapng'), P('zeek_smtp.pcap'), '--db', db, '--flows', '--quiet', '--interval-secs', '1']);
  assert.equal(r.status, 0, r.stderr);
});

type IpRow = { ip: string; tx_packets: number; tx_bytes: number; rx_packets: number; rx_bytes: number; packets: number; bytes: number };

/** The same question answered from raw interval rows only, in SQLite. */
function rawTop(fromMs: number, toMs: number): Map<string, number[]> {
  const d = new Database(db, { readonly: true });
  try {
    const rows = d
      .prepare(
        `select a.text, sum(tx_packets), sum(tx_bytes), sum(rx_packets), sum(rx_bytes) from batches b join ip_deltas x on x.batch_id = b.id
         join addresses a on a.id = x.ip_id where b.start_ms >= ? and b.start_ms < ? group by a.text`,
      )
      .raw()
      .all(fromMs, toMs) as [string, number, number, number, number][];
    return new Map(rows.map(([ip, ...v]) => [ip, v]));
  } finally {
    d.close();
  }
}

function span(): [number, number] {
  const d = new Database(db, { readonly: true });
  try {
    const r = d.prepare("select min(start_ms), max(end_ms) from batches b join sessions s on s.id = b.session_id where s.source like '%alexa%'").raw().get() as [number, number];
    return r;
  } finally {
    d.close();
  }
}

test('windows planned over rollups answer exactly what the raw log says', () => {
  const [a, b] = span();
  const windows: [number, number][] = [
    [a, b],
    [Math.ceil(a / 60000) * 60000, Math.floor(b / 60000) * 60000],
    [a + 17_000, b - 23_000],
    [Math.floor(a / 3_600_000) * 3_600_000, Math.ceil(b / 3_600_000) * 3_600_000],
  ];
  for (const [from, to] of windows) {
    const got = queryJson<IpRow[]>(['--db', db, 'top', '--since', String(from / 1000), '--until', String(to / 1000), '--limit', '0']);
    const want = rawTop(from, to);
    assert.equal(got.length, want.size, `window ${from}..${to}`);
    for (const r of got) assert.deepEqual([r.tx_packets, r.tx_bytes, r.rx_packets, r.rx_bytes], want.get(r.ip), `${r.ip} in ${from}..${to}`);
  }
});

test('series: one row per step, total counts each packet once, per-address rows carry tx/rx', () => {
  const [a, b] = span();
  const from = Math.floor(a / 60000) * 60000;
  const to = Math.ceil(b / 60000) * 60000;
  const rows = queryJson<{ start: string; end: string; packets: number; bytes: number }[]>(['--db', db, 'series', '--since', String(from / 1000), '--until', String(to / 1000), '--step', '1m']);
  assert.equal(rows.length, (to - from) / 60000);
  assert.equal(rows[0].start, new Date(from).toISOString().replace('.000Z', 'Z'));
  assert.deepEqual(Object.keys(rows[0]), ['start', 'end', 'packets', 'bytes']);
  const top = queryJson<IpRow[]>(['--db', db, 'top', '--since', String(from / 1000), '--until', String(to / 1000), '--limit', '0']);
  assert.equal(rows.reduce((s, r) => s + r.packets, 0), top.reduce((s, r) => s + r.tx_packets, 0));
  assert.equal(rows.reduce((s, r) => s + r.bytes, 0), top.reduce((s, r) => s + r.tx_bytes, 0));
  const ip = top[0].ip;
  const per = queryJson<Record<string, number | string>[]>(['--db', db, 'series', '--ip', ip, '--since', String(from / 1000), '--until', String(to / 1000), '--step', '5m']);
  assert.deepEqual(Object.keys(per[0]), ['start', 'end', 'packets', 'bytes', 'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes']);
  assert.equal(per.reduce((s, r) => s + Number(r.bytes), 0), top[0].bytes);
  const table = query(['--db', db, 'series', '--ip', ip, '--since', String(from / 1000), '--until', String(to / 1000), '--step', '5m']);
  assert.match(table.stdout, /█/);
  assert.match(table.stdout, /intervals .* gaps?\n$/);
  const bad = query(['--db', db, 'series', '--step', '7ms', '--format', 'json']);
  assert.equal(bad.status, 1);
  assert.equal(JSON.parse(bad.stdout).error.code, 'ERR_TC_USAGE');
});

test('a total series is the interval log\'s totals: each step equals its addresses\' rows, also where only the log still holds that time', () => {
  const [a, b] = span();
  const from = Math.floor(a / 60000) * 60000;
  const to = Math.ceil(b / 60000) * 60000;
  const window = ['--since', String(from / 1000), '--until', String(to / 1000)];
  type Step = { start: string; end: string; packets: number; bytes: number };
  for (const step of ['1s', '5s', '1m', '5m', '1h']) {
    const rows = queryJson<Step[]>(['--db', db, 'series', ...window, '--step', step]);
    for (const r of rows.filter((x) => x.packets > 0 || Date.parse(x.start) < b)) {
      const want = [...rawTop(Date.parse(r.start), Date.parse(r.end)).values()].reduce((s, v) => [s[0] + v[0], s[1] + v[1]], [0, 0]);
      assert.deepEqual([r.packets, r.bytes], want, `step ${step} at ${r.start}`);
    }
  }
  // The per-address detail of the first minutes gone (raw rows, minutes and hours, as retention
  // removes them) while the interval log keeps that time: the total is unchanged and exact.
  const copy = path.join(tmp(), 'shed.db');
  const src = new Database(db, { readonly: true });
  src.prepare('vacuum into ?').run(copy);
  src.close();
  const cut = from + 3 * 60_000;
  const d = new Database(copy);
  d.prepare('delete from ip_deltas where batch_id in (select id from batches where start_ms < ?)').run(cut);
  d.prepare('update batches set pruned = pruned | 1 where start_ms < ?').run(cut);
  d.prepare('delete from ip_1m where bucket_ms < ?').run(cut);
  d.prepare('delete from ip_1h').run();
  d.close();
  const before = queryJson<Step[]>(['--db', db, 'series', ...window, '--step', '1m']);
  const shed = query(['--db', copy, 'series', ...window, '--step', '1m', '--format', 'json']);
  assert.equal(shed.status, 0, shed.stderr);
  assert.deepEqual(JSON.parse(shed.stdout), before);
  assert.doesNotMatch(shed.stderr, /no longer in the file/);
  // An address's series there has no detail left: it says so.
  const ip = queryJson<IpRow[]>(['--db', db, 'top', ...window, '--limit', '1'])[0].ip;
  assert.match(query(['--db', copy, 'series', ...window, '--step', '1m', '--ip', ip]).stderr, /detail at this step of .* is no longer in the file/);
});

test('a coverage is kept for the file as it is: a new event, a removed interval and a new one each give their own', () => {
  const copy = path.join(tmp(), 'cov.db');
  const src = new Database(db, { readonly: true });
  src.prepare('vacuum into ?').run(copy);
  src.close();
  const reader = new Database(copy, { readonly: true });
  const writer = new Database(copy);
  const w = { fromMs: 0, toMs: 8.64e15, all: false };
  try {
    const a = coverage(reader, w);
    assert.deepEqual(coverage(reader, w), a);
    writer.prepare("insert into events (at_ms, kind, start_ms, end_ms) values (?, 'lost-interval', ?, ?)").run(a.first, a.first, a.first! + 1000);
    const b = coverage(reader, w);
    assert.equal(b.lost_intervals, a.lost_intervals + 1);
    const oldest = writer.prepare('select id, end_ms - start_ms from batches order by id limit 1').raw().get() as [number, number];
    writer.prepare('delete from ip_deltas where batch_id = ?').run(oldest[0]);
    writer.prepare('delete from flow_deltas where batch_id = ?').run(oldest[0]);
    writer.prepare('delete from batches where id = ?').run(oldest[0]);
    const c = coverage(reader, w);
    assert.deepEqual([c.intervals, c.covered_ms], [b.intervals - 1, b.covered_ms - oldest[1]]);
    // The newest interval again, an hour later.
    const later: Record<string, string> = { id: 'null', seq: 'seq + 1000000', start_ms: 'start_ms + 3600000', end_ms: 'end_ms + 3600000' };
    const cols = (writer.prepare("select name from pragma_table_info('batches')").pluck().all() as string[]).map((n) => later[n] ?? n);
    writer.prepare(`insert into batches select ${cols.join(', ')} from batches order by id desc limit 1`).run();
    assert.equal(coverage(reader, w).intervals, c.intervals + 1);
  } finally {
    reader.close();
    writer.close();
  }
});

test('top --by src|dst, --proto, --port, --cidr, --ip and flows --ip', () => {
  const all = queryJson<IpRow[]>(['--db', db, 'top', '--all', '--limit', '0']);
  const src = queryJson<{ ip: string; packets: number; bytes: number }[]>(['--db', db, 'top', '--all', '--by', 'src', '--limit', '0']);
  const dst = queryJson<{ ip: string; packets: number; bytes: number }[]>(['--db', db, 'top', '--all', '--by', 'dst', '--limit', '0']);
  const byIp = new Map(all.map((r) => [r.ip, r]));
  for (const r of src) assert.equal(r.bytes, byIp.get(r.ip)!.tx_bytes);
  for (const r of dst) assert.equal(r.bytes, byIp.get(r.ip)!.rx_bytes);
  for (let i = 1; i < src.length; i++) assert.ok(src[i - 1].bytes >= src[i].bytes);

  const flows = queryJson<{ src: string; dst: string; proto: number; sport: number; dport: number; packets: number; bytes: number }[]>(['--db', db, 'top', '--all', '--by', 'flow', '--limit', '0']);
  const udp = queryJson<IpRow[]>(['--db', db, 'top', '--all', '--proto', 'udp', '--limit', '0']);
  const udpTx = flows.filter((f) => f.proto === 17).reduce((s, f) => s + f.bytes, 0);
  assert.equal(udp.reduce((s, r) => s + r.tx_bytes, 0), udpTx);
  const p443 = queryJson<typeof flows>(['--db', db, 'top', '--all', '--by', 'flow', '--port', '443', '--limit', '0']);
  assert.ok(p443.length > 0 && p443.every((f) => f.sport === 443 || f.dport === 443));
  const net = queryJson<IpRow[]>(['--db', db, 'top', '--all', '--cidr', '192.168.0.0/16', '--limit', '0']);
  assert.ok(net.length > 0 && net.every((r) => r.ip.startsWith('192.168.')));
  const one = queryJson<IpRow[]>(['--db', db, 'top', '--all', '--ip', all[0].ip]);
  assert.deepEqual(one, [all[0]]);
  const f = queryJson<typeof flows>(['--db', db, 'flows', '--ip', all[0].ip, '--all', '--limit', '0']);
  assert.ok(f.length > 0 && f.every((x) => x.src === all[0].ip || x.dst === all[0].ip));
  assert.equal(f.reduce((s, x) => s + x.bytes, 0), all[0].bytes);
});

test('options reach SQL only as parameters: hostile values are refused or match nothing', () => {
  for (const args of [
    ['top', '--ip', "1.2.3.4' or '1'='1"],
    ['top', '--cidr', '10.0.0.0/8; drop table batches'],
    ['top', '--proto', 'udp or 1=1'],
    ['series', '--ip', '1.2.3.4) --'],
  ]) {
    const r = query(['--db', db, ...args, '--all', '--format', 'json']);
    assert.equal(r.status, 1, args.join(' '));
    assert.equal(JSON.parse(r.stdout).error.code, 'ERR_TC_USAGE');
  }
  assert.deepEqual(queryJson(['--db', db, 'top', '--all', '--ip', '203.0.113.99']), []);
});

test('status tells what the file covers', () => {
  const s = queryJson<Record<string, unknown>>(['--db', db, 'status']);
  for (const k of ['first', 'last', 'intervals', 'gaps', 'lost_intervals', 'unclean_shutdowns', 'kernel_drops', 'filter_drops', 'ip_overflow_keys', 'flow_overflow_keys', 'sessions']) {
    assert.ok(k in s, k);
  }
  assert.ok((s.intervals as number) > 100);
  assert.equal((s.gaps as { count: number }).count, 0);
  const t = query(['--db', db, 'status', '--tz', 'Asia/Tokyo']);
  assert.equal(t.status, 0);
  assert.match(t.stdout, /T\d\d:\d\d:\d\d\+09:00/);
});

test('sql over the documented tables, and a Hive-partitioned export read back by DuckDB', async () => {
  const r = queryJson<{ ip: string; b: number }[]>(['--db', db, 'sql', 'select ip, sum(tx_bytes + rx_bytes)::bigint as b from ip_deltas group by ip order by b desc, ip limit 5']);
  const top = queryJson<IpRow[]>(['--db', db, 'top', '--all', '--limit', '5']);
  assert.deepEqual(r.map((x) => [x.ip, x.b]), top.map((x) => [x.ip, x.bytes]));
  const out = path.join(tmp(), 'fleet');
  const e = query(['--db', db, 'export', '--format', 'parquet', '--partition', '--out', out]);
  assert.equal(e.status, 0, e.stderr);
  const inst = await DuckDBInstance.create(':memory:');
  try {
    const c = await inst.connect();
    const res = await c.runAndReadAll(`select count(distinct node) as nodes, sum(tx_bytes)::bigint as tx from read_parquet('${out}/**/*.parquet', hive_partitioning = true)`);
    const [nodes, tx] = res.getRows()[0];
    assert.equal(Number(nodes), 1);
    assert.equal(Number(tx), top.length ? queryJson<IpRow[]>(['--db', db, 'top', '--all', '--limit', '0']).reduce((s, x) => s + x.tx_bytes, 0) : 0);
    c.closeSync();
  } finally {
    inst.closeSync();
  }
});

test('edges planned as a coarser bucket minus its outside part answer exactly what the raw log says', () => {
  const file = recordGenerated({ packets: 30_000, hosts: 200, flows: 800, seconds: 40_000 }, 10);
  const d = new Database(file, { readonly: true });
  const [a, b] = d.prepare('select min(start_ms), max(end_ms) from batches').raw().get() as [number, number];
  const raw = (sql: string, from: number, to: number) => new Map((d.prepare(sql).raw().all(from, to) as [string, ...number[]][]).map(([k, ...v]) => [k, v]));
  const rawIp = (from: number, to: number) =>
    raw(
      `select a.text, sum(tx_packets), sum(tx_bytes), sum(rx_packets), sum(rx_bytes) from batches b join ip_deltas x on x.batch_id = b.id
       join addresses a on a.id = x.ip_id where b.start_ms >= ? and b.start_ms < ? group by a.text`,
      from,
      to,
    );
  const rawFlow = (from: number, to: number) =>
    raw(
      `select s.text || ' ' || t.text || ' ' || proto || ' ' || sport || ' ' || dport, sum(packets), sum(bytes) from batches b
       join flow_deltas x on x.batch_id = b.id join addresses s on s.id = x.src_id join addresses t on t.id = x.dst_id
       where b.start_ms >= ? and b.start_ms < ? group by 1`,
      from,
      to,
    );
  const rnd = seeded(7);
  let subtracted = 0;
  for (let i = 0; i < 6; i++) {
    // Edges at arbitrary seconds; windows from 50 minutes to 8 hours.
    const len = 3_000_000 + Math.floor(rnd() * 26_000_000);
    const from = a + Math.floor(rnd() * (b - a - len) / 1000) * 1000;
    const to = from + Math.floor(len / 1000) * 1000;
    const planned = plan(d, 'ip', from, to);
    subtracted += planned.filter((s) => s.sign < 0).length;
    const got = queryJson<IpRow[]>(['--db', file, 'top', '--since', String(from / 1000), '--until', String(to / 1000), '--limit', '0']);
    const want = rawIp(from, to);
    assert.equal(got.length, want.size, `window ${from}..${to}`);
    for (const row of got) assert.deepEqual([row.tx_packets, row.tx_bytes, row.rx_packets, row.rx_bytes], want.get(row.ip), `${row.ip} in ${from}..${to}`);
    const flows = queryJson<{ src: string; dst: string; proto: number; sport: number; dport: number; packets: number; bytes: number }[]>([
      '--db', file, 'top', '--by', 'flow', '--since', String(from / 1000), '--until', String(to / 1000), '--limit', '0',
    ]);
    const wantFlows = rawFlow(from, to);
    assert.equal(flows.length, wantFlows.size, `flows in ${from}..${to}`);
    for (const f of flows) assert.deepEqual([f.packets, f.bytes], wantFlows.get(`${f.src} ${f.dst} ${f.proto} ${f.sport} ${f.dport}`));
  }
  assert.ok(subtracted > 0, 'some edges were planned by subtraction');
  d.close();

  // Retention removed the minutes and raw rows of the first hours: an edge there is not
  // planned by subtraction (it would subtract rows that are gone) and nothing is overcounted.
  const w = new Database(file);
  const cut = Math.floor(a / 3_600_000) * 3_600_000 + 3 * 3_600_000;
  w.prepare('delete from ip_1m where bucket_ms < ?').run(cut);
  w.prepare('delete from ip_deltas where batch_id in (select id from batches where start_ms < ?)').run(cut);
  w.prepare('update batches set pruned = pruned | 1 where start_ms < ?').run(cut);
  w.close();
  const from = cut - 3_600_000 + 600_000;
  const to = cut + 3_600_000;
  const ro = new Database(file, { readonly: true });
  assert.deepEqual(plan(ro, 'ip', from, to).filter((s) => s.sign < 0), []);
  const hourOnly = ro.prepare('select sum(tx_bytes) + sum(rx_bytes) from ip_1h where bucket_ms >= ? and bucket_ms < ?').pluck().get(cut, to) as number;
  ro.close();
  const got = queryJson<IpRow[]>(['--db', file, 'top', '--since', String(from / 1000), '--until', String(to / 1000), '--limit', '0']);
  assert.equal(got.reduce((s, row) => s + row.bytes, 0), hourOnly);
});

test('series reads no delta rows it would throw away: a window without intervals, an address the file does not hold', () => {
  // A copy whose per-IP delta table is gone: any read of those rows fails.
  const file = path.join(tmp(), 'no-deltas.db');
  const r = recorder(['record', '--pcap', P('zeek_smtp.pcap'), '--db', file, '--quiet', '--interval-secs', '1']);
  assert.equal(r.status, 0, r.stderr);
  const rw = new Database(file);
  const first = rw.prepare('select min(start_ms) from batches').pluck().get() as number;
  rw.exec('drop table ip_deltas');
  rw.close();
  // Five minutes from the first interval, edges off the minute: the plan reaches raw interval rows.
  const [since, until] = [String((first - 1500) / 1000), String((first + 301_500) / 1000)];
  const empty = query(['--db', file, 'series', '--since', '100', '--until', '200', '--step', '1m', '--format', 'json']);
  assert.equal(empty.status, 0, empty.stdout + empty.stderr);
  assert.equal(empty.stdout, '[]\n');
  assert.match(empty.stderr, /no intervals in this window/);
  const nobody = query(['--db', file, 'series', '--ip', '203.0.113.99', '--since', since, '--until', until, '--step', '1m', '--format', 'json']);
  assert.equal(nobody.status, 0, nobody.stdout + nobody.stderr);
  const rows = JSON.parse(nobody.stdout) as Record<string, number>[];
  assert.ok(rows.length > 0);
  assert.ok(rows.every((row) => row.packets === 0 && row.bytes === 0 && row.tx_bytes === 0 && row.rx_bytes === 0));
  // The same file answers a window with intervals for all addresses only by reading the rows.
  assert.equal(query(['--db', file, 'series', '--since', since, '--until', until, '--step', '1m', '--format', 'json']).status, 1);
});

test('time before the first interval or after the last was never recorded: no note says its detail was removed', () => {
  // A replay, as a fresh file is: nothing shed, its first and last buckets start before and end after its intervals.
  const file = path.join(tmp(), 'fresh.db');
  const r = recorder(['record', '--pcap', P('ndpi_alexa-app.pcapng'), '--db', file, '--flows', '--quiet', '--interval-secs', '1']);
  assert.equal(r.status, 0, r.stderr);
  const ro = new Database(file, { readonly: true });
  const [first, last] = ro.prepare('select min(start_ms), max(end_ms) from batches').raw().get() as [number, number];
  ro.close();
  const around = ['--since', new Date(first - 48 * 60_000 - 1_449).toISOString(), '--until', new Date(last + 7 * 60_000 + 500).toISOString()];
  for (const args of [['series', '--all', '--step', '5s'], ['series', ...around, '--step', '5s'], ['top', ...around], ['top', '--by', 'flow', ...around]]) {
    for (const format of ['table', 'json']) {
      const q = query(['--db', file, ...args, '--format', format]);
      assert.equal(q.status, 0, q.stderr);
      assert.ok(q.stdout.length > 0, `${args.join(' ')} ${format}`);
      assert.doesNotMatch(q.stderr, /no longer in the file/, `${args.join(' ')} ${format}`);
    }
  }
});

test('intervals without traffic before the first packet (a live capture started mid-minute) are not detail removed', () => {
  // 2 s of ARP from :58, then a UDP frame a second: the first minute bucket has no rows, its hour does.
  const arp = ethernet([], 0x0806, Buffer.alloc(28));
  const frames = [arp, arp, ...Array.from({ length: 148 }, () => ethernet([], 0x0800, udp('10.0.0.1', '10.0.0.2', 0, 0, 28)))];
  const dir = tmp();
  const pcap = path.join(dir, 'mid-minute.pcap');
  writePcap(pcap, frames, 1_790_000_098, 1); // from hh:mm:58, a frame a second
  const file = path.join(dir, 'mid-minute.db');
  const r = recorder(['record', '--pcap', pcap, '--db', file, '--quiet', '--interval-secs', '1']);
  assert.equal(r.status, 0, r.stderr);
  for (const args of [['series', '--ip', '10.0.0.1', '--step', '1m', '--all'], ['series', '--step', '1m', '--all'], ['top', '--all']]) {
    const q = query(['--db', file, ...args]);
    assert.equal(q.status, 0, q.stderr);
    assert.doesNotMatch(q.stderr, /no longer in the file/, args.join(' '));
  }
});

test('series refuses a step that is not a multiple of each interval length in the window (it would inflate rates)', () => {
  const file = path.join(tmp(), 'mixed.db');
  for (const [pcap, secs] of [['ndpi_gnutella.pcap', '2'], ['zeek_smtp.pcap', '3']]) {
    const r = recorder(['record', '--pcap', P(pcap), '--db', file, '--quiet', '--interval-secs', secs]);
    assert.equal(r.status, 0, r.stderr);
  }
  for (const step of ['1s', '2s', '4s']) {
    const q = query(['--db', file, 'series', '--all', '--step', step, '--format', 'json']);
    assert.equal(q.status, 1, step);
    const e = (JSON.parse(q.stdout) as { error: { message: string; code: string } }).error;
    assert.equal(e.code, 'ERR_TC_USAGE');
    // 6 s is the intervals' common multiple, but from 1970 to 2015 it would make too many rows: a day fits both.
    assert.match(e.message, new RegExp(`--step ${step} is not a multiple of each of the interval lengths recorded in this window \\(2s, 3s\\): .*use --step 1d, a multiple of 6s`));
  }
  assert.equal(query(['--db', file, 'series', '--all', '--step', '1d', '--format', 'csv']).status, 0);
  // Only the gnutella replay (2 s intervals, at the epoch) in the window: 2 s fits there.
  assert.equal(query(['--db', file, 'series', '--since', '0', '--until', '600', '--step', '2s']).status, 0);
  assert.equal(query(['--db', file, 'series', '--since', '2015-07-25T13:40:00Z', '--until', '2015-07-25T13:50:00Z', '--step', '6s']).status, 0);
});
