/**
 * ASN tables (`tc-query --asn FILE`, or TC_ASN) in the ip2asn TSV layout iptoasn.com publishes:
 * `range_start  range_end  AS_number  country_code  AS_description`, tab-separated, IPv4 and IPv6
 * in one file (ip2asn-combined.tsv) or two (ip2asn-v4.tsv, ip2asn-v6.tsv; give --asn twice),
 * plain or gzipped as downloaded. AS 0 ("Not routed") is no ASN. A full table is about 500,000
 * ranges: parsed into sorted typed arrays (ranges.ts) in one pass over the text, then only the
 * addresses a window holds are looked up, by binary search.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, readSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { readProblem } from '../cidr-file';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseAddr } from '../addr';
import { TcError } from '../errors';
import { RangeBuilder, RangeTable, wordsOf } from './ranges';
import { U32Map } from '../recorder/typed-arrays/u32map';

export const ASN_ENV = 'TC_ASN';
const CODE = 'ERR_TC_ASN';

export interface AsInfo {
  asn: number;
  as_name: string;
  country: string | null;
}

export interface AsnTable {
  files: string[];
  /** Ranges read (AS 0 included). */
  ranges: number;
  /** The AS announcing an address (4 or 16 bytes), or null (not in the table, or AS 0). */
  asOf(addr: Uint8Array): AsInfo | null;
}

function readText(file: string): string {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (err) {
    throw new TcError(`cannot read ASN table ${file}: ${readProblem(err)}; give --asn FILE in the ip2asn TSV layout (ip2asn-combined.tsv from iptoasn.com, plain or .gz), or unset ${ASN_ENV}`, CODE);
  }
  if (buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = gunzipSync(buf);
    } catch (err) {
      throw new TcError(`cannot read ASN table ${file}: it starts as gzip but does not unpack (${(err as Error).message}); download it again`, CODE);
    }
  }
  // A binary file (a database, a capture) would be quoted byte by byte by the line parser.
  if (buf.subarray(0, 4096).includes(0)) {
    throw new TcError(`ASN table ${file} is a binary file${buf.subarray(0, 16).toString('latin1') === 'SQLite format 3\0' ? ' (a SQLite database)' : ''}, not an ip2asn TSV; give --asn FILE in the ip2asn TSV layout (ip2asn-combined.tsv from iptoasn.com, plain or .gz), or unset ${ASN_ENV}`, CODE);
  }
  return buf.toString('utf8');
}

/** An IPv4 address in dotted-quad form as a 32-bit number, or -1. */
function v4(s: string, from: number, to: number): number {
  let v = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      v = v * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
      if (part > 255) return -1;
    } else return -1;
  }
  return dots === 3 && digits > 0 ? v * 256 + part : -1;
}

/**
 * An IPv6 address in s[from, to) into `out` (4 words); false when it is not one. Hex groups and
 * one `::`, on character codes (parseAddr's general path costs most of a table's parse); a
 * dotted IPv4 tail goes through parseAddr.
 */
function v6(s: string, from: number, to: number, out: Uint32Array): boolean {
  const g = GROUPS;
  let n = 0;
  let gap = -1;
  let i = from;
  if (s.charCodeAt(i) === 58 && s.charCodeAt(i + 1) === 58) {
    gap = 0;
    i += 2;
  }
  while (i < to) {
    let v = 0;
    let d = 0;
    for (; i < to && d < 5; i++, d++) {
      const c = s.charCodeAt(i);
      const h = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
      if (h < 0) break;
      v = v * 16 + h;
    }
    if (d === 0 || d > 4 || n === 8) return i < to && s.charCodeAt(i) === 46 ? v6Slow(s, from, to, out) : false;
    g[n++] = v;
    if (i === to) break;
    const c = s.charCodeAt(i);
    if (c === 46) return v6Slow(s, from, to, out);
    if (c !== 58) return false;
    i++;
    if (s.charCodeAt(i) === 58) {
      if (gap >= 0) return false;
      gap = n;
      i++;
    } else if (i === to) return false;
  }
  if (gap < 0 ? n !== 8 : n > 7) return false;
  const fill = 8 - n;
  for (let k = 0, j = 0; k < 8; k++) {
    const x = gap >= 0 && k >= gap && k < gap + fill ? 0 : g[j++];
    if (k & 1) out[k >> 1] = (out[k >> 1] + x) >>> 0;
    else out[k >> 1] = x * 65536;
  }
  return true;
}
const GROUPS = new Array<number>(8).fill(0);

function v6Slow(s: string, from: number, to: number, out: Uint32Array): boolean {
  const a = parseAddr(s.slice(from, to));
  if (!a || a.length !== 16) return false;
  out.set(wordsOf(a));
  return true;
}

const NO_COUNTRY = new Set(['', 'None', 'Unknown', 'ZZ']);

/** A parsed table: the ranges of each family, valued by index into `infos`. */
interface Parsed {
  ranges: number;
  v4: RangeTable;
  v6: RangeTable;
  infos: AsInfo[];
}

/** Parses ip2asn TSV files into one table; every problem names the file and line. */
function parse(files: string[]): Parsed {
  const b4 = new RangeBuilder(1, 1 << 16);
  const b6 = new RangeBuilder(4, 1 << 14);
  const asIndex = new U32Map(1 << 17);
  const infos: AsInfo[] = [];
  const lineOf: { file: string; first: number }[] = [];
  let line = 0;
  let ranges = 0;
  const s4 = new Uint32Array(1);
  const e4 = new Uint32Array(1);
  const s6 = new Uint32Array(4);
  const e6 = new Uint32Array(4);
  for (const file of files) {
    const text = readText(file);
    lineOf.push({ file, first: line + 1 });
    let pos = 0;
    let n = 0;
    const len = text.length;
    while (pos < len) {
      let eol = text.indexOf('\n', pos);
      if (eol < 0) eol = len;
      n++;
      line++;
      let end = eol;
      if (end > pos && text.charCodeAt(end - 1) === 13) end--;
      const at = () => `${file}:${n}`;
      if (end > pos && text.charCodeAt(pos) !== 35) {
        ranges++;
        const t1 = text.indexOf('\t', pos);
        const t2 = t1 < 0 || t1 >= end ? -1 : text.indexOf('\t', t1 + 1);
        const t3 = t2 < 0 || t2 >= end ? -1 : text.indexOf('\t', t2 + 1);
        const t4 = t3 < 0 || t3 >= end ? -1 : text.indexOf('\t', t3 + 1);
        if (t4 < 0 || t4 >= end) {
          throw new TcError(`${at()}: expected 5 tab-separated fields (range_start, range_end, AS_number, country_code, AS_description), got ${JSON.stringify(text.slice(pos, Math.min(end, pos + 80)))}`, CODE);
        }
        let asn = 0;
        for (let i = t2 + 1; i < t3; i++) {
          const c = text.charCodeAt(i);
          asn = c >= 48 && c <= 57 && i - t2 <= 10 ? asn * 10 + (c - 48) : NaN;
        }
        if (!(asn <= 4294967295) || t3 === t2 + 1) {
          throw new TcError(`${at()}: AS_number ${JSON.stringify(text.slice(t2 + 1, t3))} is not a number from 0 to 4294967295`, CODE);
        }
        const a = v4(text, pos, t1);
        if (a >= 0) {
          const b = v4(text, t1 + 1, t2);
          if (b < 0) throw new TcError(`${at()}: range_end ${JSON.stringify(text.slice(t1 + 1, t2))} is not an IPv4 address (range_start is)`, CODE);
          if (b < a) throw new TcError(`${at()}: range_end ${text.slice(t1 + 1, t2)} is before range_start ${text.slice(pos, t1)}`, CODE);
          if (asn !== 0) {
            s4[0] = a;
            e4[0] = b;
            b4.add(s4, e4, infoIndex(asn, text, t3, t4, end), line);
          }
        } else {
          if (!v6(text, pos, t1, s6)) throw new TcError(`${at()}: range_start ${JSON.stringify(text.slice(pos, t1))} is not an IPv4 or IPv6 address`, CODE);
          if (!v6(text, t1 + 1, t2, e6)) throw new TcError(`${at()}: range_end ${JSON.stringify(text.slice(t1 + 1, t2))} is not an IPv6 address (range_start is)`, CODE);
          if (before(e6, s6)) throw new TcError(`${at()}: range_end ${text.slice(t1 + 1, t2)} is before range_start ${text.slice(pos, t1)}`, CODE);
          if (asn !== 0) b6.add(s6, e6, infoIndex(asn, text, t3, t4, end), line);
        }
      }
      pos = eol + 1;
    }
  }
  /** Where global line `g` is: file and line in it. */
  const place = (g: number) => {
    let k = lineOf.length - 1;
    while (k > 0 && lineOf[k].first > g) k--;
    return `${lineOf[k].file}:${g - lineOf[k].first + 1}`;
  };
  const overlap = (a: number, b: number) => new TcError(`${place(b)}: the range overlaps the one on ${place(a)}; an address can be announced by one AS here`, CODE);
  const t4 = b4.finish(overlap);
  const t6 = b6.finish(overlap);

  /** One AsInfo per AS: the name and country of its first range (ip2asn gives every range of an AS the same). */
  function infoIndex(asn: number, text: string, t3: number, t4: number, end: number): number {
    const i = asIndex.get(asn) - 1;
    if (i >= 0) return i;
    const country = text.slice(t3 + 1, t4);
    infos.push({ asn, as_name: text.slice(t4 + 1, end), country: NO_COUNTRY.has(country) ? null : country });
    asIndex.set(asn, infos.length);
    return infos.length - 1;
  }

  return { ranges, v4: t4, v6: t6, infos };
}

function before(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < 4; i++) if (a[i] !== b[i]) return a[i] < b[i];
  return false;
}

/**
 * The parsed-table cache: parsing a full table (~500,000 lines) takes longer than a query, so
 * the parsed arrays are kept in the user's cache folder ($XDG_CACHE_HOME, else ~/.cache, then
 * traffic-counter/asn-<hash of the paths>.bin), valid while every file keeps its path, size and
 * modification time. Read-only-safe: nothing but that folder is written, written to a temporary
 * name and renamed (a concurrent query reads a whole cache or none), and where it cannot be
 * written (a read-only home, a service user without one) the table is parsed every time.
 */
const CACHE_VERSION = 1;

function cacheDir(): string {
  const base = process.env.XDG_CACHE_HOME && path.isAbsolute(process.env.XDG_CACHE_HOME) ? process.env.XDG_CACHE_HOME : path.join(os.homedir(), '.cache');
  return path.join(base, 'traffic-counter');
}

interface CacheHeader {
  version: number;
  sources: { path: string; size: number; mtimeMs: number }[];
  ranges: number;
  n4: number;
  n6: number;
  infos: [number, string, string | null][];
}

function sourcesOf(files: string[]): CacheHeader['sources'] | undefined {
  try {
    return files.map((f) => {
      const st = statSync(f);
      return { path: path.resolve(f), size: st.size, mtimeMs: st.mtimeMs };
    });
  } catch {
    return undefined; // the parse says what is wrong with the file
  }
}

const cachePath = (sources: CacheHeader['sources']) => path.join(cacheDir(), `asn-${createHash('sha256').update(JSON.stringify(sources.map((s) => s.path))).digest('hex').slice(0, 16)}.bin`);

function readCache(sources: CacheHeader['sources']): Parsed | undefined {
  let buf: Buffer;
  try {
    buf = readFileSync(cachePath(sources));
  } catch {
    return undefined;
  }
  try {
    const hlen = buf.readUInt32LE(0);
    const h = JSON.parse(buf.toString('utf8', 4, 4 + hlen)) as CacheHeader;
    if (h.version !== CACHE_VERSION || JSON.stringify(h.sources) !== JSON.stringify(sources)) return undefined;
    let off = (4 + hlen + 3) & ~3;
    // Typed arrays over the file's bytes need a 4-aligned start in their ArrayBuffer.
    if (buf.byteOffset % 4 !== 0) buf = Buffer.from(Uint8Array.prototype.slice.call(buf));
    const take = <T>(n: number, Kind: new (b: ArrayBufferLike, off: number, n: number) => T): T => {
      if (off + n * 4 > buf.length) throw new Error('short cache');
      const a = new Kind(buf.buffer, buf.byteOffset + off, n);
      off += n * 4;
      return a;
    };
    const v4 = new RangeTable(1, take(h.n4, Uint32Array), take(h.n4, Uint32Array), take(h.n4, Int32Array));
    const v6 = new RangeTable(4, take(h.n6 * 4, Uint32Array), take(h.n6 * 4, Uint32Array), take(h.n6, Int32Array));
    return { ranges: h.ranges, v4, v6, infos: h.infos.map(([asn, as_name, country]) => ({ asn, as_name, country })) };
  } catch {
    return undefined;
  }
}

function writeCache(sources: CacheHeader['sources'], p: Parsed): void {
  try {
    const h: CacheHeader = { version: CACHE_VERSION, sources, ranges: p.ranges, n4: p.v4.count, n6: p.v6.count, infos: p.infos.map((i) => [i.asn, i.as_name, i.country]) };
    const head = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(4);
    len.writeUInt32LE(head.length);
    const pad = Buffer.alloc(((4 + head.length + 3) & ~3) - 4 - head.length);
    const arr = (a: Uint32Array | Int32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    const file = cachePath(sources);
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, Buffer.concat([len, head, pad, arr(p.v4.starts), arr(p.v4.ends), arr(p.v4.values), arr(p.v6.starts), arr(p.v6.ends), arr(p.v6.values)]));
    renameSync(tmp, file);
    pruneCaches(path.dirname(file), file);
  } catch {
    // No cache where the folder cannot be written: the next query parses again.
  }
}

/**
 * Caches are keyed by the tables' paths, so a table that moved or was deleted would leave its
 * cache behind for good: when a cache is written, the others whose tables no longer all exist,
 * and temporary files a killed query left (older than an hour), are removed.
 */
function pruneCaches(dir: string, keep: string): void {
  for (const name of readdirSync(dir)) {
    const f = path.join(dir, name);
    if (f === keep || !name.startsWith('asn-')) continue;
    try {
      if (name.endsWith('.tmp')) {
        if (Date.now() - statSync(f).mtimeMs > 3_600_000) unlinkSync(f);
        continue;
      }
      if (!name.endsWith('.bin')) continue;
      const fd = openSync(f, 'r');
      let head: Buffer;
      try {
        const len = Buffer.alloc(4);
        readSync(fd, len, 0, 4, 0);
        head = Buffer.alloc(Math.min(len.readUInt32LE(0), 1 << 20));
        readSync(fd, head, 0, head.length, 4);
      } finally {
        closeSync(fd);
      }
      const h = JSON.parse(head.toString('utf8')) as CacheHeader;
      if (h.version !== CACHE_VERSION || !h.sources.every((s) => existsSync(s.path))) unlinkSync(f);
    } catch {
      // A cache being written by another query, or not ours to read: left alone.
    }
  }
}

/** Reads ip2asn TSV files (through the parsed-table cache) into one table. */
export function readAsn(files: string[]): AsnTable {
  const sources = sourcesOf(files);
  let p = sources && readCache(sources);
  if (!p) {
    p = parse(files);
    if (sources) writeCache(sources, p);
  }
  const { v4, v6, infos } = p;
  const tables: Record<number, RangeTable> = { 4: v4, 16: v6 };
  return {
    files,
    ranges: p.ranges,
    asOf(addr) {
      const t = tables[addr.length];
      const v = t ? t.find(wordsOf(addr)) : -1;
      return v < 0 ? null : infos[v];
    },
  };
}
