/**
 * Address text: IPv4 dotted quad; IPv6 in RFC 5952 form (lower case, the longest run of two or
 * more zero groups compressed, the first one on a tie), as Python 3.11's `ipaddress` prints it,
 * which is what the reference counts in shared/pcaps use. Node has no formatter for raw
 * 16-byte addresses, hence this small one.
 */
import { isIPv4, isIPv6 } from 'node:net';

export function formatAddr(b: Uint8Array, off = 0, fam: number = b.length - off === 4 ? 4 : 6): string {
  if (fam === 4) return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
  if (fam !== 6) return 'overflow';
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[off + 2 * i] << 8) | b[off + 2 * i + 1]);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestLen < 2) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLen).join(':');
  return `${head}::${tail}`;
}

/** Parses an IPv4 or IPv6 address into 4 or 16 bytes; undefined when it is not one. */
export function parseAddr(text: string): Uint8Array | undefined {
  const s = text.trim();
  if (isIPv4(s)) return Uint8Array.from(s.split('.').map(Number));
  if (!isIPv6(s)) return undefined;
  let str = s.toLowerCase();
  const zone = str.indexOf('%');
  if (zone >= 0) str = str.slice(0, zone);
  let tailV4: number[] = [];
  const lastColon = str.lastIndexOf(':');
  const last = str.slice(lastColon + 1);
  if (last.includes('.')) {
    tailV4 = last.split('.').map(Number);
    str = str.slice(0, lastColon + 1) + '0:0';
  }
  const [l, r] = str.includes('::') ? str.split('::') : [str, undefined];
  const left = l ? l.split(':') : [];
  const right = r === undefined ? [] : r ? r.split(':') : [];
  const fill = r === undefined ? 0 : 8 - left.length - right.length;
  const groups = [...left, ...Array<string>(fill).fill('0'), ...right].map((h) => parseInt(h, 16));
  const out = new Uint8Array(16);
  groups.forEach((v, i) => {
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  if (tailV4.length === 4) out.set(tailV4, 12);
  return out;
}

/** Parses "addr/prefix" (or a bare address) into network bytes and prefix length. */
export function parseCidr(text: string): { addr: Uint8Array; prefix: number } | undefined {
  const [a, p] = text.split('/');
  const addr = parseAddr(a);
  if (!addr) return undefined;
  const max = addr.length * 8;
  if (p !== undefined && !/^\d+$/.test(p)) return undefined;
  const prefix = p === undefined ? max : Number(p);
  if (prefix > max) return undefined;
  for (let i = 0; i < addr.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    addr[i] &= bits === 8 ? 0xff : ~(0xff >> bits) & 0xff;
  }
  return { addr, prefix };
}
