/**
 * A hash map from 16-byte keys (IPv6 addresses) to positive 31-bit integers, open addressing
 * over typed arrays: 20 bytes a slot, at most half the slots used. A JS `Map` keyed by a
 * 16-character string would hold a string and an entry object per address (over 100 bytes
 * each), which a flood of spoofed IPv6 sources turns into hundreds of MiB.
 */
export class Bytes16Map {
  /** Bytes a stored key takes at most: two slots of 16 + 4 bytes, and the old table while growing. */
  static readonly BYTES_PER_KEY = 3 * 20;
  /** Four 32-bit words per slot. */
  private keys: Uint32Array;
  /** 0 marks an empty slot, so values must be > 0. */
  private vals: Int32Array;
  private mask: number;
  size = 0;

  constructor(capacity = 1024) {
    let c = 16;
    while (c < capacity * 2) c *= 2;
    this.keys = new Uint32Array(4 * c);
    this.vals = new Int32Array(c);
    this.mask = c - 1;
  }

  /** The value of the 16 bytes of `b` at `off`, or 0 when absent. */
  get(b: Uint8Array, off: number): number {
    const [w0, w1, w2, w3] = words(b, off);
    const keys = this.keys;
    let i = slot(w0, w1, w2, w3) & this.mask;
    for (;;) {
      const v = this.vals[i];
      if (v === 0 || (keys[4 * i] === w0 && keys[4 * i + 1] === w1 && keys[4 * i + 2] === w2 && keys[4 * i + 3] === w3)) return v;
      i = (i + 1) & this.mask;
    }
  }

  /** Sets the key of the 16 bytes of `b` at `off` to `value` (1 ..= 2^31 - 1). */
  set(b: Uint8Array, off: number, value: number): void {
    const [w0, w1, w2, w3] = words(b, off);
    this.put(w0, w1, w2, w3, value);
  }

  clear(): void {
    this.vals.fill(0);
    this.size = 0;
  }

  private put(w0: number, w1: number, w2: number, w3: number, value: number): void {
    if ((this.size + 1) * 2 > this.mask) this.grow();
    const keys = this.keys;
    let i = slot(w0, w1, w2, w3) & this.mask;
    for (;;) {
      if (this.vals[i] === 0) {
        keys[4 * i] = w0;
        keys[4 * i + 1] = w1;
        keys[4 * i + 2] = w2;
        keys[4 * i + 3] = w3;
        this.vals[i] = value;
        this.size++;
        return;
      }
      if (keys[4 * i] === w0 && keys[4 * i + 1] === w1 && keys[4 * i + 2] === w2 && keys[4 * i + 3] === w3) {
        this.vals[i] = value;
        return;
      }
      i = (i + 1) & this.mask;
    }
  }

  private grow(): void {
    const keys = this.keys;
    const vals = this.vals;
    this.keys = new Uint32Array(keys.length * 2);
    this.vals = new Int32Array(vals.length * 2);
    this.mask = vals.length * 2 - 1;
    this.size = 0;
    for (let i = 0; i < vals.length; i++) if (vals[i] !== 0) this.put(keys[4 * i], keys[4 * i + 1], keys[4 * i + 2], keys[4 * i + 3], vals[i]);
  }
}

const scratch = [0, 0, 0, 0];

function words(b: Uint8Array, off: number): number[] {
  for (let k = 0; k < 4; k++) {
    const o = off + 4 * k;
    scratch[k] = ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
  }
  return scratch;
}

function slot(w0: number, w1: number, w2: number, w3: number): number {
  let h = Math.imul(w0 ^ Math.imul(w3, 0x9e3779b1), 0x85ebca6b) ^ w1;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) ^ w2;
  return (h ^ (h >>> 16)) >>> 0;
}
