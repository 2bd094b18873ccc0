/**
 * Chart benchmark: what drawing costs on top of the answer it draws. On the `bench:query` file
 * (24 h x 5,000 addresses; `npm run bench:query` builds it, or `--db FILE`), times runs
 * alternating `series --ip X --step 5m --format json` against `chart` of the same options to an
 * SVG and to a PNG, and `top --format json` against `chart --what top` to a PNG, over the 24 h
 * ending 7 min 13.5 s before the file's end. Medians of `--runs` runs; ratios to the answer.
 *
 * Usage: node dist/bench/chart.js [--runs 5] [--db FILE]
 */
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { arg, median } from './common';

const RUNS = arg('runs', 5);
const ROOT = path.join(__dirname, '..', '..');
const i = process.argv.indexOf('--db');
const FILE = i > 0 ? process.argv[i + 1] : path.join(ROOT, 'bench', 'out', 'query-24h.db');

function time(args: string[]): number {
  const t = process.hrtime.bigint();
  execFileSync(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli', 'tc-query.js'), '--db', FILE, ...args], { stdio: ['ignore', 'ignore', 'ignore'], maxBuffer: 1 << 28 });
  return Number(process.hrtime.bigint() - t) / 1e9;
}

function main(): void {
  if (!existsSync(FILE)) throw new Error(`${FILE} does not exist: run \`npm run bench:query\` once to build it, or give --db FILE`);
  const ro = new Database(FILE, { readonly: true });
  const now = (ro.prepare('select max(end_ms) from batches').pluck().get() as number) - 433_500;
  ro.close();
  const win = ['--since', new Date(now - 86_400_000).toISOString(), '--until', new Date(now).toISOString()];
  const out = mkdtempSync(path.join(os.tmpdir(), 'tc-bench-chart-'));
  const series = [...win, '--ip', '10.0.0.1', '--step', '5m'];
  const cases: [string, string[]][] = [
    ['series --ip X --since 24h --step 5m --format json', ['series', ...series, '--format', 'json']],
    ['chart (same) --out c.svg', ['chart', ...series, '--out', path.join(out, 'c.svg'), '--force']],
    ['chart (same) --out c.png', ['chart', ...series, '--out', path.join(out, 'c.png'), '--force']],
    ['top --since 24h --format json', ['top', ...win, '--format', 'json']],
    ['chart --what top --since 24h --out t.png', ['chart', '--what', 'top', ...win, '--out', path.join(out, 't.png'), '--force']],
  ];
  const times = cases.map(() => [] as number[]);
  try {
    for (let r = 0; r < RUNS; r++) cases.forEach(([, args], k) => times[k].push(time(args)));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  const m = times.map(median);
  const base = [0, 0, 0, 3, 3];
  for (const [k, [name]] of cases.entries()) console.log(`${name.padEnd(48)} ${m[k].toFixed(3)} s${base[k] === k ? '' : ` (${(m[k] / m[base[k]]).toFixed(2)}x)`}`);
}

main();
