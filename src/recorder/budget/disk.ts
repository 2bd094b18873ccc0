/**
 * The disk budget (`record --max-db-size`): its accepted forms, its default, and how an
 * interval's share of it is reckoned. One place for the rule and its figures; the sink enforces
 * it (`DiskBudget` in enforce.ts), the CLI shows it.
 */
import { statfsSync } from 'node:fs';
import * as path from 'node:path';
import { bytes } from '../../units';
import { TcError } from '../../errors';

/** The WAL's own bound: SQLite truncates the -wal file to this after a checkpoint (db.ts). */
export const WAL_SIZE_LIMIT = 64 * 2 ** 20;

/** The default for live recording: the smaller of this and DEFAULT_FS_SHARE of the file system. */
export const DEFAULT_MAX_DB_SIZE = 8 * 2 ** 30;
export const DEFAULT_FS_SHARE = 0.1;
/** The rule as `record --help` shows it. */
export const DEFAULT_MAX_DB_SIZE_TEXT = `live: the smaller of ${DEFAULT_MAX_DB_SIZE / 2 ** 30} GiB and ${DEFAULT_FS_SHARE * 100}% of the file system that holds --db; replays: none`;

/** Detail is shed before a write group that would take the file past this fraction of the budget. */
export const HIGH_WATER = 0.9;
/**
 * The most of the budget one interval may take (its raw rows with their share of minute, hour
 * and day rows): a flood needs at least 1 / INTERVAL_SHARE intervals (400, 33 minutes at 5 s)
 * to displace the whole history, and ordinary traffic (a few thousand addresses an interval)
 * fits whole in any budget above ~300 MiB.
 */
export const INTERVAL_SHARE = 1 / 400;
/**
 * Bytes a stored key costs across the levels it reaches (raw row, minute, hour and day rows,
 * its address), measured with dbstat on a flood replay (bench/README.md). Over-estimates are
 * safe: PRAGMA max_page_count is the hard stop behind them.
 */
export const BYTES_PER_IP_KEY = 160;
export const BYTES_PER_FLOW_KEY = 150;
/** A rollup row (minute, hour or day) an open bucket's close will write. */
export const BYTES_PER_IP_ROLLUP_ROW = 30;
/**
 * Rollup rows one bucket's close may write when closes reach the hard stop (a flood's day holds
 * every key it saw, and its hours cannot leave before it closes): a share of the budget, halved
 * on each further SQLITE_FULL down to the overflow row alone.
 */
export const CLOSE_SHARE = 1 / 16;
export const BYTES_PER_FLOW_ROLLUP_ROW = 40;
/** A `batches` row and its index entries. */
export const BYTES_PER_BATCH = 400;
/**
 * A new name of an interval: its `names` row with its index entries, and its share of the
 * name dictionary and of an address only names refer to (dbstat on a names flood, bench/README.md).
 */
export const BYTES_PER_NAME = 200;
/** The most of an interval's share its names may take when the interval has traffic too. */
export const NAMES_SHARE = 1 / 4;

const UNITS: Record<string, number> = {
  b: 1,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
};

export const SIZE_FORMS = 'a whole number of bytes, or a number with KiB, MiB, GiB, TiB (powers of 1024) or kB, MB, GB, TB (powers of 1000), no space: 512MiB, 8GiB, 1.5GiB, 2GB; 0 = no budget';

/** Parses a size: `512MiB`, `1.5GiB`, `2GB`, `1048576`; 0 = no budget. */
export function parseSize(v: string): number {
  const m = /^(\d+(?:\.\d+)?)([A-Za-z]*)$/.exec(v);
  const unit = m ? UNITS[(m[2] || 'b').toLowerCase()] : undefined;
  const n = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : NaN;
  if (m && unit !== undefined && n > Number.MAX_SAFE_INTEGER) {
    throw new TcError(`--max-db-size ${v} is too large: give at most ${bytes(Number.MAX_SAFE_INTEGER)}, or 0 for no budget`, 'ERR_TC_BAD_OPTION');
  }
  if (!Number.isSafeInteger(n) || (m![2] === '' && m![1].includes('.'))) {
    throw new TcError(`--max-db-size ${JSON.stringify(v)} is not a size: expected ${SIZE_FORMS}`, 'ERR_TC_BAD_OPTION');
  }
  if (n !== 0 && n < MIN_BUDGET) throw new TcError(`--max-db-size ${v} is below ${bytes(MIN_BUDGET)}, too small to hold the schema and one interval; give at least ${bytes(MIN_BUDGET)}, or 0 for no budget`, 'ERR_TC_BAD_OPTION');
  return n;
}

/** The smallest budget accepted: room for the schema, the indexes and a few intervals. */
export const MIN_BUDGET = 2 ** 20;

export interface ResolvedBudget {
  /** Bytes; 0 = no budget. */
  maxBytes: number;
  /** How it was chosen, for the start line. */
  why: string;
}

/**
 * The budget of a recording: the one given, or for live recording the default rule applied to
 * the file system that holds `dbFile` (statfs of its directory).
 */
export function resolveBudget(given: number | undefined, live: boolean, dbFile: string): ResolvedBudget {
  if (given !== undefined) return { maxBytes: given, why: given === 0 ? 'no budget (--max-db-size 0)' : '--max-db-size' };
  if (!live) return { maxBytes: 0, why: 'no budget (a replay keeps every row unless --max-db-size is given)' };
  const fs = statfsSync(path.dirname(path.resolve(dbFile)));
  const fsBytes = fs.blocks * fs.bsize;
  const share = Math.floor(fsBytes * DEFAULT_FS_SHARE);
  return share < DEFAULT_MAX_DB_SIZE
    ? { maxBytes: Math.max(MIN_BUDGET, share), why: `${DEFAULT_FS_SHARE * 100}% of the ${bytes(fsBytes)} file system` }
    : { maxBytes: DEFAULT_MAX_DB_SIZE, why: `the cap; ${DEFAULT_FS_SHARE * 100}% of the ${bytes(fsBytes)} file system is more` };
}
