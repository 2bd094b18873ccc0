/**
 * A synthetic ip2asn table (the TSV layout of iptoasn.com's ip2asn-combined.tsv) for tests and
 * the query benchmark, since the real one cannot be downloaded here: contiguous ranges over
 * the whole IPv4 and IPv6 space as the real file has them, sorted, about one in ten "Not
 * routed" (AS 0, country None), the rest announced by a pool of ASes whose names look like the
 * real ones (upper case with dashes, some with spaces, commas or non-ASCII text).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { formatAddr } from '../../src/addr';

export interface AsnGenOptions {
  /** IPv4 ranges (the real table: ~430,000). */
  v4: number;
  /** IPv6 ranges (the real table: ~90,000). */
  v6: number;
  /** Distinct announcing ASes (the real table: ~75,000). */
  ases?: number;
  seed?: number;
}

const COUNTRIES = ['US', 'DE', 'CN', 'BR', 'GB', 'JP', 'FR', 'RU', 'IN', 'NL', 'KR', 'CA', 'AU', 'IT', 'PL', 'SE', 'ID', 'VN', 'ZA', 'AR'];
const WORDS = ['NET', 'TELECOM', 'CLOUD', 'HOSTING', 'BACKBONE', 'ISP', 'FIBER', 'DATA', 'COMM', 'LINK', 'WAVE', 'CORE'];

/** The AS number, country and description of pool entry `i` (deterministic). */
export function asOfPool(i: number): { asn: number; country: string; name: string } {
  const asn = i < 60_000 ? 1000 + i * 7 : 4_200_000_000 - i; // 16-bit and 32-bit ASNs
  const w = WORDS[i % WORDS.length];
  const name =
    i % 13 === 0 ? `${w}-AS${i} Example ${w.toLowerCase()} Ltd., Branch ${i % 7}` : i % 29 === 0 ? `RÉSEAU-${w}-${i} Société` : `${w}-${i}-AS`;
  return { asn, country: COUNTRIES[(i * 7) % COUNTRIES.length], name };
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/** `n` sorted distinct boundaries in [1, max), from `r`, spread evenly with jitter. */
function boundaries(n: number, max: number, r: () => number): number[] {
  const out: number[] = [];
  const step = max / (n + 1);
  for (let i = 1; i <= n; i++) out.push(Math.floor(i * step + (r() / 4294967296 - 0.5) * step * 0.9));
  return out;
}

const v6Text = (hi48: number, fill: 0 | 0xffff) => {
  const b = new Uint8Array(16).fill(fill === 0 ? 0 : 0xff);
  let v = hi48;
  for (let i = 5; i >= 0; i--) {
    b[i] = v % 256;
    v = Math.floor(v / 256);
  }
  return formatAddr(b);
};

/** Writes the table to `file`; returns the number of ranges written. */
export function writeIp2Asn(file: string, o: AsnGenOptions): number {
  const r = rng(o.seed ?? 7);
  const ases = o.ases ?? 75_000;
  const fd = openSync(file, 'w');
  let buf: string[] = [];
  let count = 0;
  const line = (start: string, end: string, i: number) => {
    const routed = r() % 10 !== 0;
    const a = asOfPool(r() % ases);
    buf.push(routed ? `${start}\t${end}\t${a.asn}\t${a.country}\t${a.name}` : `${start}\t${end}\t0\tNone\tNot routed`);
    count++;
    if (buf.length >= 10_000 || i < 0) {
      writeSync(fd, `${buf.join('\n')}\n`);
      buf = [];
    }
  };
  const ip4 = (v: number) => `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  const b4 = boundaries(o.v4 - 1, 2 ** 32, r);
  let start = 0;
  for (const b of b4) {
    line(ip4(start), ip4(b - 1), 0);
    start = b;
  }
  line(ip4(start), ip4(2 ** 32 - 1), 0);
  // IPv6: boundaries on /48s inside 2000::/3 (where addresses are announced), the rest not routed.
  const lo = 0x2000 * 2 ** 32;
  const hi = 0x4000 * 2 ** 32;
  line('::', v6Text(lo - 1, 0xffff), 0);
  let s6 = lo;
  for (const b of boundaries(Math.max(0, o.v6 - 3), hi - lo, r)) {
    line(v6Text(s6, 0), v6Text(lo + b - 1, 0xffff), 0);
    s6 = lo + b;
  }
  line(v6Text(s6, 0), v6Text(hi - 1, 0xffff), 0);
  line(v6Text(hi, 0), 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', -1);
  if (buf.length) writeSync(fd, `${buf.join('\n')}\n`);
  closeSync(fd);
  return count;
}
