/**
 * Heavy-hitter folding for the disk budget: an interval with more keys than the budget allows
 * keeps its largest addresses and flows by bytes, exactly, and every other key is added into
 * the overflow row (address family 0, the row the engine already uses for --max-keys). The
 * interval's totals and every kept key's counts stay exact. Runs before the writer interns
 * addresses, so a folded address never reaches the `addresses` table (unless a kept name of
 * the interval names it).
 */
import type { Batch } from '../../native';

/** A batch as the writer stores it: how many keys the budget folded (0 when none). */
export interface StoredBatch extends Batch {
  budgetFoldedIpKeys?: number;
  budgetFoldedFlowKeys?: number;
}

const TWO32 = 4294967296;

/** Value of row `i` of a (lo, hi) u64 column as a double (exact below 2^53; for ranking only). */
const approx = (c: Uint32Array, i: number) => c[2 * i + 1] * TWO32 + c[2 * i];

/**
 * Indexes of the `keep` rows with the largest `weight`, in ascending index order (ties go to
 * the lower index, so the choice is deterministic); null when every row is kept.
 */
function heaviest(n: number, keep: number, weight: (i: number) => number, skip: (i: number) => boolean): Uint8Array | null {
  const candidates: number[] = [];
  for (let i = 0; i < n; i++) if (!skip(i)) candidates.push(i);
  if (candidates.length <= keep) return null;
  const w = new Float64Array(candidates.length);
  candidates.forEach((i, k) => (w[k] = weight(i)));
  const sorted = Float64Array.from(w).sort();
  // The smallest weight that is kept; rows above it are kept, ties at it until `keep` is met.
  const cut = keep > 0 ? sorted[sorted.length - keep] : Infinity;
  let above = 0;
  for (let k = 0; k < w.length; k++) if (w[k] > cut) above++;
  let ties = keep - above;
  const kept = new Uint8Array(n);
  candidates.forEach((i, k) => {
    if (w[k] > cut) kept[i] = 1;
    else if (w[k] === cut && ties > 0) {
      kept[i] = 1;
      ties--;
    }
  });
  return kept;
}

/** Adds row `i` of `src` into the u64 accumulator (lo, hi) at slot 0 of `acc`. */
function addU64(acc: Uint32Array, src: Uint32Array, i: number): void {
  const lo = acc[0] + src[2 * i];
  acc[0] = lo >>> 0;
  acc[1] = acc[1] + src[2 * i + 1] + (lo >= TWO32 ? 1 : 0);
}

/**
 * The batch with at most `keepIp` per-IP rows and `keepFlows` flow rows besides the overflow
 * rows: the largest by bytes (per-IP: tx + rx bytes), the rest summed into the overflow rows;
 * and at most `keepNames` names (keptNames). Returns the batch itself when nothing needs folding.
 */
export function foldBatch(b: Batch, keepIp: number, keepFlows: number, keepNames = Infinity): StoredBatch {
  const { addr, ip, flow } = b;
  const isOverflowAddr = (a: number) => addr.fam[a] === 0;
  const ipKept = heaviest(ip.count, keepIp, (i) => approx(ip.txBytes, i) + approx(ip.rxBytes, i), (i) => isOverflowAddr(ip.idx[i]));
  const flowKept = heaviest(flow.count, keepFlows, (i) => approx(flow.bytes, i), (i) => isOverflowAddr(flow.src[i]) && isOverflowAddr(flow.dst[i]));
  if (!ipKept && !flowKept) return b.names.name.length > keepNames ? { ...b, names: keptNames(b.names, keepNames) } : b;

  // Addresses still referenced: by kept per-IP rows and kept flows; the overflow address first.
  const used = new Uint8Array(addr.count);
  for (let i = 0; i < ip.count; i++) if (!ipKept || ipKept[i]) used[ip.idx[i]] = 1;
  for (let i = 0; i < flow.count; i++) {
    if (flowKept && !flowKept[i]) continue;
    used[flow.src[i]] = 1;
    used[flow.dst[i]] = 1;
  }
  let overflowAt = -1;
  for (let a = 0; a < addr.count; a++) if (isOverflowAddr(a)) overflowAt = a;
  const remap = new Int32Array(addr.count).fill(-1);
  const order: number[] = [];
  // The overflow address sorts first (family 0), as the engine orders it.
  order.push(overflowAt);
  for (let a = 0; a < addr.count; a++) if (used[a] && a !== overflowAt) order.push(a);
  const fam = new Uint8Array(order.length);
  const bytes = new Uint8Array(order.length * 16);
  order.forEach((a, k) => {
    if (a < 0) return; // a new overflow address: family 0, no bytes
    remap[a] = k;
    fam[k] = addr.fam[a];
    bytes.set(addr.bytes.subarray(a * 16, a * 16 + 16), k * 16);
  });
  const OVF = 0;

  // Per-IP rows: kept rows, then one overflow row holding the folded ones (and the engine's own overflow row).
  let foldedIp = 0;
  const ipOut = ipKept ? foldIp(b, ipKept, remap, OVF, (n) => (foldedIp = n)) : remapIp(b, remap);
  let foldedFlows = 0;
  const flowOut = flowKept ? foldFlows(b, flowKept, remap, OVF, (n) => (foldedFlows = n)) : remapFlows(b, remap);
  return {
    ...b,
    addr: { count: order.length, fam, bytes },
    ip: ipOut,
    flow: flowOut,
    // The names of the addresses the folded interval still has rows of come first.
    names: b.names.name.length > keepNames ? keptNames(b.names, keepNames, new Set(order.filter((a) => a >= 0 && addr.fam[a] !== 0).map((a) => keyOf(addr.fam[a], addr.bytes, a * 16)))) : b.names,
    budgetFoldedIpKeys: foldedIp,
    budgetFoldedFlowKeys: foldedFlows,
  };
}

/** An address of 16 bytes at `off` (IPv4 in the first 4) as a map key. */
const keyOf = (fam: number, bytes: Uint8Array, off: number) => `${fam}${Buffer.from(bytes.buffer, bytes.byteOffset + off, fam === 4 ? 4 : 16).toString('hex')}`;

/**
 * At most `keep` of the names, in their order: first those of the addresses in `preferred`
 * (the addresses the stored interval still has rows of), the later sightings first within
 * each; all of them when they fit.
 */
function keptNames(n: Batch['names'], keep: number, preferred?: Set<string>): Batch['names'] {
  const count = n.name.length;
  if (count <= keep) return n;
  const pref = Uint8Array.from({ length: count }, (_, i) => (!preferred || preferred.has(keyOf(n.fam[i], n.addr, i * 16)) ? 1 : 0));
  const rank = Array.from({ length: count }, (_, i) => i).sort((x, y) => pref[y] - pref[x] || y - x);
  const kept = new Uint8Array(count);
  for (const i of rank.slice(0, Math.max(0, keep))) kept[i] = 1;
  const idx = Array.from({ length: count }, (_, i) => i).filter((i) => kept[i] === 1);
  const addr = new Uint8Array(idx.length * 16);
  idx.forEach((i, k) => addr.set(n.addr.subarray(i * 16, i * 16 + 16), k * 16));
  return { addr, fam: Uint8Array.from(idx, (i) => n.fam[i]), source: Uint8Array.from(idx, (i) => n.source[i]), name: idx.map((i) => n.name[i]) };
}

function remapIp(b: Batch, remap: Int32Array): Batch['ip'] {
  return { ...b.ip, idx: Uint32Array.from(b.ip.idx, (a) => remap[a]) };
}

function remapFlows(b: Batch, remap: Int32Array): Batch['flow'] {
  return { ...b.flow, src: Uint32Array.from(b.flow.src, (a) => remap[a]), dst: Uint32Array.from(b.flow.dst, (a) => remap[a]) };
}

function foldIp(b: Batch, kept: Uint8Array, remap: Int32Array, ovf: number, folded: (n: number) => void): Batch['ip'] {
  const ip = b.ip;
  const isOvf = (i: number) => b.addr.fam[ip.idx[i]] === 0;
  let n = 0;
  for (let i = 0; i < ip.count; i++) if (kept[i]) n++;
  const count = n + 1;
  const idx = new Uint32Array(count);
  const cols = [ip.txPackets, ip.txBytes, ip.rxPackets, ip.rxBytes];
  const out = cols.map(() => new Uint32Array(2 * count));
  // Row 0: the overflow address (it sorts first).
  idx[0] = ovf;
  let k = 1;
  let f = 0;
  for (let i = 0; i < ip.count; i++) {
    if (kept[i]) {
      idx[k] = remap[ip.idx[i]];
      cols.forEach((c, j) => {
        out[j][2 * k] = c[2 * i];
        out[j][2 * k + 1] = c[2 * i + 1];
      });
      k++;
    } else {
      if (!isOvf(i)) f++;
      cols.forEach((c, j) => addU64(out[j], c, i));
    }
  }
  folded(f);
  return { count, idx, txPackets: out[0], txBytes: out[1], rxPackets: out[2], rxBytes: out[3] };
}

function foldFlows(b: Batch, kept: Uint8Array, remap: Int32Array, ovf: number, folded: (n: number) => void): Batch['flow'] {
  const fl = b.flow;
  const fam = b.addr.fam;
  let n = 0;
  for (let i = 0; i < fl.count; i++) if (kept[i]) n++;
  const count = n + 1;
  const src = new Uint32Array(count);
  const dst = new Uint32Array(count);
  const proto = new Uint8Array(count);
  const sport = new Uint16Array(count);
  const dport = new Uint16Array(count);
  const packets = new Uint32Array(2 * count);
  const bytes = new Uint32Array(2 * count);
  // Row 0: the overflow flow (overflow address both ways, protocol and ports 0; it sorts first).
  src[0] = ovf;
  dst[0] = ovf;
  let k = 1;
  let f = 0;
  for (let i = 0; i < fl.count; i++) {
    if (kept[i]) {
      src[k] = remap[fl.src[i]];
      dst[k] = remap[fl.dst[i]];
      proto[k] = fl.proto[i];
      sport[k] = fl.sport[i];
      dport[k] = fl.dport[i];
      packets[2 * k] = fl.packets[2 * i];
      packets[2 * k + 1] = fl.packets[2 * i + 1];
      bytes[2 * k] = fl.bytes[2 * i];
      bytes[2 * k + 1] = fl.bytes[2 * i + 1];
      k++;
    } else {
      if (!(fam[fl.src[i]] === 0 && fam[fl.dst[i]] === 0)) f++;
      addU64(packets, fl.packets, i);
      addU64(bytes, fl.bytes, i);
    }
  }
  folded(f);
  return { count, src, dst, proto, sport, dport, packets, bytes };
}
