/**
 * Running per-flow sums of one open flow minute or hour: the writer adds each flow row of a
 * batch as it inserts it, a closed minute adds its sums to its hour, and closing a bucket
 * inserts the sums in key order instead of sorting and grouping the level below in SQL
 * (several times faster).
 * Keys are dictionary ids and ports packed in 32-bit words, in an open-addressing table over
 * typed arrays (written here for the same reason as `U32Map`: a JS Map would need a string or
 * BigInt key per row).
 *
 * When the running sums of all open buckets are at their bound (`SumsRoom`, a spoofed flood)
 * the bucket's sums are dropped and it is grouped in SQL: memory stays bounded.
 */
import { byFlowWords } from './order';
import type { SumsRoom } from './sums-room';

/** Mixes the four key words (murmur3-style steps, so the low bits the table uses vary). */
function hash(src: number, dst: number, proto: number, ports: number): number {
  let h = Math.imul(src, 0x9e3779b1) ^ dst;
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b) ^ ports;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) ^ proto;
  return (h ^ (h >>> 16)) >>> 0;
}

export class FlowSums {
  /** Parts (batches) summed in. */
  parts = 0;
  exact = true;
  /** Flows held. */
  size = 0;
  src = new Uint32Array(1024);
  dst = new Uint32Array(1024);
  proto = new Uint32Array(1024);
  /** sport << 16 | dport. */
  ports = new Uint32Array(1024);
  packets = new Float64Array(1024);
  bytes = new Float64Array(1024);
  /** Hash slot -> flow index + 1 (0: empty). */
  private table = new Int32Array(4096);

  constructor(private readonly room: SumsRoom) {}

  /** Adds one flow row (ids below 2^32, values below 2^53; a no-op once spoiled). */
  add(src: number, dst: number, proto: number, ports: number, packets: number, bytes: number): void {
    if (!this.exact) return;
    const table = this.table;
    const mask = table.length - 1;
    let h = hash(src, dst, proto, ports) & mask;
    for (;;) {
      const e = table[h];
      if (e === 0) break;
      const k = e - 1;
      if (this.src[k] === src && this.dst[k] === dst && this.ports[k] === ports && this.proto[k] === proto) {
        this.packets[k] += packets;
        this.bytes[k] += bytes;
        return;
      }
      h = (h + 1) & mask;
    }
    if (!this.room.take()) {
      this.spoil();
      return;
    }
    const k = this.size++;
    if (k === this.src.length) this.growEntries();
    this.src[k] = src;
    this.dst[k] = dst;
    this.proto[k] = proto;
    this.ports[k] = ports;
    this.packets[k] = packets;
    this.bytes[k] = bytes;
    table[h] = k + 1;
    if (2 * this.size > table.length) this.rehash();
  }

  /** Adds another bucket's sums (a closed part of this one). */
  addAll(other: FlowSums): void {
    for (let k = 0; k < other.size && this.exact; k++) {
      this.add(other.src[k], other.dst[k], other.proto[k], other.ports[k], other.packets[k], other.bytes[k]);
    }
  }

  /** Sums past 2^53 are not exact in doubles; checked when the minute closes (sums only grow). */
  checkRange(): void {
    for (let k = 0; k < this.size && this.exact; k++) {
      if (this.packets[k] > Number.MAX_SAFE_INTEGER || this.bytes[k] > Number.MAX_SAFE_INTEGER) this.spoil();
    }
  }

  /** From now on the minute is grouped in SQL (or it was written); the sums' memory and room go. */
  spoil(): void {
    this.exact = false;
    this.room.give(this.size);
    this.size = 0;
    this.src = this.dst = this.proto = this.ports = new Uint32Array(0);
    this.packets = this.bytes = new Float64Array(0);
    this.table = new Int32Array(0);
  }

  /** Flow indexes in key order (src id, dst id, proto, sport, dport). */
  order(): Uint32Array {
    return byFlowWords(this.src, this.dst, this.proto, this.ports, this.size);
  }

  private growEntries(): void {
    const n = this.src.length * 2;
    const grow32 = (a: Uint32Array) => {
      const b = new Uint32Array(n);
      b.set(a);
      return b;
    };
    const grow64 = (a: Float64Array) => {
      const b = new Float64Array(n);
      b.set(a);
      return b;
    };
    this.src = grow32(this.src);
    this.dst = grow32(this.dst);
    this.proto = grow32(this.proto);
    this.ports = grow32(this.ports);
    this.packets = grow64(this.packets);
    this.bytes = grow64(this.bytes);
  }

  private rehash(): void {
    const table = new Int32Array(this.table.length * 2);
    const mask = table.length - 1;
    for (let k = 0; k < this.size; k++) {
      let h = hash(this.src[k], this.dst[k], this.proto[k], this.ports[k]) & mask;
      while (table[h] !== 0) h = (h + 1) & mask;
      table[h] = k + 1;
    }
    this.table = table;
  }
}
