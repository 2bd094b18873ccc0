/**
 * A capture of names, built byte by byte (classic pcap, Ethernet, one frame per millisecond in
 * one 5-second interval), with the exact (address, name, source) list the engine must give for
 * it, in the capture order of each pair's last sighting:
 * - DNS over UDP: A, AAAA (over IPv6), a CNAME chain listed out of order, two names for one
 *   address (the last in capture order wins), a pair seen twice, a query (not read);
 * - DNS over TCP: one message whole in one segment (read), one split over two (no name);
 * - TLS ClientHellos: in one segment, split over 2 and 3 segments (~1.8 KB, IPv4 and IPv6), and
 *   one whose middle segment is missing (given up: `incomplete`);
 * - hostile DNS and TLS: a compression loop, a length past the end, 10,000 answers claimed, a
 *   label of 64 bytes, a non-printable byte, a truncated ClientHello (each `malformed` once).
 */
import { isIPv4 } from 'node:net';
import { parseAddr } from '../../src/addr';
import { ethernet, writePcap } from '../fixtures/frames';

export interface ExpectedName {
  ip: string;
  name: string;
  source: 'dns' | 'sni';
}

export interface NamesCapture {
  /** What the engine must give, in order. */
  expected: ExpectedName[];
  /** DNS messages and ClientHellos it must count as malformed, and split hellos as given up. */
  malformed: number;
  incomplete: number;
}

const u16 = (n: number) => Buffer.from([(n >> 8) & 255, n & 255]);
const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);

/** The bytes of an address written as text (the project's own parser). */
function addr(a: string): Buffer {
  const b = parseAddr(a);
  if (!b) throw new Error(`not an address: ${a}`);
  return Buffer.from(b);
}

/** An Ethernet frame of an IPv4 or IPv6 packet (by the addresses) carrying `l4`. */
export function ipFrame(src: string, dst: string, proto: number, l4: Buffer): Buffer {
  if (isIPv4(src)) {
    const h = Buffer.alloc(20);
    h[0] = 0x45;
    h.writeUInt16BE(20 + l4.length, 2);
    h[8] = 64;
    h[9] = proto;
    addr(src).copy(h, 12);
    addr(dst).copy(h, 16);
    return ethernet([], 0x0800, Buffer.concat([h, l4]));
  }
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(l4.length, 4);
  h[6] = proto;
  h[7] = 64;
  addr(src).copy(h, 8);
  addr(dst).copy(h, 24);
  return ethernet([], 0x86dd, Buffer.concat([h, l4]));
}

export const udp = (src: string, dst: string, sport: number, dport: number, payload: Buffer) =>
  ipFrame(src, dst, 17, Buffer.concat([u16(sport), u16(dport), u16(8 + payload.length), u16(0), payload]));

/** A TCP segment with ACK and PSH set (`flags` otherwise). */
export const tcp = (src: string, dst: string, sport: number, dport: number, seq: number, payload: Buffer, flags = 0x18) =>
  ipFrame(src, dst, 6, Buffer.concat([u16(sport), u16(dport), u32(seq), u32(1), Buffer.from([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]), payload]));

/** A name in DNS wire format, uncompressed. */
export function dnsName(n: string): Buffer {
  const labels = n.split('.').filter((l) => l.length > 0);
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
}

/** A resource record (class IN, TTL 300) whose owner is already in wire format. */
export const rr = (owner: Buffer, type: number, rdata: Buffer) => Buffer.concat([owner, u16(type), u16(1), u32(300), u16(rdata.length), rdata]);
/** The compression pointer to the question name (offset 12). */
export const toQuestion = Buffer.from([0xc0, 12]);
export const A = (ip: string) => rr(toQuestion, 1, addr(ip));

/** A DNS response (QR, RD, RA, RCODE 0) to `q` with these answers; `an` overrides the answer count. */
export function dnsResponse(q: string, answers: Buffer[], o: { an?: number; query?: boolean; qtype?: number } = {}): Buffer {
  const h = Buffer.concat([u16(0x4242), u16(o.query ? 0x0100 : 0x8180), u16(1), u16(o.an ?? answers.length), u16(0), u16(0)]);
  return Buffer.concat([h, dnsName(q), u16(o.qtype ?? 1), u16(1), ...answers]);
}

/** A TLS record holding a ClientHello naming `sni`, padded by an extension of `pad` bytes (a post-quantum key share). */
export function clientHello(sni: string, pad = 0): Buffer {
  const name = Buffer.from(sni, 'latin1');
  const list = Buffer.concat([Buffer.from([0]), u16(name.length), name]);
  const serverName = Buffer.concat([u16(0), u16(list.length + 2), u16(list.length), list]);
  const versions = Buffer.from([0, 43, 0, 3, 2, 3, 4]);
  const padding = pad > 0 ? Buffer.concat([u16(51), u16(pad), Buffer.alloc(pad, 0x5a)]) : Buffer.alloc(0);
  const ext = Buffer.concat([versions, serverName, padding]);
  const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32, 7), Buffer.from([32]), Buffer.alloc(32, 9), u16(4), Buffer.from([0x13, 1, 0x13, 2]), Buffer.from([1, 0]), u16(ext.length), ext]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 255]), body]);
  return Buffer.concat([Buffer.from([22, 3, 1]), u16(hs.length), hs]);
}

const CLIENT = '10.1.0.2';
const CLIENT6 = '2001:db8:1::2';
const RESOLVER = '10.1.0.53';
const RESOLVER6 = '2001:db8:1::53';

/** The frames of the capture and what they must give. */
export function namesFrames(): { frames: Buffer[] } & NamesCapture {
  const frames: Buffer[] = [];
  const expected: ExpectedName[] = [];
  const dns = (m: Buffer, v6 = false) => frames.push(v6 ? udp(RESOLVER6, CLIENT6, 53, 40001, m) : udp(RESOLVER, CLIENT, 53, 40000, m));
  const sawDns = (ip: string, name: string) => expected.push({ ip, name, source: 'dns' });

  // A query is not read; its answer is.
  frames.push(udp(CLIENT, RESOLVER, 40000, 53, dnsResponse('www.example.com', [], { query: true })));
  dns(dnsResponse('WWW.Example.COM.', [A('192.0.2.10')]));
  sawDns('192.0.2.10', 'www.example.com');
  // AAAA over IPv6.
  dns(dnsResponse('v6.example.net', [rr(toQuestion, 28, addr('2001:db8:5::1'))], { qtype: 28 }), true);
  sawDns('2001:db8:5::1', 'v6.example.net');
  // A CNAME chain listed out of order, and an A record the chain does not reach.
  dns(
    dnsResponse('alias.example.org', [
      rr(dnsName('edge.cdn.example'), 5, dnsName('e1.cdn.example')),
      rr(dnsName('e1.cdn.example'), 1, addr('198.51.100.10')),
      rr(toQuestion, 5, dnsName('edge.cdn.example')),
      rr(dnsName('e1.cdn.example'), 1, addr('198.51.100.11')),
      rr(dnsName('unrelated.example'), 1, addr('198.51.100.12')),
    ]),
  );
  sawDns('198.51.100.10', 'alias.example.org');
  sawDns('198.51.100.11', 'alias.example.org');

  // DNS over TCP: whole in one segment after its length; then one split over two segments, cut
  // where the rest starts with a compression pointer (read as a length, longer than the segment).
  const whole = dnsResponse('tcp.example.com', [A('203.0.113.5')]);
  frames.push(tcp(RESOLVER, CLIENT, 53, 40010, 1, Buffer.concat([u16(whole.length), whole])));
  sawDns('203.0.113.5', 'tcp.example.com');
  const split = Buffer.concat([u16(0), dnsResponse('split-tcp.example.com', [A('203.0.113.6')])]);
  split.writeUInt16BE(split.length - 2, 0);
  const cut = split.indexOf(toQuestion, 14);
  frames.push(tcp(RESOLVER, CLIENT, 53, 40011, 1, split.subarray(0, cut)), tcp(RESOLVER, CLIENT, 53, 40011, 1 + cut, split.subarray(cut)));

  // ClientHellos: one segment; 2 and 3 segments of a ~1.8 KB hello (IPv4, IPv6).
  const sawSni = (ip: string, name: string) => expected.push({ ip, name, source: 'sni' });
  frames.push(tcp(CLIENT, '192.0.2.80', 50000, 443, 1000, clientHello('one.example.com')));
  sawSni('192.0.2.80', 'one.example.com');
  const pq = clientHello('pq.example.com', 1650);
  frames.push(tcp(CLIENT, '192.0.2.81', 50001, 443, 1000, pq.subarray(0, 1448)), tcp(CLIENT, '192.0.2.81', 50001, 443, 1000 + 1448, pq.subarray(1448)));
  sawSni('192.0.2.81', 'pq.example.com');
  const three = clientHello('three.example.net', 1700);
  frames.push(
    tcp(CLIENT6, '2001:db8:443::1', 50002, 8443, 7, three.subarray(0, 700)),
    tcp(CLIENT6, '2001:db8:443::1', 50002, 8443, 707, three.subarray(700, 1400)),
    tcp(CLIENT6, '2001:db8:443::1', 50002, 8443, 1407, three.subarray(1400)),
  );
  sawSni('2001:db8:443::1', 'three.example.net');
  // The middle segment missing: given up at the gap.
  const gap = clientHello('gap.example.com', 1700);
  frames.push(tcp(CLIENT, '192.0.2.82', 50003, 443, 1, gap.subarray(0, 700)), tcp(CLIENT, '192.0.2.82', 50003, 443, 1401, gap.subarray(1400)));

  // Two names for one address: the last in capture order is second.example; and a pair seen again
  // moves to its last sighting.
  dns(dnsResponse('first.example', [A('198.51.100.20')]));
  dns(dnsResponse('again.example', [A('198.51.100.30')]));
  dns(dnsResponse('second.example', [A('198.51.100.20')]));
  dns(dnsResponse('again.example', [A('198.51.100.30')]));
  sawDns('198.51.100.20', 'first.example');
  sawDns('198.51.100.20', 'second.example');
  sawDns('198.51.100.30', 'again.example');

  // Hostile: each counted as malformed once, nothing recorded from it.
  const loop = dnsResponse('loop.example', []);
  const at = loop.length;
  dns(Buffer.concat([loop.subarray(0, 6), u16(1), loop.subarray(8), u16(0xc000 | at), rr(Buffer.alloc(0), 1, addr('192.0.2.66'))]));
  const past = dnsResponse('past.example', [A('192.0.2.67')]);
  past.writeUInt16BE(200, past.length - 6);
  dns(past);
  dns(dnsResponse('many.example', [A('192.0.2.68')], { an: 10_000 }));
  dns(dnsResponse(`${'x'.repeat(64)}.example`, [A('192.0.2.69')]));
  const np = dnsResponse('np.example', [A('192.0.2.70')]);
  np[13] = 0x07;
  dns(np);
  // A truncated ClientHello: its extensions claim more than it holds.
  const trunc = clientHello('trunc.example.com');
  const extLen = 5 + 4 + 2 + 32 + 1 + 32 + 2 + 4 + 2;
  trunc.writeUInt16BE(trunc.readUInt16BE(extLen) + 40, extLen);
  frames.push(tcp(CLIENT, '192.0.2.83', 50004, 443, 1, trunc));
  return { frames, expected, malformed: 6, incomplete: 1 };
}

/** Writes the capture to `path`; returns what the engine must give for it. */
export function writeNamesPcap(path: string, t0 = 1_700_000_000): NamesCapture {
  const { frames, ...rest } = namesFrames();
  writePcap(path, frames, t0);
  return rest;
}
