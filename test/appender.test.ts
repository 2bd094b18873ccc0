/**
 * The appender owns the write protocol: a group either goes in whole or leaves the file, the
 * sequence and the running sums as they were, so a retried group counts every row once.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { tmp } from './helpers';
import { openForWrite } from '../src/recorder/write/db';
import { Appender } from '../src/recorder/write/appender';
import { makeBatch } from './support/synth';

test('a group that fails half-way is rolled back whole; retried, every row counts once and the rollups equal the log', async () => {
  const db = await openForWrite(path.join(tmp(), 'appender.db'));
  const s = db.sqlite;
  try {
    const a = new Appender(s, db.nodeId, { key: 'appender', kind: 'replay', source: 'test', intervalMs: 60_000, flows: true, options: {} });
    const t0 = Date.UTC(2026, 0, 1);
    // Three minutes: the third batch closes the first two minutes inside the group.
    const group = [0, 1, 2].map((m) => makeBatch(t0 + m * 60_000, 60_000, 300, 200, m + 1));
    assert.deepEqual(a.append(group.slice(0, 1), []), [true]);
    // The third batch of the next group fails after the second's rows are in the running sums.
    s.exec("create temp trigger fail_third before insert on batches when new.seq = 2 begin select raise(abort, 'disk says no'); end");
    assert.throws(() => a.append(group.slice(1), [{ startMs: t0, endMs: t0 + 60_000, why: 'test' }]), /disk says no/);
    assert.equal(s.prepare('select count(*) from batches').pluck().get(), 1, 'nothing of the failed group stays');
    assert.equal(s.prepare("select count(*) from events where kind = 'lost-interval'").pluck().get(), 0);
    s.exec('drop trigger fail_third');
    assert.deepEqual(a.append(group.slice(1), []), [true, true], 'the retry starts from the failed group\'s first sequence number');
    assert.deepEqual(s.prepare('select seq from batches order by seq').pluck().all(), [0, 1, 2]);
    a.finish(true);
    const log = s.prepare('select sum(tx_bytes) as b, sum(rx_packets) as p from ip_deltas').get();
    assert.deepEqual(s.prepare('select sum(tx_bytes) as b, sum(rx_packets) as p from ip_1m').get(), log, 'minutes equal the log');
    assert.deepEqual(s.prepare('select sum(tx_bytes) as b, sum(rx_packets) as p from ip_1h').get(), log, 'hours equal the log');
    const flows = s.prepare('select sum(bytes) as b, sum(packets) as p from flow_deltas').get();
    assert.deepEqual(s.prepare('select sum(bytes) as b, sum(packets) as p from flow_1m').get(), flows, 'flow minutes equal the log');
    assert.notEqual(s.prepare('select ended_at from sessions where id = ?').pluck().get(a.sessionId), null, 'finish ends the session');
  } finally {
    s.close();
  }
});
