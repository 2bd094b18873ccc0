/**
 * Row orders for the writer: rows go into the delta and rollup tables in primary-key order, so
 * that their B-trees grow by appends (rows in arrival order write markedly slower).
 */
import type { Batch } from '../../native';
import { TcError } from '../../errors';

/** Scratch of `byIpId`'s dense path: row + 1 by id - min (0: no row), kept between batches. */
let denseSlots = new Uint32Array(0);

/**
 * Row order by dictionary id (`ids[row]`), or null when the rows already are in that order. The
 * ids of one batch are distinct. When they are dense (their range at most 4x their count, as on
 * a host whose addresses keep coming back) each row goes to its id's slot and the slots are read
 * in order. Otherwise the LSD radix passes of the flow
 * order on the ids (up to three 11-bit digits). Ids past 2^32 fall back to a comparator.
 */
export function byIpId(ids: ArrayLike<number>): Uint32Array | null {
  const count = ids.length;
  let sorted = true;
  let min = Infinity;
  let max = -Infinity;
  let prev = -Infinity;
  for (let i = 0; i < count; i++) {
    const id = ids[i];
    if (id <= prev) sorted = false;
    prev = id;
    if (id < min) min = id;
    if (id > max) max = id;
  }
  if (sorted) return null;
  if (max > 0xffffffff) return identity(count).sort((x, y) => ids[x] - ids[y]);
  if (max - min < 4 * count) return byDenseId(ids, min, max);
  const keys = new Uint32Array(count);
  for (let i = 0; i < count; i++) keys[i] = ids[i];
  const order = identity(count);
  radixByField(keys, order, new Uint32Array(count));
  return order;
}

function byDenseId(ids: ArrayLike<number>, min: number, max: number): Uint32Array {
  const count = ids.length;
  const span = max - min + 1;
  if (denseSlots.length < span) denseSlots = new Uint32Array(Math.max(span, 2 * denseSlots.length));
  const slots = denseSlots;
  for (let i = 0; i < count; i++) slots[ids[i] - min] = i + 1;
  const order = new Uint32Array(count);
  let k = 0;
  for (let s = 0; s < span; s++) {
    const r = slots[s];
    if (r !== 0) {
      order[k++] = r - 1;
      slots[s] = 0;
    }
  }
  if (k !== count) throw new TcError(`byIpId: ${count - k} duplicate dictionary ids in one batch`, 'ERR_TC_INTERNAL');
  return order;
}

/**
 * Flow row order by (src id, dst id, proto, sport, dport), or null when already in it. An LSD
 * radix sort on 11-bit digits, least significant field first (each pass is stable), with only
 * the digits each field's largest value needs (faster than a comparator sort). Ids past 2^32
 * fall back to the comparator.
 */
export function byFlowKey(f: Batch['flow'], ids: number[]): Uint32Array | null {
  const n = f.count;
  const cmp = (x: number, y: number) =>
    ids[f.src[x]] - ids[f.src[y]] || ids[f.dst[x]] - ids[f.dst[y]] || f.proto[x] - f.proto[y] || f.sport[x] - f.sport[y] || f.dport[x] - f.dport[y];
  let sorted = true;
  for (let i = 1; i < n && sorted; i++) sorted = cmp(i - 1, i) < 0;
  if (sorted) return null;
  // Every field as 32-bit words (one array type keeps the passes' loads monomorphic).
  const src = new Uint32Array(n);
  const dst = new Uint32Array(n);
  const proto = new Uint32Array(n);
  const ports = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const s = ids[f.src[i]];
    const d = ids[f.dst[i]];
    if (s > 0xffffffff || d > 0xffffffff) return identity(n).sort(cmp);
    src[i] = s;
    dst[i] = d;
    proto[i] = f.proto[i];
    ports[i] = ((f.sport[i] << 16) | f.dport[i]) >>> 0;
  }
  return byFlowWords(src, dst, proto, ports);
}

/**
 * Order of flows given as 32-bit words (src id, dst id, proto, sport << 16 | dport), the first
 * `n` of each: the radix sort of `byFlowKey`.
 */
export function byFlowWords(src: Uint32Array, dst: Uint32Array, proto: Uint32Array, ports: Uint32Array, n = src.length): Uint32Array {
  // Least significant field first.
  const order = identity(n);
  const spare = new Uint32Array(n);
  for (const key of [ports, proto, dst, src]) radixByField(key, order, spare);
  return order;
}

const radixCounts = new Uint32Array(2048);

/**
 * Stable LSD radix passes of `order` by `key[row]`: 11-bit digits (the counts stay in L1), only
 * as many as the largest key needs. `order` is reordered in place (`spare` is scratch).
 */
function radixByField(key: Uint32Array, order: Uint32Array, spare: Uint32Array): void {
  const n = order.length;
  const counts = radixCounts;
  let max = 0;
  for (let i = 0; i < n; i++) if (key[i] > max) max = key[i];
  let from = order;
  let to = spare;
  for (let shift = 0; shift < 32 && max >>> shift !== 0; shift += 11) {
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[(key[i] >>> shift) & 2047]++;
    for (let d = 0, sum = 0; d < 2048; d++) {
      const c = counts[d];
      counts[d] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const r = from[i];
      to[counts[(key[r] >>> shift) & 2047]++] = r;
    }
    const t = from;
    from = to;
    to = t;
  }
  // An odd number of passes ended in `spare`.
  if (from !== order) order.set(from);
}

/** 0, 1, ..., n - 1 (a loop: `Uint32Array.from` with a map function is ~10x slower). */
function identity(n: number): Uint32Array<ArrayBuffer> {
  const a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  return a;
}
