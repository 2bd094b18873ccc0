/**
 * Address and port filters of tc-query. Every value from the command line reaches SQL as a
 * bound parameter: addresses become dictionary ids looked up with parameters, and the id list
 * travels as one JSON parameter read by json_each.
 */
import type Database from 'better-sqlite3';
import { InvalidArgumentError } from 'commander';
import { parseAddr, parseCidr } from '../addr';
import { TcError } from '../errors';
import type { LabelTable } from './labels';

export interface Filters {
  ip?: string;
  cidr?: string;
  /** The addresses of this label (of the --labels file). */
  label?: string;
  proto?: number;
  port?: number;
}

/**
 * The address conditions of a filter, each the dictionary ids it matches: a row passes when it
 * meets every condition, a per-IP row by its address, a flow row by either end (so `flows --ip A
 * --label L` is A's flows whose other end, or A itself, has label L).
 */
export type AddressMatch = number[][];

/** The ids every condition matches (what a per-IP row must be). */
export function idsOfEvery(m: AddressMatch): number[] {
  return m.slice(1).reduce((acc, c) => {
    const set = new Set(c);
    return acc.filter((id) => set.has(id));
  }, m[0] ?? []);
}

/** The dictionary ids of addresses in [lo, hi] (same length). */
export function idsBetween(db: Database.Database, lo: Uint8Array, hi: Uint8Array): number[] {
  return db.prepare('select id from addresses where length(addr) = ? and addr between ? and ?').pluck().all(lo.length, Buffer.from(lo), Buffer.from(hi)) as number[];
}

const PROTOS: Record<string, number> = { icmp: 1, igmp: 2, tcp: 6, udp: 17, ipv6: 41, gre: 47, esp: 50, ah: 51, icmpv6: 58, sctp: 132 };

export function parseProto(v: string): number {
  const s = v.trim().toLowerCase();
  if (s in PROTOS) return PROTOS[s];
  if (/^\d+$/.test(s) && Number(s) <= 255) return Number(s);
  throw new InvalidArgumentError(`${JSON.stringify(v)} is not an IP protocol (a number 0-255 or one of ${Object.keys(PROTOS).join(', ')})`);
}

export function parseIpOption(v: string): string {
  if (!parseAddr(v)) throw new InvalidArgumentError(`${JSON.stringify(v)} is not an IPv4 or IPv6 address`);
  return v;
}

export function parseCidrOption(v: string): string {
  if (!v.includes('/') || !parseCidr(v)) throw new InvalidArgumentError(`${JSON.stringify(v)} is not a CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)`);
  return v;
}

/** The address conditions of --ip / --cidr / --label, or undefined when none is given. */
export function matchingIds(db: Database.Database, f: Filters, labels?: LabelTable): AddressMatch | undefined {
  const out: AddressMatch = [];
  if (f.ip) {
    const a = parseAddr(f.ip)!;
    const id = db.prepare('select id from addresses where addr = ?').pluck().get(Buffer.from(a)) as number | undefined;
    out.push(id === undefined ? [] : [id]);
  }
  if (f.cidr) {
    const { addr, prefix } = parseCidr(f.cidr)!;
    const hi = Buffer.from(addr);
    for (let i = 0; i < hi.length; i++) {
      const bits = Math.max(0, Math.min(8, prefix - i * 8));
      hi[i] |= 0xff >> bits;
    }
    out.push(idsBetween(db, addr, hi));
  }
  if (f.label !== undefined) {
    if (!labels) throw new TcError(`--label ${f.label} needs a label file: give --labels FILE (or set TC_LABELS)`, 'ERR_TC_USAGE');
    if (!labels.labels.includes(f.label)) {
      const some = labels.labels.slice(0, 10).join(', ');
      throw new TcError(`--label ${JSON.stringify(f.label)}: no line of ${labels.file} gives that label (${labels.labels.length === 0 ? 'it gives none' : `it gives ${some}${labels.labels.length > 10 ? ', ...' : ''}`})`, 'ERR_TC_LABELS');
    }
    out.push(labels.rangesOf(f.label).flatMap((r) => idsBetween(db, r.lo, r.hi)));
  }
  return out.length > 0 ? out : undefined;
}

/** SQLite condition and parameters on a per-IP (`ip_id`) or per-flow (`src_id`, `dst_id`) row. */
export function whereFor(family: 'ip' | 'flow', match: AddressMatch | undefined, f: Filters): { where: string; params: unknown[] } {
  const parts: string[] = [];
  const params: unknown[] = [];
  for (const ids of match ?? []) {
    const json = JSON.stringify(ids);
    const list = '(select value from json_each(?))';
    if (family === 'ip') {
      parts.push(`d.ip_id in ${list}`);
      params.push(json);
    } else {
      parts.push(`(d.src_id in ${list} or d.dst_id in ${list})`);
      params.push(json, json);
    }
  }
  if (f.proto !== undefined) {
    parts.push('d.proto = ?');
    params.push(f.proto);
  }
  if (f.port !== undefined) {
    parts.push('(d.sport = ? or d.dport = ?)');
    params.push(f.port, f.port);
  }
  return { where: parts.map((p) => `and ${p}`).join(' '), params };
}
