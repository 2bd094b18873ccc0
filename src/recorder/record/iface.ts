/** Finds the interface of the default route (IPv4 first, then IPv6), from /proc/net. */
import { readFileSync } from 'node:fs';

export function defaultRouteInterface(): string | undefined {
  try {
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ... (hex, host byte order)
    const rows = readFileSync('/proc/net/route', 'utf8').trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
    const defaults = rows.filter((r) => r[1] === '00000000' && r[7] === '00000000' && (parseInt(r[3], 16) & 1) === 1);
    defaults.sort((a, b) => Number(a[6]) - Number(b[6]));
    if (defaults.length > 0) return defaults[0][0];
  } catch {
    /* no IPv4 routing table */
  }
  try {
    // dest prefixlen src srcprefixlen nexthop metric refcnt use flags iface
    const rows = readFileSync('/proc/net/ipv6_route', 'utf8').trim().split('\n').map((l) => l.trim().split(/\s+/));
    const defaults = rows.filter((r) => /^0{32}$/.test(r[0]) && r[1] === '00' && r[9] !== 'lo');
    defaults.sort((a, b) => parseInt(a[5], 16) - parseInt(b[5], 16));
    if (defaults.length > 0) return defaults[0][9];
  } catch {
    /* no IPv6 routing table */
  }
  return undefined;
}

/**
 * Why nothing would be captured on `iface` now, or undefined when it can carry traffic (or
 * sysfs cannot tell). IFF_UP in /sys/class/net/IF/flags is the administrative state
 * (`ip link set IF up`); operstate "down" / "lowerlayerdown" is a missing carrier or peer.
 */
export function interfaceDown(iface: string): string | undefined {
  const sys = (f: string) => {
    try {
      return readFileSync(`/sys/class/net/${iface}/${f}`, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  const flags = sys('flags');
  if (flags !== undefined && (parseInt(flags, 16) & 0x1) === 0) return `${iface} is down: nothing will be captured until it is up (ip link set ${iface} up)`;
  const oper = sys('operstate');
  if (oper === 'down' || oper === 'lowerlayerdown') return `${iface} has no carrier (operstate ${oper}): nothing will be captured until its link is up`;
  return undefined;
}
