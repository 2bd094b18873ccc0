/**
 * tc-query's edges, through the built CLI: every error is one line on stderr (or one JSON
 * document in json mode) and exit 1; usage errors name the help to read; --version; no
 * arguments; a reader that stops early.
 */
import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { pcapsDir, query, queryJson, QUERY, recordGenerated, recorder, ROOT, tmp } from './helpers';

let db = '';

before(() => {
  db = path.join(tmp(), 'e.db');
  const r = recorder(['record', '--pcap', path.join(pcapsDir(), 'zeek_smtp.pcap'), '--db', db, '--quiet']);
  assert.equal(r.status, 0, r.stderr);
});

const MISTAKES: { args: string[]; message: RegExp; help: string }[] = [
  { args: ['top', '--since', 'yesterday'], message: /^"yesterday" is not a duration \(30s, 15m, 1h, 7d\), an ISO-8601 time or epoch seconds/, help: 'top' },
  { args: ['top', '--since', '1h', '--until', '2h'], message: /^--until must be later than --since/, help: 'top' },
  { args: ['series', '--since', '1h', '--all'], message: /^--all cannot be combined with --since\/--until/, help: 'series' },
  { args: ['top', '--ip', '10.10.1.4', '--cidr', '10.0.0.0/8'], message: /^give --ip or --cidr, not both/, help: 'top' },
  { args: ['series', '--step', '500ms'], message: /"500ms" is not a whole number of seconds \(30s, 1m, 5m, 15m, 1h, 1d, or any whole number of seconds\)/, help: 'series' },
  { args: ['top', '--bogus'], message: /^unknown option '--bogus'/, help: 'top' },
  { args: ['top', '--since', '999999999999999999999d'], message: /^"999999999999999999999d" is before 1970-01-01 \(epoch 0\), where nothing can be recorded; give a shorter duration or a time since then, or --all/, help: 'top' },
  { args: ['series', '--since', '100000001d'], message: /^"100000001d" is before 1970-01-01/, help: 'series' },
  { args: ['top', '--until', '99999999999999999999'], message: /^"99999999999999999999" is past the year 275760/, help: 'top' },
  { args: ['top', '--limit', '-1'], message: /'--limit <n>' argument '-1' is invalid\. must be between 0 and 1000000000/, help: 'top' },
  { args: ['status', '--tz', 'Mars/Olympus'], message: /--tz "Mars\/Olympus" is not a time zone/, help: 'status' },
];

test('every first mistake: one line on stderr in table and csv, one JSON document in json, exit 1', () => {
  for (const m of MISTAKES) {
    for (const format of ['table', 'csv', 'json']) {
      const r = query(['--db', db, ...m.args, '--format', format]);
      const what = `${m.args.join(' ')} --format ${format}`;
      assert.equal(r.status, 1, what);
      if (format === 'json') {
        assert.equal(r.stderr, '', what);
        const doc = JSON.parse(r.stdout) as { error: { message: string; code: string } };
        assert.deepEqual(Object.keys(doc), ['error'], what);
        assert.match(doc.error.message, m.message, what);
        assert.equal(doc.error.code, 'ERR_TC_USAGE', what);
      } else {
        assert.equal(r.stdout, '', what);
        const lines = r.stderr.split('\n');
        assert.equal(lines.length, 2, `one line: ${what}: ${r.stderr}`);
        assert.equal(lines[1], '');
        const m2 = /^tc-query: error: (.*); see `tc-query (\w+) --help`$/.exec(lines[0]);
        assert.ok(m2, `${what}: ${lines[0]}`);
        assert.match(m2[1], m.message, what);
        assert.equal(m2[2], m.help, what);
        assert.doesNotMatch(r.stderr, /Usage:/, `no whole help: ${what}`);
      }
    }
  }
});

test('series --help shows its default step as a step (1m), as --step takes it', () => {
  const r = query(['series', '--help']);
  assert.match(r.stdout, /--step <d>\s+step \(30s, 1m, 5m, 15m, 1h, 1d or any whole number of seconds\)\s+\(default: 1m\)/);
});

test('sql: the SQLite file\'s batches table (docs/database.md) points to intervals; --asn given a database says it is not a TSV; a missing --auth-token-file says what to give', () => {
  const r = query(['--db', db, 'sql', 'select count(*) from batches']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^tc-query: error: sql: there is no table batches; did you mean intervals\? \(the tables are intervals, /);
  const a = query(['--db', db, '--asn', db, 'top', '--by', 'asn', '--all']);
  assert.equal(a.status, 1);
  assert.match(a.stderr, /^tc-query: error: ASN table \S+e\.db is a binary file \(a SQLite database\), not an ip2asn TSV; give --asn FILE in the ip2asn TSV layout/);
  assert.doesNotMatch(a.stderr, /SQLite format 3/);
  const t = query(['--db', db, 'serve', '--auth-token-file', path.join(tmp(), 'none.token')]);
  assert.equal(t.status, 1);
  assert.match(t.stderr, /^tc-query: error: cannot read --auth-token-file \S+none\.token: no such file; give a file this user can read holding one token/);
});

test('sql: a statement that would change the loaded tables is refused, not answered with a count; no statement is a usage error', () => {
  for (const [sql, kind] of [
    ['delete from intervals', 'DELETE'],
    ["update intervals set node = 'x'", 'UPDATE'],
    ['insert into events select * from events', 'INSERT'],
    ['drop table intervals', 'DROP'],
    ['select 1; delete from intervals', 'DELETE'],
  ]) {
    const j = query(['--db', db, 'sql', sql, '--format', 'json']);
    assert.equal(j.status, 1, sql);
    assert.deepEqual(JSON.parse(j.stdout), {
      error: { message: `sql: ${kind} is not run: the tables are copies loaded for the statement, and the file is never changed by tc-query (the recorder alone writes it); ask with SELECT`, code: 'ERR_TC_SQL_READ_ONLY' },
    });
  }
  for (const sql of ['', '  ', ';']) {
    const r = query(['--db', db, 'sql', sql]);
    assert.equal(r.status, 1, JSON.stringify(sql));
    assert.match(r.stderr, /^tc-query: error: sql: no statement given; give one, e\.g\. tc-query sql "select \* from intervals limit 5"/);
  }
  const typo = query(['--db', db, 'sql', 'selct 1']);
  assert.match(typo.stderr, /^tc-query: error: Parser Error: syntax error at or near "selct"/);
  // A script still answers with its last statement's rows.
  assert.deepEqual(queryJson(['--db', db, 'sql', 'select 2 as a; select count(*) > 0 as b from intervals']), [{ b: true }]);
});

test('--since 0 is epoch seconds (1970-01-01): the whole file', () => {
  const all = queryJson(['--db', db, 'top', '--all', '--limit', '0']);
  assert.ok(all.length > 0);
  assert.deepEqual(queryJson(['--db', db, 'top', '--since', '0', '--limit', '0']), all);
});

test('--version prints the package version; no arguments prints help on stderr and exits 1', () => {
  const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const v = query(['--version']);
  assert.equal(v.status, 0);
  assert.equal(v.stdout, `${version}\n`);
  const none = query([]);
  assert.equal(none.status, 1);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /^Usage: tc-query \[options\] \[command\]/);
});

test('a reader that closes the pipe early (| head -1): tc-query ends quietly', async () => {
  const file = recordGenerated({ packets: 20_000, hosts: 50, flows: 100, seconds: 40_000 }, 10);
  // 10 s intervals: 10 s steps, 4,000 csv rows, far more than a pipe's buffer.
  const child = spawn(process.execPath, [QUERY, '--db', file, 'series', '--since', '1790000000', '--until', '1790040000', '--step', '10s', '--format', 'csv'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let first = '';
  child.stdout.once('data', (d: Buffer) => {
    first = d.toString().split('\n')[0];
    child.stdout.destroy();
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  assert.equal(first, 'start,end,packets,bytes');
  assert.equal(stderr, '');
  assert.equal(code, 0);
});
