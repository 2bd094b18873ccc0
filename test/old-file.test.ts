/**
 * A file an older traffic-counter wrote: tc-query says how to upgrade it instead of failing on a
 * table it lacks, copies it as it is, and answers once the recorder has upgraded it.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { pcapsDir, query, queryJson, recorder, tmp } from './helpers';
import { downgrade } from './support/old-file';
import { SCHEMA_VERSION } from '../migrations';

test('an older file: every answer says how to upgrade it, in text and json; copy copies it; after rebuild it answers', async () => {
  const dir = tmp();
  const db = path.join(dir, 'old.db');
  assert.equal(recorder(['record', '--pcap', path.join(pcapsDir(), 'zeek_smtp.pcap'), '--db', db, '--quiet']).status, 0);
  const want = queryJson(['--db', db, 'top', '--all']);
  await downgrade(db, '2026-12-01_0003_budget');
  const upgrade = new RegExp(`written by an older traffic-counter \\(schema version 3; this one reads ${SCHEMA_VERSION}\\); upgrade it once with \`traffic-counter rebuild --db ${db.replace(/[.]/g, '\\.')}\``);
  for (const args of [['status'], ['top', '--all'], ['names', '--ip', '10.0.0.1'], ['sql', 'select count(*) from names']]) {
    const r = query(['--db', db, ...args]);
    assert.equal(r.status, 1, args.join(' '));
    assert.match(r.stderr, upgrade, args.join(' '));
    const j = query(['--db', db, ...args, '--format', 'json']);
    if (args[0] === 'sql') continue; // sql prints tables only
    assert.equal(j.status, 1);
    const doc = JSON.parse(j.stdout) as { error: { message: string; code: string } };
    assert.equal(doc.error.code, 'ERR_TC_OLDER_SCHEMA');
    assert.match(doc.error.message, upgrade);
  }
  const copy = path.join(dir, 'copy.db');
  const c = query(['--db', db, 'copy', '--out', copy]);
  assert.equal(c.status, 0, c.stderr);
  assert.match(query(['--db', copy, 'status']).stderr, /written by an older traffic-counter/, 'the copy is the old file as it is');
  const r = recorder(['rebuild', '--db', copy]);
  assert.equal(r.status, 0, r.stderr);
  // The older build recorded no names: the same counts, and no names.
  assert.deepEqual(queryJson(['--db', copy, 'top', '--all']), want.map((row) => ({ ...row, name: null })), 'the upgraded copy answers as the file did');
});
