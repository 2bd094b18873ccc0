/**
 * The SVG of `tc-query chart`: a time series of bytes/s (stacked areas, one per series) or the
 * top talkers as horizontal bars, with axes, units, a legend with each series' summary and the
 * completeness line as the caption, in the spirit of vnstati's summaries. Scales, ticks and the
 * area paths come from d3-scale and d3-shape (pure functions, no DOM); the elements are written
 * here. Every text uses FONT_FAMILY, the font shipped with the package (png.ts loads it).
 */
import { offsetMs } from '../time';
import { TcError } from '../../errors';

/** The font family of every text: DejaVu Sans, shipped in the package (dejavu-fonts-ttf) so that a host without fonts renders it. */
export const FONT_FAMILY = 'DejaVu Sans';

/** One drawn series or bar part: `name` is its id in the SVG (data-series) and in chart's JSON, `label` its legend text. */
export interface Part {
  name: string;
  label: string;
}

export interface Texts {
  title: string;
  subtitle: string;
  /** The completeness line (coverage.ts completenessLine). */
  caption: string;
  /** What else the answer says of itself (the notes tc-query prints on stderr: time counted as 0, ...), below the caption. */
  notes?: string[];
}

export interface TimeChart extends Texts {
  /** The steps, clipped to the window: bytes of each part in [start, end). */
  steps: { start: number; end: number; bytes: number[] }[];
  parts: Part[];
  width: number;
  height: number;
  /** Zone of the time axis (undefined: UTC). */
  tz?: string;
}

export interface BarChart extends Texts {
  /** Largest first: bytes of each part. */
  bars: { label: string; bytes: number[] }[];
  parts: Part[];
  width: number;
  /** Undefined: as tall as the bars need. */
  height?: number;
}

/** Colours of the parts, in order: rx blue, tx orange (vnstati's pair); a single series blue. */
const COLOURS = ['#3b6fb6', '#e08a2c', '#5aa469', '#9b59b6'];
const colourOf = (parts: Part[], i: number) => (parts[i].name === 'tx' ? COLOURS[1] : parts[i].name === 'rx' ? COLOURS[0] : COLOURS[i % COLOURS.length]);

export { iec, unitFor } from '../../units';
import { iec, unitFor } from '../../units';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const num = (v: number) => (Math.round(v * 100) / 100).toString();

/** DejaVu Sans' mean advance is about 0.6 em: enough to wrap a caption and size a label column without measuring. */
const CHAR_EM = 0.6;
/** DejaVu Sans' digit advance: time labels are mostly digits. */
const DIGIT_EM = 0.64;

/** Splits `text` at spaces into lines of at most `chars` characters (a longer word stays whole). */
export function wrap(text: string, chars: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > chars) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

const truncate = (s: string, chars: number) => (s.length <= chars ? s : `${s.slice(0, Math.max(1, chars - 1))}…`);

const text = (x: number, y: number, s: string, attrs = '') => `<text x="${num(x)}" y="${num(y)}"${attrs ? ` ${attrs}` : ''}>${esc(s)}</text>`;

interface D3 {
  scale: typeof import('d3-scale');
  shape: typeof import('d3-shape');
}

/** d3's modules are ES modules: loaded with import(), once. */
let d3: Promise<D3> | undefined;
export function loadD3(): Promise<D3> {
  return (d3 ??= Promise.all([import('d3-scale'), import('d3-shape')]).then(([scale, shape]) => ({ scale, shape })));
}

/** The frame every chart shares: background, title, subtitle, legend lines and the caption; `body` sits between them. */
function frame(t: Texts, width: number, height: number, legend: { colour: string; text: string; name: string }[], captionLines: string[], body: string): string {
  const fs = 12;
  const bottom = height - 10 - (captionLines.length - 1) * 15;
  const legendTop = bottom - 12 - legend.length * 18;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT_FAMILY}" font-size="${fs}">`,
    `<rect class="background" x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    text(16, 24, t.title, 'class="title" font-size="15" font-weight="bold" fill="#222222"'),
    text(16, 42, t.subtitle, 'class="subtitle" font-size="11" fill="#555555"'),
    body,
    `<g class="legend">`,
    ...legend.map((l, i) => {
      const y = legendTop + i * 18;
      return `<g class="legend-item" data-series="${esc(l.name)}"><rect x="16" y="${num(y)}" width="12" height="12" fill="${l.colour}"/>${text(34, y + 10, l.text, 'fill="#222222"')}</g>`;
    }),
    `</g>`,
    `<text class="caption" x="16" y="${num(bottom)}" font-size="11" fill="#555555">${captionLines.map((l, i) => `<tspan x="16"${i ? ' dy="15"' : ''}>${esc(l)}</tspan>`).join('')}</text>`,
    `</svg>`,
    '',
  ].join('\n');
}

/** The lines of the caption for a chart `width` wide (11 px text). */
const captionOf = (t: Texts, width: number) => [t.caption, ...(t.notes ?? [])].flatMap((p) => wrap(p, Math.floor((width - 32) / (11 * CHAR_EM))));

/** The y room below the plot that the legend (`n` lines) and the caption take. */
const footRoom = (n: number, captionLines: number) => 12 + n * 18 + 10 + (captionLines - 1) * 15 + 6;

const pad = (n: number) => String(n).padStart(2, '0');

/**
 * Labels of time ticks (Dates in the axis' wall-clock time, read as UTC): ISO-like and 24 h, as
 * every time tc-query prints: `2026-11-26` when every tick is a midnight, else `10:05` (with
 * seconds when a tick has some), the date prefixed where it changes from the tick before.
 */
export function timeTickFormat(ticks: Date[]): (d: Date) => string {
  const date = (d: Date) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const days = ticks.every((d) => d.getTime() % 86_400_000 === 0);
  const secs = ticks.some((d) => d.getUTCSeconds() !== 0);
  const time = (d: Date) => `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}${secs ? `:${pad(d.getUTCSeconds())}` : ''}`;
  return (d: Date) => {
    if (days) return date(d);
    const i = ticks.findIndex((t) => t.getTime() === d.getTime());
    const newDay = i <= 0 || date(ticks[i - 1]) !== date(d);
    return newDay ? `${date(d).slice(5)} ${time(d)}` : time(d);
  };
}

/** Room left of a time plot (the y labels) and right of it (the last x label's half). */
const PLOT_LEFT = 64;
const PLOT_RIGHT = 40;
/** Pixels across the plot of a time chart `width` wide. */
export const plotWidth = (width: number) => width - PLOT_LEFT - PLOT_RIGHT;

/** A time series chart: bytes/s of each part per step, stacked. */
export async function timeSvg(c: TimeChart): Promise<string> {
  const { scale, shape } = await loadD3();
  const captionLines = captionOf(c, c.width);
  const left = PLOT_LEFT;
  const right = c.width - PLOT_RIGHT;
  const top = 62;
  const plotBottom = c.height - footRoom(c.parts.length, captionLines.length) - 22;
  if (plotBottom - top < 40) throw new TcError(`a ${c.width}x${c.height} chart has no room for the plot below its title and above its legend and caption; give a larger --height`, 'ERR_TC_USAGE');
  const secs = (s: { start: number; end: number }) => Math.max((s.end - s.start) / 1000, 1e-9);
  const rates = c.steps.map((s) => s.bytes.map((b) => b / secs(s)));
  const maxRate = rates.reduce((m, r) => Math.max(m, r.reduce((a, b) => a + b, 0)), 0);
  const unit = unitFor(maxRate);
  const y = scale.scaleLinear().domain([0, Math.max(maxRate / unit.div, 1e-9)]).nice(5).range([plotBottom, top]);
  // Ticks are placed in the zone's wall-clock time at the window's start (one offset for the
  // whole axis: after a daylight-saving change inside the window the labels are an hour off).
  const off = offsetMs(c.steps[0].start, c.tz);
  const from = c.steps[0].start;
  const to = c.steps[c.steps.length - 1].end;
  const x = scale.scaleUtc().domain([new Date(from + off), new Date(to + off)]).range([left, right]);
  const xAt = (t: number) => x(new Date(t + off));
  // Each step is a flat stretch (the step's mean rate), stacked part on part.
  const points = c.steps.flatMap((s, i) => [
    { t: s.start, v: rates[i] },
    { t: s.end, v: rates[i] },
  ]);
  const stacked = shape.stack<{ t: number; v: number[] }, number>().keys(c.parts.map((_p, i) => i)).value((d, k) => d.v[k] / unit.div)(points);
  const area = shape
    .area<[number, number] & { data: { t: number } }>()
    .x((d) => xAt(d.data.t))
    .y0((d) => y(d[0]))
    .y1((d) => y(d[1]));
  const totals = c.parts.map((_p, i) => c.steps.reduce((n, s) => n + s.bytes[i], 0));
  const yTicks = y.ticks(5);
  const yFormat = y.tickFormat(5);
  const xTicks = x.ticks(Math.max(2, Math.floor((right - left) / 110)));
  const xFormat = timeTickFormat(xTicks);
  // A label that would overlap the one before (a date-prefixed first label is wider) is left out;
  // its tick stays. Digits are wider than DejaVu's mean advance (0.636 em): measured as such.
  let lastRight = -Infinity;
  const xLabels = xTicks.map((d) => {
    const t = xFormat(d);
    const half = (t.length * 11 * DIGIT_EM) / 2;
    if (x(d) - half < lastRight + 6) return '';
    lastRight = x(d) + half;
    return text(x(d), plotBottom + 17, t);
  });
  const body = [
    `<g class="grid" stroke="#e3e3e3" stroke-width="1">`,
    ...yTicks.map((v) => `<line x1="${left}" x2="${right}" y1="${num(y(v))}" y2="${num(y(v))}"/>`),
    `</g>`,
    `<g class="series">`,
    ...stacked.map((layer, i) => `<path class="series" data-series="${esc(c.parts[i].name)}" data-bytes="${totals[i]}" fill="${colourOf(c.parts, i)}" stroke="${colourOf(c.parts, i)}" stroke-width="1" d="${area(layer as never) ?? ''}"/>`),
    `</g>`,
    `<g class="axis y-axis" fill="#333333" font-size="11" text-anchor="end">`,
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${plotBottom}" stroke="#888888"/>`,
    ...yTicks.map((v) => text(left - 6, y(v) + 4, yFormat(v))),
    text(left - 6, top - 10, `${unit.name}/s`, 'class="unit" font-weight="bold"'),
    `</g>`,
    `<g class="axis x-axis" fill="#333333" font-size="11" text-anchor="middle">`,
    `<line x1="${left}" x2="${right}" y1="${plotBottom}" y2="${plotBottom}" stroke="#888888"/>`,
    ...xTicks.map((d, i) => `<line x1="${num(x(d))}" x2="${num(x(d))}" y1="${plotBottom}" y2="${plotBottom + 4}" stroke="#888888"/>${xLabels[i]}`),
    `</g>`,
  ].join('\n');
  const seconds = (to - from) / 1000;
  const legend = c.parts.map((p, i) => {
    const total = totals[i];
    const peak = rates.reduce((m, r) => Math.max(m, r[i]), 0);
    return { name: p.name, colour: colourOf(c.parts, i), text: `${p.label}: ${iec(total)} in all, peak ${iec(peak, '/s')}, mean ${iec(total / Math.max(seconds, 1e-9), '/s')}` };
  });
  return frame(c, c.width, c.height, legend, captionLines, body);
}

const BAR = 22;
const BAR_GAP = 6;

/** The height a bar chart of `n` bars needs at `width` (its caption wraps by the width). */
export function barHeight(n: number, parts: number, t: Texts, width: number): number {
  return 62 + n * (BAR + BAR_GAP) + 24 + footRoom(parts, captionOf(t, width).length);
}

/** The top talkers as horizontal bars of bytes, each part stacked (tx then rx). */
export async function barSvg(c: BarChart): Promise<string> {
  const { scale } = await loadD3();
  const captionLines = captionOf(c, c.width);
  const height = c.height ?? barHeight(c.bars.length, c.parts.length, c, c.width);
  const top = 62;
  const labelChars = Math.min(Math.max(...c.bars.map((b) => b.label.length), 4), Math.floor((c.width * 0.4) / (12 * CHAR_EM)));
  const left = 16 + Math.ceil(labelChars * 12 * CHAR_EM) + 8;
  const right = c.width - 90;
  const plotBottom = height - footRoom(c.parts.length, captionLines.length) - 22;
  const rowH = (plotBottom - top) / Math.max(c.bars.length, 1);
  if (rowH < 4 || right - left < 40) throw new TcError(`a ${c.width}x${height} chart has no room for ${c.bars.length} bars; give a larger --width or --height (or leave --height out: as tall as the bars need), or fewer bars with --limit`, 'ERR_TC_USAGE');
  const barH = Math.min(BAR, rowH * 0.8);
  const max = c.bars.reduce((m, b) => Math.max(m, b.bytes.reduce((a, v) => a + v, 0)), 0);
  const unit = unitFor(max);
  const x = scale.scaleLinear().domain([0, Math.max(max / unit.div, 1e-9)]).nice(5).range([left, right]);
  const ticks = x.ticks(5);
  const fmt = x.tickFormat(5);
  const bars = c.bars.map((b, i) => {
    const yTop = top + i * rowH + (rowH - barH) / 2;
    let at = 0;
    const rects = b.bytes.map((v, k) => {
      const x0 = x(at / unit.div);
      at += v;
      const w = Math.max(x(at / unit.div) - x0, 0);
      return `<rect data-series="${esc(c.parts[k].name)}" data-bytes="${v}" x="${num(x0)}" y="${num(yTop)}" width="${num(w)}" height="${num(barH)}" fill="${colourOf(c.parts, k)}"/>`;
    });
    const total = b.bytes.reduce((a, v) => a + v, 0);
    return [
      `<g class="bar" data-label="${esc(b.label)}" data-bytes="${total}">`,
      text(left - 8, yTop + barH / 2 + 4, truncate(b.label, labelChars), 'class="bar-label" text-anchor="end" fill="#222222"'),
      ...rects,
      text(x(total / unit.div) + 6, yTop + barH / 2 + 4, iec(total), 'class="bar-value" font-size="11" fill="#333333"'),
      `</g>`,
    ].join('');
  });
  const body = [
    `<g class="grid" stroke="#e3e3e3" stroke-width="1">`,
    ...ticks.map((v) => `<line x1="${num(x(v))}" x2="${num(x(v))}" y1="${top}" y2="${num(plotBottom)}"/>`),
    `</g>`,
    `<g class="bars">`,
    ...bars,
    `</g>`,
    `<g class="axis x-axis" fill="#333333" font-size="11" text-anchor="middle">`,
    `<line x1="${left}" x2="${right}" y1="${num(plotBottom)}" y2="${num(plotBottom)}" stroke="#888888"/>`,
    ...ticks.map((v) => text(x(v), plotBottom + 16, fmt(v))),
    text(right + 18, plotBottom + 16, unit.name, 'class="unit" text-anchor="start" font-weight="bold"'),
    `</g>`,
  ].join('\n');
  const legend = c.parts.map((p, k) => ({ name: p.name, colour: colourOf(c.parts, k), text: `${p.label}: ${iec(c.bars.reduce((n, b) => n + b.bytes[k], 0))} over these ${c.bars.length} bars` }));
  return frame(c, c.width, height, legend, captionLines, body);
}
