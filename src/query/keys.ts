/**
 * The key of an address: what `top --by label|asn|net|name` groups a window's addresses by, and
 * what `--by ip` rows gain as columns. One abstraction for every key (a label of the --labels
 * file, the AS of the --asn table, the network of a prefix length): an AddressKey maps the
 * window's addresses to keys in TypeScript, the mapping is loaded into DuckDB as
 * address_keys(ip_id, key), and one grouping query (queries/top_key.sql) sums the window per key.
 * A key is read at query time: a changed label file or ASN table applies to all of history.
 */
import type Database from 'better-sqlite3';
import { formatAddr } from '../addr';
import { TcError } from '../errors';
import type { ColumnSpec } from './output';
import type { Window } from './window';
import type { LabelTable } from './labels';
import type { AsnTable } from './asn';
import { BIGINT, INTEGER, type Duck } from './duck';
import { nameAt, sightingsOf } from './names';

/** An address of the window: its dictionary id, 4 or 16 bytes, display text. */
export interface AddressRow {
  id: number;
  addr: Uint8Array;
  text: string;
}

/** What a key may read besides the addresses (the file, the window: e.g. names seen up to its end). */
export interface KeyContext {
  sqlite: Database.Database;
  window: Window;
}

/** A key: `id` identifies it (equal ids group together) and orders equal totals; `fields` are its row fields. */
export interface Key {
  id: string;
  fields: Record<string, unknown>;
}

export interface AddressKey {
  /** What `--by` calls it. */
  by: KeyBy;
  /** The fields of a key, in row order, with their table form. */
  fields: ColumnSpec[];
  /** The table's words for a row of addresses without a key, and for counting rows. */
  none: string;
  noun: [string, string];
  /** The key of each address (null: it has none), in the same order. */
  keysOf(addrs: AddressRow[], ctx: KeyContext): (Key | null)[];
}

export const KEY_BYS = ['label', 'asn', 'net', 'name'] as const;
export type KeyBy = (typeof KEY_BYS)[number];
export const isKeyBy = (by: string): by is KeyBy => (KEY_BYS as readonly string[]).includes(by);

/** Where keys come from: the --labels file, the --asn table (read when first asked), the --by net prefixes. */
export interface KeySources {
  labels?: LabelTable;
  asn?: () => AsnTable;
  v4Prefix: number;
  v6Prefix: number;
}

/**
 * The overflow row of the file (keys folded past --max-keys or by the disk budget, address
 * family 0, shown as the address `overflow`) is no address a label, an AS or a network holds:
 * every key gives it a row of its own, named `overflow`, apart from the addresses without a key.
 */
export const OVERFLOW = 'overflow';
const isOverflow = (a: AddressRow) => a.addr.length === 0;
/** Sorts after every label, AS and network of equal totals. */
const OVERFLOW_ID = '\uffffoverflow';

const left = (key: string): ColumnSpec => ({ key, align: 'left', human: (v) => (v === null || v === undefined ? '' : String(v)) });

function labelKey(t: LabelTable): AddressKey {
  return {
    by: 'label',
    fields: [left('label')],
    none: '(no label)',
    noun: ['label', 'labels'],
    keysOf: (addrs) =>
      addrs.map((a) => {
        if (isOverflow(a)) return { id: OVERFLOW_ID, fields: { label: OVERFLOW } };
        const label = t.labelOf(a.addr);
        return label === null ? null : { id: label, fields: { label } };
      }),
  };
}

function asnKey(load: () => AsnTable): AddressKey {
  return {
    by: 'asn',
    fields: [{ key: 'asn', human: (v) => (v === null || v === undefined ? '' : String(v)) }, left('as_name'), left('country')],
    none: '(no AS)',
    noun: ['AS', 'ASes'],
    keysOf: (addrs) => {
      const t = load();
      return addrs.map((a) => {
        // No AS number: `asn` stays null, `as_name` says what the row is.
        if (isOverflow(a)) return { id: OVERFLOW_ID, fields: { asn: null, as_name: OVERFLOW, country: null } };
        const as = t.asOf(a.addr);
        return as === null ? null : { id: String(as.asn).padStart(10, '0'), fields: { asn: as.asn, as_name: as.as_name, country: as.country } };
      });
    },
  };
}

function netKey(v4Prefix: number, v6Prefix: number): AddressKey {
  return {
    by: 'net',
    fields: [left('net')],
    none: '(none)',
    noun: ['network', 'networks'],
    keysOf: (addrs) =>
      addrs.map((a) => {
        if (isOverflow(a)) return { id: OVERFLOW_ID, fields: { net: OVERFLOW } };
        const prefix = a.addr.length === 4 ? v4Prefix : v6Prefix;
        const net = Uint8Array.from(a.addr, (b, i) => b & (0xff << Math.max(0, Math.min(8, (i + 1) * 8 - prefix)) & 0xff));
        // IPv4 sorts before IPv6, each in address order.
        const id = `${a.addr.length === 4 ? 'a' : 'b'}${Buffer.from(net).toString('hex')}`;
        return { id, fields: { net: `${formatAddr(net)}/${prefix}` } };
      }),
  };
}

/** The name seen for each address up to the window's end (names.ts has the rule). */
export const NAME_KEY: AddressKey = {
  by: 'name',
  fields: [left('name')],
  none: '(no name)',
  noun: ['name', 'names'],
  keysOf: (addrs, ctx) => {
    const seen = sightingsOf(ctx.sqlite, addrs.map((a) => a.id));
    return addrs.map((a) => {
      const name = nameAt(seen.get(a.id), ctx.window.toMs);
      return name === null ? null : { id: name, fields: { name } };
    });
  },
};

/** The key `--by` names, or a refusal saying which file it needs. */
export function addressKey(by: KeyBy, s: KeySources): AddressKey {
  if (by === 'name') return NAME_KEY;
  if (by === 'label') {
    if (!s.labels) throw new TcError('--by label needs a label file: give --labels FILE (lines "CIDR label"), or set TC_LABELS', 'ERR_TC_USAGE');
    return labelKey(s.labels);
  }
  if (by === 'asn') {
    if (!s.asn) throw new TcError('--by asn needs an ASN table: give --asn FILE (ip2asn TSV, e.g. ip2asn-combined.tsv from iptoasn.com), or set TC_ASN', 'ERR_TC_USAGE');
    return asnKey(s.asn);
  }
  return netKey(s.v4Prefix, s.v6Prefix);
}

/** The keys a per-address row gains as columns from the files given: its label with --labels, its AS with --asn. */
export function rowKeys(s: KeySources): AddressKey[] {
  return [...(s.labels ? [labelKey(s.labels)] : []), ...(s.asn ? [asnKey(s.asn)] : [])];
}

/** A key's fields of `k`, every one null without a key. */
export const fieldsOf = (key: AddressKey, k: Key | null | undefined): Record<string, unknown> => k?.fields ?? Object.fromEntries(key.fields.map((f) => [f.key, null]));

/**
 * Loads address_keys(ip_id BIGINT, key INTEGER) for `addrs`: `key` indexes the returned keys,
 * numbered in the order of their ids (so that equal totals sort by key), NULL where an address
 * has none.
 */
export async function loadAddressKeys(duck: Duck, key: AddressKey, addrs: AddressRow[], ctx: KeyContext): Promise<Key[]> {
  const keys = key.keysOf(addrs, ctx);
  const byId = new Map<string, Key>();
  for (const k of keys) if (k && !byId.has(k.id)) byId.set(k.id, k);
  const ordered = [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const index = new Map(ordered.map((k, i) => [k.id, i]));
  await duck.load(
    'address_keys',
    [
      { name: 'ip_id', sqlType: 'BIGINT', type: BIGINT },
      { name: 'key', sqlType: 'INTEGER', type: INTEGER },
    ],
    addrs.map((a, i) => [BigInt(a.id), keys[i] ? index.get(keys[i]!.id)! : null]),
  );
  return ordered;
}

/** The address of each per-address row (found by its `ip` text among `addrs`), in row order. */
export function rowAddresses(rows: Record<string, unknown>[], addrs: AddressRow[]): AddressRow[] {
  const byText = new Map(addrs.map((a) => [a.text, a]));
  return rows.map((r) => byText.get(r.ip as string)!);
}

/** Adds each row's key fields to per-address rows; `mine`: the rows' addresses (rowAddresses). */
export function addRowKeys(rows: Record<string, unknown>[], keys: AddressKey[], mine: AddressRow[], ctx: KeyContext): void {
  if (keys.length === 0 || rows.length === 0) return;
  for (const key of keys) {
    const ks = key.keysOf(mine, ctx);
    rows.forEach((r, i) => Object.assign(r, fieldsOf(key, ks[i])));
  }
}
