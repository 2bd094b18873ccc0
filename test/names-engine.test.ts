/**
 * Names from the traffic, engine side: a generated capture of DNS answers (UDP, TCP, AAAA, CNAME
 * chains) and TLS ClientHellos (in 1 to 3 segments), with hostile and split messages, replayed
 * through the addon gives exactly the expected (address, name, source) list, in the capture order
 * of each pair's last sighting, and counts what it skipped; --max-names bounds the new pairs of an
 * interval; reading names changes no count; the batches table of an older file gains the names
 * counters. Live, in a namespace pair with the eBPF filter on and --snaplen 128: a DNS answer
 * longer than 128 bytes and a ClientHello split over two segments give their names.
 */
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { formatAddr } from '../src/addr';
import { replay, type Batch, type CountOptions } from '../src/native';
import { openForWrite } from '../src/recorder/write/db';
import { exited, needRoot, recorder, tmp, waitForStderr } from './helpers';
import { DST_MAC, SRC_MAC } from './fixtures/frames';
import { A, clientHello, dnsResponse, rr, tcp, toQuestion, udp, writeNamesPcap, type ExpectedName } from './support/names-pcap';
import { sendFrames, vethPair, type VethPair } from './support/netns';
import { downgrade } from './support/old-file';
import { SCHEMA_VERSION } from '../migrations';

const NAME_COUNTERS = ['namesRecorded', 'namesOverflowed', 'namesMalformed', 'namesIncomplete'] as const;

async function replayed(file: string, opts: CountOptions = {}): Promise<Batch[]> {
  const out: Batch[] = [];
  await replay([file], opts, { batch: (b) => void out.push(b) }).done;
  return out;
}

function namesOf(batches: Batch[]): ExpectedName[] {
  return batches.flatMap((b) => b.names.name.map((name, i) => ({ ip: formatAddr(b.names.addr, 16 * i, b.names.fam[i]), name, source: b.names.source[i] === 0 ? ('dns' as const) : ('sni' as const) })));
}

function summed(batches: Batch[]): Record<string, bigint> {
  const s: Record<string, bigint> = {};
  for (const b of batches) for (const [k, v] of Object.entries(b.counters)) s[k] = (s[k] ?? 0n) + v;
  return s;
}

function capture(): { file: string; dir: string } & ReturnType<typeof writeNamesPcap> {
  const dir = tmp();
  const file = path.join(dir, 'names.pcap');
  return { file, dir, ...writeNamesPcap(file) };
}

test('a replayed capture gives exactly its names, in the capture order of each pair\'s last sighting, and counts the hostile and split messages', async () => {
  const c = capture();
  const batches = await replayed(c.file);
  assert.equal(batches.length, 1, 'one interval');
  assert.deepEqual(namesOf(batches), c.expected);
  const s = summed(batches);
  assert.deepEqual(
    NAME_COUNTERS.map((k) => s[k]),
    [BigInt(c.expected.length), 0n, BigInt(c.malformed), BigInt(c.incomplete)],
    'recorded, overflowed, malformed (compression loop, length past the end, 10,000 answers, label of 64, non-printable, truncated hello), incomplete (the hello with a gap)',
  );
  // Each column has one entry per name.
  const n = batches[0].names;
  assert.deepEqual([n.addr.length, n.fam.length, n.source.length], [16 * n.name.length, n.name.length, n.name.length]);
});

test('--max-names 0 reads no names and a small --max-names keeps the first new pairs, counting the rest; neither changes a count', async () => {
  const c = capture();
  const on = await replayed(c.file);
  const off = await replayed(c.file, { maxNames: 0 });
  assert.deepEqual(namesOf(off), []);
  const counts = (b: Batch[]) => Object.fromEntries(Object.entries(summed(b)).filter(([k]) => !k.startsWith('names')));
  assert.deepEqual(counts(off), counts(on));
  assert.deepEqual(NAME_COUNTERS.map((k) => summed(off)[k]), [0n, 0n, 0n, 0n], 'names off: nothing parsed, nothing counted');
  assert.deepEqual([on[0].ip, on[0].flow, on[0].addr], [off[0].ip, off[0].flow, off[0].addr]);

  const three = await replayed(c.file, { maxNames: 3 });
  // The first three new pairs by first sighting; again.example and the rest are refused.
  assert.deepEqual(namesOf(three), c.expected.slice(0, 3));
  assert.equal(summed(three).namesOverflowed, BigInt(c.expected.length - 3), 'the refused distinct pairs');
  assert.deepEqual(counts(three), counts(on));
});

test('record --pcap stores the names counters of each interval; --max-names is checked where it enters and shown with its default', () => {
  const c = capture();
  const db = path.join(c.dir, 'names.db');
  const r = recorder(['record', '--pcap', c.file, '--db', db, '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  const d = new Database(db, { readonly: true });
  try {
    const row = d.prepare('select sum(names_recorded) as r, sum(names_overflowed) as o, sum(names_malformed) as m, sum(names_incomplete) as i from batches').get();
    assert.deepEqual(row, { r: c.expected.length, o: 0, m: c.malformed, i: c.incomplete });
  } finally {
    d.close();
  }
  for (const [v, why] of [['1000001', /must be between 0 and 1000000/], ['-1', /must be between 0 and 1000000/], ['many', /expected a whole number/]] as const) {
    const bad = recorder(['record', '--pcap', c.file, '--db', path.join(c.dir, 'bad.db'), '--max-names', v]);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--max-names/);
    assert.match(bad.stderr, why);
  }
  assert.match(recorder(['record', '--help']).stdout.replace(/\s+/g, ' '), /--max-names <n> .*\(default: 10000\)/);
});

test('a file written before the names counters gains them, 0 for its earlier intervals', async () => {
  const c = capture();
  const db = path.join(c.dir, 'old.db');
  assert.equal(recorder(['record', '--pcap', c.file, '--db', db, '--quiet', '--max-names', '0']).status, 0);
  // Back to schema 3, as the build before the names counters wrote it.
  await downgrade(db, '2026-12-01_0003_budget');
  (await openForWrite(db)).sqlite.close();
  const again = new Database(db, { readonly: true });
  try {
    assert.deepEqual(again.prepare('select names_recorded, names_overflowed, names_malformed, names_incomplete from batches').raw().all(), [[0, 0, 0, 0]]);
    assert.equal(again.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  } finally {
    again.close();
  }
});

let net: VethPair | undefined;

describe('live: names with the eBPF filter on and --snaplen 128, in a namespace pair', () => {
  before(() => {
    if (process.getuid?.() === 0) net = vethPair(`tcnm${process.pid}`, 'nm', { a: SRC_MAC, b: DST_MAC });
  });
  after(() => net?.remove());

  test('a DNS answer longer than the snap length and a ClientHello split over two segments give their names', async (t) => {
    if (!needRoot(t) || !net) return;
    // 16 A answers: the last ones lie far past byte 128 of the frame.
    const answers = Array.from({ length: 16 }, (_, i) => A(`198.51.100.${100 + i}`));
    const dnsFrame = udp('10.9.0.53', '10.9.0.2', 53, 41000, dnsResponse('live.example.com', answers));
    assert.ok(dnsFrame.length > 300);
    const cname = udp('10.9.0.53', '10.9.0.2', 53, 41000, dnsResponse('www.live.example', [rr(toQuestion, 5, Buffer.from([3, 0x63, 0x64, 0x6e, 0xc0, 16])), rr(Buffer.from([0xc0, 46]), 1, Buffer.from([203, 0, 113, 77]))]));
    const hello = clientHello('split.live.example', 1650);
    const seg1 = tcp('10.9.0.2', '192.0.2.200', 51000, 443, 5000, hello.subarray(0, 1448));
    const seg2 = tcp('10.9.0.2', '192.0.2.200', 51000, 443, 5000 + 1448, hello.subarray(1448));
    const data = tcp('192.0.2.200', '10.9.0.2', 443, 51000, 1, Buffer.alloc(1200, 0x17));
    const dir = tmp();
    const child = spawn('ip', ['netns', 'exec', net.b, process.execPath, path.join(__dirname, 'fixtures', 'live-names.js'), net.devB, '128'], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
    let stdout = '';
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    const ready = await waitForStderr(child, /ready \((\d+) sockets filtered\)/);
    assert.match(ready, /ready \(2 sockets filtered\)/, 'the eBPF filter is attached to both workers');
    const frames = [dnsFrame, cname, data, seg1, data, seg2, data].map((f) => f.toString('hex'));
    assert.equal(sendFrames(net, frames, 10), frames.length);
    await new Promise((r) => setTimeout(r, 1500));
    child.kill('SIGINT');
    assert.equal(await exited(child, 10_000), 0);
    const got = JSON.parse(stdout) as { names: ExpectedName[]; sums: Record<string, number> };
    const want: ExpectedName[] = [
      ...answers.map((_, i) => ({ ip: `198.51.100.${100 + i}`, name: 'live.example.com', source: 'dns' as const })),
      { ip: '203.0.113.77', name: 'www.live.example', source: 'dns' },
      { ip: '192.0.2.200', name: 'split.live.example', source: 'sni' },
    ];
    assert.deepEqual(got.names, want);
    assert.deepEqual([got.sums.namesMalformed, got.sums.namesIncomplete, got.sums.namesOverflowed, got.sums.ringDrops], [0, 0, 0, 0]);
    assert.equal(got.sums.filterPassed, frames.length);
  });
});
