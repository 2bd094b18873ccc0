/**
 * tc_group (native/sqlite/tc_group.c), the aggregate that sums a window's rows per key for
 * tc-query: groups in the order first seen, one BLOB of columns, keys whose masked sums cancel
 * out left out, a sum past 64 bits an error as SQLite's sum() makes it.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { loadSqliteExtension } from '../src/native';

function db(): Database.Database {
  const d = new Database(':memory:');
  loadSqliteExtension(d);
  d.exec('create table r (a integer, b integer, x integer, y integer)');
  return d;
}

/** The BLOB as columns of BigInts. */
function columns(blob: Buffer, width: number): bigint[][] {
  const all = new BigInt64Array(blob.length / 8);
  new Uint8Array(all.buffer).set(blob);
  const n = all.length / width;
  return Array.from({ length: width }, (_, c) => [...all.subarray(c * n, (c + 1) * n)]);
}

test('tc_group sums per key, in first-seen order, column by column', () => {
  const d = db();
  const rows = [[2, 1, 10, 1], [1, 1, 5, 0], [2, 1, -4, 2], [3, 7, 1, 1], [1, 2, 1, 1], [2, 1, 1, 0]];
  for (const r of rows) d.prepare('insert into r values (?, ?, ?, ?)').run(...r);
  // Two keys (a, b), both values counted for keeping.
  const two = columns(d.prepare('select tc_group(2, 3, a, b, x, y) from r').pluck().get() as Buffer, 4);
  assert.deepEqual(two, [[2n, 1n, 3n, 1n], [1n, 1n, 7n, 2n], [7n, 5n, 1n, 1n], [3n, 0n, 1n, 1n]]);
  // One key: the same as SQL's GROUP BY.
  const one = columns(d.prepare('select tc_group(1, 3, a, x, y) from r').pluck().get() as Buffer, 3);
  const want = d.prepare('select a, sum(x), sum(y) from r group by a').raw().all() as number[][];
  assert.deepEqual(new Map(one[0].map((k, i) => [k, [one[1][i], one[2][i]]])), new Map(want.map(([k, x, y]) => [BigInt(k), [BigInt(x), BigInt(y)]])));
  // Keys whose masked value sums to 0 leave: key 1 has y = 1, key (1, 1) y = 0.
  const kept = columns(d.prepare('select tc_group(2, 2, a, b, x, y) from r').pluck().get() as Buffer, 4);
  assert.deepEqual(kept[0], [2n, 3n, 1n]);
  assert.deepEqual(kept[1], [1n, 7n, 2n]);
  // Many keys: the table grows past its first size.
  d.exec('delete from r; with recursive n(i) as (select 0 union all select i + 1 from n where i < 49999) insert into r select i % 20000, 0, i, 1 from n');
  const many = columns(d.prepare('select tc_group(1, 1, a, x) from r').pluck().get() as Buffer, 2);
  assert.equal(many[0].length, 20000);
  assert.equal(many[1].reduce((s, v) => s + v, 0n), BigInt((49999 * 50000) / 2));
  d.close();
});

test('tc_group: no rows give an empty BLOB; a sum past 64 bits and a wrong call are errors', () => {
  const d = db();
  assert.equal((d.prepare('select tc_group(1, 1, a, x) from r').pluck().get() as Buffer).length, 0);
  d.prepare('insert into r values (1, 0, ?, 0), (1, 0, ?, 0)').run(2n ** 62n, 2n ** 62n);
  assert.throws(() => d.prepare('select tc_group(1, 1, a, x) from r').pluck().get(), /integer overflow/);
  assert.throws(() => d.prepare('select tc_group(0, 1, a, x) from r').pluck().get(), /1 to 6 keys and 1 to 8 values/);
  d.close();
});
