/**
 * The schema facts of src/schema/ against what they describe: the addon's counter buffer and
 * the tables the migrations create. A counter, column or level added in one place only fails here.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { pcapsDir, tmp } from './helpers';
import { openForWrite } from '../src/recorder/write/db';
import { addonCounterNames, replay, type Batch } from '../src/native';
import { BATCH_COUNTERS, COUNTER_NAMES } from '../src/schema/counters';
import { FLOW_DELTA_COLUMNS, FLOW_ROLLUP_COLUMNS, IP_DELTA_COLUMNS, IP_ROLLUP_COLUMNS } from '../src/schema/columns';
import { ALL_LEVELS, CLOSING_ORDER, LEVELS } from '../src/schema/levels';

test('the TS counter list is the addon\'s, in the order of its counter buffer', () => {
  assert.deepEqual([...COUNTER_NAMES], addonCounterNames());
});

test('the counter buffer holds counts only: each is a batches column; whether ring and filter counters are present are fields of the batch', async () => {
  assert.deepEqual(BATCH_COUNTERS.map((k) => k.name), addonCounterNames());
  const batches: Batch[] = [];
  await replay([path.join(pcapsDir(), 'zeek_smtp.pcap')], {}, { batch: (b) => void batches.push(b) }).done;
  assert.ok(batches.length > 0);
  for (const b of batches) {
    assert.equal(b.hasRing, false);
    assert.equal(b.hasFilter, false);
    assert.deepEqual(Object.keys(b.counters), addonCounterNames());
  }
});

test('the batches table has one column per stored counter, in the list\'s order', async () => {
  const db = await openForWrite(path.join(tmp(), 's.db'));
  try {
    const cols = (t: string) => (db.sqlite.prepare(`select name from pragma_table_info(?) order by cid`).pluck().all(t) as string[]);
    const batches = cols('batches');
    const counters = BATCH_COUNTERS.map((k) => k.column);
    // The first release's counters follow end_ms; a counter added later is a column its
    // migration appended (alter table), after the writer's own columns: in the list's order all the same.
    assert.equal(batches[batches.indexOf('end_ms') + 1], counters[0]);
    assert.deepEqual(batches.filter((c) => (counters as string[]).includes(c)), counters);
    assert.deepEqual(cols('ip_deltas'), [...IP_DELTA_COLUMNS]);
    assert.deepEqual(cols('flow_deltas'), [...FLOW_DELTA_COLUMNS]);
    const rollups = db.sqlite.prepare("select name from sqlite_master where type = 'table' and name in (select m.name from sqlite_master m, pragma_table_info(m.name) c where c.name = 'bucket_ms' and m.name != 'rollup_dirty') order by name").pluck().all();
    assert.deepEqual(rollups, [...ALL_LEVELS].sort());
    for (const l of ALL_LEVELS) assert.deepEqual(cols(l), [...(LEVELS[l].family === 'ip' ? IP_ROLLUP_COLUMNS : FLOW_ROLLUP_COLUMNS)], l);
  } finally {
    db.sqlite.close();
  }
});

test('each rollup level sums into a coarser one of its family, closed after it', () => {
  for (const l of ALL_LEVELS) {
    const next = LEVELS[l].next;
    if (!next) continue;
    assert.equal(LEVELS[next].family, LEVELS[l].family, l);
    assert.equal(LEVELS[next].ms % LEVELS[l].ms, 0, l);
    assert.ok(CLOSING_ORDER.indexOf(next) > CLOSING_ORDER.indexOf(l), l);
  }
});
