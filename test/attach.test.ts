/**
 * The path taken when DuckDB's sqlite extension is installed: DuckDB reads the planned segments
 * from the attached file itself, with the same SQL. The extension cannot be installed here (no
 * network), so the file's tables are copied into an attached DuckDB catalog named `tc` (what
 * ATTACH ... (TYPE sqlite) presents) and both paths must give the same answers.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { BIGINT, VARCHAR } from '@duckdb/node-api';
import { pcapsDir, recorder, tmp } from './helpers';
import { Duck } from '../src/query/duck';
import { answerTop, type TopOptions } from '../src/query/top';
import { loadSeries } from '../src/query/series';
import { makeWindow } from '../src/query/window';
import { resolveWindow } from '../src/query/plan';
import { matchingIds } from '../src/query/filters';

const TABLES: Record<string, string[]> = {
  batches: ['id', 'start_ms', 'end_ms'],
  ip_deltas: ['batch_id', 'ip_id', 'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes'],
  flow_deltas: ['batch_id', 'src_id', 'dst_id', 'proto', 'sport', 'dport', 'packets', 'bytes'],
  ip_1m: ['bucket_ms', 'ip_id', 'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes'],
  ip_1h: ['bucket_ms', 'ip_id', 'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes'],
  ip_1d: ['bucket_ms', 'ip_id', 'tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes'],
  flow_1m: ['bucket_ms', 'src_id', 'dst_id', 'proto', 'sport', 'dport', 'packets', 'bytes'],
  flow_1h: ['bucket_ms', 'src_id', 'dst_id', 'proto', 'sport', 'dport', 'packets', 'bytes'],
};

async function attachedCopy(sqlite: Database.Database): Promise<Duck> {
  const duck = await Duck.open();
  await duck.conn.run("attach ':memory:' as tc");
  for (const [t, cols] of Object.entries(TABLES)) {
    const rows = sqlite.prepare(`select ${cols.join(', ')} from ${t}`).safeIntegers(true).raw(true).iterate() as Iterable<unknown[]>;
    await duck.load(t, cols.map((name) => ({ name, sqlType: 'BIGINT', type: BIGINT })), rows, 'tc');
  }
  const addrs = sqlite.prepare('select id, text from addresses').safeIntegers(true).raw(true).iterate() as Iterable<unknown[]>;
  await duck.load('addresses', [{ name: 'id', sqlType: 'BIGINT', type: BIGINT }, { name: 'text', sqlType: 'VARCHAR', type: VARCHAR }], addrs, 'tc');
  duck.attached = 'tc.';
  return duck;
}

test('DuckDB reading the attached file answers exactly like rows moved in', async () => {
  const db = path.join(tmp(), 'a.db');
  const r = recorder(['record', '--pcap', path.join(pcapsDir(), 'ndpi_alexa-app.pcapng'), path.join(pcapsDir(), 'zeek_smtp.pcap'), '--db', db, '--flows', '--quiet', '--interval-secs', '1']);
  assert.equal(r.status, 0, r.stderr);
  const sqlite = new Database(db, { readonly: true });
  try {
    const [a, b] = sqlite.prepare('select min(start_ms), max(end_ms) from batches').raw().get() as number[];
    const cases: Omit<TopOptions, 'db'>[] = [
      { by: 'ip', window: makeWindow({ all: true }), limit: 0, format: 'json' },
      { by: 'flow', window: makeWindow({ all: true }), limit: 0, format: 'json' },
      { by: 'src', window: makeWindow({ since: String((a + 61_000) / 1000), until: String((b - 7_000) / 1000) }), limit: 0, format: 'json' },
      { by: 'ip', window: makeWindow({ all: true }), limit: 0, format: 'json', filters: { cidr: '10.0.0.0/8' } },
      { by: 'flow', window: makeWindow({ all: true }), limit: 0, format: 'json', filters: { ip: '10.10.1.4' } },
    ];
    for (const c of cases) {
      const moved = await Duck.open();
      const attached = await attachedCopy(sqlite);
      try {
        const want = (await answerTop(sqlite, moved, { db, ...c })).out;
        const got = (await answerTop(sqlite, attached, { db, ...c })).out;
        assert.ok(JSON.parse(want).length > 0, JSON.stringify(c));
        assert.equal(got, want, JSON.stringify(c));
      } finally {
        moved.close();
        attached.close();
      }
    }
    for (const ip of [undefined, '10.10.1.4']) {
      const w = resolveWindow(sqlite, makeWindow({ all: true }));
      const ids = matchingIds(sqlite, { ip });
      const moved = await Duck.open();
      const attached = await attachedCopy(sqlite);
      try {
        await loadSeries(sqlite, moved, w, 3_600_000, ids);
        await loadSeries(sqlite, attached, w, 3_600_000, ids);
        const q = 'select t_ms, sum(tx_bytes)::bigint as tx, sum(rx_bytes)::bigint as rx from series_rows group by t_ms order by t_ms';
        assert.deepEqual(await attached.rows(q, {}), await moved.rows(q, {}));
      } finally {
        moved.close();
        attached.close();
      }
    }
  } finally {
    sqlite.close();
  }
});

test('without the sqlite extension installed, attaching fails at once and rows are moved in', async () => {
  const duck = await Duck.open();
  const file = new Database(path.join(tmp(), 'plain.db'));
  try {
    const ok = await duck.attachSqlite(file);
    assert.equal(ok, false, 'this host has no sqlite extension');
    assert.equal(duck.attached, undefined);
  } finally {
    file.close();
    duck.close();
  }
});
