/**
 * The page of `tc-query serve` in a real browser (Debian's chromium driven by playwright-core)
 * on a replayed capture: it opens on the file's recorded range and says so, its table holds the
 * rows of the CLI's JSON in the CLI's units, the chart has drawn the total and the top 5, a
 * click on an address shows its series, flows and names, the window picker changes the answer,
 * a bad parameter shows the CLI's error. A screenshot is saved under dist/test-artefacts/.
 */
import { test, after, before } from 'node:test';
import * as assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import Database from 'better-sqlite3';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { ROOT, queryJson } from './helpers';
import { replayed, serve, type Serving } from './support/serve';
import { bytes, iec } from '../src/units';

// The functions given to page.$eval and waitForFunction run in the page; this file compiles without the DOM lib.
/* eslint-disable @typescript-eslint/no-explicit-any */
declare const document: any;

const CHROMIUM = '/usr/bin/chromium';
const ARTEFACTS = path.join(ROOT, 'dist', 'test-artefacts');

let db: string;
let s: Serving | undefined;
let browser: Browser | undefined;
let page: Page;
let first: string;
let last: string;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing (contrib/install.sh installs Debian's chromium)`);
    return;
  }
  db = replayed();
  ({ first, last } = queryJson<{ first: string; last: string }>(['--db', db, 'status']));
  s = await serve(db);
  const { chromium } = await import('playwright-core');
  // As root chromium needs --no-sandbox; it only ever opens this loopback page.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  page = await browser.newPage({ viewport: { width: 1300, height: 1500 }, timezoneId: 'Europe/Berlin' });
});
after(async () => {
  await browser?.close();
  await s?.stop();
});

const rowsOf = (p: Page, table: string) => p.$$eval(`${table} tbody tr`, (trs) => trs.map((tr) => JSON.parse((tr as any).dataset.row!) as Record<string, unknown>));

/** Waits until the page has drawn the answers of a load after `prev` (body[data-ready] counts loads). */
async function loaded(p: Page, prev?: string | null): Promise<void> {
  await p.waitForFunction((before) => document.body.dataset.ready !== undefined && document.body.dataset.ready !== before, prev ?? null, { timeout: 30_000 });
}

test('the page in chromium: range, table, chart, an address, the window picker, an error', async (t) => {
  if (!browser) return t.skip(`no ${CHROMIUM}`);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const asked: string[] = [];
  const onRequest = (r: { url(): string }) => asked.push(r.url());
  page.on('request', onRequest);
  // What the page's script fetches, beside what the browser asks the server.
  await page.addInitScript(() => {
    const w = globalThis as any;
    const fetch = w.fetch;
    w.fetched = [];
    w.fetch = (u: string, o: unknown) => (w.fetched.push(new URL(u, w.location.href).href), fetch(u, o));
  });
  const response = await page.goto(s!.url);
  await loaded(page);
  page.off('request', onRequest);
  // The answers the server named as preloads are the page's own first requests, each asked once.
  const preloaded = [...(response!.headers().link ?? '').matchAll(/<(\/api\/[^>]*)>/g)].map((m) => new URL(m[1], s!.url).href);
  const fetched = (await page.evaluate(() => (globalThis as any).fetched)) as string[];
  assert.equal(preloaded.length, 3);
  for (const u of preloaded) assert.ok(fetched.includes(u), `the page fetched the preloaded ${u} (it fetched ${fetched.join(' ')})`);
  const api = asked.filter((u) => new URL(u).pathname.startsWith('/api/'));
  assert.deepEqual(api.filter((u, i) => api.indexOf(u) !== i), [], 'no API request was made twice');

  // A file of 2017: the page opens on its recorded range, says so, and puts it in the URL.
  assert.match(await page.textContent('#note') ?? '', /no data of the last hour: showing its recorded range/);
  const url = new URL(page.url());
  assert.equal(url.searchParams.get('since'), first);
  assert.equal(url.searchParams.get('until'), last);

  // The table's rows are the CLI's JSON for the window, in the CLI's units.
  const want = queryJson(['--db', db, 'top', '--by', 'ip', '--since', first, '--until', last, '--limit', '20']);
  assert.ok(want.length > 5);
  assert.deepEqual(await rowsOf(page, '#top'), want);
  const firstRow = await page.$$eval('#top tbody tr:first-child td', (tds) => tds.map((td) => td.textContent));
  const heads = await page.$$eval('#top thead th', (ths) => ths.map((th) => th.textContent));
  assert.deepEqual(heads, ['ip', 'name', 'side', 'tx pkts', 'tx', 'rx pkts', 'rx', 'pkts', 'bytes', 'avg bit/s', 'avg pkt/s']);
  assert.equal(firstRow[heads.indexOf('bytes')], bytes(want[0].bytes as number));
  assert.equal(firstRow[0], want[0].ip);

  // The chart: the total and the top 5 stacked, drawn on a canvas that is not blank.
  assert.equal(await page.getAttribute('#chart', 'data-series'), '6');
  assert.equal(await page.locator('#chart .u-legend .u-series').count(), 7);
  const painted = await page.$eval('#chart canvas', (c) => {
    const cv = c as any;
    const d = cv.getContext('2d')!.getImageData(0, 0, cv.width, cv.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
    return n;
  });
  assert.ok(painted > 1000, `the chart painted ${painted} pixels`);
  // The legend under the cursor: the total's bytes/s at a step, as the CLI's series gives it.
  const box = (await page.locator('#chart .u-over').boundingBox())!;
  await page.mouse.move(box.x + box.width * 0.45, box.y + box.height / 2);
  const shown = (await page.locator('#chart .u-legend .u-series').last().locator('.u-value').textContent())!;
  const steps = queryJson<{ start: string; end: string; bytes: number }[]>(['--db', db, 'series', '--since', first, '--until', last, '--step', '5s']);
  const perSec = steps.map((r) => iec(r.bytes / ((Date.parse(r.end) - Date.parse(r.start)) / 1000), '/s'));
  assert.ok(perSec.includes(shown), `the total's ${shown} is a step's bytes/s of the CLI's series (${perSec.slice(0, 5).join(', ')}, ...)`);
  assert.match(await page.textContent('#completeness') ?? '', /^35 intervals .* 0 gaps/);
  assert.match(await page.textContent('#status') ?? '', /gaps0kernel drops/);
  // The legend in the table's order (its values are in binary units: see the cursor's value above).
  const legend = await page.$$eval('#chart .u-legend .u-series .u-label', (ls) => ls.map((l) => l.textContent ?? ''));
  const topIps = want.filter((r) => /^[0-9a-f.:]+$/i.test(r.ip as string)).slice(0, 5).map((r) => r.ip as string);
  assert.deepEqual(legend.slice(1, 6).map((l) => l.split(' ')[0]), topIps);

  // A click on an address: its series (tx and rx), its flows and the names it had.
  const ip = want[1].ip as string;
  await page.click(`#top a.addr[data-ip="${ip}"]`);
  await page.waitForSelector(`#detail[data-ready="${ip}"]`, { timeout: 30_000 });
  assert.equal(new URL(page.url()).searchParams.get('ip'), ip);
  assert.equal(await page.getAttribute('#detail-chart', 'data-series'), '2');
  assert.deepEqual(await rowsOf(page, '#detail-flows'), queryJson(['--db', db, 'flows', '--ip', ip, '--since', first, '--until', last, '--limit', '20']));
  assert.deepEqual(await rowsOf(page, '#detail-names'), queryJson(['--db', db, 'names', '--ip', ip, '--since', first, '--until', last]));
  mkdirSync(ARTEFACTS, { recursive: true });
  const shot = path.join(ARTEFACTS, 'serve-browser.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.diagnostic(`screenshot: ${shot}`);

  // The window picker: the last 24 h of a file of 2017 hold nothing.
  const before = await page.evaluate(() => document.body.dataset.ready);
  await page.click('#windows button[data-since="24h"]');
  await loaded(page, before);
  assert.equal(new URL(page.url()).searchParams.get('since'), '24h');
  assert.equal(new URL(page.url()).searchParams.get('until'), null);
  assert.deepEqual(await rowsOf(page, '#top'), []);
  assert.match(await page.textContent('#completeness') ?? '', /no intervals recorded in this window/);
  assert.match(await page.textContent('#top-footer') ?? '', /no intervals in this window .* the file covers/);

  // UTC one click away: the times of the view change zone, the URL keeps it.
  await page.goto(`${s!.url}?since=${first}&until=${last}`);
  await loaded(page);
  assert.match(await page.textContent('#window') ?? '', /\+0[12]:00/);
  const b2 = await page.evaluate(() => document.body.dataset.ready);
  await page.click('#utc');
  await loaded(page, b2);
  assert.match(await page.textContent('#window') ?? '', new RegExp(`window ${first} to ${last}`));
  assert.equal(new URL(page.url()).searchParams.get('utc'), '1');

  // by=label on a server without --labels: the table says why; the chart and status still show.
  await page.goto(`${s!.url}?since=${first}&until=${last}&by=label`);
  await loaded(page);
  assert.match(await page.textContent('#top-footer') ?? '', /--by label needs a label file.*\(ERR_TC_USAGE\)/);
  assert.equal(await page.isVisible('#error'), false);
  assert.equal(await page.getAttribute('#chart', 'data-series'), '1');
  assert.match(await page.textContent('#completeness') ?? '', /^35 intervals .* 0 gaps/);
  assert.match(await page.textContent('#status') ?? '', /gaps0kernel drops/);

  // A bad parameter: the CLI's error, shown.
  await page.goto(`${s!.url}?since=yesterday`);
  await loaded(page);
  assert.equal(await page.isVisible('#error'), true);
  assert.match(await page.textContent('#error') ?? '', /"yesterday" is not a duration \(30s, 15m, 1h, 7d\), an ISO-8601 time or epoch seconds \(ERR_TC_USAGE\)/);
  assert.deepEqual(errors, [], 'no script error on the page');
});

test('a live file refreshes by itself, at its interval, without reloading the page', async (t) => {
  if (!browser) return t.skip(`no ${CHROMIUM}`);
  // A copy whose session looks like a live one still recording (5 s intervals).
  const live = `${db}.live.db`;
  copyFileSync(db, live);
  const w = new Database(live);
  w.prepare("update sessions set kind = 'live', ended_at = null").run();
  w.close();
  const srv = await serve(live);
  const p = await browser.newPage();
  try {
    let tops = 0;
    p.on('request', (r) => {
      if (r.url().includes('/api/top?')) tops++;
    });
    let navigations = 0;
    p.on('framenavigated', () => navigations++);
    await p.goto(`${srv.url}?since=${first}`);
    await loaded(p);
    const start = tops;
    // Two more loads at 5 s each: bounded by the timeout, not by a figure.
    await p.waitForFunction(() => Number(document.body.dataset.ready) >= 3, null, { timeout: 30_000 });
    assert.ok(tops >= start + 2, `${tops - start} refreshes`);
    assert.equal(navigations, 1, 'the page was not reloaded');
  } finally {
    await p.close();
    await srv.stop();
  }
});
