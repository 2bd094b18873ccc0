/** Shared helpers of the end-to-end tests: they spawn the built CLIs against temp databases. */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { generate, type GenOptions } from './support/gen';

export const ROOT = path.join(__dirname, '..', '..');
export const RECORDER = path.join(ROOT, 'dist', 'src', 'cli', 'traffic-counter.js');
export const QUERY = path.join(ROOT, 'dist', 'src', 'cli', 'tc-query.js');

/** A reproducible pseudo-random sequence in [0, 1) (a linear congruential generator). */
export function seeded(seed: number): () => number {
  return () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
}

/** Generates a capture (test/support/gen.ts) in a new temp folder and replays it with flows into a new database there. */
export function recordGenerated(o: GenOptions, intervalSecs: number): string {
  const dir = tmp();
  const cap = path.join(dir, 'generated.pcap');
  generate(cap, o);
  const db = path.join(dir, 'generated.db');
  const r = recorder(['record', '--pcap', cap, '--db', db, '--flows', '--quiet', '--interval-secs', String(intervalSecs)]);
  if (r.status !== 0) throw new Error(`recording ${cap} failed: ${r.stderr}`);
  return db;
}

export function pcapsDir(): string {
  const dir = process.env.TC_PCAPS_DIR ?? path.join(ROOT, '..', 'shared', 'pcaps');
  if (!existsSync(path.join(dir, 'MANIFEST.md'))) throw new Error(`capture corpus not found at ${dir} (set TC_PCAPS_DIR)`);
  return dir;
}

export function tmp(prefix = 'tc-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function run(cli: string, args: string[], opts: { env?: NodeJS.ProcessEnv; netns?: string } = {}): SpawnSyncReturns<string> {
  const argv = opts.netns ? ['ip', 'netns', 'exec', opts.netns, process.execPath, cli, ...args] : [process.execPath, cli, ...args];
  return spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: 120_000 });
}

export function recorder(args: string[], opts?: { env?: NodeJS.ProcessEnv }): SpawnSyncReturns<string> {
  return run(RECORDER, args, opts);
}

export function query(args: string[], opts?: { env?: NodeJS.ProcessEnv }): SpawnSyncReturns<string> {
  return run(QUERY, args, opts);
}

export function queryJson<T = Record<string, unknown>[]>(args: string[]): T {
  const r = query([...args, '--format', 'json']);
  if (r.status !== 0) throw new Error(`tc-query ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as T;
}

/** Privileged tests skip with a reason when not root; under CI=true that is a failure. */
export function needRoot(t: TestContext): boolean {
  if (process.getuid?.() === 0) return true;
  const why = 'needs root (network namespaces, AF_PACKET, bpf())';
  if (process.env.CI === 'true') throw new Error(`privileged test cannot run under CI=true: ${why}`);
  t.skip(why);
  return false;
}

export function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

export function spawnIn(netns: string, cmd: string, args: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', netns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves when `re` appears in the child's stderr (rejects after `ms`). */
export function waitForStderr(child: ChildProcess, re: RegExp, ms = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} in stderr:\n${buf}`)), ms);
    const on = (d: Buffer) => {
      buf += d.toString();
      const m = buf.match(re);
      if (m) {
        clearTimeout(timer);
        child.stderr!.off('data', on);
        resolve(buf);
      }
    };
    child.stderr!.on('data', on);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`process exited (${code}) before ${re}:\n${buf}`));
    });
  });
}

export function exited(child: ChildProcess, ms = 10_000): Promise<number | null> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('process did not exit in time'));
    }, ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal) process.stderr.write(`[helpers] process ${child.pid} ended by ${signal}\n`);
      resolve(code);
    });
  });
}
