/**
 * Address and port filters of tc-query. Every value from the command line reaches SQL as a
 * bound parameter: addresses become dictionary ids looked up with parameters, and the id list
 * travels as one JSON parameter read by json_each.
 */
import type Database from 'better-sqlite3';
import { InvalidArgumentError } from 'commander';
import { parseAddr, parseCidr } from '../addr';

export interface Filters {
  ip?: string;
  cidr?: string;
  proto?: number;
  port?: number;
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

/** Dictionary ids matching --ip / --cidr, or undefined when neither is given. */
export function matchingIds(db: Database.Database, f: Filters): number[] | undefined {
  if (f.ip) {
    const a = parseAddr(f.ip)!;
    const id = db.prepare('select id from addresses where addr = ?').pluck().get(Buffer.from(a)) as number | undefined;
    return id === undefined ? [] : [id];
  }
  if (f.cidr) {
    const { addr, prefix } = parseCidr(f.cidr)!;
    const hi = Buffer.from(addr);
    for (let i = 0; i < hi.length; i++) {
      const bits = Math.max(0, Math.min(8, prefix - i * 8));
      hi[i] |= 0xff >> bits;
    }
    return db
      .prepare('select id from addresses where length(addr) = ? and addr between ? and ?')
      .pluck()
      .all(addr.length, Buffer.from(addr), hi) as number[];
  }
  return undefined;
}

/** SQLite condition and parameters on a per-IP (`ip_id`) or per-flow (`src_id`, `dst_id`) row. */
export function whereFor(family: 'ip' | 'flow', ids: number[] | undefined, f: Filters): { where: string; params: unknown[] } {
  const parts: string[] = [];
  const params: unknown[] = [];
  if (ids) {
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
