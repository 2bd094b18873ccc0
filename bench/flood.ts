/**
 * Flood benchmark, in a network-namespace pair: 64-byte UDP frames from SOURCES spoofed source
 * addresses (default 1,000,000) at the generator's maximum for SECONDS (default 60), recorded on
 * the receiving end with default options and `--flows`, once per configuration of extra
 * recorder arguments: the defaults, and the disk budget off (`--max-db-size 0`, run only when
 * `record --help` knows the flag). Reports the file size, the recorder's peak RSS (VmHWM) beside
 * the budget its start line states, kernel drops, and packets counted against packets sent,
 * medians of RUNS runs.
 * The generator is trafgen (netsniff-ng) when installed, else native/core/examples/flood.rs.
 * Usage (root): node dist/bench/flood.js [--seconds 60] [--sources 1000000] [--runs 1]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { A, arg, B, MAC_B, median, setupNetns, sh, teardownNetns } from './common';

const ROOT = path.join(__dirname, '..', '..');
const FLOOD = path.join(ROOT, 'target', 'release', 'examples', 'flood');
const RECORDER = path.join(ROOT, 'dist', 'src', 'cli', 'traffic-counter.js');
const OUT = path.join(ROOT, 'bench', 'out');
const SECONDS = arg('seconds', 60);
const SOURCES = arg('sources', 1_000_000);
const RUNS = arg('runs', 1);
const FIRST_SOURCE = 0x0b000000; // 11.0.0.0 on: spoofed, never a real neighbour

const CONFIGS: string[][] = [[], ['--max-db-size', '0']];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exit = (c: ChildProcess) => new Promise((r) => c.once('exit', r));
const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;

function hasTrafgen(): boolean {
  return spawnSync('trafgen', ['-v'], { stdio: 'ignore' }).error === undefined;
}

function txPackets(): number {
  return Number(sh('ip', ['netns', 'exec', A, 'cat', '/sys/class/net/veth-a/statistics/tx_packets']).trim());
}

/** Floods for SECONDS; returns the packets veth-a sent. */
function flood(): { sent: number; generator: string } {
  const before = txPackets();
  if (hasTrafgen()) {
    const conf = path.join(OUT, 'flood.trafgen');
    // eth 14 + IPv4 20 + UDP 8 + 18 bytes = 60 (64 on the wire); the source counts through SOURCES addresses.
    writeFileSync(
      conf,
      `{ eth(da=${MAC_B}, sa=02:00:00:00:77:01), ipv4(sa=dinc(${FIRST_SOURCE}, ${FIRST_SOURCE + SOURCES - 1}), da=10.77.0.2, ttl=64), udp(sp=1024, dp=9999), fill(0, 18) }\n`,
    );
    spawnSync('ip', ['netns', 'exec', A, 'timeout', '-s', 'INT', String(SECONDS), 'trafgen', '--dev', 'veth-a', '--conf', conf, '--cpus', '1'], { stdio: 'ignore' });
  } else {
    sh('ip', ['netns', 'exec', A, FLOOD, 'veth-a', MAC_B, String(1e12), String(SOURCES), String(SECONDS)]);
  }
  return { sent: txPackets() - before, generator: hasTrafgen() ? 'trafgen --cpus 1' : 'examples/flood.rs' };
}

interface Run {
  hwm: number;
  budget: number;
  fileBytes: number;
  drops: number;
  ringPackets: number;
  counted: number;
  sent: number;
  generator: string;
  lost: number;
}

async function runOnce(extra: string[]): Promise<Run> {
  const db = path.join(OUT, 'flood.db');
  for (const e of ['', '-wal', '-shm']) rmSync(db + e, { force: true });
  const child = spawn('ip', ['netns', 'exec', B, process.execPath, RECORDER, 'record', '--iface', 'veth-b', '--db', db, '--flows', ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  for (let i = 0; i < 200 && !/recording veth-b/.test(log); i++) await sleep(100);
  if (!/recording veth-b/.test(log)) throw new Error(`the recorder did not start: ${log}`);
  const budget = Number(log.match(/memory at most ([\d.]+) MiB/)?.[1] ?? NaN) * 2 ** 20;
  await sleep(500);
  const f = flood();
  // Two intervals after the flood: its last interval is written.
  await sleep(11_000);
  const hwm = Number(readFileSync(`/proc/${child.pid}/status`, 'utf8').match(/VmHWM:\s+(\d+) kB/)![1]) * 1024;
  child.kill('SIGINT');
  await exit(child);
  const size = (f: string) => {
    try {
      return statSync(f).size;
    } catch {
      return 0;
    }
  };
  const d = new Database(db, { readonly: true });
  const r = d.prepare('select sum(ring_packets) as p, sum(ring_drops) as dr, sum(ipv4_packets) as c from batches').get() as { p: number; dr: number; c: number };
  const lost = d.prepare("select count(*) from events where kind = 'lost-interval'").pluck().get() as number;
  d.close();
  return { hwm, budget, fileBytes: size(db) + size(db + '-wal'), drops: r.dr, ringPackets: r.p, counted: r.c, sent: f.sent, generator: f.generator, lost };
}

async function main(): Promise<void> {
  const help = sh(process.execPath, [RECORDER, 'record', '--help']);
  const configs = CONFIGS.filter((c) => c.every((a) => !a.startsWith('--') || help.includes(a)));
  for (const c of CONFIGS) if (!configs.includes(c)) process.stdout.write(`skipped [${c.join(' ')}]: record --help does not know ${c[0]}\n`);
  setupNetns();
  try {
    for (const extra of configs) {
      const runs: Run[] = [];
      for (let i = 0; i < RUNS; i++) runs.push(await runOnce(extra));
      const med = (k: keyof Run) => median(runs.map((r) => r[k] as number));
      const print = (k: string, v: string) => process.stdout.write(`  ${k.padEnd(34)} ${v}\n`);
      process.stdout.write(`record --flows ${extra.join(' ') || '(defaults)'}: ${SECONDS} s from ${SOURCES} sources, ${runs[0].generator}, median of ${RUNS}\n`);
      print('packets sent', `${med('sent')} (${(med('sent') / SECONDS / 1e6).toFixed(2)} Mpps)`);
      print('packets counted (IPv4)', `${med('counted')} (runs: ${runs.map((r) => `${r.counted} of ${r.sent}`).join(', ')})`);
      print('kernel drops', `${med('drops')} of ${med('ringPackets')}`);
      print('intervals recorded as lost', `${med('lost')}`);
      print('peak RSS (VmHWM)', `${mib(med('hwm'))} (stated budget ${mib(med('budget'))}; runs: ${runs.map((r) => mib(r.hwm)).join(', ')})`);
      print('file size (db + wal)', `${mib(med('fileBytes'))}`);
    }
  } finally {
    teardownNetns();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
