/**
 * Live benchmark (issue 14), in a network-namespace pair on one veth: trafgen (netsniff-ng)
 * sends 64-byte UDP/IPv4 frames at its maximum from a source set of N addresses x 7 source ports
 * (default N = 1,000 and 100,000), pinned to CPU 0; the consumer records on the other end, pinned
 * to CPU 1. Consumers, each in every run: nothing (the baseline), `tcpdump -w /dev/null -s 128`,
 * `record --count-in ring` and `record --count-in kernel`, each of the two also with `--flows`.
 * A consumer the recorder refuses (live `--count-in kernel` before it exists) is reported as
 * "refused: <message>".
 *
 * veth hands a frame to the peer on the sending CPU (veth_xmit() in drivers/net/veth.c calls
 * __netif_rx(), which queues it to this CPU's backlog without RPS, netif_rx_internal() in
 * net/core/dev.c), so the receiving softirq (the packet socket's filter and ring copy, the
 * wake-ups, the IP stack) runs on CPU 0, which trafgen keeps
 * saturated. The cost a consumer puts on that CPU is therefore 1/rate(with it) - 1/rate(without
 * any consumer); its total cost per packet adds its own CPU time per packet offered. Other work
 * on a shared machine also takes time from CPU 0 and moves that rate, so the same total is also
 * given by CPU time: the generator CPU's time per packet (trafgen's, which includes the softirq
 * run in its context, and ksoftirqd's) against the baseline's, plus the consumer's.
 *
 * Before the timed runs, one check per source set: 7 x N frames captured by tcpdump into a file
 * must hold exactly N source addresses, 7 source ports and 7 x N (address, port) pairs, each
 * frame 60 bytes with a valid IPv4 header checksum and a valid UDP checksum.
 *
 * Usage (root): node dist/bench/live.js [--seconds 10] [--runs 3] [--sources 1000,100000]
 *   [--consumers tcpdump,ring,ring-flows,kernel,kernel-flows (the default; also ring-no-ebpf)]
 *   [--max-keys 1000000] [--no-check]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { A, arg, argList, B, cpuNs, MAC_B, median, setupNetns, sh, teardownNetns } from './common';

const ROOT = path.join(__dirname, '..', '..');
const RECORDER = path.join(ROOT, 'dist', 'src', 'cli', 'traffic-counter.js');
const OUT = path.join(ROOT, 'bench', 'out');
const SECONDS = arg('seconds', 10);
const RUNS = arg('runs', 3);
const SOURCE_SETS = argList('sources', '1000,100000').map(Number);
/** Large enough that every address and flow of 100k x 7 is its own key, never the overflow row. */
const MAX_KEYS = arg('max-keys', 1_000_000);
const CHECK = !process.argv.includes('--no-check');
const PORTS = 7;
const FIRST_PORT = 1024;
const FIRST_SOURCE = 0x0b000000; // 11.0.0.0 on: spoofed, never a real neighbour
const GENERATOR_CPU = 0;
const CONSUMER_CPU = 1;
const INTERVAL_SECS = 5;
/** After the traffic, a recorder gets one interval and a margin to write it. */
const RECORDER_SETTLE_MS = INTERVAL_SECS * 1000 + 2000;

interface Consumer {
  name: string;
  label: string;
  /** The recorder's extra arguments; undefined for tcpdump. */
  record?: string[];
}

const ALL_CONSUMERS: Consumer[] = [
  { name: 'tcpdump', label: 'tcpdump -w /dev/null -s 128' },
  { name: 'ring', label: 'record --count-in ring', record: ['--count-in', 'ring'] },
  { name: 'ring-flows', label: 'record --count-in ring --flows', record: ['--count-in', 'ring', '--flows'] },
  { name: 'kernel', label: 'record --count-in kernel', record: ['--count-in', 'kernel'] },
  { name: 'kernel-flows', label: 'record --count-in kernel --flows', record: ['--count-in', 'kernel', '--flows'] },
  // Only on request: what the eBPF socket filter adds to ring mode.
  { name: 'ring-no-ebpf', label: 'record --count-in ring --no-ebpf', record: ['--count-in', 'ring', '--no-ebpf'] },
  // Only on request: what the names socket (its filter on every frame) adds in kernel mode.
  { name: 'kernel-flows-no-names', label: 'record --count-in kernel --flows --max-names 0', record: ['--count-in', 'kernel', '--flows', '--max-names', '0'] },
];
const DEFAULT_CONSUMERS = 'tcpdump,ring,ring-flows,kernel,kernel-flows';
const CONSUMERS = argList('consumers', DEFAULT_CONSUMERS).map((n) => {
  const c = ALL_CONSUMERS.find((x) => x.name === n);
  if (!c) throw new Error(`--consumers: unknown consumer ${n}; choose from ${ALL_CONSUMERS.map((x) => x.name).join(', ')}`);
  return c;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exited = (c: ChildProcess) => new Promise<number | null>((r) => (c.exitCode !== null ? r(c.exitCode) : c.once('exit', (code) => r(code))));

/** The trafgen packet: eth 14 + IPv4 20 + UDP 8 + 18 bytes = 60 (64 on the wire with the FCS). */
function trafgenConf(sources: number): string {
  const conf = path.join(OUT, `live-${sources}.trafgen`);
  // Address and port both step once a frame; 7 is coprime to 1,000 and 100,000, so 7 x N
  // consecutive frames are N x 7 distinct pairs. trafgen recomputes both checksums of a header
  // whose fields it changes at run time.
  writeFileSync(
    conf,
    `{ eth(da=${MAC_B}, sa=02:00:00:00:77:01), ` +
      `ipv4(sa=dinc(${FIRST_SOURCE}, ${FIRST_SOURCE + sources - 1}), da=10.77.0.2, ttl=64), ` +
      `udp(sp=dinc(${FIRST_PORT}, ${FIRST_PORT + PORTS - 1}), dp=9999), fill(0, 18) }\n`,
  );
  return conf;
}

function txPackets(): number {
  return Number(sh('ip', ['netns', 'exec', A, 'cat', '/sys/class/net/veth-a/statistics/tx_packets']).trim());
}

/** The CPU's softirq thread, which runs what softirq the sending task leaves over. */
function ksoftirqd(cpu: number): number {
  for (const pid of readdirSync('/proc')) {
    if (/^\d+$/.test(pid) && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === `ksoftirqd/${cpu}`) return Number(pid);
  }
  throw new Error(`no ksoftirqd/${cpu} in /proc`);
}
const KSOFTIRQD = ksoftirqd(GENERATOR_CPU);

/**
 * Whether the kernel keeps irq time out of tasks' CPU (CONFIG_IRQ_TIME_ACCOUNTING): then
 * update_rq_clock_task() (kernel/sched/core.c) subtracts it from the task's clock, so the
 * softirq run in trafgen's context is not in its CPU time and is read from /proc/stat instead
 * (which then holds all of it but ksoftirqd's, irqtime_account_irq() in kernel/sched/cputime.c).
 * Without it, a task's CPU time includes the softirq it ran.
 */
function irqTimeAccounting(): boolean {
  const release = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  let config: string;
  try {
    config = gunzipSync(readFileSync('/proc/config.gz')).toString();
  } catch {
    try {
      config = readFileSync(`/boot/config-${release}`, 'utf8');
    } catch {
      throw new Error(`neither /proc/config.gz nor /boot/config-${release} is readable: the benchmark needs the kernel's CONFIG_IRQ_TIME_ACCOUNTING to split the generator CPU's time (modprobe configs, or install the kernel's config file)`);
    }
  }
  return /^CONFIG_IRQ_TIME_ACCOUNTING=y$/m.test(config);
}
const IRQ_TIME = irqTimeAccounting();

/** The CPU's softirq time from /proc/stat, in ns (USER_HZ 100). */
function softirqNs(cpu: number): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `))!;
  return Number(line.trim().split(/\s+/)[7]) * (1e9 / 100);
}

/** bash's `times`, children line ("0m1.230s 0m4.560s"), in ns. */
function childTimesNs(line: string): number {
  return line
    .trim()
    .split(/\s+/)
    .map((t) => {
      const m = t.match(/^(\d+)m([\d.]+)s$/);
      if (!m) throw new Error(`unexpected output of bash times: ${line}`);
      return (Number(m[1]) * 60 + Number(m[2])) * 1e9;
    })
    .reduce((a, b) => a + b, 0);
}

interface Sent {
  /** Frames veth-a sent. */
  offered: number;
  /** trafgen's own rate: its frames over its send loop's time. */
  pps: number;
  /**
   * The generator CPU's time per frame: trafgen's, ksoftirqd's and the softirq run in trafgen's
   * context (see irqTimeAccounting). Unlike 1/pps it leaves out what other work on the machine
   * takes from that CPU.
   */
  cpuNsPerPkt: number;
}

/** Runs trafgen pinned to the generator CPU, for SECONDS or for `count` frames `gapUs` apart. */
async function generate(conf: string, opts: { count?: number; gapUs?: number } = {}): Promise<Sent> {
  const tx0 = txPackets();
  const k0 = cpuNs(KSOFTIRQD);
  const s0 = IRQ_TIME ? softirqNs(GENERATOR_CPU) : 0;
  const limit = opts.count ? `--num ${opts.count} --gap ${opts.gapUs ?? 0}us` : '';
  // --cpus 1: one sender; --no-sock-mem (its -A is not accepted by 0.6.8): the namespace's
  // socket-memory sysctls are read-only. bash's `times` gives the CPU of trafgen and its worker.
  const script =
    `${opts.count ? '' : `timeout -s INT ${SECONDS} `}taskset -c ${GENERATOR_CPU} trafgen --dev veth-a --conf ${conf} --cpus 1 --no-sock-mem ${limit} 2>&1; times`;
  const child = spawn('ip', ['netns', 'exec', A, 'bash', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await exited(child);
  const m = out.match(/(\d+) sec, +(\d+) usec on CPU\d+ \((\d+) packets\)/);
  if (!m) throw new Error(`trafgen gave no statistics: ${out}`);
  const offered = txPackets() - tx0;
  const secs = Number(m[1]) + Number(m[2]) / 1e6;
  const lines = out.trim().split('\n');
  const softirq = IRQ_TIME ? softirqNs(GENERATOR_CPU) - s0 : 0;
  const cpu = childTimesNs(lines[lines.length - 1]) + cpuNs(KSOFTIRQD) - k0 + softirq;
  return { offered, pps: Number(m[3]) / secs, cpuNsPerPkt: cpu / offered };
}

/** Resolves with the stderr so far once `re` matches it, or with an Error (the child's exit). */
function started(child: ChildProcess, re: RegExp): Promise<{ log: () => string; exitedEarly?: string }> {
  return new Promise((res, rej) => {
    let buf = '';
    const log = () => buf;
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`no ${re} from the consumer within 30 s (killed it): ${buf}`));
    }, 30_000);
    child.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (re.test(buf)) {
        clearTimeout(t);
        res({ log });
      }
    });
    child.once('exit', () => {
      clearTimeout(t);
      res({ log, exitedEarly: buf.trim() });
    });
  });
}

interface Sample {
  sent: Sent;
  drops: number;
  /** IPv4 packets the consumer counted (recorder only). */
  counted?: number;
  cpuNsPerPkt: number;
  /** The part of it in the capture engine's threads (tc-worker-N, tc-merger; recorder only). */
  engineNsPerPkt?: number;
  /** The mode the start line states ("ring", "kernel"). */
  mode?: string;
  hwm?: number;
  lost?: number;
}
type Outcome = Sample | { refused: string };

async function runConsumer(c: Consumer, conf: string): Promise<Outcome> {
  const db = path.join(OUT, 'live.db');
  for (const e of ['', '-wal', '-shm']) rmSync(db + e, { force: true });
  const argv = c.record
    ? [process.execPath, RECORDER, 'record', '--iface', 'veth-b', '--db', db, '--workers', '1', '--interval-secs', String(INTERVAL_SECS), '--max-keys', String(MAX_KEYS), '--max-db-size', '0', ...c.record]
    : ['tcpdump', '-i', 'veth-b', '-w', '/dev/null', '-s', '128', '-n'];
  // `ip netns exec` and taskset exec, so the child's pid is the consumer's.
  const child = spawn('ip', ['netns', 'exec', B, 'taskset', '-c', String(CONSUMER_CPU), ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
  const s = await started(child, c.record ? /recording veth-b/ : /listening on/);
  if (s.exitedEarly !== undefined) {
    return { refused: s.exitedEarly.replace(/^traffic-counter: error: /, '').split('\n')[0] };
  }
  await sleep(500);
  const c0 = cpuNs(child.pid!);
  const e0 = engineCpuNs(child.pid!);
  const sent = await generate(conf);
  await sleep(c.record ? RECORDER_SETTLE_MS : 1000);
  const c1 = cpuNs(child.pid!);
  const engineNsPerPkt = (engineCpuNs(child.pid!) - e0) / sent.offered;
  const hwm = Number(readFileSync(`/proc/${child.pid}/status`, 'utf8').match(/VmHWM:\s+(\d+) kB/)![1]) * 1024;
  child.kill('SIGINT');
  await exited(child);
  const cpuNsPerPkt = (c1 - c0) / sent.offered;
  if (!c.record) {
    const m = s.log().match(/(\d+) packets dropped by kernel/);
    if (!m) throw new Error(`tcpdump did not report its drops: ${s.log()}`);
    return { sent, drops: Number(m[1]), cpuNsPerPkt };
  }
  const d = new Database(db, { readonly: true });
  const r = d.prepare('select coalesce(sum(ring_drops), 0) as drops, sum(ipv4_packets) as v4 from batches').get() as { drops: number; v4: number };
  const lost = d.prepare("select count(*) from events where kind = 'lost-interval'").pluck().get() as number;
  d.close();
  const mode = s.log().match(/counted in the (\w+)/)?.[1] ?? '?';
  return { sent, drops: r.drops, counted: r.v4, cpuNsPerPkt, engineNsPerPkt, mode, hwm, lost };
}

/** CPU of the capture engine's own threads (tc-worker-N, tc-merger), in ns; 0 for tcpdump. */
function engineCpuNs(pid: number): number {
  let n = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').startsWith('tc-')) n += cpuNs(`${pid}/task/${tid}`);
    } catch {
      /* thread gone */
    }
  }
  return n;
}

/** 7 x N frames through tcpdump into a file: the source set and the checksums are what the benchmark says. */
async function checkFrames(sources: number, conf: string): Promise<string> {
  const file = path.join(OUT, `live-check-${sources}.pcap`);
  const td = spawn('ip', ['netns', 'exec', B, 'tcpdump', '-i', 'veth-b', '-w', file, '-s', '128', '-n', '-B', '262144', 'udp'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const s = await started(td, /listening on/);
  if (s.exitedEarly !== undefined) throw new Error(`tcpdump for the frame check did not start: ${s.exitedEarly}`);
  await generate(conf, { count: PORTS * sources, gapUs: 2 });
  await sleep(1000);
  td.kill('SIGINT');
  await exited(td);
  const buf = readFileSync(file);
  rmSync(file);
  if (buf.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error(`${file}: not a little-endian microsecond pcap`);
  const addrs = new Set<number>();
  const ports = new Set<number>();
  const pairs = new Set<number>();
  let frames = 0;
  let badIp = 0;
  let badUdp = 0;
  let badLen = 0;
  for (let off = 24; off + 16 <= buf.length; ) {
    const incl = buf.readUInt32LE(off + 8);
    const orig = buf.readUInt32LE(off + 12);
    const f = buf.subarray(off + 16, off + 16 + incl);
    off += 16 + incl;
    if (f.readUInt16BE(12) !== 0x0800 || f[23] !== 17) continue;
    frames++;
    if (orig !== 60) badLen++;
    if (sum16(f, 14, 34) !== 0xffff) badIp++;
    // The UDP checksum over the pseudo-header (addresses, protocol, UDP length) and the datagram.
    const udpLen = f.readUInt16BE(38);
    let acc = sum16(f, 26, 34) + 17 + udpLen;
    acc = fold(acc + sum16(f, 34, 34 + udpLen));
    if (acc !== 0xffff) badUdp++;
    const src = f.readUInt32BE(26);
    const sport = f.readUInt16BE(34);
    addrs.add(src);
    ports.add(sport);
    pairs.add((src - FIRST_SOURCE) * PORTS + (sport - FIRST_PORT));
  }
  const got = `${frames} UDP frames: ${addrs.size} source addresses, ${ports.size} source ports, ${pairs.size} (address, port) pairs; bad IPv4 checksums ${badIp}, bad UDP checksums ${badUdp}, not 60 bytes ${badLen}`;
  const inRange = [...addrs].every((a) => a >= FIRST_SOURCE && a < FIRST_SOURCE + sources) && [...ports].every((p) => p >= FIRST_PORT && p < FIRST_PORT + PORTS);
  if (frames !== PORTS * sources || addrs.size !== sources || ports.size !== PORTS || pairs.size !== PORTS * sources || badIp + badUdp + badLen > 0 || !inRange) {
    throw new Error(`the generator's frames are not ${sources} x ${PORTS} valid 64-byte UDP sources (${got}): check the trafgen version and ${conf}`);
  }
  return got;
}

/** One's-complement sum of the 16-bit words of f[from, to), folded (odd lengths padded with 0). */
function sum16(f: Buffer, from: number, to: number): number {
  let acc = 0;
  for (let i = from; i + 1 < to; i += 2) acc += f.readUInt16BE(i);
  if ((to - from) % 2 === 1) acc += f[to - 1] << 8;
  return fold(acc);
}

function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return acc;
}

const ns = (x: number) => `${x.toFixed(0)} ns`;
const fmt = (xs: number[], f: (x: number) => string) => `${f(median(xs))} (${xs.map((x) => x.toFixed(0)).join(', ')})`;

async function benchSources(sources: number): Promise<void> {
  const conf = trafgenConf(sources);
  process.stdout.write(`\n## ${sources.toLocaleString('en')} sources x ${PORTS} ports, ${SECONDS} s a run, ${RUNS} runs, medians (runs in brackets)\n\n`);
  if (CHECK) process.stdout.write(`frame check (tcpdump, ${PORTS * sources} frames): ${await checkFrames(sources, conf)}\n\n`);
  const baseline: Sent[] = [];
  const samples = new Map<string, Sample[]>(CONSUMERS.map((c) => [c.name, []]));
  const refused = new Map<string, string>();
  for (let run = 0; run < RUNS; run++) {
    baseline.push(await generate(conf));
    for (const c of CONSUMERS) {
      if (refused.has(c.name)) continue;
      const o = await runConsumer(c, conf);
      if ('refused' in o) refused.set(c.name, o.refused);
      else samples.get(c.name)!.push(o);
    }
  }
  const basePps = baseline.map((b) => b.pps);
  process.stdout.write(
    `no consumer: ${fmt(basePps.map((p) => p / 1e3), (x) => `${x.toFixed(0)} kpps`)} offered; generator CPU ${fmt(baseline.map((b) => b.cpuNsPerPkt), ns)} a packet (trafgen + ksoftirqd/${GENERATOR_CPU}${IRQ_TIME ? ` + CPU ${GENERATOR_CPU}'s softirq` : ''})\n\n`,
  );
  // A run's total cost: what a packet costs the generator's saturated CPU beyond that run's
  // baseline, plus the consumer's own CPU; by rate as the issue defines it, and by CPU time.
  const byRate = (s: Sample, run: number) => 1e9 / s.sent.pps - 1e9 / basePps[run] + s.cpuNsPerPkt;
  const byCpu = (s: Sample, run: number) => s.sent.cpuNsPerPkt - baseline[run].cpuNsPerPkt + s.cpuNsPerPkt;
  const tcp = samples.get('tcpdump') ?? [];
  const ratio = (name: string, f: (s: Sample, run: number) => number) => {
    if (tcp.length === 0 || name === 'tcpdump') return '-';
    return `${median(samples.get(name)!.map((s, run) => f(s, run) / f(tcp[run], run))).toFixed(2)}x`;
  };
  process.stdout.write(
    '| consumer | offered, packets (median kpps) | kernel drops | counted (IPv4) | consumer CPU/packet | total/packet, by rate | total/packet, by CPU time | vs tcpdump: CPU, total by rate, by CPU time | peak RSS; lost intervals |\n',
  );
  process.stdout.write('|---|---|---|---|---|---|---|---|---|\n');
  for (const c of CONSUMERS) {
    const r = refused.get(c.name);
    if (r !== undefined) {
      process.stdout.write(`| ${c.label} | refused: ${r} ||||||||\n`);
      continue;
    }
    const xs = samples.get(c.name)!;
    const cells = [
      c.label + (c.record ? ` (start line: counted in the ${[...new Set(xs.map((s) => s.mode))].join('/')})` : ''),
      `${xs.map((s) => s.sent.offered).join(', ')} (${(median(xs.map((s) => s.sent.pps)) / 1e3).toFixed(0)})`,
      xs.map((s) => s.drops).join(', '),
      c.record ? xs.map((s) => s.counted).join(', ') : '-',
      fmt(xs.map((s) => s.cpuNsPerPkt), ns) + (c.record ? `; capture threads ${fmt(xs.map((s) => s.engineNsPerPkt!), ns)}` : ''),
      fmt(xs.map(byRate), ns),
      fmt(xs.map(byCpu), ns),
      [ratio(c.name, (s) => s.cpuNsPerPkt), ratio(c.name, byRate), ratio(c.name, byCpu)].join(', '),
      c.record ? `${(median(xs.map((s) => s.hwm!)) / 2 ** 20).toFixed(0)} MiB; ${xs.map((s) => s.lost).join(', ')}` : '-',
    ];
    process.stdout.write(`| ${cells.join(' | ')} |\n`);
  }
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  setupNetns();
  try {
    process.stdout.write(`# bench:live: trafgen --cpus 1 on CPU ${GENERATOR_CPU}, consumer on CPU ${CONSUMER_CPU}, recorder --workers 1 --max-keys ${MAX_KEYS} --max-db-size 0; softirq time ${IRQ_TIME ? 'apart from tasks (CONFIG_IRQ_TIME_ACCOUNTING): added from /proc/stat' : "in the tasks' CPU time"}; load before: ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n`);
    for (const sources of SOURCE_SETS) await benchSources(sources);
  } finally {
    teardownNetns();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
