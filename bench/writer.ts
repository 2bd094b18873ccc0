/**
 * Writer benchmark: per-IP delta rows/s of the recorder's sink (log + every projection;
 * dictionary ids in arrival order, not in the address order of the batches, as on a real host)
 * against a bare better-sqlite3 insert loop of the same rows in key order (50-row multi-VALUES)
 * in the same run. Two ways each: batches grouped in transactions (the sink's group commit when
 * batches queue; the bare loop with 16 batches per transaction), and one transaction per batch.
 * A third bare loop inserts through the recorder's own bulk path (tc_rows, see rows.ts): the log
 * alone, without projections or the dictionary.
 * Also: bytes on disk per raw per-IP row; the projected size of a day of 5,000 addresses at 5 s.
 * With --flows N, a second sink run also writes N flows per interval (flow log, flow minute and
 * hour rollups) and reports per-IP and flow rows/s together. With --names N, a sink run writes N
 * names per interval besides (a tenth of them new pairs of new addresses, the rest the same pairs
 * of the interval's addresses seen again), and reports the time per name and the bytes a stored
 * name takes (dbstat).
 * Usage: node dist/bench/writer.js [--hosts 5000] [--minutes 30] [--runs 3] [--flows 0] [--names 0]
 */
import Database from 'better-sqlite3';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { openForWrite } from '../src/recorder/write/db';
import { BatchSink } from '../src/recorder/write/sink';
import { Logger } from '../src/recorder/observe/log';
import { Metrics } from '../src/recorder/observe/metrics';
import { DEFAULT_RETENTION } from '../src/recorder/upkeep/retention';
import { makeBatch, namesOf, type NameEntry } from '../test/support/synth';
import type { Batch } from '../src/native';
import { putNum, RowInsert } from '../src/recorder/write/rows';
import { loadSqliteExtension } from '../src/native';
import { IP_DELTA_COLUMNS } from '../src/schema/columns';
import { IP_LEVELS } from '../src/schema/levels';
import { arg, median } from './common';

const HOSTS = arg('hosts', 5000);
const MINUTES = arg('minutes', 30);
const RUNS = arg('runs', 3);
const FLOWS = arg('flows', 0);
const NAMES = arg('names', 0);
const OUT = path.join(__dirname, '..', '..', 'bench', 'out');
const T0 = Date.UTC(2026, 10, 1);

/** 0..n-1 in a fixed pseudo-random order. */
function shuffled(n: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  let seed = 1;
  for (let i = n - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const j = seed % (i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

function fresh(f: string) {
  for (const e of ['', '-wal', '-shm']) rmSync(f + e, { force: true });
}

/**
 * The sink fed as a replay feeds it: `grouped`, batches queue while it writes and go in
 * transactions of several (group commit); otherwise each batch is written before the next
 * arrives (one transaction per batch, as live capture at its own pace).
 */
async function ours(file: string, batches: number, flows = 0, grouped = true, names = 0): Promise<number> {
  fresh(file);
  const db = await openForWrite(file);
  // Dictionary ids in arrival order, as on a real host (not in the address order of batches).
  const put = db.sqlite.prepare('insert into addresses (addr, text) values (?, ?)');
  db.sqlite.transaction(() => {
    for (const i of shuffled(HOSTS)) {
      const v = 0x0a000000 + i + 1;
      put.run(Buffer.from([v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255]), `10.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`);
    }
  })();
  const sink = new BatchSink({
    db,
    spec: { key: `bench:${Math.random()}`, kind: 'replay', source: 'bench', intervalMs: 5000, flows: flows > 0, options: {} },
    retention: DEFAULT_RETENTION,
    queueMax: 1e9,
    log: new Logger('text'),
    metrics: new Metrics(file),
  });
  const pre = Array.from({ length: 12 }, (_, i) => makeBatch(0, 5000, HOSTS, flows, i));
  const named = Array.from({ length: names > 0 ? batches : 0 }, (_, i) => namesOf(namesAt(i, names)));
  const t = process.hrtime.bigint();
  for (let i = 0; i < batches; i++) {
    const startMs = T0 + i * 5000;
    const b: Batch = { ...pre[i % 12], startMs, endMs: startMs + 5000 };
    if (names > 0) b.names = named[i];
    await sink.write(b);
    if (!grouped) await sink.idle();
  }
  await sink.close(Date.now() + 60_000);
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  db.sqlite.pragma('wal_checkpoint(TRUNCATE)');
  db.sqlite.close();
  return s;
}

/** The names of interval `i`: a tenth new pairs (new addresses), the rest pairs of its addresses seen again. */
function namesAt(i: number, n: number): NameEntry[] {
  const fresh = Math.ceil(n / 10);
  const out: NameEntry[] = [];
  for (let k = 0; k < n - fresh; k++) {
    const v = 0x0a000000 + (k % HOSTS) + 1;
    out.push({ ip: `10.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`, name: `host-${k}.example.com` });
  }
  for (let k = 0; k < fresh; k++) {
    const v = i * fresh + k;
    out.push({ ip: `100.${(v >>> 16) & 63}.${(v >>> 8) & 255}.${v & 255}`, name: `n${v}.cdn.example.net` });
  }
  return out;
}

/**
 * The bare loop: the same rows in key order, `perTx` batches per transaction, as 50-row
 * multi-VALUES statements or (`packed`) through the recorder's bulk path (tc_rows, rows.ts).
 */
function bare(file: string, batches: number, perTx: number, packed = false): number {
  fresh(file);
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('create table ip_deltas (batch_id integer not null, ip_id integer not null, tx_packets integer not null, tx_bytes integer not null, rx_packets integer not null, rx_bytes integer not null, primary key (batch_id, ip_id)) without rowid');
  const many = db.prepare(`insert into ip_deltas values ${Array(50).fill('(?,?,?,?,?,?)').join(',')}`);
  const one = db.prepare('insert into ip_deltas values (?,?,?,?,?,?)');
  loadSqliteExtension(db);
  const bulk = new RowInsert(db, 'ip_deltas', IP_DELTA_COLUMNS);
  const { batch_id, ip_id, tx_packets, tx_bytes, rx_packets, rx_bytes } = bulk.col;
  const t = process.hrtime.bigint();
  const tx = db.transaction((first: number) => {
    for (let b = first; b < first + perTx && b <= batches; b++) batch(b);
  });
  const batch = (b: number) => {
    if (packed) {
      bulk.start();
      for (let i = 0; i < HOSTS; i++) {
        const o = bulk.row();
        const v = (i % 97) + 1;
        putNum(bulk.words, o + batch_id, b);
        putNum(bulk.words, o + ip_id, i + 1);
        putNum(bulk.words, o + tx_packets, v);
        putNum(bulk.words, o + tx_bytes, v * 700);
        putNum(bulk.words, o + rx_packets, v);
        putNum(bulk.words, o + rx_bytes, v * 700);
      }
      bulk.end();
      return;
    }
    const p: number[] = [];
    for (let i = 0; i < HOSTS; i++) {
      p.push(b, i + 1, (i % 97) + 1, ((i % 97) + 1) * 700, (i % 97) + 1, ((i % 97) + 1) * 700);
      if (p.length === 300) {
        many.run(...p);
        p.length = 0;
      }
    }
    for (let i = 0; i < p.length; i += 6) one.run(...p.slice(i, i + 6));
  };
  for (let b = 1; b <= batches; b += perTx) tx(b);
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  db.close();
  return s;
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const batches = (MINUTES * 60) / 5;
  const rows = batches * HOSTS;
  const o: number[] = [];
  const one: number[] = [];
  const b: number[] = [];
  const b16: number[] = [];
  const packed: number[] = [];
  const f1 = path.join(OUT, 'writer-ours.db');
  const f2 = path.join(OUT, 'writer-bare.db');
  for (let r = 0; r < RUNS; r++) {
    b.push(bare(f2, batches, 1));
    b16.push(bare(f2, batches, 16));
    packed.push(bare(f2, batches, 1, true));
    o.push(await ours(f1, batches));
    one.push(await ours(f1, batches, 0, false));
  }
  const db = new Database(f1, { readonly: true });
  const stat = (name: string) => (db.prepare('select coalesce(sum(pgsize), 0) from dbstat where name = ?').pluck().get(name) as number);
  const raw = stat('ip_deltas');
  const rollups = IP_LEVELS.reduce((s, t) => s + stat(t), 0);
  const other = statSync(f1).size - raw - rollups;
  db.close();
  const perRow = raw / rows;
  const dayRows = 86400 / 5 * 5000;
  const dayBytes = dayRows * perRow + (rollups * (1440 / MINUTES) * (5000 / HOSTS));
  const print = (k: string, v: string) => process.stdout.write(`${k.padEnd(44)} ${v}\n`);
  print('rows', `${rows} per-IP delta rows (${batches} intervals x ${HOSTS} addresses), ${RUNS} runs`);
  const rate = (xs: number[]) => `${(rows / median(xs) / 1e6).toFixed(2)} M rows/s (median ${median(xs).toFixed(2)} s; ${xs.map((x) => x.toFixed(2)).join(' ')})`;
  print('bare better-sqlite3 loop, 16 batches per tx', rate(b16));
  print('recorder sink, log + all projections', `${rate(o)}, batches grouped`);
  print('  ratio (recorder / bare)', `${(median(b16) / median(o)).toFixed(2)}x`);
  print('bare loop, one transaction per batch', rate(b));
  print('recorder sink, one transaction per batch', rate(one));
  print('  ratio (recorder / bare)', `${(median(b) / median(one)).toFixed(2)}x`);
  print('bare loop through tc_rows, one tx per batch', `${rate(packed)} (the log alone, the recorder's insert path)`);
  print('bytes per raw per-IP row (dbstat)', perRow.toFixed(1));
  print('rollup bytes for the run', `${rollups} (other tables and free pages: ${other})`);
  if (FLOWS > 0) {
    const f: number[] = [];
    for (let r = 0; r < RUNS; r++) f.push(await ours(path.join(OUT, 'writer-flows.db'), batches, FLOWS));
    const secs = median(f);
    print(`sink with ${FLOWS} flows per interval`, `${(rows / secs / 1e6).toFixed(2)} M per-IP rows/s + ${((batches * FLOWS) / secs / 1e6).toFixed(2)} M flow rows/s (median ${secs.toFixed(2)} s; ${f.map((x) => x.toFixed(2)).join(' ')})`);
  }
  if (NAMES > 0) {
    const plain: number[] = [];
    const w: number[] = [];
    const fn = path.join(OUT, 'writer-names.db');
    for (let r = 0; r < RUNS; r++) {
      plain.push(await ours(f1, batches, 0, false));
      w.push(await ours(fn, batches, 0, false, NAMES));
    }
    const nd = new Database(fn, { readonly: true });
    const stored = nd.prepare('select count(*) from names').pluck().get() as number;
    const bytes = (nd.prepare("select coalesce(sum(pgsize), 0) from dbstat where name in ('names', 'hostnames', 'names_by_name', 'names_without_traffic', 'sqlite_autoindex_hostnames_1')").pluck().get() as number);
    nd.close();
    const extra = (median(w) - median(plain)) / (batches * NAMES);
    print(`sink with ${NAMES} names per interval`, `${(rows / median(w) / 1e6).toFixed(2)} M per-IP rows/s against ${(rows / median(plain) / 1e6).toFixed(2)} without, one tx per batch: ${(extra * 1e6).toFixed(1)} us per name (median ${median(w).toFixed(2)} s; ${w.map((x) => x.toFixed(2)).join(' ')})`);
    print('bytes per stored name (dbstat: names, hostnames)', `${(bytes / stored).toFixed(0)} (${stored} pairs; the address entries of new ones not counted)`);
  }
  print('projected day, 5,000 addresses, 5 s', `${(dayBytes / 1e9).toFixed(2)} GB (raw ${(dayRows * perRow / 1e9).toFixed(2)} GB + rollups)`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
