/**
 * Sorted, disjoint address ranges with a value per range, looked up by binary search: the one
 * structure behind label files (CIDRs flattened so that the longest prefix wins), ASN tables
 * (ip2asn ranges) and the local networks of a window (their union). An address is its big-endian 32-bit words: 1 for IPv4, 4 for IPv6, so a
 * comparison is a few integer compares and a table of 500,000 ranges is a few typed arrays.
 */
import { TcError } from '../errors';

export type Words = Uint32Array;

/** The words of a 4- or 16-byte address. */
export function wordsOf(addr: Uint8Array): Words {
  const n = addr.length >> 2;
  const w = new Uint32Array(n);
  for (let i = 0; i < n; i++) w[i] = ((addr[4 * i] << 24) | (addr[4 * i + 1] << 16) | (addr[4 * i + 2] << 8) | addr[4 * i + 3]) >>> 0;
  return w;
}

/** The 4 or 16 bytes of address words. */
export function bytesOf(w: ArrayLike<number>): Uint8Array {
  const b = new Uint8Array(w.length * 4);
  for (let i = 0; i < w.length; i++) {
    b[4 * i] = w[i] >>> 24;
    b[4 * i + 1] = (w[i] >>> 16) & 255;
    b[4 * i + 2] = (w[i] >>> 8) & 255;
    b[4 * i + 3] = w[i] & 255;
  }
  return b;
}

/** -1, 0 or 1: `a[ai..]` against `b[bi..]`, `n` words each. */
function cmp(a: ArrayLike<number>, ai: number, b: ArrayLike<number>, bi: number, n: number): number {
  for (let i = 0; i < n; i++) {
    const x = a[ai + i];
    const y = b[bi + i];
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** One family's ranges: `starts`/`ends` hold `words` words a range (inclusive ends), sorted and disjoint. */
export class RangeTable {
  constructor(
    readonly words: 1 | 4,
    readonly starts: Uint32Array,
    readonly ends: Uint32Array,
    readonly values: Int32Array,
  ) {}

  get count(): number {
    return this.values.length;
  }

  /** The value of the range holding `addr` (its words), or -1. */
  find(addr: ArrayLike<number>): number {
    const n = this.words;
    let lo = 0;
    let hi = this.values.length - 1;
    let at = -1;
    // The last range that starts at or before addr.
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (cmp(this.starts, mid * n, addr, 0, n) <= 0) {
        at = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return at >= 0 && cmp(addr, 0, this.ends, at * n, n) <= 0 ? this.values[at] : -1;
  }
}

/**
 * Collects ranges of one family in any order, with the line each came from, and sorts them
 * into a RangeTable; an overlap is refused through `overlap(lineA, lineB)`.
 */
export class RangeBuilder {
  private starts: Uint32Array;
  private ends: Uint32Array;
  private values: Int32Array;
  private lines: Int32Array;
  private n = 0;
  private sorted = true;

  constructor(readonly words: 1 | 4, capacity = 1024) {
    this.starts = new Uint32Array(capacity * words);
    this.ends = new Uint32Array(capacity * words);
    this.values = new Int32Array(capacity);
    this.lines = new Int32Array(capacity);
  }

  get count(): number {
    return this.n;
  }

  /** Adds [start, end] (words; start <= end) with `value`, from line `line`. */
  add(start: ArrayLike<number>, end: ArrayLike<number>, value: number, line: number): void {
    const w = this.words;
    if (this.n === this.values.length) this.grow();
    const i = this.n++;
    for (let k = 0; k < w; k++) {
      this.starts[i * w + k] = start[k];
      this.ends[i * w + k] = end[k];
    }
    this.values[i] = value;
    this.lines[i] = line;
    if (i > 0 && cmp(this.starts, i * w, this.starts, (i - 1) * w, w) < 0) this.sorted = false;
  }

  private grow(): void {
    const cap = this.values.length * 2;
    const g = <T extends Uint32Array | Int32Array>(a: T, n: number): T => {
      const b = new (a.constructor as new (n: number) => T)(n);
      b.set(a);
      return b;
    };
    this.starts = g(this.starts, cap * this.words);
    this.ends = g(this.ends, cap * this.words);
    this.values = g(this.values, cap);
    this.lines = g(this.lines, cap);
  }

  finish(overlap: (firstLine: number, secondLine: number) => Error): RangeTable {
    const w = this.words;
    const n = this.n;
    let starts = this.starts.subarray(0, n * w);
    let ends = this.ends.subarray(0, n * w);
    let values = this.values.subarray(0, n);
    let lines = this.lines.subarray(0, n);
    if (!this.sorted) {
      const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => cmp(this.starts, a * w, this.starts, b * w, w) || a - b);
      const s = new Uint32Array(n * w);
      const e = new Uint32Array(n * w);
      const v = new Int32Array(n);
      const l = new Int32Array(n);
      order.forEach((o, i) => {
        s.set(starts.subarray(o * w, o * w + w), i * w);
        e.set(ends.subarray(o * w, o * w + w), i * w);
        v[i] = values[o];
        l[i] = lines[o];
      });
      [starts, ends, values, lines] = [s, e, v, l];
    }
    for (let i = 1; i < n; i++) {
      if (cmp(starts, i * w, ends, (i - 1) * w, w) <= 0) throw overlap(Math.min(lines[i - 1], lines[i]), Math.max(lines[i - 1], lines[i]));
    }
    return new RangeTable(w, starts, ends, values);
  }
}

/** A network of one family as a range: [start, end] as integers, its prefix, a value and the line it came from. */
export interface Net {
  start: bigint;
  end: bigint;
  prefix: number;
  value: number;
  line: number;
}

/** The network of 4 or 16 bytes `addr` and `prefix` as a Net. */
export function netOf(addr: Uint8Array, prefix: number, value: number, line: number): Net {
  const start = addr.reduce((v, x) => (v << 8n) | BigInt(x), 0n);
  return { start, end: start | ((1n << BigInt(addr.length * 8 - prefix)) - 1n), prefix, value, line };
}

function toWords(v: bigint, words: 1 | 4): number[] {
  const out: number[] = [];
  for (let i = words - 1; i >= 0; i--) out.push(Number((v >> BigInt(32 * i)) & 0xffffffffn));
  return out;
}

/**
 * Disjoint ranges of networks of one family, each with the value of the longest prefix that
 * holds it (a nested network cut out of the one around it; neighbours of one value merged).
 * Networks are nested or disjoint: sorted by start then by size, a network lies inside the one
 * before it on the stack or after it. Two networks alike (start and prefix) are refused through
 * `duplicate(later, earlier)`.
 */
export function flattenNets(nets: Net[], words: 1 | 4, duplicate: (later: Net, earlier: Net) => Error): RangeTable {
  nets.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.prefix - b.prefix || a.line - b.line));
  const out = new RangeBuilder(words, Math.max(16, nets.length * 2));
  let last: { start: bigint; end: bigint; value: number } | undefined;
  const emit = (start: bigint, end: bigint, value: number) => {
    if (start > end) return;
    if (last && last.value === value && last.end + 1n === start) last.end = end;
    else {
      if (last) out.add(toWords(last.start, words), toWords(last.end, words), last.value, 0);
      last = { start, end, value };
    }
  };
  const stack: Net[] = [];
  let cursor = 0n;
  for (let i = 0; i < nets.length; i++) {
    const n = nets[i];
    if (i > 0 && nets[i - 1].start === n.start && nets[i - 1].prefix === n.prefix) throw duplicate(n, nets[i - 1]);
    while (stack.length > 0 && stack[stack.length - 1].end < n.start) {
      const top = stack.pop()!;
      emit(cursor, top.end, top.value);
      cursor = top.end + 1n;
    }
    if (stack.length > 0) emit(cursor, n.start - 1n, stack[stack.length - 1].value);
    cursor = n.start;
    stack.push(n);
  }
  while (stack.length > 0) {
    const top = stack.pop()!;
    emit(cursor, top.end, top.value);
    cursor = top.end + 1n;
  }
  if (last) out.add(toWords(last.start, words), toWords(last.end, words), last.value, 0);
  return out.finish(() => new TcError('overlapping ranges after flattening (a bug)', 'ERR_TC_INTERNAL'));
}

/** The [lo, hi] address ranges (4- or 16-byte, inclusive) of a table whose value is `value` (every range: undefined). */
export function rangesOf(t: RangeTable, value?: number): { lo: Uint8Array; hi: Uint8Array }[] {
  const w = t.words;
  const out: { lo: Uint8Array; hi: Uint8Array }[] = [];
  for (let i = 0; i < t.count; i++) {
    if (value === undefined || t.values[i] === value) out.push({ lo: bytesOf(t.starts.subarray(i * w, i * w + w)), hi: bytesOf(t.ends.subarray(i * w, i * w + w)) });
  }
  return out;
}
