/**
 * End-to-end CLI behaviour on bad input and the query contract: clear errors, non-zero exits,
 * nothing half-written, one JSON document also on error.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { pcapsDir, query, queryJson, recorder, tmp } from './helpers';

const SMTP = path.join(pcapsDir(), 'zeek_smtp.pcap');

/** Number of complete records in a little-endian pcap file cut short. */
function completeRecords(buf: Buffer): number {
  let off = 24;
  let n = 0;
  while (off + 16 <= buf.length) {
    const caplen = buf.readUInt32LE(off + 8);
    if (off + 16 + caplen > buf.length) break;
    off += 16 + caplen;
    n++;
  }
  return n;
}

function frames(db: string): number {
  const d = new Database(db, { readonly: true });
  try {
    return (d.prepare('select coalesce(sum(frames), 0) as n from batches').get() as { n: number }).n;
  } finally {
    d.close();
  }
}

test('a file that is not a capture: error naming it, non-zero exit, nothing recorded', () => {
  const dir = tmp();
  const bogus = path.join(dir, 'notes.pcap');
  writeFileSync(bogus, 'this is not a capture file\n');
  const db = path.join(dir, 't.db');
  const r = recorder(['record', '--pcap', SMTP, bogus, '--db', db, '--quiet']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /notes\.pcap is not a pcap or pcapng capture file/);
  assert.equal(existsSync(db), false);
  const empty = path.join(dir, 'empty.pcap');
  writeFileSync(empty, '');
  const r2 = recorder(['record', '--pcap', empty, '--db', db, '--quiet']);
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, /empty\.pcap is not a pcap or pcapng capture file \(only 0 bytes long\)/);
  const r3 = recorder(['record', '--pcap', path.join(dir, 'missing.pcap'), '--db', db, '--quiet']);
  assert.equal(r3.status, 1);
  assert.match(r3.stderr, /cannot open capture file .*missing\.pcap/);
  assert.equal(existsSync(db), false);
});

test('a capture cut mid-record: everything before the cut is recorded, with a warning', () => {
  const dir = tmp();
  const full = readFileSync(SMTP);
  const cut = full.subarray(0, 9000);
  const file = path.join(dir, 'cut.pcap');
  writeFileSync(file, cut);
  const db = path.join(dir, 't.db');
  const r = recorder(['record', '--pcap', file, '--db', db, '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /cut\.pcap ends early \(a record is cut short at byte \d+\); the \d+ frames before that point were recorded/);
  const n = completeRecords(cut);
  assert.ok(n > 0 && n < 125);
  assert.equal(frames(db), n);
});

test('a bad CIDR line: error naming file and line, nothing recorded', () => {
  const dir = tmp();
  const ignore = path.join(dir, 'ignore.txt');
  writeFileSync(ignore, '# ok\n10.0.0.0/8\n10.1.2.3/40\n');
  const db = path.join(dir, 't.db');
  const r = recorder(['record', '--pcap', SMTP, '--ignore-file', ignore, '--db', db]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /ignore\.txt:3: "10\.1\.2\.3\/40" is not an IPv4 or IPv6 address or CIDR/);
  assert.equal(existsSync(db), false);
});

test('replay applies --ignore-file and --accept-source-file in userspace', () => {
  const dir = tmp();
  const ignore = path.join(dir, 'ignore.txt');
  writeFileSync(ignore, '74.53.140.153\n');
  const db = path.join(dir, 't.db');
  assert.equal(recorder(['record', '--pcap', SMTP, '--ignore-file', ignore, '--db', db, '--quiet']).status, 0);
  const ips = queryJson<{ ip: string }[]>(['--db', db, 'top', '--all', '--limit', '0']);
  assert.ok(!ips.some((r) => r.ip === '74.53.140.153'));
  const accept = path.join(dir, 'accept.txt');
  writeFileSync(accept, '10.10.1.0/24\n');
  const db2 = path.join(dir, 't2.db');
  assert.equal(recorder(['record', '--pcap', SMTP, '--accept-source-file', accept, '--db', db2, '--quiet']).status, 0);
  const rows = queryJson<{ ip: string; tx_packets: number }[]>(['--db', db2, 'top', '--all', '--limit', '0']);
  for (const r of rows) if (!r.ip.startsWith('10.10.1.')) assert.equal(r.tx_packets, 0, `${r.ip} sent nothing counted`);
});

test('replaying the same capture twice does not double count', () => {
  const db = path.join(tmp(), 't.db');
  assert.equal(recorder(['record', '--pcap', SMTP, '--db', db, '--quiet']).status, 0);
  const once = queryJson(['--db', db, 'top', '--all', '--limit', '0']);
  const r = recorder(['record', '--pcap', SMTP, '--db', db]);
  assert.equal(r.status, 0);
  assert.match(r.stderr, /zeek_smtp\.pcap is already recorded in .* as session 1 .*; skipped, nothing counted twice/);
  assert.match(r.stderr, /0 intervals written/);
  assert.deepEqual(queryJson(['--db', db, 'top', '--all', '--limit', '0']), once);
});

test('tc-query: windows by ISO time and epoch seconds, --limit, csv and table output', () => {
  const db = path.join(tmp(), 't.db');
  assert.equal(recorder(['record', '--pcap', SMTP, '--db', db, '--quiet', '--flows']).status, 0);
  // zeek_smtp.pcap has 55 packets in 2009-10-05 and 70 in 2015-07-25.
  const pk = (rows: { packets: number }[]) => rows.reduce((a, r) => a + r.packets, 0) / 2;
  assert.equal(pk(queryJson(['--db', db, 'top', '--since', '2009-10-05T00:00:00Z', '--until', '2009-10-06', '--limit', '0'])), 60);
  assert.equal(pk(queryJson(['--db', db, 'top', '--since', '1437782400', '--until', '1437868800', '--limit', '0'])), 65);
  assert.equal(queryJson(['--db', db, 'top', '--all', '--limit', '2']).length, 2);
  const csv = query(['--db', db, 'top', '--all', '--by', 'flow', '--limit', '1', '--format', 'csv']);
  assert.equal(csv.status, 0);
  // The capture's DNS answer named the mail server.
  assert.equal(csv.stdout, 'src,dst,proto,sport,dport,packets,bytes,src_name,dst_name\n10.10.1.4,74.53.140.153,6,1470,25,28,21673,,mail.patriots.in\n');
  const table = query(['--db', db, 'top', '--all', '--limit', '3']);
  assert.equal(table.status, 0);
  assert.match(table.stdout, /10\.10\.1\.4 .* 25\.1 KiB/);
  assert.match(table.stdout, /7 intervals 2009-10-05T06:06:05Z to 2015-07-25T13:43:25Z, 0 gaps\n$/);
  const bad = query(['--db', db, 'top', '--since', 'yesterday-ish', '--format', 'json']);
  assert.equal(bad.status, 1);
  assert.equal(JSON.parse(bad.stdout).error.code, 'ERR_TC_USAGE');
});

test('tc-query: --format before the command is that command\'s --format; a misspelt command is still named', () => {
  const db = path.join(tmp(), 't.db');
  assert.equal(recorder(['record', '--pcap', SMTP, '--db', db, '--quiet']).status, 0);
  const after = query(['--db', db, 'top', '--all', '--limit', '3', '--format', 'json']);
  assert.equal(after.status, 0, after.stderr);
  for (const args of [['--format', 'json', '--db', db], ['--db', db, '--format=json']]) {
    const before = query([...args, 'top', '--all', '--limit', '3']);
    assert.equal(before.status, 0, before.stderr);
    assert.equal(before.stdout, after.stdout);
  }
  const csv = query(['--db', db, '--format', 'csv', 'top', '--all', '--limit', '1']);
  assert.match(csv.stdout, /^ip,tx_packets,/);
  const typo = query(['--db', db, '--format', 'json', 'topp', '--all']);
  assert.equal(typo.status, 1);
  assert.match(JSON.parse(typo.stdout).error.message, /unknown command 'topp' \(Did you mean top\?\)/);
  const bad = query(['--db', db, '--format', 'xml', 'top', '--all']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--format <fmt>' argument 'xml' is invalid/);
});

test('tc-query: missing file, foreign file, newer schema: clear message, non-zero exit, file untouched', () => {
  const dir = tmp();
  const missing = query(['--db', path.join(dir, 'none.db'), 'top']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /none\.db does not exist/);
  const json = query(['--db', path.join(dir, 'none.db'), 'top', '--format', 'json']);
  assert.equal(json.status, 1);
  assert.deepEqual(Object.keys(JSON.parse(json.stdout)), ['error']);
  assert.equal(JSON.parse(json.stdout).error.code, 'ERR_TC_NO_DATABASE');

  const foreign = path.join(dir, 'foreign.db');
  const f = new Database(foreign);
  f.exec('create table t (x)');
  f.close();
  const r = query(['--db', foreign, 'top']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /not a traffic-counter database/);
  const text = path.join(dir, 'text.db');
  writeFileSync(text, 'hello, this is text and not SQLite at all, long enough to have a header......................................................');
  assert.match(query(['--db', text, 'top']).stderr, /is not a SQLite database|not a traffic-counter database/);

  const db = path.join(dir, 'newer.db');
  assert.equal(recorder(['record', '--pcap', SMTP, '--db', db, '--quiet']).status, 0);
  const d = new Database(db);
  d.pragma('journal_mode = DELETE');
  d.pragma('user_version = 99');
  d.close();
  const before = createHash('sha256').update(readFileSync(db)).digest('hex');
  const q = query(['--db', db, 'top', '--all']);
  assert.equal(q.status, 1);
  assert.match(q.stderr, /written by a newer traffic-counter \(schema version 99/);
  const w = recorder(['record', '--pcap', SMTP, '--db', db, '--quiet']);
  assert.equal(w.status, 1);
  assert.match(w.stderr, /written by a newer traffic-counter/);
  assert.equal(createHash('sha256').update(readFileSync(db)).digest('hex'), before, 'never altered');
});

test('tc-query reads a copied database and never changes it', () => {
  const dir = tmp();
  const db = path.join(dir, 't.db');
  assert.equal(recorder(['record', '--pcap', SMTP, '--db', db, '--quiet']).status, 0);
  const copy = path.join(dir, 'copy.db');
  copyFileSync(db, copy);
  const before = createHash('sha256').update(readFileSync(copy)).digest('hex');
  assert.equal(queryJson(['--db', copy, 'top', '--all']).length, 12);
  assert.equal(createHash('sha256').update(readFileSync(copy)).digest('hex'), before);
});

test('TC_DB names the default database of both programs', () => {
  const dir = tmp();
  const db = path.join(dir, 'env.db');
  assert.equal(recorder(['record', '--pcap', SMTP, '--quiet'], { env: { TC_DB: db } }).status, 0);
  const r = query(['top', '--all', '--format', 'json'], { env: { TC_DB: db } });
  assert.equal(r.status, 0);
  assert.equal(JSON.parse(r.stdout).length, 12);
});

test('--max-keys: past the bound keys fold into an overflow row, totals balance, the batch says how many overflowed', () => {
  const db = path.join(tmp(), 'mk.db');
  const gnutella = path.join(pcapsDir(), 'ndpi_gnutella.pcap');
  assert.equal(recorder(['record', '--pcap', gnutella, '--db', db, '--flows', '--quiet', '--max-keys', '10', '--interval-secs', '86400']).status, 0);
  const rows = queryJson<{ ip: string; tx_bytes: number; rx_bytes: number }[]>(['--db', db, 'top', '--all', '--limit', '0']);
  assert.equal(rows.length, 11, '10 addresses and the overflow row');
  assert.ok(rows.some((r) => r.ip === 'overflow'));
  const exp = JSON.parse(readFileSync(path.join(pcapsDir(), 'expected', 'ndpi_gnutella.pcap.json'), 'utf8'));
  assert.equal(rows.reduce((s, r) => s + r.tx_bytes, 0), exp.totals.ip_bytes);
  assert.equal(rows.reduce((s, r) => s + r.rx_bytes, 0), exp.totals.ip_bytes);
  const flows = queryJson<{ bytes: number }[]>(['--db', db, 'top', '--all', '--by', 'flow', '--limit', '0']);
  assert.equal(flows.length, 11);
  assert.equal(flows.reduce((s, r) => s + r.bytes, 0), exp.totals.ip_bytes);
  const d = new Database(db, { readonly: true });
  const [ipo, flo] = d.prepare('select sum(ip_overflow_keys), sum(flow_overflow_keys) from batches').raw().get() as number[];
  d.close();
  // 521 addresses and 937 flows in the capture: about 511 and 927 overflowed (a sketch estimate).
  assert.ok(Math.abs(ipo - 511) < 30, `ip overflow estimate ${ipo}`);
  assert.ok(Math.abs(flo - 927) < 50, `flow overflow estimate ${flo}`);
});
