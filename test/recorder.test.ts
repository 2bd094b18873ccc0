/**
 * The recorder as a durable log: rollups equal the log, `rebuild` equals incremental upkeep,
 * a replay killed at random moments leaves a sound file and no interval counted twice.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { exited, pcapsDir, queryJson, recordGenerated, recorder, RECORDER, seeded, sleep, tmp } from './helpers';
import { generate } from './support/gen';
import { byFlowKey, byIpId } from '../src/recorder/typed-arrays/order';
import { openForWrite } from '../src/recorder/write/db';
import { BatchSink, batchBytes } from '../src/recorder/write/sink';
import { Logger } from '../src/recorder/observe/log';
import { Metrics } from '../src/recorder/observe/metrics';
import { makeBatch } from './support/synth';
import { DEFAULT_RETENTION } from '../src/recorder/upkeep/retention';
import { FALLBACK_PAGES as AUTOCHECKPOINT_FALLBACK_PAGES } from '../src/recorder/upkeep/checkpointer';
import { Worker } from 'node:worker_threads';
import { existsSync, statSync } from 'node:fs';
import { putU64, RowInsert } from '../src/recorder/write/rows';
import { ALL_LEVELS, FLOW_LEVELS, IP_LEVELS, LEVELS } from '../src/schema/levels';

const ROLLUPS = ALL_LEVELS;

function dump(db: string): Record<string, unknown[]> {
  const d = new Database(db, { readonly: true });
  try {
    const out: Record<string, unknown[]> = {};
    for (const t of ROLLUPS) out[t] = d.prepare(`select * from ${t} order by 1, 2, 3`).raw().all();
    out.dirty = d.prepare('select * from rollup_dirty').raw().all();
    return out;
  } finally {
    d.close();
  }
}

function sums(db: string, sql: string): unknown[] {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare(sql).raw().get() as unknown[];
  } finally {
    d.close();
  }
}

test('rollups equal the log at every level, and rebuild equals incremental upkeep', () => {
  const db = path.join(tmp(), 'r.db');
  for (const f of ['ndpi_gnutella.pcap', 'zeek_smtp.pcap', 'ndpi_alexa-app.pcapng']) {
    const r = recorder(['record', '--pcap', path.join(pcapsDir(), f), '--db', db, '--flows', '--quiet', '--interval-secs', '1']);
    assert.equal(r.status, 0, r.stderr);
  }
  const raw = sums(db, 'select sum(tx_packets), sum(tx_bytes), sum(rx_packets), sum(rx_bytes) from ip_deltas');
  for (const t of IP_LEVELS) assert.deepEqual(sums(db, `select sum(tx_packets), sum(tx_bytes), sum(rx_packets), sum(rx_bytes) from ${t}`), raw, t);
  const rawFlows = sums(db, 'select sum(packets), sum(bytes), count(distinct src_id || dst_id || proto || sport || dport) from flow_deltas');
  for (const t of FLOW_LEVELS) assert.deepEqual(sums(db, `select sum(packets), sum(bytes), count(distinct src_id || dst_id || proto || sport || dport) from ${t}`), rawFlows, t);
  const incremental = dump(db);
  assert.deepEqual(incremental.dirty, [], 'every bucket closed at the end of a replay');
  const r = recorder(['rebuild', '--db', db]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /rebuilt \d+ rollup buckets/);
  assert.deepEqual(dump(db), incremental);
});

test('hour and day sums kept while recording (across a day boundary) equal their recomputation from the log', () => {
  // 14:13:20 UTC to 01:20 the next day: hours and two days closed from running sums.
  const db = recordGenerated({ packets: 20_000, hosts: 300, flows: 600, seconds: 40_000 }, 30);
  const incremental = dump(db);
  assert.ok(incremental.ip_1d.length > 0 && new Set(incremental.ip_1d.map((row) => (row as unknown[])[0])).size === 2, 'two days');
  assert.ok(new Set(incremental.ip_1h.map((row) => (row as unknown[])[0])).size >= 11, 'every hour');
  const raw = sums(db, 'select sum(tx_packets), sum(tx_bytes), sum(rx_packets), sum(rx_bytes) from ip_deltas');
  for (const t of IP_LEVELS) assert.deepEqual(sums(db, `select sum(tx_packets), sum(tx_bytes), sum(rx_packets), sum(rx_bytes) from ${t}`), raw, t);
  assert.equal(recorder(['rebuild', '--db', db]).status, 0);
  assert.deepEqual(dump(db), incremental);
});

test('a replay killed at random moments: the file stays sound and nothing is counted twice', async () => {
  const dir = tmp();
  const cap = path.join(dir, 'many-intervals.pcap');
  generate(cap, { packets: 300_000, hosts: 3_000, flows: 30_000, seconds: 900 });
  const clean = path.join(dir, 'clean.db');
  assert.equal(recorder(['record', '--pcap', cap, '--db', clean, '--flows', '--quiet']).status, 0);
  const expected = queryJson(['--db', clean, 'top', '--all', '--limit', '0']);

  const db = path.join(dir, 'killed.db');
  const rnd = seeded(12345);
  for (let i = 0; i < 4; i++) {
    const child = spawn(process.execPath, [RECORDER, 'record', '--pcap', cap, '--db', db, '--flows', '--quiet'], { stdio: 'ignore' });
    await sleep(300 + Math.floor(rnd() * 1500));
    child.kill('SIGKILL');
    await exited(child);
    const d = new Database(db);
    try {
      assert.equal(d.pragma('integrity_check', { simple: true }), 'ok');
    } finally {
      d.close();
    }
  }
  const r = recorder(['record', '--pcap', cap, '--db', db, '--flows', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(queryJson(['--db', db, 'top', '--all', '--limit', '0']), expected);
  const d = new Database(db, { readonly: true });
  try {
    const dup = d.prepare('select count(*) from (select session_id, start_ms from batches group by session_id, start_ms having count(*) > 1)').pluck().get();
    assert.equal(dup, 0, 'no interval twice');
  } finally {
    d.close();
  }
});

test('rows go to the log in primary-key order', () => {
  const rnd = seeded(3);
  const ids = Array.from({ length: 9000 }, () => 1 + Math.floor(rnd() * 4_000_000_000));
  const unique = [...new Set(ids)];
  const order = byIpId(unique)!;
  assert.equal(new Set(order).size, unique.length, 'a permutation');
  for (let k = 1; k < order.length; k++) assert.ok(unique[order[k - 1]] < unique[order[k]]);
  assert.equal(byIpId([1, 2, 3, 4]), null, 'already in order');
  const dense = Array.from({ length: 5000 }, (_, i) => 1 + ((i * 7919) % 5000) * 3);
  const denseOrder = byIpId(dense)!;
  assert.equal(new Set(denseOrder).size, dense.length, 'a permutation (dense ids)');
  for (let k = 1; k < denseOrder.length; k++) assert.ok(dense[denseOrder[k - 1]] < dense[denseOrder[k]]);
  const flow = { count: 3, src: Uint32Array.of(0, 1, 0), dst: Uint32Array.of(1, 0, 1), proto: Uint8Array.of(6, 6, 6), sport: Uint16Array.of(9, 1, 2), dport: Uint16Array.of(80, 80, 80) };
  assert.deepEqual([...byFlowKey(flow as never, [7, 3])!], [1, 2, 0]);
  // Many flows over ids and ports past one 11-bit digit: the radix order equals a comparator's.
  const n = 30_000;
  const addrIds = Array.from({ length: 3000 }, () => 1 + Math.floor(rnd() * 3_000_000));
  const pick = (m: number) => Math.floor(rnd() * m);
  const many = {
    count: n,
    src: Uint32Array.from({ length: n }, () => pick(3000)),
    dst: Uint32Array.from({ length: n }, () => pick(3000)),
    proto: Uint8Array.from({ length: n }, () => [6, 17, 1, 58][pick(4)]),
    sport: Uint16Array.from({ length: n }, () => pick(65536)),
    dport: Uint16Array.from({ length: n }, () => [53, 443, 8080, 65535][pick(4)]),
  };
  const key = (i: number) => [addrIds[many.src[i]], addrIds[many.dst[i]], many.proto[i], many.sport[i], many.dport[i]];
  const cmp = (x: number, y: number) => {
    const a = key(x);
    const b = key(y);
    for (let k = 0; k < 5; k++) if (a[k] !== b[k]) return a[k] - b[k];
    return x - y;
  };
  const radix = byFlowKey(many as never, addrIds)!;
  assert.deepEqual([...radix], Array.from({ length: n }, (_, i) => i).sort(cmp), 'radix order = comparator order (ties in row order)');
});

/** A recorder sink on a new file, as `traffic-counter record` makes it. */
async function sinkOn(file: string, kind: 'live' | 'replay', retention = DEFAULT_RETENTION, checkpointThread = true, queueMaxBytes?: number) {
  const db = await openForWrite(file);
  const metrics = new Metrics(file);
  const sink = new BatchSink({
    db,
    spec: { key: `test:${file}`, kind, source: 'test', intervalMs: 60_000, flows: true, options: {} },
    retention,
    queueMax: 1_000_000,
    queueMaxBytes,
    log: new Logger('text'),
    metrics,
    checkpointThread,
  });
  return { db, sink, metrics };
}

test('under retention the file levels off: freed pages are reused, not added to', async () => {
  const file = path.join(tmp(), 'steady.db');
  const { db, sink } = await sinkOn(file, 'live', { rawIpMs: 20 * 60_000, rawFlowMs: 20 * 60_000, minutesMs: 40 * 60_000, hoursMs: 3 * 3_600_000, daysMs: Infinity }, false);
  // Times ahead of the clock: retention measures age against the newest interval written.
  const t0 = Math.ceil(Date.now() / 86_400_000) * 86_400_000 + 86_400_000;
  const pages: number[] = [];
  const pageCount = () => db.sqlite.pragma('page_count', { simple: true }) as number;
  for (let m = 0; m < 7 * 60; m++) {
    await sink.write(makeBatch(t0 + m * 60_000, 60_000, 400, 300, m % 7));
    if (m % 60 === 59) pages.push(pageCount());
  }
  await sink.close(Date.now() + 10_000);
  const free = db.sqlite.pragma('freelist_count', { simple: true }) as number;
  db.sqlite.close();
  // Hour rollups fill their 3 h by hour 4; from then on deletes and inserts balance.
  const [h4, , , h7] = pages.slice(3);
  assert.ok(pages[1] > pages[0], `the file grows while retention fills: ${pages.join(' ')}`);
  assert.ok(h7 <= h4 * 1.02 + 8, `pages per hour ${pages.join(' ')}: no growth once retention holds (free pages ${free})`);
});

test('readers never block the writer, and the WAL stays bounded while writing far more than its bound', async (t) => {
  const file = path.join(tmp(), 'wal.db');
  const { db, sink, metrics } = await sinkOn(file, 'replay');
  const t0 = Date.UTC(2026, 0, 1);
  let n = 0;
  const write = () => sink.write(makeBatch(t0 + n * 5000, 5000, 5000, 0, n++ % 12));
  await write();
  // A reader on a thread of its own: back-to-back read transactions, each held open a while.
  const reader = new Worker(
    `const D = require(${JSON.stringify(require.resolve('better-sqlite3'))});
     const { parentPort } = require('node:worker_threads');
     const db = new D(${JSON.stringify(file)}, { readonly: true });
     const sum = db.prepare('select count(*), sum(tx_bytes) from ip_deltas where batch_id > (select max(id) - 12 from batches)');
     let reads = 0, stop = false;
     parentPort.on('message', () => { stop = true; });
     const tick = () => {
       if (stop) { db.close(); parentPort.postMessage(reads); parentPort.close(); return; }
       db.transaction(() => { sum.get(); const until = Date.now() + 20; while (Date.now() < until); sum.get(); })();
       reads++;
       setImmediate(tick);
     };
     tick();`,
    { eval: true },
  );
  const started = Date.now();
  while (Date.now() - started < 1500 && n < 2000) await write();
  reader.postMessage('stop');
  const reads = await new Promise<number>((resolve) => reader.once('message', resolve));
  assert.ok(reads > 10, `the reader read (${reads} transactions)`);
  assert.equal(metrics.writeErrors, 0, 'no write waited on or failed because of the reader');
  // Bound: the writer's own fallback auto-checkpoint (64 MiB of pages), plus what it appends
  // while the checkpoint thread copies that much: the writer's auto-checkpoint is skipped while
  // the thread holds the checkpoint lock, and on a busy disk that copy spans a few transactions.
  // A WAL that the checkpoints did not bound would grow by every byte written.
  const bound = AUTOCHECKPOINT_FALLBACK_PAGES * 4096 + 32 * 2 ** 20;
  let maxWal = 0;
  let written = 0;
  const walSize = () => (existsSync(file + '-wal') ? statSync(file + '-wal').size : 0);
  for (let i = 0; i < 1400; i++) {
    const before = db.sqlite.pragma('page_count', { simple: true }) as number;
    await write();
    written += ((db.sqlite.pragma('page_count', { simple: true }) as number) - before) * 4096;
    maxWal = Math.max(maxWal, walSize());
  }
  await sink.close(Date.now() + 10_000);
  db.sqlite.close();
  assert.ok(written > bound, `wrote ${written} bytes of pages, more than the bound ${bound}`);
  assert.ok(maxWal <= bound, `WAL at most ${maxWal} bytes, bound ${bound}`);
  t.diagnostic(`WAL at most ${maxWal} bytes (bound ${bound}) while ${written} bytes of pages were written`);
});

test('64-bit counters: per-IP and flow values past 2^32 and 2^53 are logged and rolled up exactly', async () => {
  const file = path.join(tmp(), 'big.db');
  const { db, sink } = await sinkOn(file, 'replay');
  // Five minutes across midnight: minute, hour and day buckets all close.
  const t0 = Date.UTC(2026, 0, 1, 23, 58);
  const set = (col: Uint32Array, row: number, hi: number, lo: number) => {
    col[2 * row] = lo;
    col[2 * row + 1] = hi;
  };
  for (let n = 0; n < 5 * 12; n++) {
    const b = makeBatch(t0 + n * 5000, 5000, 50, 20, n % 7);
    set(b.flow.bytes, 0, 1, 705032704); // 5e9
    if (n === 7) set(b.flow.bytes, 1, 0x200000, 1); // 2^53 + 1
    if (n >= 40 && n < 43) set(b.flow.bytes, 2, 0x100000, 1); // the same flow: three 2^52 + 1 sum past 2^53
    set(b.ip.rxBytes, 1, 1, 705032704); // 5e9: past 2^32, a double on the JS side
    if (n === 5) set(b.ip.txBytes, 0, 0x200000, 1); // 2^53 + 1: a BigInt on the JS side
    if (n === 30) set(b.ip.txPackets, 2, 0x40000000, 0); // 2^62
    if (n >= 40 && n < 43) set(b.ip.txBytes, 3, 0x100000, 1); // 2^52 + 1: three of them sum past 2^53
    await sink.write(b);
  }
  await sink.close(Date.now() + 10_000);
  db.sqlite.close();
  const d = new Database(file, { readonly: true }).defaultSafeIntegers(true);
  try {
    const count = (where: string) => d.prepare(`select count(*) from ip_deltas where ${where}`).pluck().get();
    assert.equal(count('rx_bytes = 5000000000'), 60n);
    assert.equal(count('tx_bytes = 9007199254740993'), 1n);
    assert.equal(count('tx_packets = 4611686018427387904'), 1n);
    for (const [t, ms] of IP_LEVELS.map((l) => [l, LEVELS[l].ms] as const)) {
      const got = d.prepare(`select bucket_ms, ip_id, tx_packets, tx_bytes, rx_packets, rx_bytes from ${t} order by 1, 2`).raw().all();
      const fromLog = d
        .prepare(
          `select (b.start_ms / ${ms}) * ${ms}, x.ip_id, sum(x.tx_packets), sum(x.tx_bytes), sum(x.rx_packets), sum(x.rx_bytes)
           from ip_deltas x join batches b on b.id = x.batch_id group by 1, 2 order by 1, 2`,
        )
        .raw()
        .all();
      assert.ok(got.length > 0);
      assert.deepEqual(got, fromLog, `${t} equals the log, exactly`);
    }
    for (const [t, ms] of FLOW_LEVELS.map((l) => [l, LEVELS[l].ms] as const)) {
      const key = 'src_id, dst_id, proto, sport, dport';
      const got = d.prepare(`select bucket_ms, ${key}, packets, bytes from ${t} order by 1, 2, 3, 4, 5, 6`).raw().all();
      const fromLog = d
        .prepare(
          `select (b.start_ms / ${ms}) * ${ms}, ${key}, sum(x.packets), sum(x.bytes)
           from flow_deltas x join batches b on b.id = x.batch_id group by 1, 2, 3, 4, 5, 6 order by 1, 2, 3, 4, 5, 6`,
        )
        .raw()
        .all();
      assert.ok(got.length > 0);
      assert.deepEqual(got, fromLog, `${t} equals the log, exactly`);
    }
    assert.equal(d.prepare('select count(*) from flow_deltas where bytes = 9007199254740993').pluck().get(), 1n);
  } finally {
    d.close();
  }
});

test('a locked database: the write queue holds at most --queue-max-mib of batches, the oldest are recorded as lost', async () => {
  const file = path.join(tmp(), 'queue.db');
  const one = batchBytes(makeBatch(0, 5000, 1000, 100));
  const { db, sink, metrics } = await sinkOn(file, 'live', DEFAULT_RETENTION, false, 3.5 * one);
  const lock = new Database(file);
  lock.exec('begin exclusive');
  const t0 = Math.floor(Date.now() / 5000) * 5000 - 600_000;
  for (let n = 0; n < 10; n++) {
    sink.push(makeBatch(t0 + n * 5000, 5000, 1000, 100, n));
    assert.ok(metrics.queueBytes <= 3.5 * one, `queue ${metrics.queueBytes} bytes, bound ${3.5 * one}`);
  }
  assert.equal(metrics.queueDepth, 3);
  assert.equal(metrics.lostIntervals, 7);
  lock.exec('commit');
  lock.close();
  await sink.idle();
  assert.equal(metrics.writeTransactions, 1, 'the three batches that waited went in one transaction');
  await sink.close(Date.now() + 10_000);
  const starts = db.sqlite.prepare('select start_ms from batches order by 1').pluck().all();
  const lost = db.sqlite.prepare("select start_ms from events where kind = 'lost-interval' order by 1").pluck().all();
  db.sqlite.close();
  assert.deepEqual(starts, [7, 8, 9].map((n) => t0 + n * 5000), 'the newest batches were kept and written');
  assert.deepEqual(lost, [0, 1, 2, 3, 4, 5, 6].map((n) => t0 + n * 5000), 'every dropped interval is recorded');
});

test('group commit: batches that queue together go in shared transactions, each batch whole and appended once', async () => {
  const file = path.join(tmp(), 'group.db');
  const t0 = Date.UTC(2026, 0, 1);
  const batch = (n: number) => makeBatch(t0 + n * 5000, 5000, 5000, 200, n % 12);
  const first = await sinkOn(file, 'replay');
  // 30 batches of 5,200 rows offered at once: the queue takes 16, a transaction at most ~100k rows.
  await Promise.all(Array.from({ length: 30 }, (_, n) => first.sink.write(batch(n))));
  await first.sink.idle();
  const tx = first.metrics.writeTransactions;
  assert.equal(first.metrics.batchesWritten, 30);
  assert.ok(tx >= 2 && tx <= 4, `${tx} transactions for 30 batches`);
  await first.sink.close(Date.now() + 10_000);
  first.db.sqlite.close();
  // The same session again with five more: the 30 are skipped, the five appended, in one transaction.
  const again = await sinkOn(file, 'replay');
  await Promise.all(Array.from({ length: 35 }, (_, n) => again.sink.write(batch(n))));
  await again.sink.idle();
  assert.equal(again.metrics.batchesSkipped, 30);
  assert.equal(again.metrics.batchesWritten, 5);
  await again.sink.close(Date.now() + 10_000);
  const d = again.db.sqlite;
  try {
    assert.equal(d.prepare('select count(*) from batches').pluck().get(), 35);
    assert.equal(d.prepare('select count(*) from ip_deltas').pluck().get(), 35 * 5000);
    assert.equal(d.prepare('select count(*) from flow_deltas').pluck().get(), 35 * 200);
    const raw = d.prepare('select sum(tx_bytes) from ip_deltas').pluck().get();
    assert.equal(d.prepare('select sum(tx_bytes) from ip_1m').pluck().get(), raw, 'minutes closed inside a group equal the log');
  } finally {
    d.close();
  }
  // A replay with a queue bound below the read-ahead waits for room: nothing is dropped.
  const small = path.join(tmp(), 'small-queue.db');
  const db = await openForWrite(small);
  const metrics = new Metrics(small);
  const sink = new BatchSink({ db, spec: { key: 'small', kind: 'replay', source: 'test', intervalMs: 5000, flows: true, options: {} }, retention: DEFAULT_RETENTION, queueMax: 2, log: new Logger('text'), metrics });
  await Promise.all(Array.from({ length: 30 }, (_, n) => sink.write(batch(n))));
  await sink.idle();
  await sink.close(Date.now() + 10_000);
  db.sqlite.close();
  assert.equal(metrics.lostIntervals, 0, 'a replay never drops a batch');
  assert.equal(metrics.batchesWritten, 30);
});

test('bulk inserts (tc_rows): 64-bit words go in exactly; a value past 2^63 - 1 and a malformed blob are refused', async () => {
  const db = (await openForWrite(path.join(tmp(), 'rows.db'))).sqlite;
  try {
    db.exec('create table t (a integer, b integer)');
    const rows = new RowInsert(db, 't', ['a', 'b']).start();
    const col = Uint32Array.of(0xffffffff, 0x7fffffff, 1, 0, 0, 0x80000000);
    for (let i = 0; i < 2; i++) {
      const o = rows.row();
      putU64(rows.words, o, col, i);
      putU64(rows.words, o + 2, col, 1 - i);
    }
    rows.end();
    assert.deepEqual(db.prepare('select a, b from t order by rowid').safeIntegers(true).raw().all(), [
      [9223372036854775807n, 1n],
      [1n, 9223372036854775807n],
    ]);
    assert.throws(() => putU64(rows.words, 0, col, 2), RangeError);
    assert.throws(() => db.prepare('select * from tc_rows(?, 3)').all(Buffer.alloc(16)), /16 bytes are not rows of 3 64-bit integers/);
    assert.throws(() => db.prepare('select * from tc_rows(?)').all(Buffer.alloc(16)), /takes both arguments/);
    assert.throws(() => db.prepare('select * from tc_rows(?, 2)').all('text'), /must be a BLOB/);
  } finally {
    db.close();
  }
});
