/**
 * Web view benchmark: how long after navigation the page of `tc-query serve` has drawn its first
 * table and chart (the top 20 by ip, the total and the top 5 stacked bytes/s series, the status
 * facts) on the `bench:query` file (bench/out/query-24h.db, built by `npm run bench:query`), in
 * headless chromium (/usr/bin/chromium) through playwright-core. Two views: the page opened
 * bare (its default window, or the file's recorded range when the last hour holds nothing) and
 * the last 24 h of the file (?since=&until=). Baseline in the same run: `tc-query top` over the
 * same 24 h as a command (process start, DuckDB load and the query), runs alternating; medians.
 * Usage: node dist/bench/serve.js [--runs 5] [--db FILE]
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { arg, median } from './common';

const RUNS = arg('runs', 5);
const ROOT = path.join(__dirname, '..', '..');
const QUERY = path.join(ROOT, 'dist', 'src', 'cli', 'tc-query.js');
const dbArg = process.argv.indexOf('--db');
const DB = dbArg > 0 ? process.argv[dbArg + 1] : path.join(ROOT, 'bench', 'out', 'query-24h.db');

async function main(): Promise<void> {
  if (!existsSync(DB)) throw new Error(`${DB} does not exist: build it with \`npm run bench:query\``);
  const status = JSON.parse(spawnSync(process.execPath, [QUERY, '--db', DB, 'status', '--format', 'json'], { encoding: 'utf8' }).stdout) as { first: string; last: string; intervals: number };
  const until = status.last;
  const since = new Date(Date.parse(until) - 24 * 3_600_000).toISOString().replace('.000Z', 'Z');
  const server = spawn(process.execPath, [QUERY, '--db', DB, 'serve', '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    server.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /on (http:\/\/\S+)/.exec(buf);
      if (m) resolve(m[1]);
    });
    server.once('exit', (code) => reject(new Error(`tc-query serve exited (${code}): ${buf}`)));
  });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  // One browser profile, a new tab per load: as a browser that runs already opens a link.
  const context = await browser.newContext({ viewport: { width: 1300, height: 1000 } });
  try {
    /** Milliseconds from navigation to the page's table and total chart (`tc-first-N`), and to the top 5 stacked on it (`tc-ready`). */
    const pageLoad = async (q: string): Promise<number[]> => {
      const page = await context.newPage();
      try {
        await page.goto(`${url}${q}`);
        await page.waitForFunction(() => (globalThis as unknown as { performance: { getEntriesByName(n: string): { startTime: number }[] } }).performance.getEntriesByName('tc-ready').length > 0, null, { timeout: 60_000 });
        const err = await page.textContent('#error');
        if (await page.isVisible('#error')) throw new Error(`the page shows an error: ${err}`);
        return await page.evaluate(() => {
          const perf = (globalThis as unknown as { performance: { getEntriesByName(n: string): { startTime: number }[]; getEntries(): { name: string; startTime: number }[] } }).performance;
          // The table and the total's chart of the load that became the answer, then the top 5 stacked.
          const ready = perf.getEntriesByName('tc-ready')[0].startTime;
          const firsts = perf.getEntries().filter((e) => e.name.startsWith('tc-first-') && e.startTime <= ready);
          return [firsts[firsts.length - 1]?.startTime ?? ready, ready];
        });
      } finally {
        await page.close();
      }
    };
    const cliTop = (): number => {
      const t0 = process.hrtime.bigint();
      const r = spawnSync(process.execPath, [QUERY, '--db', DB, 'top', '--since', since, '--until', until, '--format', 'json'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(r.stderr);
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };
    // A window of its own per load, an hour apart (whole hours, as the last 24 h is): the server
    // keeps each window's coverage, which a first visit does not find (the bare URL's window is
    // the same each time: a visit again).
    const dayEnding = (i: number) => {
      const end = Date.parse(until) - 3_600_000 * i;
      const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');
      return `?since=${encodeURIComponent(iso(end - 24 * 3_600_000))}&until=${encodeURIComponent(iso(end))}`;
    };
    const window = dayEnding(0);
    // One of each first: the server's first request loads DuckDB's module, the OS caches the file.
    await pageLoad(window);
    cliTop();
    const bare: number[][] = [];
    const day: number[][] = [];
    const cli: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      bare.push(await pageLoad(''));
      day.push(await pageLoad(dayEnding(i + 1)));
      cli.push(cliTop());
    }
    const f = (ms: number) => `${(ms / 1000).toFixed(3)} s`;
    const line = (what: string, runs: number[][]) =>
      `${what} table + total chart ${f(median(runs.map((r) => r[0])))}, + top 5 stacked ${f(median(runs.map((r) => r[1])))} (runs ${runs.map((r) => `${f(r[0])}/${f(r[1])}`).join(', ')})`;
    console.log(`file ${DB}: ${status.intervals} intervals, ${status.first} to ${status.last}; ${RUNS} runs, medians`);
    console.log(line('page, bare URL (its opening window):', bare));
    console.log(line('page, last 24 h of the file:        ', day));
    const m = median(cli);
    console.log(`baseline tc-query top over the 24 h:  ${f(m)}; page / CLI top ${(median(day.map((r) => r[0])) / m).toFixed(2)}x (table + total), ${(median(day.map((r) => r[1])) / m).toFixed(2)}x (with the top 5)`);
  } finally {
    await browser.close();
    server.kill('SIGTERM');
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
