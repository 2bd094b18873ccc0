/**
 * A hash map from 32-bit unsigned keys to positive 31-bit integers, open addressing over typed
 * arrays.
 *
 * Written here rather than taken from a library because it sits on the writer's per-row path
 * (an IPv4 address -> dictionary id, a dictionary id -> running-sum slot) and a JS `Map` keyed
 * by numbers past 2^30 (most IPv4 addresses) hashes boxed doubles, several times slower. Values
 * come back as small integers, not doubles, which keeps the parameter arrays handed to
 * better-sqlite3 unboxed (faster inserts).
 */
export class U32Map {
  static readonly MAX_VALUE = 0x7fffffff;
  private keys: Uint32Array;
  /** 0 marks an empty slot, so values must be > 0. */
  private vals: Int32Array;
  private mask: number;
  size = 0;

  constructor(capacity = 1024) {
    let c = 16;
    while (c < capacity * 2) c *= 2;
    this.keys = new Uint32Array(c);
    this.vals = new Int32Array(c);
    this.mask = c - 1;
  }

  /** The value of `key`, or 0 when absent. */
  get(key: number): number {
    const keys = this.keys;
    const vals = this.vals;
    let i = (Math.imul(key, 0x9e3779b1) >>> 0) & this.mask;
    for (;;) {
      const v = vals[i];
      if (v === 0 || keys[i] === key) return v;
      i = (i + 1) & this.mask;
    }
  }

  /** Sets `key` to `value` (1 ..= MAX_VALUE). */
  set(key: number, value: number): void {
    if ((this.size + 1) * 2 > this.mask) this.grow();
    let i = (Math.imul(key, 0x9e3779b1) >>> 0) & this.mask;
    for (;;) {
      if (this.vals[i] === 0) {
        this.keys[i] = key;
        this.vals[i] = value;
        this.size++;
        return;
      }
      if (this.keys[i] === key) {
        this.vals[i] = value;
        return;
      }
      i = (i + 1) & this.mask;
    }
  }

  clear(): void {
    this.vals.fill(0);
    this.size = 0;
  }

  private grow(): void {
    const keys = this.keys;
    const vals = this.vals;
    this.keys = new Uint32Array(keys.length * 2);
    this.vals = new Int32Array(keys.length * 2);
    this.mask = keys.length * 2 - 1;
    this.size = 0;
    for (let i = 0; i < keys.length; i++) if (vals[i] !== 0) this.set(keys[i], vals[i]);
  }
}
