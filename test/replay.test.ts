/**
 * Replays of several captures, out-of-order frames, captures replayed again, and metrics during
 * a replay: every frame in the interval its own timestamp falls in, nothing counted twice.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { exited, query, queryJson, recorder, RECORDER, sleep, tmp, waitForStderr } from './helpers';
import { generate } from './support/gen';

/** A copy of a little-endian microsecond pcap with every timestamp moved by `secs`. */
function shifted(src: string, dst: string, secs: number): string {
  const buf = Buffer.from(readFileSync(src));
  for (let off = 24; off + 16 <= buf.length; off += 16 + buf.readUInt32LE(off + 8)) buf.writeUInt32LE(buf.readUInt32LE(off) + secs, off);
  writeFileSync(dst, buf);
  return dst;
}

/** A pcap of IPv4 UDP frames of 100 IP bytes, one per timestamp (ms); frame i is sent by 10.0.0.(i + 1). */
function framesAt(file: string, ms: number[]): string {
  const parts = [Buffer.from('d4c3b2a1020004000000000000000000ffff000001000000', 'hex')];
  ms.forEach((t, i) => {
    const rec = Buffer.alloc(16 + 42);
    rec.writeUInt32LE(Math.floor(t / 1000), 0);
    rec.writeUInt32LE((t % 1000) * 1000, 4);
    rec.writeUInt32LE(42, 8);
    rec.writeUInt32LE(114, 12);
    rec.writeUInt16BE(0x0800, 16 + 12);
    const ip = 16 + 14;
    rec[ip] = 0x45;
    rec.writeUInt16BE(100, ip + 2);
    rec[ip + 9] = 17;
    Buffer.from([10, 0, 0, i + 1, 192, 168, 0, 1]).copy(rec, ip + 12);
    parts.push(rec);
  });
  writeFileSync(file, Buffer.concat(parts));
  return file;
}

function rows<T = unknown[]>(db: string, sql: string, ...params: unknown[]): T[] {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare(sql).raw().all(...params) as T[];
  } finally {
    d.close();
  }
}

/** Every batch with its file, in file and sequence order (without ids and write times). */
const BATCHES = `select s.source, b.seq, b.start_ms, b.end_ms, b.frames, b.ip_packets, b.ip_bytes, b.non_ip, b.late, b.ip_rows, b.flow_rows, b.last
  from batches b join sessions s on s.id = b.session_id order by s.source, b.seq`;
const SESSIONS = 'select source, session_key, interval_ms, flows, ended_at is not null, options from sessions order by source';

/** Every projection and the raw rows, by address text (dictionary ids may differ between files). */
function contents(db: string): Record<string, unknown[]> {
  const ip = (t: string) => `select r.bucket_ms, a.text, r.tx_packets, r.tx_bytes, r.rx_packets, r.rx_bytes from ${t} r join addresses a on a.id = r.ip_id order by 1, 2`;
  const flow = (t: string) =>
    `select r.bucket_ms, s.text, d.text, r.proto, r.sport, r.dport, r.packets, r.bytes from ${t} r join addresses s on s.id = r.src_id join addresses d on d.id = r.dst_id order by 1, 2, 3, 4, 5, 6`;
  return {
    ip_1m: rows(db, ip('ip_1m')),
    ip_1h: rows(db, ip('ip_1h')),
    ip_1d: rows(db, ip('ip_1d')),
    flow_1m: rows(db, flow('flow_1m')),
    flow_1h: rows(db, flow('flow_1h')),
    dirty: rows(db, 'select * from rollup_dirty'),
    ip_deltas: rows(db, `select s.source, b.seq, a.text, d.tx_packets, d.tx_bytes, d.rx_packets, d.rx_bytes from ip_deltas d join batches b on b.id = d.batch_id
      join sessions s on s.id = b.session_id join addresses a on a.id = d.ip_id order by 1, 2, 3`),
    flow_deltas: rows(db, `select s.source, b.seq, x.text, y.text, d.proto, d.sport, d.dport, d.packets, d.bytes from flow_deltas d join batches b on b.id = d.batch_id
      join sessions s on s.id = b.session_id join addresses x on x.id = d.src_id join addresses y on y.id = d.dst_id order by 1, 2, 3, 4, 5, 6, 7`),
  };
}

function ok(args: string[]): string {
  const r = recorder(args);
  assert.equal(r.status, 0, r.stderr);
  return r.stderr;
}

test('several captures in one replay: each file its own session, every frame in its own interval, equal to replaying them one by one', () => {
  const dir = tmp();
  const a = path.join(dir, 'a.pcap');
  generate(a, { packets: 20_000, hosts: 200, flows: 800, seconds: 120 });
  const older = shifted(a, path.join(dir, 'older.pcap'), -2 * 365 * 86_400);
  // Overlapping `a` by 90 of its 120 s, as two interfaces captured at once.
  const overlapping = shifted(a, path.join(dir, 'overlapping.pcap'), 30);
  for (const [x, y] of [[a, older], [older, a], [a, overlapping], [overlapping, a]]) {
    const together = path.join(tmp(), 'together.db');
    const apart = path.join(tmp(), 'apart.db');
    ok(['record', '--pcap', x, y, '--db', together, '--flows', '--quiet']);
    ok(['record', '--pcap', x, '--db', apart, '--flows', '--quiet']);
    ok(['record', '--pcap', y, '--db', apart, '--flows', '--quiet']);
    const label = `${path.basename(x)} ${path.basename(y)}`;
    assert.equal(rows(together, SESSIONS).length, 2, `${label}: one session per file`);
    assert.deepEqual(rows(together, SESSIONS), rows(apart, SESSIONS), label);
    assert.deepEqual(rows(together, BATCHES), rows(apart, BATCHES), `${label}: interval by interval`);
    assert.deepEqual(contents(together), contents(apart), label);
    assert.deepEqual(queryJson(['--db', together, 'top', '--all', '--limit', '0']), queryJson(['--db', apart, 'top', '--all', '--limit', '0']), label);
    // Each file's intervals lie within its own time span.
    for (const f of [x, y]) {
      const [lo, hi] = rows<[number, number]>(together, 'select min(b.start_ms), max(b.end_ms) from batches b join sessions s on s.id = b.session_id where s.source = ?', f)[0];
      const t0 = readFileSync(f).readUInt32LE(24) * 1000;
      assert.ok(lo >= t0 - 5000 && hi <= t0 + 125_000, `${label}: ${path.basename(f)} counted in ${new Date(lo).toISOString()} to ${new Date(hi).toISOString()}`);
    }
  }
});

test('frames out of order within the reorder window land in their own interval; beyond it they are late, warned about and shown', () => {
  const dir = tmp();
  const base = 1_700_000_000_000;
  // 5 s intervals. 10.0.0.3 is stamped 49 s before the frame read before it (within the 60 s
  // window): its own interval. 10.0.0.5 is stamped 128 s before the newest: late, counted in the
  // oldest interval still open.
  const cap = framesAt(path.join(dir, 'reordered.pcap'), [0, 50_000, 1_000, 130_000, 2_000, 131_000].map((t) => base + t));
  const db = path.join(dir, 'r.db');
  const stderr = ok(['record', '--pcap', cap, '--db', db, '--quiet']);
  assert.match(stderr, new RegExp(`warning: ${cap.replace(/[.]/g, '\\.')}: 1 frame was stamped more than 60 s before the newest frame read before it`));
  assert.deepEqual(
    rows(db, 'select start_ms - ?, frames, late from batches order by seq', base),
    [[0, 2, 0], [50_000, 1, 0], [130_000, 3, 1]],
  );
  const sent = rows(db, 'select b.start_ms - ?, a.text from ip_deltas d join batches b on b.id = d.batch_id join addresses a on a.id = d.ip_id where d.tx_packets > 0 order by 1, 2', base);
  assert.deepEqual(sent, [[0, '10.0.0.1'], [0, '10.0.0.3'], [50_000, '10.0.0.2'], [130_000, '10.0.0.4'], [130_000, '10.0.0.5'], [130_000, '10.0.0.6']]);
  assert.equal(queryJson<{ late_frames: number }>(['--db', db, 'status', '--all']).late_frames, 1);
  const csv = query(['--db', db, 'status', '--all', '--format', 'csv']);
  assert.match(csv.stdout, /^late_frames,1$/m);
  const table = query(['--db', db, 'status', '--all']);
  assert.match(table.stdout, /^late\s+1 frame counted outside its own interval$/m);
  const top = query(['--db', db, 'top', '--all']);
  assert.equal(top.status, 0, top.stderr);
  assert.match(top.stdout + top.stderr, /1 frame counted late/);
  // Totals keep every frame.
  assert.equal(rows<[number]>(db, 'select sum(frames) from batches')[0][0], 6);
});

test('a capture already in the file is skipped whatever the options; --replace records it again as a fresh recording would', () => {
  const dir = tmp();
  const x = path.join(dir, 'x.pcap');
  generate(x, { packets: 30_000, hosts: 300, flows: 1_200, seconds: 300 });
  // Another session sharing X's minutes and hours: the replaced projections are mixed ones.
  const y = shifted(x, path.join(dir, 'y.pcap'), 45);
  const db = path.join(dir, 'x.db');
  ok(['record', '--pcap', y, '--db', db, '--flows', '--quiet']);
  ok(['record', '--pcap', x, '--db', db, '--quiet']);
  const once = { batches: rows(db, BATCHES), contents: contents(db) };
  for (const opts of [['--flows'], ['--interval-secs', '60'], []]) {
    const stderr = ok(['record', '--pcap', x, '--db', db, '--quiet', ...opts]);
    assert.deepEqual({ batches: rows(db, BATCHES), contents: contents(db) }, once, `${opts.join(' ')}: nothing added`);
    assert.match(
      stderr,
      /x\.pcap is already recorded in .*x\.db as session 2 \(replayed \d{4}-\d\d-\d\dT[^,]*, --interval-secs 5, without --flows, --max-keys 100000\); skipped, nothing counted twice \(--replace records it again/,
      opts.join(' '),
    );
  }

  const stderr = ok(['record', '--pcap', x, '--db', db, '--flows', '--interval-secs', '60', '--replace', '--quiet']);
  assert.match(stderr, /replacing session 2/);
  const fresh = path.join(dir, 'fresh.db');
  ok(['record', '--pcap', y, '--db', fresh, '--flows', '--quiet']);
  ok(['record', '--pcap', x, '--db', fresh, '--flows', '--interval-secs', '60', '--quiet']);
  assert.deepEqual(rows(db, SESSIONS), rows(fresh, SESSIONS));
  assert.deepEqual(rows(db, BATCHES), rows(fresh, BATCHES));
  const replaced = contents(db);
  assert.deepEqual(replaced, contents(fresh));
  for (const args of [['top', '--all', '--limit', '0'], ['top', '--by', 'flow', '--all', '--limit', '0'], ['series', '--all', '--step', '1m']]) {
    assert.deepEqual(queryJson(['--db', db, ...args]), queryJson(['--db', fresh, ...args]), args.join(' '));
  }
  assert.deepEqual(rows(db, 'select count(*) from events'), [[0]]);
  ok(['rebuild', '--db', db]);
  assert.deepEqual(contents(db), replaced, 'the projections after --replace are what rebuild makes of the log');
});

test('a capture differing from a recorded one only in the middle is another capture', () => {
  const dir = tmp();
  const x = path.join(dir, 'x.pcap');
  // ~10 MiB: more than the 4 MiB head and tail the session key was made of.
  generate(x, { packets: 150_000, hosts: 500, flows: 2_000, seconds: 60 });
  const buf = Buffer.from(readFileSync(x));
  let off = 24;
  while (off < buf.length / 2) off += 16 + buf.readUInt32LE(off + 8);
  while (buf.readUInt16BE(off + 16 + 12) !== 0x0800) off += 16 + buf.readUInt32LE(off + 8);
  buf[off + 16 + 14 + 15] ^= 0xff; // the last byte of one IPv4 source address
  const y = path.join(dir, 'y.pcap');
  writeFileSync(y, buf);
  const db = path.join(dir, 'x.db');
  ok(['record', '--pcap', x, '--db', db, '--quiet']);
  const stderr = ok(['record', '--pcap', y, '--db', db, '--quiet']);
  assert.doesNotMatch(stderr, /already recorded/);
  assert.deepEqual(rows(db, 'select count(*), sum(frames) from sessions s join batches b on b.session_id = s.id group by s.id'), [[12, 150_000], [12, 150_000]]);
});

test('a capture is recognised whatever the options; --replace refuses a session whose raw rows retention removed', () => {
  const dir = tmp();
  const x = path.join(dir, 'x.pcap');
  generate(x, { packets: 150_000, hosts: 500, flows: 2_000, seconds: 60 });
  const db = path.join(dir, 'x.db');
  ok(['record', '--pcap', x, '--db', db, '--quiet']);
  assert.match(ok(['record', '--pcap', x, '--db', db, '--quiet', '--flows']), /already recorded .* as session 1/);
  assert.match(ok(['record', '--pcap', x, '--db', db, '--quiet', '--flows', '--replace']), /replacing session 1/);
  assert.deepEqual(rows(db, 'select count(*), sum(flows) from sessions'), [[1, 1]]);
  // Raw rows retention removed in the days a session covers: its sums cannot be recomputed.
  const w = new Database(db);
  w.prepare('update batches set pruned = 1 where seq = 0').run();
  w.close();
  const before = contents(db);
  const refused = recorder(['record', '--pcap', x, '--db', db, '--quiet', '--replace']);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /^traffic-counter: error: session 1 cannot be replaced: retention removed the raw rows of 1 interval\(s\)/m);
  assert.deepEqual(contents(db), before, 'nothing changed');
  const live = recorder(['record', '--replace', '--iface', 'lo', '--db', db]);
  assert.equal(live.status, 1);
  assert.match(live.stderr, /--replace applies to replays only/);
});

test('a reader during --replace sees the earlier session or the new one, never a part of either', async () => {
  const dir = tmp();
  const x = path.join(dir, 'x.pcap');
  // ~540k per-IP rows: the replace writes them in several group commits.
  // 1,800 intervals, each written in a transaction of its own (--queue-max 1, which also holds
  // the engine back): the replay's writes take seconds, so the lock below is taken while
  // most of them are still to come (with 16 batches a transaction they took ~0.2 s, and a
  // loaded machine could miss them all).
  generate(x, { packets: 300_000, hosts: 3_000, flows: 30_000, seconds: 9_000 });
  const db = path.join(dir, 'x.db');
  ok(['record', '--pcap', x, '--db', db, '--quiet']);
  const STATE = 'select count(*), sum(frames), sum(ip_bytes), (select count(*) from ip_deltas) from batches';
  const before = rows(db, STATE)[0];
  const child = spawn(process.execPath, [RECORDER, 'record', '--pcap', x, '--db', db, '--quiet', '--interval-secs', '1', '--flows', '--replace'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const reader = new Database(db, { readonly: true });
  const seen = new Set<string>();
  try {
    const state = reader.prepare(STATE).raw();
    const done = exited(child, 120_000);
    let running = true;
    void done.then(() => (running = false));
    while (running) {
      seen.add(JSON.stringify(state.get()));
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(await done, 0, stderr);
  } finally {
    reader.close();
  }
  const after = rows(db, STATE)[0];
  assert.notDeepEqual(after, before);
  for (const s of seen) assert.ok(s === JSON.stringify(before) || s === JSON.stringify(after), `a reader saw ${s}, neither ${JSON.stringify(before)} nor ${JSON.stringify(after)}`);
});

test('a replay stopped with SIGINT keeps its partial intervals as not ended; the next replay records the file again in its place', async () => {
  const dir = tmp();
  const x = path.join(dir, 'x.pcap');
  // 1,440 intervals, each in a transaction of its own (--queue-max 1): the replay is still writing
  // for about a second after its first batch is in, when the SIGINT comes.
  generate(x, { packets: 600_000, hosts: 3_000, flows: 30_000, seconds: 7_200 });
  const clean = path.join(dir, 'clean.db');
  ok(['record', '--pcap', x, '--db', clean, '--quiet']);
  const db = path.join(dir, 'x.db');
  const child = spawn(process.execPath, [RECORDER, 'record', '--pcap', x, '--db', db, '--queue-max', '1', '--quiet'], { stdio: 'ignore' });
  const written = () => {
    try {
      return rows<[number]>(db, 'select count(*) from batches')[0][0];
    } catch {
      return 0; // the file or its schema is not there yet
    }
  };
  while (written() === 0 && child.exitCode === null) await sleep(5);
  child.kill('SIGINT');
  assert.equal(await exited(child, 60_000), 0);
  const [[ended, frames]] = rows<[number, number]>(db, 'select s.ended_at is not null, (select sum(frames) from batches) from sessions s');
  assert.equal(ended, 0, 'a replay stopped before the end of its file is not ended');
  assert.ok(frames < 600_000, `stopped after ${frames} frames`);
  assert.match(ok(['record', '--pcap', x, '--db', db, '--quiet']), /replacing session 1 .*stopped before the end of the file/);
  assert.deepEqual(rows(db, BATCHES), rows(clean, BATCHES));
  assert.deepEqual(contents(db), contents(clean));
});

function scrape(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

test('metrics count a replay whether or not a progress bar is drawn', async () => {
  const dir = tmp();
  const x = path.join(dir, 'x.pcap');
  // 1,800 intervals, each written in a transaction of its own (--queue-max 1, which also holds
  // the engine back): the replay's writes take seconds, so the lock below is taken while
  // most of them are still to come (with 16 batches a transaction they took ~0.2 s, and a
  // loaded machine could miss them all).
  generate(x, { packets: 300_000, hosts: 3_000, flows: 30_000, seconds: 9_000 });
  const db = path.join(dir, 'x.db');
  // The file exists (schema, node id) before the replay, so a lock held later blocks only its batch writes.
  ok(['record', '--pcap', framesAt(path.join(dir, 'one.pcap'), [1_000]), '--db', db, '--quiet']);
  const child = spawn(process.execPath, [RECORDER, 'record', '--pcap', x, '--db', db, '--flows', '--queue-max', '1', '--progress', '--metrics-listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const lock = new Database(db);
  try {
    const url = (await waitForStderr(child, /metrics on (http:\S+)/)).match(/metrics on (http:\S+)/)![1];
    // Once the replay's first batches are in, writes wait (and are retried) while this
    // connection holds the write lock: the replay is still running when the metrics are read.
    const written = lock.prepare('select count(*) from batches b join sessions s on s.id = b.session_id where s.source = ?').pluck();
    while ((written.get(x) as number) === 0 && child.exitCode === null) await sleep(1);
    lock.exec('begin immediate');
    await waitForStderr(child, /cannot write to/);
    const m = await scrape(url);
    const packets = Number(m.match(/^tc_packets_total (\d+)$/m)?.[1]);
    assert.ok(packets > 0, `tc_packets_total ${packets} while the bar is drawn:\n${m}`);
    assert.match(m, /^tc_late_frames_total 0$/m);
    lock.exec('rollback');
    assert.equal(await exited(child, 120_000), 0, stderr);
    assert.match(stderr, /replay \[[^\]]*\] \d+%/, 'the bar was drawn');
  } finally {
    if (lock.inTransaction) lock.exec('rollback');
    lock.close();
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
