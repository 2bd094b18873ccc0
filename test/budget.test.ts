/**
 * The disk budget (`record --max-db-size`): wrong sizes refused; a flood replay kept under a
 * small budget with exact totals and heavy hitters, the folds recorded and reported; detail
 * shed oldest first, one kind at a time, a coarser bucket never before the finer rows of it,
 * answers still exact after shedding; the hard stop (SQLITE_FULL) rolled back and retried.
 */
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { exited, needRoot, query, queryJson, RECORDER, recorder, sleep, spawnIn, tmp, waitForStderr } from './helpers';
import { sendFrames, spoofedUdp, vethPair } from './support/netns';
import { generate } from './support/gen';
import { makeBatch } from './support/synth';
import { openForWrite } from '../src/recorder/write/db';
import { BatchSink } from '../src/recorder/write/sink';
import { Logger } from '../src/recorder/observe/log';
import { Metrics } from '../src/recorder/observe/metrics';
import { DEFAULT_RETENTION, SHED_ORDER } from '../src/recorder/upkeep/retention';
import { HOUR_MS, MINUTE_MS } from '../src/schema/levels';
import type { Batch } from '../src/native';

const MiB = 2 ** 20;

interface TopRow { ip: string; tx_bytes: number; rx_bytes: number; tx_packets: number; rx_packets: number }

function fileBytes(db: string): { pages: number; onDisk: number } {
  const d = new Database(db, { readonly: true });
  const pages = (d.pragma('page_count', { simple: true }) as number) * (d.pragma('page_size', { simple: true }) as number);
  d.close();
  return { pages, onDisk: statSync(db).size };
}

describe('record --max-db-size: wrong sizes', () => {
  for (const bad of ['lots', '8 GB', '-1', '8GiBs', '1.5', '']) {
    test(`${JSON.stringify(bad)} is refused with the accepted forms (text and json)`, () => {
      const db = path.join(tmp(), 'x.db');
      const r = recorder(['record', '--pcap', 'nothing.pcap', '--db', db, '--max-db-size', bad]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /^traffic-counter: error: --max-db-size ".*" is not a size: expected a whole number of bytes, or a number with KiB, MiB, GiB, TiB .*512MiB, 8GiB, 1\.5GiB.*\[ERR_TC_BAD_OPTION\]\n$/);
      const j = recorder(['record', '--pcap', 'nothing.pcap', '--db', db, '--max-db-size', bad, '--log-format', 'json']);
      assert.equal(j.status, 1);
      const doc = JSON.parse(j.stdout) as { error: { message: string; code: string } };
      assert.equal(doc.error.code, 'ERR_TC_BAD_OPTION');
      assert.match(doc.error.message, /is not a size: expected/);
      assert.equal(j.stdout.trim().split('\n').length, 1);
    });
  }

  test('--help shows the forms and the default rule', () => {
    const r = recorder(['record', '--help']);
    assert.match(r.stdout.replace(/\s+/g, ' '), /--max-db-size <size> most bytes the database file may take.*\(default: live: the smaller of 8 GiB and 10% of the file system that holds --db; replays: none\)/);
  });
});

describe('replay of a spoofed flood under --max-db-size 32MiB', () => {
  const dir = tmp();
  const cap = path.join(dir, 'flood.pcap');
  // 200,000 remote sources over 30 s (6 intervals of ~78,000 addresses and ~93,000 flows each),
  // around 4 local addresses that carry every packet: the heavy hitters.
  generate(cap, { packets: 600_000, hosts: 200_000, flows: 200_000, seconds: 30 });
  const full = path.join(dir, 'full.db');
  const small = path.join(dir, 'small.db');
  const r1 = recorder(['record', '--pcap', cap, '--db', full, '--flows', '--quiet']);
  const r2 = recorder(['record', '--pcap', cap, '--db', small, '--flows', '--max-db-size', '32MiB']);

  test('the file stays under the budget; the start line names it and the WAL bound', () => {
    assert.equal(r1.status, 0, r1.stderr);
    assert.equal(r2.status, 0, r2.stderr);
    assert.match(r2.stderr, /disk budget 32\.0 MiB \(--max-db-size\) \+ WAL up to 64\.0 MiB/);
    const f = fileBytes(small);
    assert.ok(f.pages <= 32 * MiB && f.onDisk <= 32 * MiB, `${f.pages} / ${f.onDisk} bytes`);
    // Without a budget the same replay takes more than the budget: the budget did the work.
    assert.ok(fileBytes(full).onDisk > 32 * MiB);
  });

  test('totals equal the capture, and the heavy hitters are exact', () => {
    const series = (db: string) => queryJson<{ start: string; packets: number; bytes: number }[]>(['--db', db, 'series', '--all', '--step', '5m']);
    assert.deepEqual(series(small), series(full));
    const top = (db: string) => queryJson<TopRow[]>(['--db', db, 'top', '--all', '--limit', '10']);
    const heavy = (rows: TopRow[]) => rows.filter((r) => r.ip !== 'overflow').slice(0, 5);
    assert.deepEqual(heavy(top(small)), heavy(top(full)));
    const sql = (db: string) => queryJson<{ n: number; b: number }[]>(['--db', db, 'sql', 'select count(*) as n, sum(tx_bytes) + sum(rx_bytes) as b from ip_1m', '--all'])[0];
    assert.equal(Number(sql(small).b), Number(sql(full).b));
    assert.ok(Number(sql(small).n) < Number(sql(full).n) / 10, 'most addresses were folded');
  });

  test('the folds are recorded per interval and reported by status, the intervals table and the completeness line', () => {
    const st = queryJson<Record<string, number>>(['--db', small, 'status', '--all']);
    assert.equal(st.intervals, 6);
    assert.equal(st.budget_folded_intervals, 6);
    const iv = queryJson<{ budget_folded_ip_keys: number; budget_folded_flow_keys: number }[]>([
      '--db', small, 'sql', 'select sum(budget_folded_ip_keys) as budget_folded_ip_keys, sum(budget_folded_flow_keys) as budget_folded_flow_keys from intervals', '--all',
    ]);
    assert.equal(Number(iv[0].budget_folded_ip_keys), st.budget_folded_ip_keys);
    assert.equal(Number(iv[0].budget_folded_flow_keys), st.budget_folded_flow_keys);
    // Every address of the capture is either kept or folded.
    const fullSt = queryJson<Record<string, number>>(['--db', full, 'status', '--all']);
    assert.equal(fullSt.budget_folded_ip_keys, 0);
    const d = new Database(small, { readonly: true });
    const kept = d.prepare('select sum(ip_rows - 1) from batches').pluck().get() as number;
    d.close();
    const dfull = new Database(full, { readonly: true });
    const rows = dfull.prepare('select sum(ip_rows) from batches').pluck().get() as number;
    dfull.close();
    assert.equal(kept + st.budget_folded_ip_keys, rows);
    const top = query(['--db', small, 'top', '--all']);
    assert.match(top.stdout, /6 intervals kept as the top [\d,-]+ addresses and [\d,-]+ flows by bytes during a flood \(disk budget; [\d,]+ other keys folded into the overflow row, totals exact\)/);
    const csv = query(['--db', small, 'status', '--all', '--format', 'csv']);
    assert.match(csv.stdout, /\nbudget_folded_intervals,6\n/);
  });

  test('folded addresses never reach the addresses table', () => {
    const d = new Database(small, { readonly: true });
    const n = d.prepare('select count(*) from addresses').pluck().get() as number;
    const referenced = d.prepare('select count(*) from (select ip_id from ip_deltas union select src_id from flow_deltas union select dst_id from flow_deltas)').pluck().get() as number;
    d.close();
    assert.equal(n, referenced);
  });
});

/** `n` hosts with addresses shifted by `base` (a new set per interval: every level grows). */
function shifted(startMs: number, n: number, base: number, seed: number): Batch {
  const b = makeBatch(startMs, 5000, n, n, seed);
  for (let i = 0; i < n; i++) {
    const v = 0x0b000000 + base + i;
    b.addr.bytes.set([v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255], i * 16);
  }
  return b;
}

async function fill(file: string, batches: Batch[], maxDbBytes: number, budgetEstimateScale?: number): Promise<Metrics> {
  const db = await openForWrite(file);
  const metrics = new Metrics(file);
  const sink = new BatchSink({
    db,
    spec: { key: `synth:${file}`, kind: 'replay', source: 'synth', intervalMs: 5000, flows: true, options: {} },
    retention: DEFAULT_RETENTION,
    queueMax: 1e9,
    maxDbBytes,
    budgetEstimateScale,
    log: new Logger('text'),
    metrics,
  });
  // One batch at a time (as live capture at its own pace): one write group each.
  for (const b of batches) {
    await sink.write(b);
    await sink.idle();
  }
  await sink.close(Date.now() + 60_000);
  db.sqlite.pragma('wal_checkpoint(TRUNCATE)');
  db.sqlite.close();
  return metrics;
}

describe('shedding under a budget: order, the never-vanish rule, exact answers', () => {
  // 23:00 UTC: the recording crosses midnight, so a day closes and its hours may go too.
  const T0 = Date.UTC(2026, 10, 1, 23, 0);
  const N = 2600;
  const batches = Array.from({ length: N }, (_, i) => shifted(T0 + i * 5000, 40, i * 40, i));
  const total = batches.reduce((s, b) => s + Number(b.counters.ipBytes), 0);
  const file = path.join(tmp(), 'shed.db');
  const BUDGET = 6 * MiB;
  const filled = fill(file, batches, BUDGET);

  test('the file stays under the budget and every interval is written', async () => {
    const m = await filled;
    assert.equal(m.batchesWritten, N);
    assert.equal(m.writeErrors, 0);
    const f = fileBytes(file);
    assert.ok(f.pages <= BUDGET && f.onDisk <= BUDGET, `${f.pages} / ${f.onDisk}`);
    const d = new Database(file, { readonly: true });
    assert.equal(d.prepare('select count(*) from sessions where ended_at is null').pluck().get(), 0, 'the session ended');
    d.close();
  });

  test('kinds go in order, oldest first, each step a budget-shed event', async () => {
    await filled;
    const st = queryJson<{ events: { kind: string; start: string; end: string; shed?: { level: string; bytes_freed: number } }[]; budget: { shed: { level: string; events: number }[] } }>([
      '--db', file, 'status', '--all',
    ]);
    const shed = st.events.filter((e) => e.kind === 'budget-shed');
    assert.ok(shed.length > 0);
    const levels = shed.map((e) => e.shed!.level);
    assert.equal(levels[0], 'flow_deltas');
    // A kind is first shed only after every kind before it in SHED_ORDER was.
    const order = SHED_ORDER.flatMap((k) => k.split('+'));
    const firsts = [...new Set(levels)].map((l) => order.indexOf(l));
    for (let i = 1; i < firsts.length; i++) assert.ok(firsts[i] > firsts[i - 1] || order[firsts[i]] === 'ip_1d', `${[...new Set(levels)]}`);
    for (const l of ['flow_deltas', 'ip_deltas', 'flow_1m', 'ip_1m', 'flow_1h', 'ip_1h']) assert.ok(levels.includes(l), `${l} was shed (${[...new Set(levels)]})`);
    assert.ok(shed.every((e) => e.shed!.bytes_freed >= 0));
    // Within a kind, oldest first: the spans of one level's events do not go back in time.
    for (const l of new Set(levels)) {
      const spans = shed.filter((e) => e.shed!.level === l).map((e) => Date.parse(e.start));
      assert.deepEqual(spans, [...spans].sort((a, b) => a - b));
    }
    const table = query(['--db', file, 'status', '--all']);
    assert.match(table.stdout, /shed flow_deltas: [\d,]+ events?, [\d,]+ rows, .* freed/);
  });

  test('a coarser bucket never leaves while a finer level holds rows of it', async () => {
    await filled;
    const d = new Database(file, { readonly: true });
    // A finer bucket's coarser bucket holds it, or is still open (dirty: not yet summed).
    const orphan = (finer: string, coarser: string, ms: number) =>
      d.prepare(`select count(*) from (select distinct bucket_ms / ${ms} * ${ms} as b from ${finer}) f where not exists (select 1 from ${coarser} c where c.bucket_ms = f.b) and not exists (select 1 from rollup_dirty r where r.level = '${coarser}' and r.bucket_ms = f.b)`).pluck().get() as number;
    assert.equal(orphan('ip_1m', 'ip_1h', HOUR_MS), 0);
    assert.equal(orphan('ip_1h', 'ip_1d', 24 * HOUR_MS), 0);
    assert.equal(orphan('flow_1m', 'flow_1h', HOUR_MS), 0);
    const rawOrphans = d
      .prepare(`select count(*) from batches b where (pruned & 1) = 0 and ip_rows > 0 and not exists (select 1 from ip_1m m where m.bucket_ms = b.start_ms / ${MINUTE_MS} * ${MINUTE_MS}) and not exists (select 1 from rollup_dirty r where r.level = 'ip_1m' and r.bucket_ms = b.start_ms / ${MINUTE_MS} * ${MINUTE_MS})`)
      .pluck()
      .get() as number;
    assert.equal(rawOrphans, 0);
    // Every address left is referenced by some row.
    const unreferenced = d
      .prepare('select count(*) from addresses a where not exists (select 1 from ip_1d where ip_id = a.id) and not exists (select 1 from ip_1h where ip_id = a.id) and not exists (select 1 from ip_1m where ip_id = a.id) and not exists (select 1 from ip_deltas where ip_id = a.id) and not exists (select 1 from flow_1h where src_id = a.id or dst_id = a.id) and not exists (select 1 from flow_1m where src_id = a.id or dst_id = a.id) and not exists (select 1 from flow_deltas where src_id = a.id or dst_id = a.id)')
      .pluck()
      .get() as number;
    const firstDay = d.prepare('select count(*) as n, sum(tx_bytes) as b from ip_1d where bucket_ms = ?').get(Date.UTC(2026, 10, 1)) as { n: number; b: number };
    const firstHour = d.prepare('select min(bucket_ms) from ip_1h').pluck().get() as number;
    const dayBytes = batches.filter((b) => b.startMs < Date.UTC(2026, 10, 2)).reduce((s, b) => s + Number(b.counters.ipBytes), 0);
    d.close();
    // The first day's hours left; the day itself, the last copy of its totals, was compacted.
    assert.ok(firstHour >= Date.UTC(2026, 10, 2), 'the first day\'s hours were shed');
    assert.ok(firstDay.n < 60 * 40, `the first day was compacted (${firstDay.n} rows)`);
    assert.equal(firstDay.b, dayBytes, 'the compacted day keeps its totals');
    assert.equal(unreferenced, 0);
  });

  test('answers over the shed time equal every interval at the coarser level left, and say where finer detail is gone', async () => {
    await filled;
    const end = T0 + N * 5000;
    // Nothing leaves the totals: a shed level is held by a coarser one, and a day is compacted, never removed.
    const days = ['--since', new Date(Date.UTC(2026, 10, 1)).toISOString(), '--until', new Date(Date.UTC(2026, 10, 3)).toISOString()];
    const byDay = queryJson<{ bytes: number }[]>(['--db', file, 'series', ...days, '--step', '1d']);
    assert.equal(byDay.reduce((s, r) => s + Number(r.bytes), 0), total);
    const top = queryJson<TopRow[]>(['--db', file, 'top', ...days, '--limit', '1']);
    assert.equal(top[0].ip, 'overflow');
    // The overflow row is no network: --by net gives it its own row, not `::/64`.
    assert.equal(queryJson<{ net: string }[]>(['--db', file, 'top', '--by', 'net', ...days, '--limit', '1'])[0].net, 'overflow');
    // Finer than what is left (hours of the first day, an edge inside it): said, in every format.
    const window = ['--since', new Date(T0 - 17 * 60_000).toISOString(), '--until', new Date(end + 7 * 60_000).toISOString()];
    const inside = ['--since', new Date(T0 + 30 * 60_000).toISOString(), '--until', new Date(end + 7 * 60_000).toISOString()];
    for (const args of [['series', ...window, '--step', '1h'], ['top', ...inside]]) {
      for (const format of ['table', 'json', 'csv']) {
        const r = query(['--db', file, ...args, '--format', format]);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stderr, /detail (.* )?of 2026-11-01T.* is no longer in the file \(removed by the disk budget or retention, see `tc-query status`\): this answer counts that time as 0; (use a coarser --step|widen --since\/--until)/, `${args[0]} ${format}`);
      }
    }
    // Whole days read from the days: no such note.
    assert.doesNotMatch(query(['--db', file, 'top', ...days]).stderr, /no longer in the file/);
  });
});

describe('the budget\'s hard stop (SQLITE_FULL)', () => {
  test('a write that reaches max_page_count is rolled back, detail is shed and it is retried: nothing lost, totals exact', async () => {
    const T0 = Date.UTC(2026, 10, 1, 10, 0);
    // The same 60 addresses every interval, inside one hour: raw rows fill the file.
    const batches = Array.from({ length: 700 }, (_, i) => shifted(T0 + i * 5000, 150, 0, i));
    const file = path.join(tmp(), 'full.db');
    const BUDGET = 2 * MiB;
    // Estimates off: the hard stop is the only guard.
    const m = await fill(file, batches, BUDGET, 0);
    assert.ok(m.budgetFullWrites > 0, 'writes reached SQLITE_FULL');
    assert.equal(m.batchesWritten, batches.length);
    assert.equal(m.writeErrors, 0);
    const f = fileBytes(file);
    assert.ok(f.pages <= BUDGET && f.onDisk <= BUDGET, `${f.pages} / ${f.onDisk}`);
    const rows = queryJson<TopRow[]>(['--db', file, 'top', '--all', '--limit', '0']);
    assert.equal(rows.reduce((s, r) => s + Number(r.tx_bytes), 0), batches.reduce((s, b) => s + Number(b.counters.ipBytes), 0));
    const st = queryJson<{ events: { kind: string }[] }>(['--db', file, 'status', '--all']);
    assert.ok(st.events.some((e) => e.kind === 'budget-shed'));
    // Closing (the open buckets' rollup rows and the session's end) also fits under the hard stop.
    const d = new Database(file, { readonly: true });
    assert.equal(d.prepare('select count(*) from sessions where ended_at is null').pluck().get(), 0, 'the session ended');
    d.close();
  });
});

describe('live: a spoofed flood under a small budget, in a namespace pair', () => {
  const BUDGET = 4 * MiB;
  const MAC_B = '02:00:00:00:79:02';

  test('the file stays under the budget, no interval and no packet leaves the totals, old detail is shed as events', async (t) => {
    if (!needRoot(t)) return;
    // A month-old history filling most of the budget: the live flood can only fit by shedding it.
    const db = path.join(tmp(), 'live-budget.db');
    const T0 = Date.UTC(2026, 9, 1, 12, 0);
    await fill(db, Array.from({ length: 900 }, (_, i) => shifted(T0 + i * 5000, 40, i * 40, i)), BUDGET);
    const net = vethPair(`tcbud${process.pid}`, 'bud', { b: MAC_B });
    try {
      const child = spawnIn(net.b, process.execPath, [RECORDER, 'record', '--iface', net.devB, '--db', db, '--flows', '--workers', '2', '--interval-secs', '1', '--max-db-size', '4MiB', '--quiet']);
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      await waitForStderr(child, /recording bud-b/);
      assert.match(stderr, /disk budget 4\.00 MiB \(--max-db-size\)/);
      const startedMs = Date.now();
      // 60,000 frames from 60,000 sources within 20 s: far more keys than 4 MiB holds.
      const N = 60_000;
      assert.equal(sendFrames(net, Array.from({ length: N }, (_, i) => spoofedUdp(MAC_B, i)), 20), N);
      await sleep(2500);
      child.kill('SIGINT');
      assert.equal(await exited(child), 0, stderr);
      const f = fileBytes(db);
      assert.ok(f.pages <= BUDGET && f.onDisk <= BUDGET, `${f.pages} / ${f.onDisk} bytes over ${BUDGET}`);
      const d = new Database(db, { readonly: true });
      try {
        const live = `session_id in (select id from sessions where kind = 'live')`;
        const b = d.prepare(`select sum(ipv4_packets) as v4, sum(ring_drops) as drops, sum(budget_folded_ip_keys) as folded, count(*) as n from batches where ${live}`).get() as Record<string, number>;
        // The kernel may drop frames on a loaded host (counted as drops); none is lost in between.
        assert.equal(b.v4 + b.drops, N, `counted ${b.v4} + dropped ${b.drops} of ${N}`);
        assert.ok(b.folded > 0, 'the flood intervals were kept as their heavy hitters');
        assert.equal(d.prepare(`select count(*) from events where kind = 'lost-interval'`).pluck().get(), 0, 'no interval lost');
        // Consecutive intervals from the first to the last: none missing.
        const span = d.prepare(`select min(start_ms) as a, max(start_ms) as z from batches where ${live}`).get() as { a: number; z: number };
        assert.equal(b.n, (span.z - span.a) / 1000 + 1, 'every interval written');
        const shed = d.prepare(`select count(*) from events where kind = 'budget-shed' and at_ms >= ?`).pluck().get(startedMs) as number;
        assert.ok(shed > 0, 'the month-old detail was shed, as events');
        t.diagnostic(`file ${f.onDisk} bytes of ${BUDGET}; ${b.n} intervals, ${b.v4} packets + ${b.drops} dropped, ${b.folded} addresses folded, ${shed} shed events`);
      } finally {
        d.close();
      }
      const st = queryJson<{ budget_folded_intervals: number }>(['--db', db, 'status', '--all']);
      assert.ok(st.budget_folded_intervals > 0);
    } finally {
      net.remove();
    }
  });
});

test('--max-db-size past what a file can be is refused as too large, not as no size', () => {
  const r = recorder(['record', '--pcap', 'nothing.pcap', '--db', path.join(tmp(), 'x.db'), '--max-db-size', '99999999999TiB']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^traffic-counter: error: --max-db-size 99999999999TiB is too large: give at most .*, or 0 for no budget \[ERR_TC_BAD_OPTION\]\n$/);
});
