/**
 * Generates the replay benchmark capture: pcap (snaplen 96), Ethernet, IPv4 TCP/UDP with some
 * IPv6, mixed sizes, `hosts` remote addresses talking to a few local ones over about `flows`
 * distinct 5-tuples, `packets` packets over a few seconds.
 */
import { closeSync, openSync, writeSync } from 'node:fs';

export interface GenOptions {
  packets: number;
  hosts: number;
  flows: number;
  seconds: number;
  /** Time of the first packet, epoch seconds (default 1790000000, 2026-09-21). */
  startSecs?: number;
}

// xorshift32: deterministic, fast
let seed = 0x9e3779b9;
function rnd(): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed;
}

const SIZES = [40, 52, 64, 100, 200, 576, 1000, 1420, 1500, 1500];

/** A little-endian microsecond pcap file header, LINKTYPE_ETHERNET. */
export function pcapHeader(snaplen: number): Buffer {
  const hdr = Buffer.alloc(24);
  hdr.writeUInt32LE(0xa1b2c3d4, 0);
  hdr.writeUInt16LE(2, 4);
  hdr.writeUInt16LE(4, 6);
  hdr.writeUInt32LE(snaplen, 16);
  hdr.writeUInt32LE(1, 20);
  return hdr;
}

export function generate(file: string, o: GenOptions): void {
  seed = 0x9e3779b9;
  const fd = openSync(file, 'w');
  writeSync(fd, pcapHeader(96));
  const SNAP = 96;
  const chunk = Buffer.alloc(8 << 20);
  let off = 0;
  const t0 = o.startSecs ?? 1_790_000_000; // seconds
  const flowsPerHost = Math.max(1, Math.round(o.flows / o.hosts));
  for (let i = 0; i < o.packets; i++) {
    const r = rnd();
    const host = r % o.hosts;
    const flow = (rnd() % flowsPerHost) >>> 0;
    const v6 = host % 16 === 0;
    const tcp = (r >>> 8) % 3 !== 0;
    const inbound = (r >>> 12) & 1;
    const ipLen = SIZES[(r >>> 16) % SIZES.length] + (v6 ? 20 : 0);
    const l3 = v6 ? 40 : 20;
    const frameLen = 14 + ipLen;
    const capLen = Math.min(SNAP, 14 + l3 + 20);
    if (off + 16 + capLen > chunk.length) {
      writeSync(fd, chunk, 0, off);
      off = 0;
    }
    const usec = Math.floor((i / o.packets) * o.seconds * 1e6);
    chunk.writeUInt32LE(t0 + Math.floor(usec / 1e6), off);
    chunk.writeUInt32LE(usec % 1e6, off + 4);
    chunk.writeUInt32LE(capLen, off + 8);
    chunk.writeUInt32LE(frameLen, off + 12);
    const p = off + 16;
    chunk.fill(0, p, p + capLen);
    chunk.writeUInt16BE(v6 ? 0x86dd : 0x0800, p + 12);
    const ip = p + 14;
    const remoteHi = 0x0a000000 + 0x10000 + host; // 10.1.x.x ... remote hosts
    const local = 0xc0a80001 + (host % 4); // 192.168.0.1-4
    const src = inbound ? remoteHi : local;
    const dst = inbound ? local : remoteHi;
    const proto = tcp ? 6 : 17;
    if (!v6) {
      chunk[ip] = 0x45;
      chunk.writeUInt16BE(ipLen, ip + 2);
      chunk[ip + 8] = 64;
      chunk[ip + 9] = proto;
      chunk.writeUInt32BE(src >>> 0, ip + 12);
      chunk.writeUInt32BE(dst >>> 0, ip + 16);
    } else {
      chunk[ip] = 0x60;
      chunk.writeUInt16BE(ipLen - 40, ip + 4);
      chunk[ip + 6] = proto;
      chunk[ip + 7] = 64;
      chunk.writeUInt32BE(0x20010db8, ip + 8);
      chunk.writeUInt32BE(src >>> 0, ip + 20);
      chunk.writeUInt32BE(0x20010db8, ip + 24);
      chunk.writeUInt32BE(dst >>> 0, ip + 36);
    }
    const l4 = ip + l3;
    const eph = 10000 + flow;
    const svc = tcp ? 443 : 53;
    chunk.writeUInt16BE(inbound ? eph : svc, l4);
    chunk.writeUInt16BE(inbound ? svc : eph, l4 + 2);
    off += 16 + capLen;
  }
  writeSync(fd, chunk, 0, off);
  closeSync(fd);
}
