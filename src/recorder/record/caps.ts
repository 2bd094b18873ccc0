/**
 * The capabilities live capture needs, checked up front from /proc/self/status, so that one
 * message lists every one that is missing (capabilities(7)). Checked on Linux 6.18 with
 * `setpriv --bounding-set`: AF_PACKET sockets need CAP_NET_RAW; loading the socket filter and
 * its LPM maps needs CAP_BPF (CAP_SYS_ADMIN before Linux 5.8, or instead of it); attaching it
 * (SO_ATTACH_BPF) and PACKET_FANOUT need nothing more, so CAP_NET_ADMIN is not required.
 */
import { readFileSync } from 'node:fs';

const CAP = { CHOWN: 0, SETGID: 6, SETUID: 7, NET_RAW: 13, SYS_ADMIN: 21, BPF: 39 } as const;

/** The effective capability set, or undefined when /proc cannot tell. */
function effective(): bigint | undefined {
  try {
    const m = readFileSync('/proc/self/status', 'utf8').match(/^CapEff:\s*([0-9a-f]+)$/m);
    return m ? BigInt(`0x${m[1]}`) : undefined;
  } catch {
    return undefined;
  }
}

/** The highest capability this kernel knows (CAP_BPF exists from Linux 5.8, number 39). */
function lastCap(): number {
  try {
    return Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
  } catch {
    return CAP.BPF;
  }
}

/** "CAP_X (what for)" for each capability live capture with these options lacks; [] when none. */
export function missingCapabilities(o: { ebpf: boolean; user?: string }, eff = effective()): string[] {
  if (eff === undefined) return [];
  const has = (c: number) => ((eff >> BigInt(c)) & 1n) === 1n;
  const missing: string[] = [];
  if (!has(CAP.NET_RAW)) missing.push('CAP_NET_RAW (AF_PACKET sockets)');
  const bpf = has(CAP.SYS_ADMIN) || (lastCap() >= CAP.BPF && has(CAP.BPF));
  if (o.ebpf && !bpf) missing.push(`${lastCap() >= CAP.BPF ? 'CAP_BPF' : 'CAP_SYS_ADMIN'} (the eBPF socket filter; or pass --no-ebpf to filter in userspace)`);
  if (o.user) {
    for (const [c, what] of [[CAP.SETUID, 'CAP_SETUID'], [CAP.SETGID, 'CAP_SETGID'], [CAP.CHOWN, 'CAP_CHOWN']] as const) {
      if (!has(c)) missing.push(`${what} (--user)`);
    }
  }
  return missing;
}
