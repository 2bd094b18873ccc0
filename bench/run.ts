/**
 * Replay benchmark: packets/s of `traffic-counter record --pcap FILE --flows` (database writes
 * included) against `tcpdump -r FILE -w /dev/null` on the same file, and the capture engine
 * alone on it (`examples/replay_bench.rs --flows`, the recorder's default `--max-keys`), medians
 * of several runs in the same command, runs alternated. Usage: npm run bench [-- --packets N --runs R]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { generate } from '../test/support/gen';
import { arg, median } from './common';

const ROOT = path.join(__dirname, '..', '..');
const OUT = path.join(ROOT, 'bench', 'out');
const packets = arg('packets', 4_000_000);
const runs = arg('runs', 3);

function time(cmd: string, args: string[]): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return s;
}


function main(): void {
  mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, `replay-${packets}.pcap`);
  if (!existsSync(file)) {
    process.stderr.write(`generating ${file} (${packets} packets, 100k hosts, ~1M flows)...\n`);
    generate(file, { packets, hosts: 100_000, flows: 1_000_000, seconds: 4 });
  }
  const mb = statSync(file).size / 1e6;
  const cargo = spawnSync('cargo', ['build', '--release', '-q', '--example', 'replay_bench', '-p', 'traffic-counter-core'], { cwd: ROOT, stdio: 'inherit' });
  if (cargo.status !== 0) throw new Error('cargo build --example replay_bench failed');
  const engine = path.join(ROOT, 'target', 'release', 'examples', 'replay_bench');
  const tcpdump: number[] = [];
  const alone: number[] = [];
  const ours: number[] = [];
  for (let i = 0; i < runs; i++) {
    tcpdump.push(time('tcpdump', ['-r', file, '-w', '/dev/null']));
    alone.push(time(engine, [file, '--flows']));
    const db = path.join(OUT, 'bench.db');
    for (const ext of ['', '-wal', '-shm']) rmSync(db + ext, { force: true });
    ours.push(time(process.execPath, [path.join(ROOT, 'dist', 'src', 'cli', 'traffic-counter.js'), 'record', '--pcap', file, '--flows', '--quiet', '--no-progress', '--db', db]));
  }
  const t = median(tcpdump);
  const a = median(alone);
  const o = median(ours);
  const rows = [
    ['file', `${packets} packets, ${mb.toFixed(0)} MB`],
    ['tcpdump -r FILE -w /dev/null', `${t.toFixed(2)} s median of ${runs} (${(packets / t / 1e6).toFixed(2)} Mpps) runs: ${tcpdump.map((x) => x.toFixed(2)).join(' ')}`],
    ['engine alone (replay_bench --flows)', `${a.toFixed(2)} s median of ${runs} (${(packets / a / 1e6).toFixed(2)} Mpps) runs: ${alone.map((x) => x.toFixed(2)).join(' ')}`],
    ['traffic-counter record --pcap --flows', `${o.toFixed(2)} s median of ${runs} (${(packets / o / 1e6).toFixed(2)} Mpps) runs: ${ours.map((x) => x.toFixed(2)).join(' ')}`],
    ['ratio (ours / tcpdump packets/s)', `${(t / o).toFixed(2)}x (engine alone ${(t / a).toFixed(2)}x)`],
  ];
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(40)} ${v}\n`);
}

main();
