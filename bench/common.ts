/** Helpers shared by the benchmarks. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** `--name N` from the command line, or `fallback`. */
export function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

export function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

/** The namespace pair of the live benchmarks: A sends on veth-a, B records on veth-b (MAC_B). */
export const A = 'tcbencha';
export const B = 'tcbenchb';
export const MAC_B = '02:00:00:00:77:02';

export function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

export function setupNetns(): void {
  teardownNetns();
  sh('ip', ['netns', 'add', A]);
  sh('ip', ['netns', 'add', B]);
  sh('ip', ['link', 'add', 'veth-a', 'netns', A, 'type', 'veth', 'peer', 'name', 'veth-b', 'netns', B]);
  sh('ip', ['-n', B, 'link', 'set', 'veth-b', 'address', MAC_B]);
  sh('ip', ['-n', B, 'addr', 'add', '10.77.0.2/24', 'dev', 'veth-b']);
  sh('ip', ['-n', A, 'addr', 'add', '10.77.0.1/24', 'dev', 'veth-a']);
  for (const [ns, dev] of [[A, 'veth-a'], [B, 'veth-b']]) {
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
}

export function teardownNetns(): void {
  for (const ns of [A, B]) spawnSync('ip', ['netns', 'del', ns]);
}

/** `--name a,b,c` from the command line, or `fallback`, split at commas. */
export function argList(name: string, fallback: string): string[] {
  const i = process.argv.indexOf(`--${name}`);
  return (i > 0 ? process.argv[i + 1] : fallback).split(',').filter((s) => s !== '');
}

/** utime + stime of a process and all its threads (or of one: `pid/task/tid`), in ns (USER_HZ 100). */
export function cpuNs(pid: number | string): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) * (1e9 / 100);
}
