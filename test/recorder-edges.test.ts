/**
 * The recorder at the edges a new user reaches first (issue 10): one writer per file, a
 * read-only or directory --db, --version / usage errors / help, --config errors naming the key,
 * --pcap refusing live-only options, option rules where they enter, node ids, the words of the
 * interval line, singulars, a closed output, missing capabilities, an interface that is down
 * and SIGHUP without CIDR files. Live parts run in namespaces of their own.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import * as engine from '../src/native';
import { generate } from './support/gen';
import { exited, needRoot, pcapsDir, query, queryJson, recorder, RECORDER, ROOT, sh, sleep, spawnIn, tmp, waitForStderr } from './helpers';

const SMTP = path.join(pcapsDir(), 'zeek_smtp.pcap');
const ONE_FRAME = path.join(pcapsDir(), 'packetnet_802.1ad_vlan_ipv4.pcap');
const SLL2 = path.join(pcapsDir(), 'zeek_linux_dlt_sll2.pcap');

/** Runs argv with its stdout (and with `both`, its stderr) on a pipe whose reader has already gone. */
function withClosedOutput(args: string[], both = false): ReturnType<typeof spawnSync> {
  const py = `import os, sys\nr, w = os.pipe()\nos.close(r)\nos.dup2(w, 1)\n${both ? 'os.dup2(w, 2)\n' : ''}os.execvp(sys.argv[1], sys.argv[1:])\n`;
  return spawnSync('python3', ['-c', py, process.execPath, RECORDER, ...args], { encoding: 'utf8', timeout: 60_000 });
}

function status(db: string): Record<string, unknown> {
  return queryJson<Record<string, unknown>>(['--db', db, 'status', '--all']);
}

function rows(db: string, sql: string): unknown[] {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare(sql).all();
  } finally {
    d.close();
  }
}

test('--version, no arguments, usage errors and record --help', () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const v = recorder(['--version']);
  assert.equal(v.status, 0);
  assert.equal(v.stdout.trim(), pkg.version);

  const none = recorder([]);
  assert.equal(none.status, 1);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /^Usage: traffic-counter /m);

  const bad = recorder(['record', '--bogus']);
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr, "traffic-counter: error: unknown option '--bogus'; see `traffic-counter record --help` [ERR_TC_USAGE]\n");
  const cmd = recorder(['recrod']);
  assert.equal(cmd.status, 1);
  assert.match(cmd.stderr, /^traffic-counter: error: unknown command 'recrod'.*; see `traffic-counter --help` \[ERR_TC_USAGE\]\n$/);

  const help = recorder(['record', '--help']).stdout;
  for (const [opt, d] of [['retain-raw-ip', '48h'], ['retain-raw-flows', '6h'], ['retain-minutes', '14d'], ['retain-hours', '400d'], ['retain-days', 'forever']]) {
    assert.match(help, new RegExp(`--${opt} <period>[^]*?\\(default:\\s+${d}\\)`), `${opt} default shown as ${d}`);
  }
  assert.doesNotMatch(help, /172800000|null\)/);
});

test('a closed stdout or stderr ends the output quietly: help and version, and a replay that goes on and is recorded whole', () => {
  for (const args of [['--help'], ['--version'], ['record', '--help']]) {
    const r = withClosedOutput(args);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.doesNotMatch(String(r.stderr), /EPIPE|Error/);
  }
  const db = path.join(tmp(), 'closed.db');
  const r = withClosedOutput(['record', '--pcap', SMTP, '--db', db], true);
  assert.equal(r.status, 0, 'the replay was not killed by its closed output');
  assert.equal(existsSync(`${db}-wal`), false, 'closed cleanly');
  assert.deepEqual(rows(db, 'select count(*) as n, sum(frames) as frames from batches'), [{ n: 7, frames: 125 }]);
});

test('--config errors name the file and the key: numbers, booleans, unknown keys, a missing file, not JSON', () => {
  const dir = tmp();
  const db = path.join(dir, 'c.db');
  const cfg = path.join(dir, 'c.json');
  const tryConfig = (text: string) => {
    writeFileSync(cfg, text);
    return recorder(['record', '--pcap', SMTP, '--db', db, '--config', cfg]);
  };
  const cases: [string, string][] = [
    ['{"interval-secs": "abc"}', `--config ${cfg}: "interval-secs": expected a whole number, got "abc"`],
    ['{"interval-secs": 2.5}', `--config ${cfg}: "interval-secs": expected a whole number, got "2.5"`],
    ['{"flows": "yes"}', `--config ${cfg}: "flows": expected true or false, got "yes"`],
    ['{"quiet": 1}', `--config ${cfg}: "quiet": expected true or false, got 1`],
    ['{"no-ebpf": "true"}', `--config ${cfg}: "no-ebpf": expected true or false, got "true"`],
    ['{"colour": "blue"}', `--config ${cfg}: "colour": unknown option`],
    ['{"max-keys": 0}', `--config ${cfg}: "max-keys": must be between 1 and 100000000`],
    ['{"retain-days": "soon"}', `--config ${cfg}: "retain-days": "soon" is not a retention period (e.g. 48h, 14d, forever)`],
    ['not json', `--config ${cfg}: not JSON (`],
    ['[1, 2]', `--config ${cfg}: expected a JSON object of long option names`],
  ];
  for (const [text, message] of cases) {
    const r = tryConfig(text);
    assert.equal(r.status, 1, text);
    assert.ok(r.stderr.startsWith(`traffic-counter: error: ${message}`), `${text}: ${r.stderr}`);
    assert.equal(r.stderr.split('\n').length, 2, 'one line');
  }
  const missing = recorder(['record', '--pcap', SMTP, '--db', db, '--config', path.join(dir, 'none.json')]);
  assert.equal(missing.status, 1);
  assert.equal(missing.stderr, `traffic-counter: error: --config ${path.join(dir, 'none.json')}: cannot read it (no such file); check the path, or drop --config (contrib/traffic-counter.json is an example) [ERR_TC_CONFIG]\n`);
  assert.equal(existsSync(db), false, 'nothing recorded');

  writeFileSync(cfg, '{"flows": true, "interval-secs": 60, "no-progress": true}');
  assert.equal(recorder(['record', '--pcap', SMTP, '--db', db, '--quiet', '--config', cfg]).status, 0);
  assert.deepEqual(rows(db, 'select interval_ms, flows from sessions'), [{ interval_ms: 60_000, flows: 1 }]);
});

test('one rule per option where it enters, with one message from the command line and from --config', async () => {
  const dir = tmp();
  const db = path.join(dir, 'o.db');
  const cli = recorder(['record', '--iface', 'lo', '--db', db, '--block-count', '0']);
  assert.equal(cli.status, 1);
  assert.equal(cli.stderr, "traffic-counter: error: option '--block-count <n>' argument '0' is invalid. must be between 1 and 1048576; see `traffic-counter record --help` [ERR_TC_USAGE]\n");
  writeFileSync(path.join(dir, 'c.json'), '{"block-count": 0}');
  const cfg = recorder(['record', '--iface', 'lo', '--db', db, '--config', path.join(dir, 'c.json')]);
  assert.equal(cfg.status, 1);
  assert.match(cfg.stderr, /"block-count": must be between 1 and 1048576 \[ERR_TC_CONFIG\]\n$/);
  for (const args of [['--pcap', SMTP], ['--iface', 'lo']]) {
    const r = recorder(['record', ...args, '--db', db, '--max-keys', '0']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /option '--max-keys <n>' argument '0' is invalid\. must be between 1 and 100000000/);
  }
  assert.equal(existsSync(db), false);
  // The engine itself no longer turns --max-keys 0 into 1 for a replay (live capture refused it).
  await assert.rejects(engine.replay([SMTP], { maxKeys: 0 }, { batch: () => undefined }).done, /--max-keys must be at least 1/);
});

test('every refusal carries its code: a --metrics-listen that is not ADDR:PORT', () => {
  const r = recorder(['record', '--pcap', SMTP, '--db', path.join(tmp(), 'm.db'), '--quiet', '--metrics-listen', 'nowhere']);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, 'traffic-counter: error: --metrics-listen "nowhere" is not ADDR:PORT (e.g. 127.0.0.1:9464) [ERR_TC_BAD_OPTION]\n');
});

test('a --metrics-listen port in use is refused with its code and a hint, before the database is made (replay and live)', async (t) => {
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const port = (taken.address() as net.AddressInfo).port;
  try {
    const db = path.join(tmp(), 'm.db');
    const want = new RegExp(`^traffic-counter: error: --metrics-listen 127\\.0\\.0\\.1:${port}: cannot listen \\(EADDRINUSE\\): the port is in use by another process .*choose another port .*\\[ERR_TC_METRICS_LISTEN\\]\n$`);
    const r = recorder(['record', '--pcap', SMTP, '--db', db, '--quiet', '--metrics-listen', `127.0.0.1:${port}`]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, want);
    assert.equal(existsSync(db), false);
    if (!needRoot(t)) return;
    const live = spawnSync(process.execPath, [RECORDER, 'record', '--iface', 'lo', '--db', db, '--metrics-listen', `127.0.0.1:${port}`], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(live.status, 1, live.stderr);
    assert.match(live.stderr, want);
    assert.equal(existsSync(db), false);
  } finally {
    taken.close();
  }
});

test('--pcap refuses the options of live capture, from the command line and from --config', () => {
  const dir = tmp();
  const db = path.join(dir, 'p.db');
  let r = recorder(['record', '--pcap', SMTP, '--iface', 'lo', '--db', db]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^traffic-counter: error: --pcap replays capture files; --iface sets up live capture: drop it, or drop --pcap to record live \[ERR_TC_USAGE\]\n$/);
  r = recorder(['record', '--pcap', SMTP, '--workers', '2', '--no-ebpf', '--db', db]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--workers, --no-ebpf set up live capture: drop them/);
  writeFileSync(path.join(dir, 'c.json'), '{"retain-raw-ip": "1h", "fanout-group": 7}');
  r = recorder(['record', '--pcap', SMTP, '--db', db, '--config', path.join(dir, 'c.json')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--fanout-group \(from --config\), --retain-raw-ip \(from --config\) set up live capture \(replays never prune\)/);
  assert.equal(existsSync(db), false);
});

test('a directory as --db, a read-only file and a read-only directory: said as such, nothing written', (t) => {
  if (!needRoot(t)) return;
  const dir = tmp();
  let r = recorder(['record', '--pcap', SMTP, '--db', dir]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, new RegExp(`^traffic-counter: error: ${dir} is a directory; pass a database file to --db`));
  assert.deepEqual(readdirSync(dir), []);

  // As an unprivileged user (root writes any file): a file of mode 0444, a directory of 0555.
  sh('chmod', ['0777', dir]);
  const db = path.join(dir, 'ro.db');
  assert.equal(recorder(['record', '--pcap', ONE_FRAME, '--db', db, '--quiet']).status, 0);
  chmodSync(db, 0o444);
  const asNobody = (args: string[]) =>
    spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--inh-caps=-all', '--', process.execPath, RECORDER, ...args], { encoding: 'utf8', timeout: 60_000 });
  r = asNobody(['record', '--pcap', SMTP, '--db', db, '--quiet']);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^traffic-counter: error: ${db} is read-only \\(owner root, mode 0444\\): the recorder writes to it; make it writable, or record into another --db`));
  // Root too: a file nobody may write was made read-only on purpose.
  r = recorder(['record', '--pcap', SMTP, '--db', db, '--quiet']);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^traffic-counter: error: ${db} is read-only \\(owner root, mode 0444\\)`));
  chmodSync(db, 0o666);
  chmodSync(dir, 0o555);
  r = asNobody(['record', '--pcap', SMTP, '--db', db, '--quiet']);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`${db} is read-only: its directory ${dir} is not writable \\(owner root, mode 0555\\)`));
  assert.deepEqual(readdirSync(dir), ['ro.db'], 'no -wal, -shm or lock file');
  assert.deepEqual(rows(db, 'select count(*) as n from batches'), [{ n: 1 }]);

  // A read-only mount, as root.
  const mnt = path.join(tmp(), 'mnt');
  sh('mkdir', ['-p', mnt]);
  sh('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
  try {
    const m = path.join(mnt, 'm.db');
    assert.equal(recorder(['record', '--pcap', ONE_FRAME, '--db', m, '--quiet']).status, 0);
    sh('mount', ['-o', 'remount,ro', mnt]);
    r = recorder(['record', '--pcap', SMTP, '--db', m, '--quiet']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`${m} is read-only \\(read-only file system\\)`));
    r = recorder(['rebuild', '--db', m]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /is read-only \(read-only file system\)/);
  } finally {
    spawnSync('umount', [mnt]);
  }
});

test('the node id is the host name, set when the file is created; --node-id names a new file and is refused on another', () => {
  const dir = tmp();
  const db = path.join(dir, 'n.db');
  assert.equal(recorder(['record', '--pcap', ONE_FRAME, '--db', db, '--quiet']).status, 0);
  assert.equal(status(db).node_id, os.hostname());
  assert.equal(recorder(['record', '--pcap', SMTP, '--db', db, '--quiet']).status, 0);
  assert.equal(status(db).node_id, os.hostname(), 'kept');

  const edge = path.join(dir, 'edge.db');
  assert.equal(recorder(['record', '--pcap', ONE_FRAME, '--db', edge, '--quiet', '--node-id', 'edge-1.example']).status, 0);
  assert.equal(status(edge).node_id, 'edge-1.example');
  assert.deepEqual(rows(edge, 'select node_id from sessions'), [{ node_id: 'edge-1.example' }]);
  const before = rows(edge, 'select * from sessions');
  const r = recorder(['record', '--pcap', SMTP, '--db', edge, '--quiet', '--node-id', 'edge-2']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--node-id edge-2: .*edge\.db is the history of node edge-1\.example \(set when it was created\); record node edge-2 into another --db/);
  assert.deepEqual(rows(edge, 'select * from sessions'), before, 'nothing recorded');
  assert.equal(recorder(['record', '--pcap', SMTP, '--db', edge, '--quiet', '--node-id', 'edge-1.example']).status, 0, 'the same id is fine');
  assert.equal(recorder(['record', '--pcap', SMTP, '--db', edge, '--quiet']).status, 0, 'no --node-id: the file keeps its own');

  for (const bad of ['a/b', '..', 'x y', '']) {
    const b = recorder(['record', '--pcap', SMTP, '--db', path.join(dir, 'bad.db'), '--node-id', bad]);
    assert.equal(b.status, 1, bad);
    assert.match(b.stderr, /is not a node id \(letters, digits, "\.", "_", "-"/);
  }
  assert.equal(existsSync(path.join(dir, 'bad.db')), false);
});

test('the interval line, tc-query status and the replay summary use the same words; "1 interval", "1 frame"', () => {
  const dir = tmp();
  const db = path.join(dir, 'w.db');
  const ignore = path.join(dir, 'ignore.txt');
  writeFileSync(ignore, '10.0.0.0/8\n192.168.0.0/16\n172.16.0.0/12\nfc00::/7\nfe80::/10\n');
  const r = recorder(['record', '--pcap', SLL2, '--db', db, '--interval-secs', '86400', '--ignore-file', ignore]);
  assert.equal(r.status, 0, r.stderr);
  const line = r.stderr.split('\n').find((l) => l.startsWith('2022-08-15T00:00:00Z'))!;
  const nonIp = Number(line.match(/ non-IP (\d+) /)![1]);
  const cidr = Number(line.match(/ filtered by CIDR rules (\d+) /)![1]);
  assert.equal(nonIp, 2, 'zeek_linux_dlt_sll2.pcap: 2 non-IP frames (MANIFEST)');
  assert.match(r.stderr, /: 6 frames \(pcap/);
  assert.match(r.stderr, /1 interval written to /);
  const s = status(db);
  assert.equal(s.non_ip_frames, nonIp);
  assert.equal(s.filter_drops, cidr);
  const table = query(['--db', db, 'status', '--all']).stdout;
  assert.match(table, new RegExp(`not counted +${nonIp} non-IP frames, ${cidr} frames filtered by CIDR rules`));

  const one = recorder(['record', '--pcap', ONE_FRAME, '--db', path.join(dir, 'one.db')]);
  assert.match(one.stderr, /: 1 frame \(pcap/);
  assert.match(one.stderr, /traffic-counter: 1 interval written to /);
});

test('without capabilities: one message lists every capability live capture lacks, before anything is opened', (t) => {
  if (!needRoot(t)) return;
  const dir = tmp();
  sh('chmod', ['0777', dir]);
  const db = path.join(dir, 'caps.db');
  const run = (extra: string[]) =>
    spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--inh-caps=-all', '--', process.execPath, RECORDER, 'record', '--iface', 'lo', '--db', db, ...extra], { encoding: 'utf8', timeout: 60_000 });
  let r = run([]);
  assert.equal(r.status, 1);
  assert.equal(
    r.stderr,
    'traffic-counter: error: live capture needs CAP_NET_RAW (AF_PACKET sockets), CAP_BPF (the eBPF socket filter; or pass --no-ebpf to filter in userspace), ' +
      'which this process does not have; run as root, or grant them (AmbientCapabilities= in contrib/traffic-counter.service) [ERR_TC_PERMISSION]\n',
  );
  r = run(['--no-ebpf']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /live capture needs CAP_NET_RAW \(AF_PACKET sockets\), which this process does not have; run as root, or grant it/);
  r = run(['--no-ebpf', '--user', 'nobody']);
  assert.match(r.stderr, /needs CAP_NET_RAW \(AF_PACKET sockets\), CAP_SETUID \(--user\), CAP_SETGID \(--user\), CAP_CHOWN \(--user\), which/);
  assert.deepEqual(readdirSync(dir), [], 'nothing opened or created');
});

const A = `tce${process.pid}a`;
const B = `tce${process.pid}b`;
const V4A = '10.78.0.1';
const V4B = '10.78.0.2';

describe('one writer per file, an interface that is down, SIGHUP without CIDR files (live, in namespaces)', () => {
  let ready = false;
  before(() => {
    if (process.getuid?.() !== 0) return;
    sh('ip', ['netns', 'add', A]);
    sh('ip', ['netns', 'add', B]);
    sh('ip', ['link', 'add', 'veth-a', 'netns', A, 'type', 'veth', 'peer', 'name', 'veth-b', 'netns', B]);
    for (const [ns, dev, v4] of [[A, 'veth-a', V4A], [B, 'veth-b', V4B]]) {
      sh('ip', ['-n', ns, 'addr', 'add', `${v4}/24`, 'dev', dev]);
      sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    ready = true;
  });
  after(() => {
    if (!ready) return;
    spawnSync('ip', ['netns', 'del', A]);
    spawnSync('ip', ['netns', 'del', B]);
  });
  const guard = (t: TestContext) => needRoot(t) && (assert.ok(ready, 'namespaces set up'), true);
  const live = (db: string, extra: string[] = []) => spawnIn(B, process.execPath, [RECORDER, 'record', '--iface', 'veth-b', '--db', db, '--interval-secs', '1', '--quiet', ...extra]);
  const inB = (args: string[]) => spawnSync('ip', ['netns', 'exec', B, process.execPath, RECORDER, ...args], { encoding: 'utf8', timeout: 60_000 });
  const log = (c: ChildProcess) => {
    let s = '';
    c.stderr!.on('data', (d: Buffer) => (s += d.toString()));
    return () => s;
  };
  const unclean = (db: string) => rows(db, "select count(*) as n from events where kind = 'unclean-shutdown'")[0];

  test('a second record or rebuild on a file a recorder holds exits 1 at once and changes nothing; after SIGKILL the next starts at once and records the unclean shutdown once', async (t) => {
    if (!guard(t)) return;
    const db = path.join(tmp(), 'lock.db');
    const a = live(db);
    await waitForStderr(a, /recording veth-b/);
    const session = (rows(db, "select id from sessions where kind = 'live'")[0] as { id: number }).id;
    const snapshot = () => ({ sessions: rows(db, 'select * from sessions order by id'), events: rows(db, 'select * from events order by id') });
    const held = snapshot();
    const message = new RegExp(`^traffic-counter: error: another recorder \\(pid ${a.pid}, session ${session}\\) is writing ${db} \\(live capture on veth-b\\); stop it first \\(kill -INT ${a.pid}\\) or record into another --db`);
    for (const args of [
      ['record', '--iface', 'veth-b', '--db', db, '--interval-secs', '1'],
      ['record', '--pcap', SMTP, '--db', db],
      ['rebuild', '--db', db],
    ]) {
      const r = inB(args);
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    assert.deepEqual(snapshot(), held, 'no session, event or unclean shutdown recorded');
    assert.deepEqual(unclean(db), { n: 0 });

    a.kill('SIGKILL');
    await exited(a);
    const c = live(db);
    const cLog = log(c);
    await waitForStderr(c, /recording veth-b/);
    c.kill('SIGINT');
    assert.equal(await exited(c), 0, cLog());
    assert.match(cLog(), new RegExp(`session ${session} on veth-b ended without a clean stop`));
    const d = live(db);
    await waitForStderr(d, /recording veth-b/);
    d.kill('SIGINT');
    assert.equal(await exited(d), 0);
    assert.deepEqual(unclean(db), { n: 1 }, 'once');
    assert.equal(existsSync(`${db}.lock`), false, 'removed on a clean stop');
    assert.equal(inB(['rebuild', '--db', db]).status, 0);
  });

  test('a recorder killed and restarted within the interval in flight: the time it did not record is a gap', async (t) => {
    if (!guard(t)) return;
    const db = path.join(tmp(), 'kill.db');
    const a = live(db, ['--interval-secs', '5']);
    await waitForStderr(a, /recording veth-b/);
    const written = () => (rows(db, 'select count(*) as n, max(end_ms) as last from batches')[0] as { n: number; last: number | null });
    for (let i = 0; i < 100 && written().n === 0; i++) await sleep(100);
    const lastEnd = written().last!;
    assert.ok(lastEnd, 'the first interval was written');
    a.kill('SIGKILL');
    await exited(a);
    const killedAt = Date.now();
    // Restarted at once: its first interval is the one that was in flight, so no interval
    // starts after the killed session's last end; only the unclean-shutdown event tells.
    const c = live(db, ['--interval-secs', '5']);
    await waitForStderr(c, /recording veth-b/);
    c.kill('SIGINT');
    assert.equal(await exited(c), 0);
    const s = status(db) as { gaps: { count: number; seconds: number; list: { from: string; to: string }[] } };
    assert.equal(s.gaps.count, 1, JSON.stringify(s.gaps));
    assert.equal(Date.parse(s.gaps.list[0].from), lastEnd, 'from the end of the last interval written');
    assert.ok(Date.parse(s.gaps.list[0].to) >= killedAt - 1000, `to the restart: ${JSON.stringify(s.gaps)}`);
    const r = query(['--db', db, 'top', '--all']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /, 1 gap \(\d+ s\)/);
  });

  test('a replay holds the file too: a live recorder started meanwhile is refused', async (t) => {
    if (!guard(t)) return;
    const dir = tmp();
    const db = path.join(dir, 'replay.db');
    const cap = path.join(dir, 'gen.pcap');
    generate(cap, { packets: 200_000, hosts: 50, flows: 200, seconds: 600 });
    const rep = spawn(process.execPath, [RECORDER, 'record', '--pcap', cap, '--db', db, '--interval-secs', '1', '--queue-max', '1', '--no-progress', '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const repLog = log(rep);
    // Paused once it holds the lock (taken before it opens the database), so it cannot finish
    // first; its 600 intervals written one a transaction (--queue-max 1) keep it running a while.
    const holder = () => {
      try {
        return JSON.parse(readFileSync(`${db}.lock`, 'utf8')).pid as number;
      } catch {
        return undefined;
      }
    };
    while (holder() !== rep.pid && rep.exitCode === null) await sleep(2);
    rep.kill('SIGSTOP');
    try {
      const r = inB(['record', '--iface', 'veth-b', '--db', db]);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`another recorder \\(pid ${rep.pid}\\) is writing ${db} \\(replay of gen\\.pcap\\)`));
    } finally {
      rep.kill('SIGCONT');
    }
    assert.equal(await exited(rep, 60_000), 0, repLog());
    assert.deepEqual(rows(db, "select count(*) as n from sessions where kind = 'live'"), [{ n: 0 }]);
  });

  test('/metrics, the interval line and tc-query status count frames filtered by CIDR rules and non-IP frames alike', async (t) => {
    if (!guard(t)) return;
    const dir = tmp();
    const db = path.join(dir, 'words.db');
    writeFileSync(path.join(dir, 'ignore.txt'), `${V4A}\n`);
    const c = spawnIn(B, process.execPath, [RECORDER, 'record', '--iface', 'veth-b', '--db', db, '--interval-secs', '1', '--ignore-file', path.join(dir, 'ignore.txt'), '--metrics-listen', '127.0.0.1:9465']);
    const out = log(c);
    await waitForStderr(c, /recording veth-b/);
    // 5 requests from the ignored address and 5 replies to it; ARP before them is non-IP.
    sh('ip', ['netns', 'exec', A, 'ping', '-n', '-q', '-c', '5', '-i', '0.01', '-W', '2', V4B]);
    await sleep(2500);
    const js = "require('http').get('http://127.0.0.1:9465/metrics', (r) => { let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => process.stdout.write(b)); })";
    const metrics = sh('ip', ['netns', 'exec', B, process.execPath, '-e', js]);
    c.kill('SIGINT');
    assert.equal(await exited(c), 0, out());
    const metric = (name: string) => Number(metrics.match(new RegExp(`^${name} (\\S+)$`, 'm'))![1]);
    assert.equal(metric('tc_cidr_filtered_frames_total'), 10);
    // One total in every --count-in mode (docs/recording.md, kernel mode).
    assert.equal(metric('tc_filter_drops_total'), metric('tc_non_ip_frames_total') + metric('tc_cidr_filtered_frames_total'));
    assert.match(metrics, /^# HELP tc_non_ip_frames_total non-IP frames/m);
    assert.match(metrics, /^# HELP tc_cidr_filtered_frames_total frames filtered by CIDR rules/m);
    const lines = out().split('\n').filter((l) => / non-IP \d+ {2}filtered by CIDR rules \d+ /.test(l));
    const sum = (re: RegExp) => lines.reduce((a, l) => a + Number(l.match(re)![1]), 0);
    assert.equal(sum(/filtered by CIDR rules (\d+)/), 10);
    const st = status(db);
    assert.equal(st.filter_drops, 10);
    assert.equal(st.non_ip_frames, sum(/ non-IP (\d+) /));
    assert.ok(metric('tc_non_ip_frames_total') <= (st.non_ip_frames as number));
  });

  test('an interface that is down: one warning that nothing is captured until it is up; SIGHUP without CIDR files says there is nothing to reload', async (t) => {
    if (!guard(t)) return;
    sh('ip', ['-n', B, 'link', 'set', 'veth-b', 'down']);
    const db = path.join(tmp(), 'down.db');
    const c = live(db);
    const out = log(c);
    try {
      await waitForStderr(c, /recording veth-b/);
      await sleep(300);
      c.kill('SIGHUP');
      await waitForStderr(c, /SIGHUP/);
      await sleep(1200);
    } finally {
      sh('ip', ['-n', B, 'link', 'set', 'veth-b', 'up']);
    }
    c.kill('SIGINT');
    assert.equal(await exited(c), 0, out());
    const warnings = out().match(/warning: veth-b is down: nothing will be captured until it is up \(ip link set veth-b up\)/g) ?? [];
    assert.equal(warnings.length, 1, out());
    assert.match(out(), /traffic-counter: SIGHUP: nothing to reload \(no --ignore-file, --accept-source-file or --local-networks was given\)/);
  });
});
