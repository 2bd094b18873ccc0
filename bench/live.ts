/**
 * Live benchmark, in a network-namespace pair: 64-byte UDP frames from 100k spoofed sources at
 * the sender's maximum (native/core/examples/flood.rs), recorded on the receiving end with
 * `--flows`. Reports kernel drops and the recorder's CPU time per packet next to
 * `tcpdump -w /dev/null` on the same traffic, medians of several runs in the same command.
 * Also: the recorder's peak memory, and the intervals it recorded as lost (a flood long enough
 * to cross minute boundaries, `--seconds 150 --packets 45000000`, shows what flow minutes
 * grouped in SQL cost while batches keep coming).
 * Usage (root): node dist/bench/live.js [--packets 3000000] [--sources 100000] [--seconds 30] [--runs 3]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { A, arg, B, MAC_B, median, setupNetns, sh, teardownNetns } from './common';

const ROOT = path.join(__dirname, '..', '..');
const FLOOD = path.join(ROOT, 'target', 'release', 'examples', 'flood');
const RECORDER = path.join(ROOT, 'dist', 'src', 'cli', 'traffic-counter.js');
const PACKETS = arg('packets', 3_000_000);
const SOURCES = arg('sources', 100_000);
const MAX_KEYS = arg('max-keys', 1_000_000);
const RUNS = arg('runs', 3);
/** The flood's time limit. */
const SECONDS = arg('seconds', 30);
const TICK_NS = 1e9 / 100;

/** utime + stime of a process and all its threads, in ns. */
function cpuNs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) * TICK_NS;
}

/** CPU of the capture engine's own threads (tc-worker-N, tc-merger), in ns. */
function engineCpuNs(pid: number): number {
  let n = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      if (!comm.startsWith('tc-')) continue;
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      n += (Number(rest[11]) + Number(rest[12])) * TICK_NS;
    } catch {
      /* thread gone */
    }
  }
  return n;
}

function waitFor(child: ChildProcess, re: RegExp): Promise<void> {
  return new Promise((res, rej) => {
    let buf = '';
    const t = setTimeout(() => rej(new Error(`timeout waiting for ${re}: ${buf}`)), 20_000);
    child.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (re.test(buf)) {
        clearTimeout(t);
        res();
      }
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exit = (c: ChildProcess) => new Promise((r) => c.once('exit', r));

function flood(): { sent: number; secs: number } {
  const out = sh('ip', ['netns', 'exec', A, FLOOD, 'veth-a', MAC_B, String(PACKETS), String(SOURCES), String(SECONDS)]).trim().split(' ');
  return { sent: Number(out[0]), secs: Number(out[1]) };
}

async function runRecorder(): Promise<{ nsPerPkt: number; engineNsPerPkt: number; drops: number; received: number; pps: number; hwm: number; lost: number; intervals: number }> {
  const db = path.join(ROOT, 'bench', 'out', 'live.db');
  for (const e of ['', '-wal', '-shm']) rmSync(db + e, { force: true });
  const child = spawn('ip', ['netns', 'exec', B, process.execPath, RECORDER, 'record', '--iface', 'veth-b', '--db', db, '--flows', '--workers', '2', '--max-keys', String(MAX_KEYS)], { stdio: ['ignore', 'ignore', 'pipe'] });
  await waitFor(child, /recording veth-b/);
  await sleep(500);
  // `ip netns exec` execs node, so the child's pid is the recorder's.
  const c0 = cpuNs(child.pid!);
  const e0 = engineCpuNs(child.pid!);
  const f = flood();
  await sleep(6000);
  const c1 = cpuNs(child.pid!);
  const e1 = engineCpuNs(child.pid!);
  const hwm = Number(readFileSync(`/proc/${child.pid}/status`, 'utf8').match(/VmHWM:\s+(\d+) kB/)![1]) * 1024;
  child.kill('SIGINT');
  await exit(child);
  const d = new Database(db, { readonly: true });
  const r = d.prepare('select sum(ring_packets) as p, sum(ring_drops) as dr, count(*) as n from batches').get() as { p: number; dr: number; n: number };
  const lost = d.prepare("select count(*) from events where kind = 'lost-interval'").pluck().get() as number;
  d.close();
  return { nsPerPkt: (c1 - c0) / f.sent, engineNsPerPkt: (e1 - e0) / f.sent, drops: r.dr, received: r.p, pps: f.sent / f.secs, hwm, lost, intervals: r.n };
}

async function runTcpdump(): Promise<{ nsPerPkt: number; drops: string }> {
  const child = spawn('ip', ['netns', 'exec', B, 'tcpdump', '-i', 'veth-b', '-w', '/dev/null', '-n'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await waitFor(child, /listening on/);
  await sleep(500);
  const c0 = cpuNs(child.pid!);
  const f = flood();
  await sleep(3000);
  const c1 = cpuNs(child.pid!);
  child.kill('SIGINT');
  await exit(child);
  const m = err.match(/(\d+) packets dropped by kernel/);
  return { nsPerPkt: (c1 - c0) / f.sent, drops: m ? m[1] : '?' };
}

async function main(): Promise<void> {
  setupNetns();
  try {
    const ours: Awaited<ReturnType<typeof runRecorder>>[] = [];
    const tcpd: Awaited<ReturnType<typeof runTcpdump>>[] = [];
    for (let i = 0; i < RUNS; i++) {
      ours.push(await runRecorder());
      tcpd.push(await runTcpdump());
    }
    const print = (k: string, v: string) => process.stdout.write(`${k.padEnd(44)} ${v}\n`);
    print('recorder peak memory (VmHWM)', `${(median(ours.map((o) => o.hwm)) / 2 ** 20).toFixed(0)} MiB with --max-keys ${MAX_KEYS}`);
    print('flood', `${PACKETS} x 64-byte UDP frames from ${SOURCES} sources, ${(median(ours.map((o) => o.pps)) / 1e6).toFixed(2)} Mpps sent (median)`);
    print('traffic-counter record --flows, CPU/packet', `${median(ours.map((o) => o.nsPerPkt)).toFixed(0)} ns (runs: ${ours.map((o) => o.nsPerPkt.toFixed(0)).join(' ')})`);
    print('  of which capture engine threads', `${median(ours.map((o) => o.engineNsPerPkt)).toFixed(0)} ns (runs: ${ours.map((o) => o.engineNsPerPkt.toFixed(0)).join(' ')}); the rest is writing and rolling up ~10^6 flow rows per interval`);
    print('traffic-counter kernel drops', ours.map((o) => `${o.drops} of ${o.received}`).join(', '));
    print('intervals written, recorded as lost', ours.map((o) => `${o.intervals}, ${o.lost}`).join('; '));
    print('tcpdump -w /dev/null, CPU/packet', `${median(tcpd.map((o) => o.nsPerPkt)).toFixed(0)} ns (runs: ${tcpd.map((o) => o.nsPerPkt.toFixed(0)).join(' ')})`);
    print('tcpdump kernel drops', tcpd.map((o) => o.drops).join(', '));
    print('ratio (ours / tcpdump CPU per packet)', `${(median(ours.map((o) => o.nsPerPkt)) / median(tcpd.map((o) => o.nsPerPkt))).toFixed(1)}x`);
  } finally {
    teardownNetns();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
