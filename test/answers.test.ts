/**
 * tc-query answers that explain themselves, through the built CLI: --all is the recorded span,
 * empty windows and flow-less files say what to do, series too long are refused before
 * reading, --limit says what it cut, the completeness line speaks only of what exists, and time
 * zones (ISO offsets, local calendar days of 23 and 25 hours, half-hour offsets).
 */
import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { pcapsDir, query, queryJson, QUERY, recordGenerated, recorder, tmp } from './helpers';

const P = (f: string) => path.join(pcapsDir(), f);
let alexa = '';
let smtp = '';

before(() => {
  const dir = tmp();
  alexa = path.join(dir, 'alexa.db');
  smtp = path.join(dir, 'smtp.db');
  for (const [db, cap] of [[alexa, 'ndpi_alexa-app.pcapng'], [smtp, 'zeek_smtp.pcap']]) {
    const r = recorder(['record', '--pcap', P(cap), '--db', db, '--quiet']);
    assert.equal(r.status, 0, r.stderr);
  }
});

type SeriesRow = { start: string; end: string; packets: number; bytes: number };

test('--all is the first to the last recorded interval, not whole UTC days', () => {
  // ndpi_alexa-app.pcapng: 35 intervals of 5 s, 2017-03-31T16:00:20Z to 16:03:20Z.
  const rows = queryJson<SeriesRow[]>(['--db', alexa, 'series', '--all', '--step', '5s']);
  assert.equal(rows.length, 36);
  assert.equal(rows[0].start, '2017-03-31T16:00:20Z');
  assert.equal(rows.at(-1)!.end, '2017-03-31T16:03:20Z');
  const total = queryJson<{ tx_bytes: number }[]>(['--db', alexa, 'top', '--all', '--limit', '0']).reduce((s, r) => s + r.tx_bytes, 0);
  assert.equal(rows.reduce((s, r) => s + r.bytes, 0), total);
  const s = queryJson<{ window: { from: string; to: string } }>(['--db', alexa, 'status']);
  assert.deepEqual(s.window, { from: '2017-03-31T16:00:20Z', to: '2017-03-31T16:03:20Z' });
});

test('a series with no data prints no table, only the completeness line', () => {
  const r = query(['--db', alexa, 'series', '--all', '--ip', '203.0.113.9', '--step', '1m']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '35 intervals 2017-03-31T16:00:20Z to 2017-03-31T16:03:20Z, 0 gaps\n');
});

test('a window without intervals says what the file covers and what to type; json still prints []', () => {
  const note = /^tc-query: no intervals in this window \(.*\); the file covers 2017-03-31T16:00:20Z to 2017-03-31T16:03:20Z; try --all\n$/;
  for (const cmd of [['top'], ['series'], ['top', '--since', '2020-01-01', '--until', '2020-01-02']]) {
    const t = query(['--db', alexa, ...cmd]);
    assert.equal(t.status, 0, t.stderr);
    assert.equal(t.stdout, '', cmd.join(' '));
    assert.match(t.stderr, note, cmd.join(' '));
    const j = query(['--db', alexa, ...cmd, '--format', 'json']);
    assert.equal(j.status, 0);
    assert.equal(j.stdout, '[]\n');
    assert.match(j.stderr, note);
  }
});

test('a window inside the recorded span that no interval starts in says so; an empty export says what the file covers', () => {
  // 16:00:21 to 16:00:24 lies inside the interval of 16:00:20, which belongs to the window its start lies in.
  const t = query(['--db', alexa, 'top', '--since', '2017-03-31T16:00:21Z', '--until', '2017-03-31T16:00:24Z']);
  assert.equal(t.status, 0, t.stderr);
  assert.equal(t.stdout, '');
  assert.match(t.stderr, /^tc-query: no interval starts in this window \(.*; an interval belongs to the window its start lies in\); the file covers 2017-03-31T16:00:20Z to 2017-03-31T16:03:20Z; widen the window, or try --all\n$/);
  const out = path.join(tmp(), 'none.csv');
  const e = query(['--db', alexa, 'export', '--since', '2020-01-01', '--until', '2020-01-02', '--out', out]);
  assert.equal(e.status, 0, e.stderr);
  assert.match(e.stderr, /^tc-query: no intervals in this window \(.*\); the file covers 2017-03-31T16:00:20Z to 2017-03-31T16:03:20Z; try --all\ntc-query: exported 0 rows to /);
});

test('flow answers on a file recorded without --flows say so instead of an empty table', () => {
  const note = /^tc-query: the file was recorded without --flows in this window \(none of its 35 intervals has flow rows\): flows, --by flow, --proto and --port need `traffic-counter record --flows`\n$/;
  for (const cmd of [['flows', '--ip', '172.16.42.216'], ['top', '--by', 'flow'], ['top', '--proto', 'tcp'], ['top', '--port', '443']]) {
    const t = query(['--db', alexa, ...cmd, '--all']);
    assert.equal(t.status, 0, t.stderr);
    assert.equal(t.stdout, '', cmd.join(' '));
    assert.match(t.stderr, note, cmd.join(' '));
    const j = query(['--db', alexa, ...cmd, '--all', '--format', 'json']);
    assert.equal(j.stdout, '[]\n');
    assert.match(j.stderr, note);
  }
});

test('a series that would make too many rows is refused before reading, naming a step that fits', () => {
  // zeek_smtp.pcap holds 2009-10-05 and 2015-07-25: six years of minutes.
  for (const format of ['table', 'json']) {
    const r = query(['--db', smtp, 'series', '--all', '--step', '1m', '--format', format]);
    assert.equal(r.status, 1);
    const msg = format === 'json' ? (JSON.parse(r.stdout) as { error: { message: string } }).error.message : r.stderr;
    assert.match(msg, /--step 1m over 2009-10-05T06:06:05Z to 2015-07-25T13:43:25Z would make 3,051,818 rows \(at most 100,000 rows\): use --step 1h \(50,864 rows\)/);
  }
  const fits = spawnSync(process.execPath, [QUERY, '--db', smtp, 'series', '--all', '--step', '1h', '--format', 'csv'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(fits.status, 0, fits.stderr);
  assert.equal(fits.stdout.split('\n').length, 1 + 50_864 + 1);
  // A step the intervals do not divide, over those six years: the step it names fits the rows too.
  const odd = query(['--db', smtp, 'series', '--all', '--step', '7s']);
  assert.equal(odd.status, 1);
  const named = /use --step (\w+)/.exec(odd.stderr)?.[1];
  assert.equal(named, '1h', odd.stderr);
  assert.equal(spawnSync(process.execPath, [QUERY, '--db', smtp, 'series', '--all', '--step', named!, '--format', 'csv'], { encoding: 'utf8', maxBuffer: 1 << 26 }).status, 0);
});

test('a table cut by --limit says how many rows there were; replayed data speaks of no kernel drops', () => {
  const r = query(['--db', alexa, 'top', '--all', '--limit', '3']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /\n3 of 34 addresses \(--limit 0 for all\)\n35 intervals 2017-03-31T16:00:20Z to 2017-03-31T16:03:20Z, 0 gaps\n$/);
  assert.doesNotMatch(r.stdout, /kernel/);
  assert.doesNotMatch(query(['--db', alexa, 'top', '--all', '--limit', '0']).stdout, / of \d+ addresses/);
  // One interval: singular.
  const one = query(['--db', smtp, 'top', '--since', '2009-10-05T06:06:05Z', '--until', '2009-10-05T06:06:10Z']);
  assert.match(one.stdout, /\n1 interval 2009-10-05T06:06:05Z to 2009-10-05T06:06:10Z, 0 gaps\n$/);
});

test('status shows the last 5 of more sessions and no kernel counters for replays', () => {
  const db = path.join(tmp(), 'many.db');
  const caps = ['zeek_smtp.pcap', 'ndpi_gnutella.pcap', 'zeek_wikipedia.pcap', 'tcpreplay_test.pcap', 'zeek_vxlan.pcap', 'ndpi_ocs_raw.pcap'];
  for (const c of caps) assert.equal(recorder(['record', '--pcap', P(c), '--db', db, '--quiet']).status, 0);
  const s = query(['--db', db, 'status']);
  assert.equal(s.status, 0, s.stderr);
  assert.match(s.stdout, /sessions {8}6 \(showing the last 5 of 6 sessions\)\n/);
  assert.match(s.stdout, /kernel {10}no kernel counters \(replayed captures only\)/);
  assert.doesNotMatch(query(['--db', smtp, 'status']).stdout, /showing the last/);
});

test('--tz: ISO offsets for IANA zones, fixed offsets and local (TZ); json stays UTC', () => {
  const covers = (args: string[], env?: NodeJS.ProcessEnv) => {
    const r = query(['--db', smtp, 'status', ...args], { env });
    assert.equal(r.status, 0, r.stderr);
    return /covers {10}(.*), 7 intervals/.exec(r.stdout)![1];
  };
  assert.equal(covers([]), '2009-10-05T06:06:05Z to 2015-07-25T13:43:25Z');
  assert.equal(covers(['--tz', 'Asia/Tokyo']), '2009-10-05T15:06:05+09:00 to 2015-07-25T22:43:25+09:00');
  assert.equal(covers(['--tz', '+05:30']), '2009-10-05T11:36:05+05:30 to 2015-07-25T19:13:25+05:30');
  assert.equal(covers(['--tz', '-0530']), '2009-10-05T00:36:05-05:30 to 2015-07-25T08:13:25-05:30');
  assert.equal(covers(['--tz', 'local'], { TZ: 'Asia/Kolkata' }), '2009-10-05T11:36:05+05:30 to 2015-07-25T19:13:25+05:30');
  assert.equal(covers(['--tz', 'Europe/Berlin', '--utc']), '2009-10-05T06:06:05Z to 2015-07-25T13:43:25Z');
  // TZ alone changes nothing: storage and the default display are UTC.
  assert.equal(covers([], { TZ: 'Asia/Kolkata' }), '2009-10-05T06:06:05Z to 2015-07-25T13:43:25Z');
  assert.equal(queryJson<{ first: string }>(['--db', smtp, 'status', '--tz', 'Asia/Tokyo']).first, '2009-10-05T06:06:05Z');
});

/** Bytes (each packet once: its source side) of the intervals starting in [from, to), from the raw log. */
function rawBytes(db: string, from: number, to: number): number {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare('select coalesce(sum(x.tx_bytes), 0) from batches b join ip_deltas x on x.batch_id = b.id where b.start_ms >= ? and b.start_ms < ?').pluck().get(from, to) as number;
  } finally {
    d.close();
  }
}

test('series --step 1d --tz follows the local calendar: daylight-saving days of 23 and 25 hours', () => {
  const H = 3_600_000;
  // Berlin: 2026-03-29 has 23 hours (CET to CEST), 2026-10-25 has 25 (CEST to CET).
  for (const [start, since, until, day, hours] of [
    ['2026-03-27T12:00:00Z', '2026-03-28T00:00:00+01:00', '2026-03-31T00:00:00+02:00', '2026-03-29', 23],
    ['2026-10-23T12:00:00Z', '2026-10-24T00:00:00+02:00', '2026-10-27T00:00:00+01:00', '2026-10-25', 25],
  ] as const) {
    const db = recordGenerated({ packets: 30_000, hosts: 40, flows: 80, seconds: 4 * 86_400, startSecs: Date.parse(start) / 1000 }, 60);
    const args = ['--db', db, 'series', '--since', since, '--until', until, '--step', '1d', '--tz', 'Europe/Berlin'];
    const rows = queryJson<SeriesRow[]>(args);
    assert.deepEqual(rows.map((r) => (Date.parse(r.end) - Date.parse(r.start)) / H), [24, hours, 24]);
    assert.equal(rows[0].start, new Date(Date.parse(since)).toISOString().replace('.000Z', 'Z'));
    for (const r of rows) assert.equal(r.bytes, rawBytes(db, Date.parse(r.start), Date.parse(r.end)), `${r.start} to ${r.end}`);
    const dst = rows[1];
    assert.match(query(args).stdout, new RegExp(`│ ${day}T00:00:00\\+0[12]:00 `));
    // Hours around the change: 23 or 25 of them that day, each equal to the raw log.
    const dayStart = Date.parse(dst.start);
    const hoursRows = queryJson<SeriesRow[]>(['--db', db, 'series', '--since', String(dayStart / 1000), '--until', String(Date.parse(dst.end) / 1000), '--step', '1h', '--tz', 'Europe/Berlin']);
    assert.equal(hoursRows.length, hours);
    for (const r of hoursRows) assert.equal(r.bytes, rawBytes(db, Date.parse(r.start), Date.parse(r.end)));
  }
});

test('series --step 1h --tz Asia/Kolkata: hours start at half past in UTC, from the minute rollups', () => {
  const start = Date.parse('2026-03-27T12:00:00Z');
  const db = recordGenerated({ packets: 20_000, hosts: 40, flows: 80, seconds: 86_400, startSecs: start / 1000 }, 60);
  // 13:30Z is 19:00 in India (+05:30).
  const since = String(start / 1000 + 5400);
  const rows = queryJson<SeriesRow[]>(['--db', db, 'series', '--since', since, '--until', String(Number(since) + 10 * 3600), '--step', '1h', '--tz', 'Asia/Kolkata']);
  assert.equal(rows.length, 10);
  for (const r of rows) {
    assert.match(r.start, /:30:00Z$/);
    assert.equal(r.bytes, rawBytes(db, Date.parse(r.start), Date.parse(r.end)), r.start);
  }
  const table = query(['--db', db, 'series', '--since', since, '--until', String(Number(since) + 2 * 3600), '--step', '1h', '--tz', 'Asia/Kolkata']);
  assert.match(table.stdout, /│ 2026-03-27T19:00:00\+05:30 .*\n│ 2026-03-27T20:00:00\+05:30 /);
});
