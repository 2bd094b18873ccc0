/**
 * Edges a new user meets after the disk budget and with wrong input, through the built CLIs:
 * `sql`'s events table holds a replay's events by the time they are about; `status` and the
 * completeness line name the time only coarser totals hold, and such a window is answered;
 * `top --by label|asn` give the overflow row a row of its own; --config errors name the file,
 * the key and the nearest known key; every file record and tc-query cannot use is said with
 * what to do, in text and JSON.
 */
import { before, describe, test, type TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { needRoot, pcapsDir, query, queryJson, RECORDER, recorder, tmp } from './helpers';
import { generate } from './support/gen';

const SMTP = path.join(pcapsDir(), 'zeek_smtp.pcap');
const COUNTERS = ['tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes', 'packets', 'bytes'] as const;
type Row = Record<string, unknown>;
const sums = (rows: Row[]) => COUNTERS.map((k) => rows.reduce((s, r) => s + Number(r[k]), 0));
const counters = (r: Row | undefined) => (r ? COUNTERS.map((k) => Number(r[k])) : undefined);

/**
 * One error in both forms: the recorder's line ending in its code (a usage error commander
 * finds: the help to read), and with --log-format json (record) one JSON document.
 */
function recorderRefuses(args: string[], message: RegExp, code: string, cwd?: string): void {
  const run = (extra: string[]) => spawnSync(process.execPath, [RECORDER, ...args, ...extra], { encoding: 'utf8', cwd, timeout: 60_000 });
  const text = run([]);
  assert.equal(text.status, 1, args.join(' '));
  assert.equal(text.stderr.split('\n').length, 2, `one line: ${text.stderr}`);
  const m = /^traffic-counter: error: (.*?)(?: \[(ERR_TC_\w+)\])?\n$/.exec(text.stderr);
  assert.ok(m, text.stderr);
  assert.match(m[1], message);
  assert.equal(m[2], code, text.stderr);
  if (args[0] !== 'record') return;
  const json = run(['--log-format', 'json']);
  assert.equal(json.status, 1);
  const doc = JSON.parse(json.stdout) as { error: { message: string; code: string } };
  assert.deepEqual(Object.keys(doc), ['error']);
  assert.match(doc.error.message, message);
  assert.equal(doc.error.code, code);
}

/** One tc-query error in table and json. */
function queryRefuses(args: string[], message: RegExp, code: string): void {
  const text = query(args);
  assert.equal(text.status, 1, args.join(' '));
  assert.match(text.stderr, /^tc-query: error: .*\n$/);
  assert.match(text.stderr, message);
  const json = query([...args, '--format', 'json']);
  assert.equal(json.status, 1);
  const doc = JSON.parse(json.stdout) as { error: { message: string; code: string } };
  assert.match(doc.error.message, message);
  assert.equal(doc.error.code, code);
}

describe('a replay under a 1 MiB budget: two days whose oldest interval records were shed', () => {
  const dir = tmp();
  const cap = path.join(dir, 'two-days.pcap');
  // 2026-09-21T14:13:20Z to 2026-09-23T14:13:20Z
  generate(cap, { packets: 30_000, hosts: 200, flows: 400, seconds: 172_800 });
  const small = path.join(dir, 'small.db');
  const full = path.join(dir, 'full.db');
  before(() => {
    for (const [db, extra] of [[small, ['--max-db-size', '1MiB']], [full, []]] as const) {
      const r = recorder(['record', '--pcap', cap, '--db', db, '--quiet', ...extra]);
      assert.equal(r.status, 0, r.stderr);
    }
  });

  test('sql: the events table holds a replay\'s events by the time they are about, not when they were written', () => {
    const d = new Database(small, { readonly: true });
    const stored = d.prepare("select kind, start_ms, at_ms from events where kind = 'budget-shed' order by id").all() as { kind: string; start_ms: number; at_ms: number }[];
    d.close();
    assert.ok(stored.length > 0, 'the budget shed detail');
    assert.ok(stored.every((e) => e.at_ms > Date.UTC(2026, 8, 24)), 'written after the capture\'s time');
    const want = stored.map((e) => ({ kind: e.kind, start: new Date(e.start_ms).toISOString() }));
    const sql = (extra: string[]) => queryJson<Row[]>(['--db', small, 'sql', "select kind, start from events where kind = 'budget-shed' order by start", ...extra]);
    // The default window of sql is the whole file.
    assert.deepEqual(sql([]).map((r) => r.kind), want.map((e) => e.kind));
    assert.deepEqual(sql(['--all']).length, want.length);
    const capture = ['--since', '2026-09-21T00:00:00Z', '--until', '2026-09-24T00:00:00Z'];
    assert.deepEqual(sql(capture).length, want.length, 'every shed is about the capture\'s time');
    // The last hour of the wall clock (when they were written) holds none of them.
    assert.deepEqual(sql(['--since', '1h']), []);
    // status lists them by the same rule.
    const st = queryJson<{ events: { kind: string }[] }>(['--db', small, 'status', ...capture]);
    assert.equal(st.events.filter((e) => e.kind === 'budget-shed').length, want.length);
  });

  test('status and the completeness line say which time only coarser totals hold; a window of it is answered', () => {
    const st = queryJson<{ first: string; last: string; intervals: number; coarser: { level: string; from: string; to: string }[] }>(['--db', small, 'status']);
    assert.ok(st.coarser.length > 0, 'the interval records of the first day were shed');
    assert.deepEqual(st.coarser[0], { level: 'ip_1d', from: '2026-09-21T00:00:00Z', to: st.coarser[1]?.from ?? st.first });
    for (let i = 1; i < st.coarser.length; i++) assert.equal(st.coarser[i].from, st.coarser[i - 1].to, 'one part ends where the next begins');
    assert.equal(st.coarser[st.coarser.length - 1].to, st.first, 'up to the first interval record');
    const fullSt = queryJson<{ first: string; coarser: unknown[] }>(['--db', full, 'status']);
    assert.deepEqual(fullSt.coarser, [], 'without a budget every interval record is there');
    assert.ok(Date.parse(st.first) > Date.parse(fullSt.first));

    const table = query(['--db', small, 'status']).stdout;
    const n = st.intervals.toLocaleString('en-US');
    assert.match(table, new RegExp(`\\ncovers {10}2026-09-21T00:00:00Z to ${st.last}, ${n} intervals from ${st.first}; older time only as totals: day totals from 2026-09-21T00:00:00Z.* \\(interval records removed by retention or the disk budget\\)\\n`));
    assert.match(query(['--db', small, 'status', '--format', 'csv']).stdout, /\ncoarser_from,2026-09-21T00:00:00Z\n/);
    const top = query(['--db', small, 'top', '--all']);
    assert.match(top.stdout, new RegExp(`\\nday totals from 2026-09-21T00:00:00Z, .*then ${n} intervals ${st.first} to ${st.last}, 0 gaps\\n$`));

    // The first day, whose intervals' records are gone: answered from its day totals, exactly.
    const day = ['--since', '2026-09-21', '--until', '2026-09-22'];
    const r = query(['--db', small, 'top', ...day, '--limit', '0']);
    assert.equal(r.status, 0);
    assert.doesNotMatch(r.stderr, /no interval/);
    assert.match(r.stdout, /\nday totals from 2026-09-21T00:00:00Z to 2026-09-22T00:00:00Z, no interval records \(removed by retention or the disk budget\)\n$/);
    const answer = (db: string, cmd: string[]) => sums(queryJson<Row[]>(['--db', db, ...cmd, ...day, '--limit', '0']));
    assert.deepEqual(answer(small, ['top']), answer(full, ['top']));
    const series = (db: string) => queryJson<{ bytes: number }[]>(['--db', db, 'series', ...day, '--step', '1d']).map((s) => Number(s.bytes));
    assert.deepEqual(series(small), series(full));
    assert.ok(series(small)[0] > 0);
  });
});

describe('top --by label|asn|net: the overflow row apart from the addresses without a key', () => {
  const dir = tmp();
  const db = path.join(dir, 'folded.db');
  const labels = path.join(dir, 'labels.txt');
  const asn = path.join(dir, 'asn.tsv');
  before(() => {
    const cap = path.join(dir, 'g.pcap');
    generate(cap, { packets: 20_000, hosts: 300, flows: 900, seconds: 20 });
    // 300 remote hosts and 4 local ones, at most 50 per interval: the rest fold into the overflow row.
    const r = recorder(['record', '--pcap', cap, '--db', db, '--quiet', '--max-keys', '50']);
    assert.equal(r.status, 0, r.stderr);
    writeFileSync(labels, '10.1.0.0/24 first\n192.168.0.0/30 local\n');
    writeFileSync(asn, '10.1.0.0\t10.1.0.255\t64500\tZZ\tFIRST-NET\n192.168.0.0\t192.168.0.3\t64501\tZZ\tLOCAL-NET\n');
  });

  test('label, asn and net: one row named overflow, equal to the overflow address; the null row holds only unmatched addresses', () => {
    const ips = queryJson<Row[]>(['--db', db, 'top', '--all', '--limit', '0', '--labels', labels, '--asn', asn]);
    const overflow = ips.find((r) => r.ip === 'overflow');
    assert.ok(overflow, 'the file has an overflow row');
    const rest = ips.filter((r) => r.ip !== 'overflow');
    const byLabel = queryJson<Row[]>(['--db', db, 'top', '--all', '--limit', '0', '--labels', labels, '--by', 'label']);
    assert.deepEqual(counters(byLabel.find((r) => r.label === 'overflow')), counters(overflow));
    assert.deepEqual(counters(byLabel.find((r) => r.label === null)), sums(rest.filter((r) => r.label === null)));
    assert.deepEqual(sums(byLabel), sums(ips), 'totals balance');
    const byAsn = queryJson<Row[]>(['--db', db, 'top', '--all', '--limit', '0', '--asn', asn, '--by', 'asn']);
    const asnOverflow = byAsn.filter((r) => r.as_name === 'overflow');
    assert.deepEqual(asnOverflow.map((r) => [r.asn, r.country]), [[null, null]]);
    assert.deepEqual(counters(asnOverflow[0]), counters(overflow));
    assert.deepEqual(counters(byAsn.find((r) => r.asn === null && r.as_name === null)), sums(rest.filter((r) => r.asn === null)));
    assert.deepEqual(sums(byAsn), sums(ips));
    const byNet = queryJson<Row[]>(['--db', db, 'top', '--all', '--limit', '0', '--by', 'net']);
    assert.deepEqual(counters(byNet.find((r) => r.net === 'overflow')), counters(overflow));
    // The table names both rows.
    const t = query(['--db', db, 'top', '--all', '--limit', '0', '--labels', labels, '--by', 'label']).stdout;
    assert.match(t, /│ overflow +│/);
    assert.match(t, /│ \(no label\) +│/);
    const a = query(['--db', db, 'top', '--all', '--limit', '0', '--asn', asn, '--by', 'asn']).stdout;
    assert.match(a, /│ +│ overflow +│ +│/);
    assert.match(a, /│ \(no AS\) +│/);
  });

  test('a label file cannot name a network "overflow"', () => {
    const bad = path.join(dir, 'bad.txt');
    writeFileSync(bad, '10.1.0.0/24 first\n10.2.0.0/16 overflow\n');
    queryRefuses(['--db', db, '--labels', bad, 'top', '--all', '--by', 'label'], /bad\.txt:2: the label "overflow" names the row of addresses folded past --max-keys or by the disk budget; give this network another label/, 'ERR_TC_LABELS');
  });
});

test('--config: a bad --max-db-size names the file and the key; an unknown key names the nearest known ones', () => {
  const dir = tmp();
  const db = path.join(dir, 'c.db');
  const cfg = path.join(dir, 'c.json');
  const cases: [string, RegExp][] = [
    ['{"max-db-size": "lots"}', /^--config \S+c\.json: "max-db-size": "lots" is not a size: expected a whole number of bytes/],
    ['{"max-db-size": "100"}', /^--config \S+c\.json: "max-db-size": 100 is below 1\.00 MiB/],
    ['{"max-db-sise": "1GiB"}', /^--config \S+c\.json: "max-db-sise": unknown option; did you mean "max-db-size"\? \(the keys are the long options of `traffic-counter record --help`\)$/],
    ['{"flow": true}', /: "flow": unknown option; did you mean "flows"\?/],
    ['{"retian-days": "1d"}', /: "retian-days": unknown option; did you mean "retain-days"\?/],
    ['{"colour": "blue"}', /: "colour": unknown option \(the keys are/],
    ['{"config": "other.json"}', /: "config": a config file cannot name another one/],
  ];
  for (const [text, message] of cases) {
    writeFileSync(cfg, text);
    recorderRefuses(['record', '--pcap', SMTP, '--db', db, '--quiet', '--config', cfg], message, 'ERR_TC_CONFIG');
  }
  recorderRefuses(['record', '--pcap', SMTP, '--db', db, '--config', path.join(dir, 'none.json')], /cannot read it \(no such file\); check the path, or drop --config/, 'ERR_TC_CONFIG');
  recorderRefuses(['record', '--pcap', SMTP, '--db', db, '--config', dir], /cannot read it \(a directory\); check the path/, 'ERR_TC_CONFIG');
  // Commander's own usage errors are one JSON document with --log-format json too.
  recorderRefuses(['record', '--pcap', SMTP, '--db', db, '--interval-secs', 'abc'], /'--interval-secs <n>' argument 'abc' is invalid.*; see `traffic-counter record --help`/, 'ERR_TC_USAGE');
  // A good size from the file is taken.
  writeFileSync(cfg, '{"max-db-size": "2MiB"}');
  assert.equal(recorder(['record', '--pcap', SMTP, '--db', db, '--quiet', '--config', cfg]).status, 0);
  assert.equal(queryJson<{ budget: { max_db_size: number } }>(['--db', db, 'status']).budget.max_db_size, 2 * 2 ** 20);
});

test('record: a missing, directory or wrong --pcap, CIDR file or --db folder says what to do; nothing is written', () => {
  const dir = tmp();
  const db = path.join(dir, 'r.db');
  recorderRefuses(['record', '--pcap', 'missing.pcap', '--db', db], new RegExp(`^cannot open capture file missing\\.pcap: it does not exist \\(relative to ${dir}\\); check the path given to --pcap$`), 'ERR_TC_OPEN', dir);
  recorderRefuses(['record', '--pcap', dir, '--db', db], new RegExp(`^${dir} is a directory, not a capture file; give the files in it \\(--pcap ${dir}/\\*\\.pcap\\)$`), 'ERR_TC_NOT_A_CAPTURE');
  const notes = path.join(dir, 'notes.pcap');
  writeFileSync(notes, 'this is not a capture file\n');
  recorderRefuses(['record', '--pcap', notes, '--db', db], /notes\.pcap is not a pcap or pcapng capture file \(.*\); give --pcap a pcap or pcapng file \(as tcpdump -w or dumpcap write them\)$/, 'ERR_TC_NOT_A_CAPTURE');
  recorderRefuses(['record', '--pcap', SMTP, '--ignore-file', path.join(dir, 'none.txt'), '--db', db], /^cannot open CIDR file \S+none\.txt: it does not exist; check the path given to --ignore-file$/, 'ERR_TC_CIDR_FILE');
  recorderRefuses(['record', '--pcap', SMTP, '--accept-source-file', dir, '--db', db], /is a directory, not a CIDR file; give the file in it \(--accept-source-file /, 'ERR_TC_CIDR_FILE');
  recorderRefuses(['record', '--pcap', SMTP, '--db', path.join(dir, 'no', 'r.db')], /does not exist; create it first \(mkdir -p \S+\/no\), or give --db a file in a folder that exists$/, 'ERR_TC_OPEN_DB');
  recorderRefuses(['rebuild', '--db', path.join(dir, 'none.db')], /^database \S+none\.db does not exist; give the file the recorder writes \(--db FILE, or TC_DB\)$/, 'ERR_TC_NO_DATABASE');
  // A --db that is another program's file is never written.
  const pcapAsDb = path.join(dir, 'copy.pcap');
  copyFileSync(SMTP, pcapAsDb);
  chmodSync(pcapAsDb, 0o644);
  recorderRefuses(['record', '--pcap', SMTP, '--db', pcapAsDb], /copy\.pcap is not a SQLite database \(.*\); the recorder never writes into another file: record into a new --db$/, 'ERR_TC_NOT_A_DATABASE');
  const foreign = path.join(dir, 'foreign.db');
  const f = new Database(foreign);
  f.exec('create table t (x)');
  f.close();
  recorderRefuses(['record', '--pcap', SMTP, '--db', foreign], /foreign\.db is a SQLite database but not a traffic-counter database \(application_id 0\); the recorder never writes into another file/, 'ERR_TC_NOT_A_DATABASE');
  assert.equal(existsSync(db), false, 'nothing recorded');
});

test('record: a --db whose write lock another program holds says so and what to do; nothing is written', () => {
  const db = path.join(tmp(), 'r.db');
  assert.equal(recorder(['record', '--pcap', SMTP, '--db', db, '--quiet']).status, 0);
  const holder = new Database(db);
  try {
    holder.exec('begin immediate');
    recorderRefuses(['record', '--pcap', path.join(pcapsDir(), 'zeek_wikipedia.pcap'), '--db', db], /^cannot prepare database \S+r\.db for writing: database is locked; another program holds its write lock \(an open transaction, e\.g\. in a sqlite3 shell\): end that, then start again$/, 'ERR_TC_OPEN_DB');
  } finally {
    holder.exec('rollback');
    holder.close();
  }
  const check = new Database(db, { readonly: true });
  assert.equal(check.prepare('select count(*) from sessions').pluck().get(), 1, 'only the first replay is recorded');
  check.close();
});

test('record: a capture this user cannot read says so and what to do', (t: TestContext) => {
  if (!needRoot(t)) return;
  const dir = tmp();
  chmodSync(dir, 0o755);
  const secret = path.join(dir, 'secret.pcap');
  copyFileSync(SMTP, secret);
  chmodSync(secret, 0o600);
  const out = path.join(dir, 'out');
  mkdirSync(out);
  chmodSync(out, 0o777);
  const r = spawnSync(process.execPath, [RECORDER, 'record', '--pcap', secret, '--db', path.join(out, 'r.db')], { encoding: 'utf8', uid: 65534, gid: 65534, timeout: 60_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^traffic-counter: error: cannot open capture file \S+secret\.pcap: permission denied \(owner root, mode 0600\): this user cannot read it; make it readable for this user \(chmod a\+r \S+secret\.pcap\), or run as one who can read it \[ERR_TC_OPEN\]\n$/);
});

test('tc-query: a --db that is not a traffic-counter database says what to pass instead, in table and json', () => {
  const dir = tmp();
  queryRefuses(['--db', SMTP, 'status'], /zeek_smtp\.pcap is not a SQLite database; pass a file that `traffic-counter record` wrote \(--db FILE, or TC_DB\)/, 'ERR_TC_NOT_A_DATABASE');
  const foreign = path.join(dir, 'foreign.db');
  const f = new Database(foreign);
  f.exec('create table t (x)');
  f.close();
  queryRefuses(['--db', foreign, 'top'], /is a SQLite database but not a traffic-counter database \(application_id 0\); pass a file that `traffic-counter record` wrote/, 'ERR_TC_NOT_A_DATABASE');
  queryRefuses(['--db', path.join(dir, 'none.db'), 'status'], /none\.db does not exist \(record into it with `traffic-counter record --db \S+`, or pass --db \/ TC_DB\)/, 'ERR_TC_NO_DATABASE');
  queryRefuses(['--db', dir, 'status'], /is a directory, not a database file \(pass the file: --db \S+traffic\.db\)/, 'ERR_TC_OPEN_DB');
});

test('tc-query: an unknown sql table names the documented ones; --until alone reads a whole-file command from the start', () => {
  const db = path.join(tmp(), 's.db');
  assert.equal(recorder(['record', '--pcap', SMTP, '--db', db, '--quiet']).status, 0);
  queryRefuses(['--db', db, 'sql', 'select * from event'], /^(tc-query: error: )?sql: there is no table event; did you mean events\? \(the tables are intervals, ip_deltas, flow_deltas, ip_1m, ip_1h, ip_1d, flow_1m, flow_1h, events[^)]*\)\n?$/, 'ERR_TC_SQL_TABLE');
  queryRefuses(['--db', db, 'sql', 'select * from foo'], /sql: there is no table foo \(the tables are /, 'ERR_TC_SQL_TABLE');
  // A CTE is no table of the file: DuckDB answers it.
  assert.deepEqual(queryJson<Row[]>(['--db', db, 'sql', 'with x as (select 1 as one) select * from x']), [{ one: 1 }]);
  // status, sql and export default to the whole file: --until alone starts there (zeek_smtp: 3 intervals on 2009-10-05).
  assert.equal(queryJson<{ intervals: number }>(['--db', db, 'status', '--until', '2009-10-06']).intervals, 3);
  assert.deepEqual(queryJson<Row[]>(['--db', db, 'sql', 'select count(*)::int as n from intervals', '--until', '2009-10-06']), [{ n: 3 }]);
  // top's default --since is an hour ago: an --until before it says so.
  queryRefuses(['--db', db, 'top', '--until', '2h'], /--until must be later than --since \(here its default, 1h before now\); give --since too/, 'ERR_TC_USAGE');
});
