/** Synthetic interval batches (the shape the capture engine hands the recorder) for benchmarks. */
import type { Batch } from '../../src/native';
import { COUNTER_NAMES, type CounterName } from '../../src/schema/counters';

function u64(values: number[]): Uint32Array {
  const a = new Uint32Array(values.length * 2);
  values.forEach((v, i) => {
    a[2 * i] = v % 4294967296;
    a[2 * i + 1] = Math.floor(v / 4294967296);
  });
  return a;
}

/** `hosts` IPv4 addresses 10.x.y.z (sorted), each with some traffic; `flows` flows among them. */
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
  const counters = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0n])) as Record<CounterName, bigint>;
  counters.ipPackets = BigInt(pk.reduce((a, b) => a + b, 0));
  counters.ipBytes = BigInt(by.reduce((a, b) => a + b, 0));
  counters.frames = counters.ipPackets;
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
    names: { addr: new Uint8Array(0), fam: new Uint8Array(0), source: new Uint8Array(0), name: [] },
  };
}
