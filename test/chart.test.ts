/**
 * `tc-query chart` end to end on a replayed capture: the SVG parses and draws the numbers of
 * `series` / `top --format json`, the PNG has the size asked for and shows the chart (pixels read
 * back with resvg), text renders from the shipped font alone, and every refusal says what to do.
 */
import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { DOMParser, type Document, type Element } from '@xmldom/xmldom';
import { Resvg } from '@resvg/resvg-js';
import { pcapsDir, query, queryJson, recorder, tmp } from './helpers';
import { FONT_FILES, renderOptions, renderPng } from '../src/query/chart/png';
import { FONT_FAMILY } from '../src/query/chart/svg';

const GNUTELLA = path.join(pcapsDir(), 'ndpi_gnutella.pcap');
const IP = '10.0.2.15';
let db = '';
let dir = '';

before(() => {
  dir = tmp('tc-chart-');
  db = path.join(dir, 'g.db');
  const r = recorder(['record', '--pcap', GNUTELLA, '--db', db, '--flows', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
});

type Row = Record<string, number | string | null>;

interface ChartDoc {
  path: string;
  format: string;
  width: number;
  height: number;
  what: string;
  series: string[];
  window: { since: string; until: string };
  step?: string;
  bars?: number;
  completeness: { line: string; intervals: number; gaps: number };
  notes: string[];
}

/** Runs `tc-query chart ... --format json` and returns its document. */
function chart(args: string[]): ChartDoc {
  return queryJson<ChartDoc>(['--db', db, 'chart', ...args]);
}

function parseSvg(file: string): Document {
  const parser = new DOMParser({
    onError: (level, msg) => {
      if (level !== 'warning') throw new Error(`${file}: ${msg}`);
    },
  });
  return parser.parseFromString(readFileSync(file, 'utf8'), 'image/svg+xml');
}

const all = (d: Document | Element, tag: string) => Array.from(d.getElementsByTagName(tag)) as Element[];
const withClass = (d: Document, tag: string, cls: string) => all(d, tag).filter((e) => (e.getAttribute('class') ?? '').split(' ').includes(cls));
const textOf = (e: Element) => e.textContent ?? '';
const sum = (rows: Row[], key: string) => rows.reduce((n, r) => n + Number(r[key]), 0);

/** The last line of a table answer: its completeness line. */
const completeness = (args: string[]) => query(['--db', db, ...args]).stdout.trimEnd().split('\n').pop();

test('series: the SVG parses, names the total and draws the bytes of series --format json, with its caption', () => {
  const out = path.join(dir, 'total.svg');
  const doc = chart(['--all', '--step', '1m', '--out', out]);
  const rows = queryJson<Row[]>(['--db', db, 'series', '--all', '--step', '1m']);
  assert.equal(doc.path, out);
  assert.equal(doc.format, 'svg');
  assert.deepEqual([doc.width, doc.height], [800, 400]);
  assert.deepEqual(doc.series, ['total']);
  assert.equal(doc.step, '1m');
  assert.deepEqual(doc.window, { since: '1970-01-01T00:00:00Z', until: '1970-01-01T00:10:05Z' });
  const svg = parseSvg(out);
  const root = svg.documentElement!;
  assert.equal(root.tagName, 'svg');
  assert.deepEqual([root.getAttribute('width'), root.getAttribute('height')], ['800', '400']);
  assert.equal(root.getAttribute('font-family'), FONT_FAMILY);
  const paths = withClass(svg, 'path', 'series');
  assert.deepEqual(paths.map((p) => p.getAttribute('data-series')), ['total']);
  assert.equal(Number(paths[0].getAttribute('data-bytes')), sum(rows, 'bytes'));
  assert.ok(sum(rows, 'bytes') > 0);
  // One flat stretch per step: the area's outline has two points per step on each side.
  assert.ok((paths[0].getAttribute('d') ?? '').length > 20);
  assert.match(textOf(withClass(svg, 'text', 'subtitle')[0]), new RegExp(`step 1m \\(${rows.length} steps\\)`));
  assert.equal(textOf(withClass(svg, 'text', 'unit')[0]), 'KiB/s');
  // The caption is the completeness line of the CLI's tables.
  const caption = withClass(svg, 'text', 'caption')[0];
  assert.equal(all(caption, 'tspan').map(textOf).join(' '), completeness(['series', '--all', '--step', '1m']));
  assert.equal(doc.completeness.line, completeness(['top', '--all']));
  assert.equal(doc.completeness.intervals, 110);
  // Axes: labelled ticks on both.
  assert.ok(all(withClass(svg, 'g', 'x-axis')[0], 'text').length >= 4);
  assert.ok(all(withClass(svg, 'g', 'y-axis')[0], 'text').length >= 4);
  assert.deepEqual(withClass(svg, 'g', 'legend-item').map((g) => g.getAttribute('data-series')), ['total']);
});

test('series --ip: tx and rx drawn apart, their bytes those of series and top for the address', () => {
  const out = path.join(dir, 'ip.svg');
  const doc = chart(['--all', '--step', '30s', '--ip', IP, '--out', out]);
  assert.deepEqual(doc.series, ['rx', 'tx']);
  const rows = queryJson<Row[]>(['--db', db, 'series', '--all', '--step', '30s', '--ip', IP]);
  const [topRow] = queryJson<Row[]>(['--db', db, 'top', '--all', '--ip', IP]);
  const svg = parseSvg(out);
  const bytes = Object.fromEntries(withClass(svg, 'path', 'series').map((p) => [p.getAttribute('data-series'), Number(p.getAttribute('data-bytes'))]));
  assert.deepEqual(bytes, { rx: sum(rows, 'rx_bytes'), tx: sum(rows, 'tx_bytes') });
  assert.deepEqual(bytes, { rx: topRow.rx_bytes, tx: topRow.tx_bytes });
  assert.notEqual(bytes.rx, bytes.tx);
  assert.match(textOf(withClass(svg, 'text', 'title')[0]), new RegExp(IP.replace(/\./g, '\\.')));
});

test('--what top: one bar per row of top --format json, tx and rx stacked; --by flow bars of bytes', () => {
  const out = path.join(dir, 'top.svg');
  const doc = chart(['--all', '--what', 'top', '--limit', '6', '--out', out]);
  const rows = queryJson<Row[]>(['--db', db, 'top', '--all', '--limit', '6']);
  assert.equal(doc.what, 'top');
  assert.equal(doc.bars, 6);
  assert.deepEqual(doc.series, ['tx', 'rx']);
  const bars = withClass(parseSvg(out), 'g', 'bar');
  assert.deepEqual(
    bars.map((b) => b.getAttribute('data-label')),
    rows.map((r) => r.ip),
  );
  bars.forEach((b, i) => {
    assert.equal(Number(b.getAttribute('data-bytes')), rows[i].bytes);
    const parts = Object.fromEntries(all(b, 'rect').map((r) => [r.getAttribute('data-series'), Number(r.getAttribute('data-bytes'))]));
    assert.deepEqual(parts, { tx: rows[i].tx_bytes, rx: rows[i].rx_bytes });
  });
  // Largest first: the first bar is the longest.
  const widthOf = (b: Element) => all(b, 'rect').reduce((w, r) => w + Number(r.getAttribute('width')), 0);
  assert.ok(widthOf(bars[0]) > widthOf(bars[bars.length - 1]));

  const flowsOut = path.join(dir, 'flows.svg');
  const flowsDoc = chart(['--all', '--what', 'top', '--by', 'flow', '--limit', '3', '--out', flowsOut]);
  const flows = queryJson<Row[]>(['--db', db, 'top', '--all', '--by', 'flow', '--limit', '3']);
  assert.deepEqual(flowsDoc.series, ['bytes']);
  const flowBars = withClass(parseSvg(flowsOut), 'g', 'bar');
  assert.deepEqual(flowBars.map((b) => Number(b.getAttribute('data-bytes'))), flows.map((r) => r.bytes));
  assert.ok(flowBars.every((b, i) => (b.getAttribute('data-label') ?? '').startsWith(`${flows[i].src}:${flows[i].sport} → ${flows[i].dst}:${flows[i].dport}`)));
});

/** Width and height from a PNG's IHDR chunk (bytes 16-23, after the signature and the chunk's length and type). */
function ihdr(png: Buffer): { width: number; height: number } {
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.equal(png.subarray(12, 16).toString('latin1'), 'IHDR');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

/** The RGBA pixels of a PNG, decoded by resvg (the PNG drawn as the one image of an SVG its size). */
function pixels(png: Buffer): Buffer {
  const { width, height } = ihdr(png);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><image width="${width}" height="${height}" href="data:image/png;base64,${png.toString('base64')}"/></svg>`;
  return Buffer.from(new Resvg(svg, { fitTo: { mode: 'original' } }).render().pixels);
}

/** Pixels that differ between two RGBA images of one size. */
function differing(a: Buffer, b: Buffer): number {
  assert.equal(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i += 4) if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2] || a[i + 3] !== b[i + 3]) n++;
  return n;
}

/** Pixels of the colour #rrggbb (within a few levels: edges are blended). */
function ofColour(px: Buffer, hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  let n = 0;
  for (let i = 0; i < px.length; i += 4) if (Math.abs(px[i] - r) < 8 && Math.abs(px[i + 1] - g) < 8 && Math.abs(px[i + 2] - b) < 8) n++;
  return n;
}

test('PNG: the size asked for in IHDR, not blank, the series colours and the SVG drawn', () => {
  const out = path.join(dir, 'ip.png');
  const doc = chart(['--all', '--ip', IP, '--width', '640', '--height', '360', '--out', out]);
  const png = readFileSync(out);
  assert.equal(doc.format, 'png');
  assert.deepEqual(ihdr(png), { width: 640, height: 360 });
  assert.deepEqual([doc.width, doc.height], [640, 360]);
  const px = pixels(png);
  const white = ofColour(px, '#ffffff');
  assert.ok(white < (640 * 360) * 0.95, `${white} of ${640 * 360} pixels are white`);
  // rx blue and tx orange, as in the SVG (svg.ts COLOURS): both areas were filled.
  assert.ok(ofColour(px, '#3b6fb6') > 500, 'rx area drawn');
  assert.ok(ofColour(px, '#e08a2c') > 500, 'tx area drawn');
  // The PNG is the SVG rendered: the same chart as an SVG gives the same pixels.
  const svgOut = path.join(dir, 'ip-same.svg');
  chart(['--all', '--ip', IP, '--width', '640', '--height', '360', '--out', svgOut]);
  assert.equal(differing(px, pixels(renderPng(readFileSync(svgOut, 'utf8')).png)), 0);

  const bars = path.join(dir, 'top.png');
  const topDoc = chart(['--all', '--what', 'top', '--limit', '4', '--out', bars]);
  assert.deepEqual(ihdr(readFileSync(bars)), { width: 800, height: topDoc.height });
  // Fewer bars, a shorter chart (its height is what the bars need).
  const more = chart(['--all', '--what', 'top', '--limit', '12', '--out', path.join(dir, 'top12.png')]);
  assert.ok(more.height > topDoc.height);
});

test('text renders from the shipped font alone (no system font is loaded)', () => {
  const blank = `<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><rect width="200" height="40" fill="#fff"/></svg>`;
  const label = blank.replace('</svg>', `<text x="10" y="28" font-family="${FONT_FAMILY}" font-size="20" fill="#000">tx 1.5 KiB/s</text></svg>`);
  const render = (svg: string, fonts?: string[]) => pixels(renderPng(svg, fonts).png);
  assert.ok(FONT_FILES.every((f) => existsSync(f)), 'the font files ship in node_modules/dejavu-fonts-ttf');
  assert.equal(renderOptions().font?.loadSystemFonts, false);
  assert.ok(differing(render(label), render(blank)) > 100, 'the label draws glyphs');
  // Without the shipped files nothing draws the label: what draws it is the package's font,
  // not one this host happens to have installed.
  assert.equal(differing(render(label, []), render(blank, [])), 0);
  // The chart's own texts: its PNG differs from the same SVG with every text removed.
  const out = path.join(dir, 'texts.svg');
  chart(['--all', '--out', out]);
  const svg = readFileSync(out, 'utf8');
  const noText = svg.replace(/<text[^>]*>.*?<\/text>/gs, '');
  assert.notEqual(noText, svg);
  assert.ok(differing(render(svg), render(noText)) > 2000);
});

/** Runs chart expecting a refusal: its message in text (stderr) and the same as one JSON document. */
function refused(args: string[], code: string, re: RegExp): void {
  const text = query(['--db', db, 'chart', ...args]);
  assert.equal(text.status, 1, text.stderr);
  assert.equal(text.stdout, '');
  assert.match(text.stderr, re);
  const json = query(['--db', db, 'chart', ...args, '--format', 'json']);
  assert.equal(json.status, 1);
  const err = (JSON.parse(json.stdout) as { error: { message: string; code: string } }).error;
  assert.equal(err.code, code);
  assert.match(err.message, re);
}

test('errors: --out, its extension and folder, step, window, no data; nothing written', () => {
  const where = path.join(dir, 'errors');
  mkdirSync(where);
  const out = path.join(where, 'c.png');
  refused(['--all'], 'ERR_TC_USAGE', /required option '--out <file>' not specified/);
  refused(['--all', '--out', path.join(where, 'c.jpg')], 'ERR_TC_USAGE', /c\.jpg ends in \.jpg: chart writes \.svg or \.png; name the file FILE\.png or FILE\.svg/);
  refused(['--all', '--out', path.join(where, 'chart')], 'ERR_TC_USAGE', /has no extension/);
  refused(['--all', '--out', path.join(where, 'missing', 'c.png')], 'ERR_TC_USAGE', /the folder .*missing does not exist; create it first/);
  const file = path.join(where, 'a-file');
  writeFileSync(file, 'x');
  refused(['--all', '--out', path.join(file, 'c.png')], 'ERR_TC_USAGE', /a-file is not a folder/);
  refused(['--all', '--out', file + '.svg', '--step', '1.5s'], 'ERR_TC_USAGE', /"1\.5s" is not a whole number of seconds/);
  refused(['--since', 'yesterday', '--out', out], 'ERR_TC_USAGE', /"yesterday" is not a duration/);
  refused(['--since', '2001-01-01', '--until', '2001-01-02', '--out', out], 'ERR_TC_NO_DATA', /nothing to draw: no intervals in this window .*the file covers 1970-01-01T00:00:00Z to 1970-01-01T00:10:05Z; try --all/);
  refused(['--all', '--ip', '192.0.2.99', '--out', out], 'ERR_TC_NO_DATA', /nothing to draw: 192\.0\.2\.99 has no traffic in 1970-01-01T00:00:00Z to 1970-01-01T00:10:05Z \(110 intervals/);
  refused(['--all', '--what', 'top', '--ip', '192.0.2.99', '--out', out], 'ERR_TC_NO_DATA', /nothing to draw: no traffic matching the filters/);
  // 605 s at 1 s steps: 605 steps, more than the 216 pixels of a 320 px wide plot.
  refused(['--all', '--step', '1s', '--width', '320', '--out', out], 'ERR_TC_USAGE', /--step 1s over .* makes 605 steps, more than the 216 pixels across the plot of a 320 px wide chart: use --step 30s \(21 steps\), give --width 709 or more, or leave --step out/);
  refused(['--all', '--what', 'top', '--step', '1m', '--out', out], 'ERR_TC_USAGE', /--step is an option of --what series \(this is --what top\)/);
  // A day at 5 s steps would need a chart wider than --width allows: only the coarser step is offered.
  refused(['--since', '0', '--until', '86400', '--step', '5s', '--out', out], 'ERR_TC_USAGE', /makes 17,280 steps, more than the 696 pixels .*: use --step 5m \(288 steps\), or leave --step out/);
  // Fifteen years: no offered step fits, so the step is the fewest whole days a pixel wide each
  // (the offered steps of 30 s and up would make more rows than a series gives).
  const years = ['--since', '0', '--until', String(15 * 365 * 86_400)];
  const drawn = path.join(tmp(), 'years.svg');
  const long = query(['--db', db, 'chart', ...years, '--out', drawn]);
  assert.equal(long.status, 0, long.stderr);
  assert.match(long.stderr, /series total, step 8d; 1970-01-01T00:00:00Z to 1984-12-28T00:00:00Z/);
  assert.ok(existsSync(drawn));
  refused([...years, '--step', '1h', '--out', out], 'ERR_TC_USAGE', /makes 131,400 steps, more than the 696 pixels .*: use --step 8d \(685 steps\), or leave --step out/);
  // 5 s intervals: a 1 s step would put each interval's bytes in one step (its rate 5x too high), 7 s cuts them.
  refused(['--all', '--step', '1s', '--out', out], 'ERR_TC_USAGE', /--step 1s is shorter than the 5s intervals recorded in this window: .*use --step 5s \(or 30s, 1m, 5m\), a multiple of 5s/);
  refused(['--all', '--step', '7s', '--out', out], 'ERR_TC_USAGE', /--step 7s is not a multiple of the 5s intervals recorded in this window: .*use --step 10s/);
  for (const step of ['1s', '7s']) {
    const q = query(['--db', db, 'series', '--all', '--step', step, '--format', 'json']);
    assert.equal(q.status, 1);
    assert.equal((JSON.parse(q.stdout) as { error: { code: string } }).error.code, 'ERR_TC_USAGE');
    assert.match(q.stdout, /the 5s intervals recorded in this window/);
  }
  assert.equal(query(['--db', db, 'series', '--all', '--step', '10s']).status, 0);
  refused(['--all', '--by', 'flow', '--out', out], 'ERR_TC_USAGE', /--by is an option of --what top \(this is --what series\)/);
  refused(['--all', '--height', '200', '--ip', IP, '--title', 'x', '--out', out, '--width', '320'], 'ERR_TC_USAGE', /no room for the plot/);
  assert.deepEqual(readdirSync(where), ['a-file'], 'nothing written by a refusal, no staged file left');
  // An existing chart is replaced with --force only.
  chart(['--all', '--out', out]);
  refused(['--all', '--out', out], 'ERR_TC_USAGE', /already exists; pass --force to replace it/);
  const before = readFileSync(out);
  chart(['--all', '--out', out, '--force', '--width', '400', '--height', '300']);
  assert.notDeepEqual(readFileSync(out), before);
  assert.deepEqual(readdirSync(where).sort(), ['a-file', 'c.png']);
});

test('text mode: one line on stderr naming the file, its size and what it shows', () => {
  const out = path.join(dir, 'line.svg');
  const r = query(['--db', db, 'chart', '--all', '--ip', IP, '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, new RegExp(`^tc-query: wrote ${out.replace(/[.]/g, '\\.')} \\(SVG 800x400; series rx, tx, step 30s; 1970-01-01T00:00:00Z to 1970-01-01T00:10:05Z; 110 intervals`));
});

test('--what top --by label: a bar per label of the file, the addresses without one as one bar', () => {
  const labels = path.join(dir, 'labels.txt');
  writeFileSync(labels, '10.0.2.0/24 lan\n104.0.0.0/8 far away\n');
  const out = path.join(dir, 'labels.svg');
  const doc = queryJson<ChartDoc>(['--db', db, '--labels', labels, 'chart', '--all', '--what', 'top', '--by', 'label', '--out', out]);
  const rows = queryJson<Row[]>(['--db', db, '--labels', labels, 'top', '--all', '--by', 'label']);
  assert.deepEqual(doc.series, ['tx', 'rx']);
  const bars = withClass(parseSvg(out), 'g', 'bar');
  assert.deepEqual(
    bars.map((b) => b.getAttribute('data-label')),
    rows.map((r) => r.label ?? '(no label)'),
  );
  assert.ok(bars.some((b) => b.getAttribute('data-label') === 'far away'));
  assert.deepEqual(bars.map((b) => Number(b.getAttribute('data-bytes'))), rows.map((r) => r.bytes));
});

test('--tz: the axis, subtitle and caption in that zone, steps on its calendar; the JSON in UTC', () => {
  const out = path.join(dir, 'tz.svg');
  const doc = chart(['--all', '--step', '1m', '--tz', '+05:30', '--out', out]);
  assert.deepEqual(doc.window, { since: '1970-01-01T00:00:00Z', until: '1970-01-01T00:10:05Z' });
  const svg = parseSvg(out);
  assert.match(textOf(withClass(svg, 'text', 'subtitle')[0]), /^1970-01-01T05:30:00\+05:30 to 1970-01-01T05:40:05\+05:30/);
  const ticks = all(withClass(svg, 'g', 'x-axis')[0], 'text').map(textOf);
  assert.equal(ticks[0], '01-01 05:30');
  assert.ok(ticks.slice(1).every((t) => /^05:[34]\d$/.test(t)), ticks.join(' '));
  assert.match(all(withClass(svg, 'text', 'caption')[0], 'tspan').map(textOf).join(' '), /1970-01-01T05:30:00\+05:30 to 1970-01-01T05:40:05\+05:30/);
});

