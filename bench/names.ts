/**
 * The cost of reading names on replay: packets/s of `traffic-counter record --pcap FILE` with
 * `--max-names 0` (names off: nothing parsed past the headers) against the default, and of the
 * engine alone (examples/replay_bench.rs), runs alternated, medians, in the same command; on a
 * names-heavy capture (10% DNS responses, 1% ClientHellos, a tenth of them split over two
 * segments) and on the replay benchmark's capture (no names). Usage:
 *   npm run bench:names [-- --packets N --runs R]
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { generate, pcapHeader } from '../test/support/gen';
import { A, clientHello, dnsResponse, tcp, udp } from '../test/support/names-pcap';
import { arg, median } from './common';

const ROOT = path.join(__dirname, '..', '..');
const OUT = path.join(ROOT, 'bench', 'out');
const packets = arg('packets', 2_000_000);
const runs = arg('runs', 3);

/** A capture of `n` frames over 20 s: 10% DNS responses (5,000 names, 1-4 answers each), 1% ClientHellos, the rest 96-byte cuts of TCP and UDP frames. */
function namesHeavy(file: string, n: number): void {
  const fd = openSync(file, 'w');
  writeSync(fd, pcapHeader(65535));
  const t0 = 1_790_000_000;
  const parts: Buffer[] = [];
  let size = 0;
  const put = (i: number, f: Buffer, cap = f.length) => {
    const r = Buffer.alloc(16);
    const usec = Math.floor((i / n) * 20e6);
    r.writeUInt32LE(t0 + Math.floor(usec / 1e6), 0);
    r.writeUInt32LE(usec % 1e6, 4);
    r.writeUInt32LE(Math.min(cap, f.length), 8);
    r.writeUInt32LE(f.length, 12);
    parts.push(r, f.subarray(0, Math.min(cap, f.length)));
    size += 16 + Math.min(cap, f.length);
    if (size > 8 << 20) {
      writeSync(fd, Buffer.concat(parts));
      parts.length = 0;
      size = 0;
    }
  };
  const ip = (k: number) => `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`;
  const ordinary = [tcp('10.0.0.2', '192.0.2.1', 40000, 443, 1, Buffer.alloc(1400, 0x17)), udp('10.0.0.2', '192.0.2.1', 40000, 4500, Buffer.alloc(300)), tcp('192.0.2.1', '10.0.0.2', 443, 40000, 1, Buffer.alloc(0))];
  const hello = clientHello('www.example.com', 1650);
  for (let i = 0; i < n; i++) {
    if (i % 10 === 0) {
      const k = (i / 10) % 5000;
      const answers = Array.from({ length: 1 + (k % 4) }, (_, j) => A(ip(k * 4 + j)));
      put(i, udp('10.0.0.53', '10.0.0.2', 53, 40000 + (k % 1000), dnsResponse(`host${k}.example${k % 50}.com`, answers)));
    } else if (i % 100 === 1) {
      const c = (i / 100) | 0;
      const dst = ip(0x400000 + (c % 5000));
      if (c % 10 === 0) {
        put(i, tcp('10.0.0.2', dst, 30000 + (c % 30000), 443, 1, hello.subarray(0, 1448)));
        put(++i, tcp('10.0.0.2', dst, 30000 + (c % 30000), 443, 1449, hello.subarray(1448)));
      } else {
        put(i, tcp('10.0.0.2', dst, 30000 + (c % 30000), 443, 1, clientHello(`svc${c % 5000}.example.net`)));
      }
    } else {
      put(i, ordinary[i % 3], 96);
    }
  }
  writeSync(fd, Buffer.concat(parts));
  closeSync(fd);
}

function time(cmd: string, args: string[]): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return s;
}

/** Alternated runs of `f(0)` and `f(default)`: their medians. */
function pair(f: (maxNames: string[]) => number): [number, number, number[], number[]] {
  const off: number[] = [];
  const on: number[] = [];
  for (let i = 0; i < runs; i++) {
    off.push(f(['--max-names', '0']));
    on.push(f([]));
  }
  return [median(off), median(on), off, on];
}

function main(): void {
  mkdirSync(OUT, { recursive: true });
  const heavy = path.join(OUT, `names-${packets}.pcap`);
  if (!existsSync(heavy)) {
    process.stderr.write(`generating ${heavy} (${packets} packets, 10% DNS responses, 1% ClientHellos)...\n`);
    namesHeavy(heavy, packets);
  }
  const plain = path.join(OUT, `replay-${packets}.pcap`);
  if (!existsSync(plain)) {
    process.stderr.write(`generating ${plain} (${packets} packets, 100k hosts)...\n`);
    generate(plain, { packets, hosts: 100_000, flows: 1_000_000, seconds: 4 });
  }
  const cargo = spawnSync('cargo', ['build', '--release', '-q', '--example', 'replay_bench', '-p', 'traffic-counter-core'], { cwd: ROOT, stdio: 'inherit' });
  if (cargo.status !== 0) throw new Error('cargo build --example replay_bench failed');
  const engine = path.join(ROOT, 'target', 'release', 'examples', 'replay_bench');
  const db = path.join(OUT, 'names-bench.db');
  const record = (file: string) => (names: string[]) => {
    for (const ext of ['', '-wal', '-shm']) rmSync(db + ext, { force: true });
    return time(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli', 'traffic-counter.js'), 'record', '--pcap', file, '--quiet', '--no-progress', '--db', db, ...names]);
  };
  const alone = (file: string) => (names: string[]) => time(engine, [file, ...(names.length ? names : [])]);
  const mpps = (s: number) => `${(packets / s / 1e6).toFixed(2)} Mpps`;
  const runsOf = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' ');
  for (const [what, file] of [['names-heavy capture', heavy], ['replay benchmark capture (no names)', plain]] as const) {
    process.stdout.write(`${what}: ${packets} packets\n`);
    for (const [how, f] of [['traffic-counter record --pcap', record(file)], ['engine alone (replay_bench)', alone(file)]] as const) {
      const [off, on, offRuns, onRuns] = pair(f);
      process.stdout.write(
        `  ${how.padEnd(32)} --max-names 0: ${off.toFixed(2)} s (${mpps(off)}; ${runsOf(offRuns)})   default: ${on.toFixed(2)} s (${mpps(on)}; ${runsOf(onRuns)})   names cost ${(((on - off) / off) * 100).toFixed(1)}%\n`,
      );
    }
  }
}

main();
