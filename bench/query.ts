/**
 * Query benchmark. Builds (once, with the project's own writer) a database of 24 h of 5 s
 * intervals with 5,000 active addresses (86.4M per-IP delta rows), 30 days of hour and day
 * rollups before that, and 1 h of flows at 20,000 flows per interval; then times, end to end,
 * `tc-query top` over the last 1 h, 24 h and 30 d, `top --by flow` over 1 h and `series --ip X
 * --step 5m` over 24 h (windows ending at an unaligned moment inside the recorded day) against
 * sqlite3 summing the raw rows of the same window and a SQLite-only plan over the same rollups,
 * medians of several runs in the same command. Then `top --by asn --asn TABLE` over 24 h against
 * `top` over the same window (runs alternating), TABLE a synthetic 520,000-range ip2asn file
 * (test/support/asn.ts), with its parsed-table cache and without, and the table's parse time.
 * Usage: node dist/bench/query.js [--hours 24] [--runs 3] [--asn-only]
 */
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { openForWrite } from '../src/recorder/write/db';
import { BatchSink } from '../src/recorder/write/sink';
import { Logger } from '../src/recorder/observe/log';
import { Metrics } from '../src/recorder/observe/metrics';
import { DEFAULT_RETENTION } from '../src/recorder/upkeep/retention';
import { plan, readSegments } from '../src/query/plan';
import { makeBatch } from '../test/support/synth';
import { writeIp2Asn } from '../test/support/asn';
import { readAsn } from '../src/query/asn';
import { arg, median } from './common';

const HOURS = arg('hours', 24);
const RUNS = arg('runs', 3);
const HOSTS = 5000;
const ROOT = path.join(__dirname, '..', '..');
const OUT = path.join(ROOT, 'bench', 'out');
const FILE = path.join(OUT, `query-${HOURS}h.db`);

async function build(): Promise<void> {
  const end = Math.floor(Date.now() / 3_600_000) * 3_600_000;
  const start = end - HOURS * 3_600_000;
  const db = await openForWrite(FILE);
  const sink = new BatchSink({
    db,
    spec: { key: 'bench:query', kind: 'replay', source: 'bench', intervalMs: 5000, flows: true, options: {} },
    retention: DEFAULT_RETENTION,
    queueMax: 1e9,
    log: new Logger('text'),
    metrics: new Metrics(FILE),
  });
  const pre = Array.from({ length: 12 }, (_, i) => makeBatch(0, 5000, HOSTS, 0, i));
  const withFlows = makeBatch(0, 5000, HOSTS, 20_000, 3);
  for (let t = start, i = 0; t < end; t += 5000, i++) {
    const b = end - t <= 3_600_000 ? withFlows : pre[i % 12];
    b.startMs = t;
    b.endMs = t + 5000;
    await sink.write(b);
    if (i % 720 === 0) process.stderr.write(`  ${new Date(t).toISOString()}\r`);
  }
  await sink.close(Date.now() + 600_000);
  // 30 days of hour and day rollups before the raw day, derived from its first hour and day.
  const s = db.sqlite;
  const h0 = Math.floor(start / 3_600_000) * 3_600_000;
  const d0 = Math.floor(start / 86_400_000) * 86_400_000;
  s.transaction(() => {
    for (let h = 1; h <= 30 * 24; h++) s.prepare('insert or ignore into ip_1h select ?, ip_id, tx_packets, tx_bytes, rx_packets, rx_bytes from ip_1h where bucket_ms = ?').run(h0 - h * 3_600_000, h0);
    for (let d = 1; d <= 30; d++) s.prepare('insert or ignore into ip_1d select ?, ip_id, tx_packets * 24, tx_bytes * 24, rx_packets * 24, rx_bytes * 24 from ip_1h where bucket_ms = ?').run(d0 - d * 86_400_000, h0);
  })();
  s.pragma('wal_checkpoint(TRUNCATE)');
  s.close();
}

function time(f: () => void): number {
  const t = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

const CACHE = path.join(OUT, 'cache');

function cli(args: string[]): void {
  execFileSync(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli', 'tc-query.js'), '--db', FILE, ...args, '--format', 'json'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    maxBuffer: 1 << 28,
    env: { ...process.env, XDG_CACHE_HOME: CACHE },
  });
}

function sqlite3Raw(fromMs: number, toMs: number): void {
  execFileSync('sqlite3', [FILE, `select ip_id, sum(tx_bytes + rx_bytes) as b from batches b join ip_deltas d on d.batch_id = b.id where b.start_ms >= ${fromMs} and b.start_ms < ${toMs} group by ip_id order by b desc limit 20;`], { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** The same plan answered by SQLite alone: each segment summed in SQLite, merged per address. */
function sqliteRollups(fromMs: number, toMs: number): void {
  const db = new Database(FILE, { readonly: true });
  try {
    const segments = plan(db, 'ip', fromMs, toMs);
    const { count, columns } = readSegments(db, 'ip', segments, '', []);
    const [ids, , tx, , rx] = columns as BigInt64Array[];
    const top = Array.from({ length: count }, (_, i) => [Number(ids[i]), Number(tx[i] + rx[i])]).sort((x, y) => y[1] - x[1]).slice(0, 20);
    const text = db.prepare('select text from addresses where id = ?').pluck();
    for (const [id] of top) text.get(id);
  } finally {
    db.close();
  }
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  if (!existsSync(FILE)) {
    process.stderr.write(`building ${FILE} (${HOURS} h x ${HOSTS} addresses at 5 s, with the recorder's writer)...\n`);
    const t0 = Date.now();
    await build();
    process.stderr.write(`built in ${((Date.now() - t0) / 1000).toFixed(0)} s, ${(statSync(FILE).size / 1e9).toFixed(2)} GB\n`);
  }
  // "Now" is a moment inside the recorded day, 7 min 13.5 s before its end (edges off every
  // boundary, as for `--since 1h` typed at any time): the file, built once, keeps serving.
  const ro = new Database(FILE, { readonly: true });
  const now = (ro.prepare('select max(end_ms) from batches').pluck().get() as number) - 433_500;
  ro.close();
  const iso = (t: number) => new Date(t).toISOString();
  const win = (ms: number) => ['--since', iso(now - ms), '--until', iso(now)];
  const ip = '10.0.0.1';
  const rows: [string, string][] = [];
  const asnOnly = process.argv.includes('--asn-only');
  const windows = [['1h', 3_600_000], ['24h', 86_400_000], ['30d', 30 * 86_400_000]] as const;
  for (const [label, ms] of asnOnly ? [] : windows) {
    const ours = median(Array.from({ length: RUNS }, () => time(() => cli(['top', ...win(ms)]))));
    const rollups = median(Array.from({ length: RUNS }, () => time(() => sqliteRollups(now - ms, now))));
    const raw = label === '30d' ? NaN : median(Array.from({ length: label === '24h' ? 1 : RUNS }, () => time(() => sqlite3Raw(now - ms, now))));
    rows.push([`top --since ${label}`, `${ours.toFixed(3)} s  | SQLite-only rollup plan ${rollups.toFixed(3)} s | sqlite3 raw sum ${Number.isNaN(raw) ? 'n/a (raw kept 48 h)' : `${raw.toFixed(2)} s (${(raw / ours).toFixed(0)}x slower)`}`]);
  }
  if (!asnOnly) rows.push(['top --by flow --since 1h', `${median(Array.from({ length: RUNS }, () => time(() => cli(['top', '--by', 'flow', ...win(3_600_000)])))).toFixed(3)} s`]);
  if (!asnOnly) rows.push([`series --ip ${ip} --since 24h --step 5m`, `${median(Array.from({ length: RUNS }, () => time(() => cli(['series', '--ip', ip, ...win(86_400_000), '--step', '5m'])))).toFixed(3)} s`]);
  // --by asn over a full-size table: alternating with the plain top, cache warm, then cold.
  const table = path.join(OUT, 'ip2asn-synth.tsv');
  if (!existsSync(table)) writeIp2Asn(table, { v4: 430_000, v6: 90_000 });
  const day = win(86_400_000);
  const asn = ['top', '--by', 'asn', '--asn', table, ...day];
  cli(asn); // fills the cache
  const plain: number[] = [];
  const warm: number[] = [];
  const cold: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    plain.push(time(() => cli(['top', ...day])));
    warm.push(time(() => cli(asn)));
    rmSync(CACHE, { recursive: true, force: true });
    cold.push(time(() => cli(asn)));
  }
  const p = median(plain);
  rows.push(['top --since 24h (same runs)', `${p.toFixed(3)} s`]);
  rows.push(['top --by asn --since 24h (cached table)', `${median(warm).toFixed(3)} s (${(median(warm) / p).toFixed(2)}x)`]);
  rows.push(['top --by asn --since 24h (parsed)', `${median(cold).toFixed(3)} s (${(median(cold) / p).toFixed(2)}x)`]);
  process.env.XDG_CACHE_HOME = CACHE;
  const parse = median(Array.from({ length: RUNS }, () => (rmSync(CACHE, { recursive: true, force: true }), time(() => readAsn([table])))));
  const cached = median(Array.from({ length: RUNS }, () => time(() => readAsn([table]))));
  rmSync(CACHE, { recursive: true, force: true });
  rows.push(['ASN table parse (520,000 ranges)', `${parse.toFixed(3)} s once (the first run; then cached) | from the cache ${cached.toFixed(3)} s`]);
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(40)} ${v}\n`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
