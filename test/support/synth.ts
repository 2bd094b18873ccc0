/** Synthetic interval batches (the shape the capture engine hands the recorder) for tests and benchmarks. */
import type { Batch, BatchNames } from '../../src/native';
import { COUNTER_NAMES, type CounterName } from '../../src/schema/counters';
import { parseAddr } from '../../src/addr';

function u64(values: number[]): Uint32Array {
  const a = new Uint32Array(values.length * 2);
  values.forEach((v, i) => {
    a[2 * i] = v % 4294967296;
    a[2 * i + 1] = Math.floor(v / 4294967296);
  });
  return a;
}

/** `hosts` IPv4 addresses 10.x.y.z (sorted), each with some traffic; `flows` flows among them. */
/** A batch's counters: every frame an IP packet, the rest 0. */
function countersOf(packets: number, bytes: number): Record<CounterName, bigint> {
  const c = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0n])) as Record<CounterName, bigint>;
  c.ipPackets = BigInt(packets);
  c.ipBytes = BigInt(bytes);
  c.frames = c.ipPackets;
  return c;
}

export function makeBatch(startMs: number, intervalMs: number, hosts: number, flows = 0, seed = 1): Batch {
  const fam = new Uint8Array(hosts).fill(4);
  const bytes = new Uint8Array(hosts * 16);
  for (let i = 0; i < hosts; i++) {
    const v = 0x0a000000 + i + 1;
    bytes[i * 16] = v >>> 24;
    bytes[i * 16 + 1] = (v >>> 16) & 255;
    bytes[i * 16 + 2] = (v >>> 8) & 255;
    bytes[i * 16 + 3] = v & 255;
  }
  const idx = Uint32Array.from({ length: hosts }, (_, i) => i);
  const pk = Array.from({ length: hosts }, (_, i) => ((i * 7 + seed) % 97) + 1);
  const by = pk.map((p) => p * 700);
  const fsrc = new Uint32Array(flows);
  const fdst = new Uint32Array(flows);
  const proto = new Uint8Array(flows);
  const sport = new Uint16Array(flows);
  const dport = new Uint16Array(flows);
  for (let i = 0; i < flows; i++) {
    fsrc[i] = Math.floor((i * hosts) / flows);
    fdst[i] = (i * 31 + 7) % hosts;
    proto[i] = i % 3 ? 6 : 17;
    sport[i] = 1024 + (i % 60000);
    dport[i] = 443;
  }
  const counters = countersOf(pk.reduce((a, b) => a + b, 0), by.reduce((a, b) => a + b, 0));
  return {
    startMs,
    endMs: startMs + intervalMs,
    last: false,
    counters,
    hasRing: false,
    hasFilter: false,
    addr: { count: hosts, fam, bytes },
    ip: { count: hosts, idx, txPackets: u64(pk), txBytes: u64(by), rxPackets: u64(pk), rxBytes: u64(by) },
    flow: {
      count: flows,
      src: fsrc,
      dst: fdst,
      proto,
      sport,
      dport,
      packets: u64(Array.from({ length: flows }, () => 3)),
      bytes: u64(Array.from({ length: flows }, () => 2100)),
    },
    names: namesOf([]),
  };
}

/** A name entry of a synthetic batch: the address, the name, dns (default) or sni. */
export interface NameEntry {
  ip: string;
  name: string;
  source?: 'dns' | 'sni';
}

/** A batch's names columns, in the order given (the capture order of each entry's last sighting). */
export function namesOf(entries: NameEntry[]): BatchNames {
  const addr = new Uint8Array(entries.length * 16);
  const fam = new Uint8Array(entries.length);
  const source = new Uint8Array(entries.length);
  entries.forEach((e, i) => {
    const a = parseAddr(e.ip);
    if (!a) throw new Error(`${e.ip} is not an address`);
    addr.set(a, i * 16);
    fam[i] = a.length === 4 ? 4 : 6;
    source[i] = e.source === 'sni' ? 1 : 0;
  });
  return { addr, fam, source, name: entries.map((e) => e.name) };
}

/** `b` with these names (and its `namesRecorded` counter the number of them, as the engine counts). */
export function withNames(b: Batch, entries: NameEntry[]): Batch {
  return { ...b, counters: { ...b.counters, namesRecorded: BigInt(entries.length) }, names: namesOf(entries) };
}

/** A per-IP row of `traffic`: tx and rx bytes of one address (packets: one per 100 bytes, at least 1). */
export interface HostTraffic {
  ip: string;
  tx?: number;
  rx?: number;
}

/** A flow of `traffic`. */
export interface FlowTraffic {
  src: string;
  dst: string;
  proto?: number;
  sport?: number;
  dport?: number;
  bytes: number;
}

const addrKey = (a: Uint8Array) => `${a.length === 4 ? 'a' : 'b'}${Buffer.from(a).toString('hex')}`;

/**
 * A batch with exactly these per-IP rows, flows and names (a flow's addresses need no per-IP
 * row of their own here: the tests of names use that to have an address only in flows).
 */
export function traffic(startMs: number, intervalMs: number, hosts: HostTraffic[], flows: FlowTraffic[] = [], names: NameEntry[] = []): Batch {
  const all = new Map<string, Uint8Array>();
  for (const t of [...hosts.map((h) => h.ip), ...flows.flatMap((f) => [f.src, f.dst])]) {
    const a = parseAddr(t);
    if (!a) throw new Error(`${t} is not an address`);
    all.set(addrKey(a), a);
  }
  const keys = [...all.keys()].sort();
  const index = new Map(keys.map((k, i) => [k, i]));
  const fam = new Uint8Array(keys.length);
  const bytes = new Uint8Array(keys.length * 16);
  keys.forEach((k, i) => {
    const a = all.get(k)!;
    fam[i] = a.length === 4 ? 4 : 6;
    bytes.set(a, i * 16);
  });
  const at = (ip: string) => index.get(addrKey(parseAddr(ip)!))!;
  const rows = [...hosts].sort((x, y) => at(x.ip) - at(y.ip));
  const pk = (b: number) => (b > 0 ? Math.max(1, Math.floor(b / 100)) : 0);
  const fl = [...flows].sort((x, y) => at(x.src) - at(y.src) || at(x.dst) - at(y.dst) || (x.sport ?? 0) - (y.sport ?? 0));
  const counters = countersOf(rows.reduce((s, h) => s + pk(h.tx ?? 0), 0), rows.reduce((s, h) => s + (h.tx ?? 0), 0));
  counters.namesRecorded = BigInt(names.length);
  return {
    startMs,
    endMs: startMs + intervalMs,
    last: false,
    counters,
    hasRing: false,
    hasFilter: false,
    addr: { count: keys.length, fam, bytes },
    ip: {
      count: rows.length,
      idx: Uint32Array.from(rows, (h) => at(h.ip)),
      txPackets: u64(rows.map((h) => pk(h.tx ?? 0))),
      txBytes: u64(rows.map((h) => h.tx ?? 0)),
      rxPackets: u64(rows.map((h) => pk(h.rx ?? 0))),
      rxBytes: u64(rows.map((h) => h.rx ?? 0)),
    },
    flow: {
      count: fl.length,
      src: Uint32Array.from(fl, (f) => at(f.src)),
      dst: Uint32Array.from(fl, (f) => at(f.dst)),
      proto: Uint8Array.from(fl, (f) => f.proto ?? 6),
      sport: Uint16Array.from(fl, (f) => f.sport ?? 40000),
      dport: Uint16Array.from(fl, (f) => f.dport ?? 443),
      packets: u64(fl.map((f) => pk(f.bytes))),
      bytes: u64(fl.map((f) => f.bytes)),
    },
    names: namesOf(names),
  };
}
