/**
 * Two network namespaces joined by a veth pair, IPv6 off and no addresses: the only frames on
 * the wire are the ones a test sends (tests that capture use their own namespaces).
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

export interface VethPair {
  /** Namespaces of the two ends. */
  a: string;
  b: string;
  /** Interface names of the two ends. */
  devA: string;
  devB: string;
  remove(): void;
}

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/** Creates namespaces `${name}a` / `${name}b` with interfaces `${dev}-a` / `${dev}-b` (MACs optional). */
export function vethPair(name: string, dev: string, macs: { a?: string; b?: string } = {}): VethPair {
  const p: VethPair = {
    a: `${name}a`,
    b: `${name}b`,
    devA: `${dev}-a`,
    devB: `${dev}-b`,
    remove: () => {
      for (const ns of [p.a, p.b]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    },
  };
  p.remove();
  for (const ns of [p.a, p.b]) {
    sh('ip', ['netns', 'add', ns]);
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  }
  const mac = (m?: string) => (m ? ['address', m] : []);
  sh('ip', ['link', 'add', p.devA, 'netns', p.a, ...mac(macs.a), 'type', 'veth', 'peer', 'name', p.devB, 'netns', p.b, ...mac(macs.b)]);
  sh('ip', ['-n', p.a, 'link', 'set', p.devA, 'up']);
  sh('ip', ['-n', p.b, 'link', 'set', p.devB, 'up']);
  return p;
}

/** The AF_PACKET sender (test/fixtures/afpacket_send.py): lines of "COUNT HEX-FRAME" on stdin. */
const SENDER = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'afpacket_send.py');

/** Sends `frames` (hex) from the pair's `a` end within `seconds`; returns the number sent. */
export function sendFrames(p: VethPair, frames: string[], seconds: number): number {
  const r = spawnSync('ip', ['netns', 'exec', p.a, 'python3', SENDER, p.devA, String(seconds)], { input: frames.map((f) => `1 ${f}`).join('\n'), encoding: 'utf8', timeout: (seconds + 10) * 1000 });
  if (r.status !== 0) throw new Error(`afpacket_send.py: ${r.stderr}`);
  return Number(r.stdout.trim());
}

/** A 60-byte UDP/IPv4 frame to `dstMac`, 10.78.0.2, from 11.0.0.0 + `src` (a spoofed flood's). */
export function spoofedUdp(dstMac: string, src: number): string {
  const ip = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].map((b) => b.toString(16).padStart(2, '0')).join('');
  const port = (1024 + (src % 50_000)).toString(16).padStart(4, '0');
  return `${dstMac.replace(/:/g, '')}020000007801` + '0800' + `4500002e000000004011${'0000'}${ip(0x0b000000 + src)}0a4e0002` + `${port}270f001a0000` + '00'.repeat(18);
}
