/**
 * The keys the rollups' running sums (every open bucket's, per-IP and per-flow, at every level)
 * may hold in all: a bucket whose new key finds no room drops its sums and is grouped in SQL
 * when it closes, as one past 2^53 is. One bound for all of them, so the memory of the sums
 * does not grow with the number of buckets open at once.
 */
export class SumsRoom {
  /** Bytes one key of running sums takes at most: `Acc`'s (slot map, id, four doubles, with their growth) is the larger. */
  static readonly BYTES_PER_KEY = 136;
  used = 0;
  constructor(readonly max: number) {}

  /** Takes room for one more key; false when there is none. */
  take(): boolean {
    if (this.used >= this.max) return false;
    this.used++;
    return true;
  }

  /** Gives back the room of `keys` keys (sums dropped or written). */
  give(keys: number): void {
    this.used -= keys;
  }
}

/** Keys of running sums in all; enough for the minutes and hours of a host's own traffic. */
export const SUMS_MAX_KEYS = 200_000;
export const SUMS_BYTES = SUMS_MAX_KEYS * SumsRoom.BYTES_PER_KEY;
