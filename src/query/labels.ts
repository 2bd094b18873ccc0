/**
 * Label files (`tc-query --labels FILE`, or TC_LABELS): lines `CIDR label`, IPv4 and IPv6,
 * `#` comments and blank lines; the longest prefix holding an address gives its label. Read at
 * query time, so a changed file relabels all of history. The CIDRs are flattened into disjoint
 * ranges (a nested network cut out of the one around it), so a lookup is one binary search and
 * the addresses of one label are a few address ranges (what `--label NAME` reads).
 */
import { readFileSync } from 'node:fs';
import { parseCidr, formatAddr } from '../addr';
import { TcError } from '../errors';
import { OVERFLOW } from './keys';
import { bytesOf, RangeBuilder, RangeTable, wordsOf } from './ranges';

export const LABELS_ENV = 'TC_LABELS';
const CODE = 'ERR_TC_LABELS';

export interface LabelTable {
  file: string;
  /** Every label the file gives, in the order first given. */
  labels: string[];
  /** The label of an address (4 or 16 bytes), or null where no line holds it. */
  labelOf(addr: Uint8Array): string | null;
  /** The address ranges labelled `label` (inclusive ends, 4- or 16-byte), longest prefix applied. */
  rangesOf(label: string): { lo: Uint8Array; hi: Uint8Array }[];
}

interface Net {
  start: bigint;
  end: bigint;
  prefix: number;
  label: number;
  line: number;
}

const toBig = (b: Uint8Array) => b.reduce((v, x) => (v << 8n) | BigInt(x), 0n);
function toWords(v: bigint, words: 1 | 4): number[] {
  const out: number[] = [];
  for (let i = words - 1; i >= 0; i--) out.push(Number((v >> BigInt(32 * i)) & 0xffffffffn));
  return out;
}

/**
 * Disjoint ranges of nested-or-disjoint networks, each with the label of the longest prefix that
 * holds it: sorted by start then by size, a network either lies inside the one before it on the
 * stack or after it.
 */
function flatten(nets: Net[], words: 1 | 4, file: string): RangeTable {
  nets.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.prefix - b.prefix || a.line - b.line));
  const out = new RangeBuilder(words, Math.max(16, nets.length * 2));
  let last: { start: bigint; end: bigint; label: number } | undefined;
  const emit = (start: bigint, end: bigint, label: number) => {
    if (start > end) return;
    if (last && last.label === label && last.end + 1n === start) last.end = end;
    else {
      if (last) out.add(toWords(last.start, words), toWords(last.end, words), last.label, 0);
      last = { start, end, label };
    }
  };
  const stack: Net[] = [];
  let cursor = 0n;
  for (let i = 0; i < nets.length; i++) {
    const n = nets[i];
    if (i > 0 && nets[i - 1].start === n.start && nets[i - 1].prefix === n.prefix) {
      throw new TcError(`${file}:${n.line}: ${netText(n, words)} is already labelled on line ${nets[i - 1].line}; give each network one label`, CODE);
    }
    while (stack.length > 0 && stack[stack.length - 1].end < n.start) {
      const top = stack.pop()!;
      emit(cursor, top.end, top.label);
      cursor = top.end + 1n;
    }
    if (stack.length > 0) emit(cursor, n.start - 1n, stack[stack.length - 1].label);
    cursor = n.start;
    stack.push(n);
  }
  while (stack.length > 0) {
    const top = stack.pop()!;
    emit(cursor, top.end, top.label);
    cursor = top.end + 1n;
  }
  if (last) out.add(toWords(last.start, words), toWords(last.end, words), last.label, 0);
  return out.finish(() => new TcError(`${file}: overlapping ranges after flattening (a bug)`, 'ERR_TC_INTERNAL'));
}

const netText = (n: Net, words: 1 | 4) => `${formatAddr(bytesOf(toWords(n.start, words)))}/${n.prefix}`;

/** Reads a label file; every problem names the file and line and says what a line should be. */
export function readLabels(file: string): LabelTable {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'it is a directory' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new TcError(`cannot read label file ${file}: ${why}; give --labels FILE (lines "CIDR label", e.g. "10.1.0.0/16 office"), or unset ${LABELS_ENV}`, CODE);
  }
  const labels: string[] = [];
  const index = new Map<string, number>();
  const nets: Record<4 | 16, Net[]> = { 4: [], 16: [] };
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const where = `${file}:${i + 1}`;
    // A comment is a line starting with `#`, or the rest of a line from a `#` after a blank.
    const line = lines[i].replace(/(^|\s)#.*$/, '').trim();
    if (line === '') continue;
    const m = /^(\S+)\s+(.+)$/.exec(line);
    if (!m) throw new TcError(`${where}: ${JSON.stringify(line)} has no label; each line is "CIDR label" (e.g. "10.1.0.0/16 office")`, CODE);
    const [, cidrText, label] = m;
    const c = parseCidr(cidrText);
    if (!c) throw new TcError(`${where}: ${JSON.stringify(cidrText)} is not a CIDR (e.g. 10.1.0.0/16, 2001:db8::/32, or one address)`, CODE);
    const given = parseCidrExact(cidrText);
    if (given && !given.every((b, k) => b === c.addr[k])) {
      throw new TcError(`${where}: ${cidrText} has bits set past its /${c.prefix}; write the network, ${formatAddr(c.addr)}/${c.prefix}`, CODE);
    }
    if (label === OVERFLOW) throw new TcError(`${where}: the label "${OVERFLOW}" names the row of addresses folded past --max-keys or by the disk budget; give this network another label`, CODE);
    let li = index.get(label);
    if (li === undefined) {
      li = labels.length;
      labels.push(label);
      index.set(label, li);
    }
    const start = toBig(c.addr);
    const bits = c.addr.length * 8;
    const end = start | ((1n << BigInt(bits - c.prefix)) - 1n);
    nets[c.addr.length as 4 | 16].push({ start, end, prefix: c.prefix, label: li, line: i + 1 });
  }
  const v4 = flatten(nets[4], 1, file);
  const v6 = flatten(nets[16], 4, file);
  return {
    file,
    labels,
    labelOf(addr) {
      const t = addr.length === 4 ? v4 : addr.length === 16 ? v6 : undefined;
      const v = t ? t.find(wordsOf(addr)) : -1;
      return v < 0 ? null : labels[v];
    },
    rangesOf(label) {
      const li = index.get(label);
      const out: { lo: Uint8Array; hi: Uint8Array }[] = [];
      if (li === undefined) return out;
      for (const t of [v4, v6]) {
        const w = t.words;
        for (let i = 0; i < t.count; i++) {
          if (t.values[i] === li) out.push({ lo: bytesOf(t.starts.subarray(i * w, i * w + w)), hi: bytesOf(t.ends.subarray(i * w, i * w + w)) });
        }
      }
      return out;
    },
  };
}

/** The address part of a CIDR as written (before masking), to refuse host bits past the prefix. */
function parseCidrExact(text: string): Uint8Array | undefined {
  const [a] = text.split('/');
  const c = parseCidr(a);
  return c?.addr;
}
