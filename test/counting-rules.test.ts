/**
 * MANIFEST rule 3 through the CLIs: an IPv4 header captured whole whose Total Length is not 0
 * and below its own length (IHL x 4), or whose version or IHL is wrong, is a non-IP frame (not
 * "ip_header_incomplete"); Total Length 0 stays an IP packet of 0 bytes (rule 4, TSO/GRO).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { queryJson, recorder, tmp } from './helpers';
import { ethernet, ipv4WithTotal, udp, writePcap } from './fixtures/frames';

/** An IPv4 UDP packet with 4 bytes of options (IHL 6, a 24-byte header) and Total Length `total`. */
function withOptions(src: string, dst: string, total: number): Buffer {
  const p = udp(src, dst, 7, 8, 48);
  const h = Buffer.concat([p.subarray(0, 20), Buffer.from([1, 1, 1, 1]), p.subarray(20)]);
  h[0] = 0x46;
  h.writeUInt16BE(total, 2);
  return h;
}

test('an IPv4 Total Length other than 0 below the header length is non-IP; Total Length 0 is an IP packet of 0 bytes', () => {
  const badVersion = udp('192.0.2.7', '192.0.2.8', 7, 8, 48);
  badVersion[0] = 0x55;
  const ihl4 = udp('192.0.2.7', '192.0.2.8', 7, 8, 48);
  ihl4[0] = 0x44;
  const frames = [
    ...[1, 2, 3].map(() => ethernet([], 0x0800, ipv4WithTotal('192.0.2.1', '192.0.2.2', 12))), // non-IP
    ethernet([], 0x0800, ipv4WithTotal('192.0.2.1', '192.0.2.2', 19)), // non-IP
    ethernet([0x8100], 0x0800, udp('192.0.2.1', '192.0.2.2', 7, 8, 48)), // IP, 48 bytes
    ethernet([], 0x0800, ipv4WithTotal('192.0.2.3', '192.0.2.4', 0)), // IP, 0 bytes (TSO)
    ethernet([], 0x0800, withOptions('192.0.2.5', '192.0.2.6', 23)), // non-IP: 23 < 24
    ethernet([], 0x0800, withOptions('192.0.2.5', '192.0.2.6', 24)), // IP, 24 bytes
    ethernet([], 0x0800, badVersion), // non-IP
    ethernet([], 0x0800, ihl4), // non-IP
  ];
  const dir = tmp();
  const cap = path.join(dir, 'rule3.pcap');
  writePcap(cap, frames);
  const db = path.join(dir, 'rule3.db');
  const r = recorder(['record', '--pcap', cap, '--db', db, '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  const ips = queryJson<{ ip: string; tx_packets: number; tx_bytes: number; rx_packets: number; rx_bytes: number }[]>(['--db', db, 'top', '--by', 'ip', '--all', '--limit', '0']);
  const got = Object.fromEntries(ips.map((x) => [x.ip, [x.tx_packets, x.tx_bytes, x.rx_packets, x.rx_bytes]]));
  assert.deepEqual(got, {
    '192.0.2.1': [1, 48, 0, 0],
    '192.0.2.2': [0, 0, 1, 48],
    '192.0.2.3': [1, 0, 0, 0],
    '192.0.2.4': [0, 0, 1, 0],
    '192.0.2.5': [1, 24, 0, 0],
    '192.0.2.6': [0, 0, 1, 24],
  });
  const totals = queryJson<Record<string, number>[]>(['--db', db, 'sql', 'select sum(frames) as frames, sum(ip_packets) as ip_packets, sum(ip_bytes) as ip_bytes, sum(non_ip) as non_ip from intervals']);
  assert.deepEqual(totals, [{ frames: 10, ip_packets: 3, ip_bytes: 72, non_ip: 7 }]);
  const d = new Database(db, { readonly: true });
  const incomplete = d.prepare('select sum(ip_header_incomplete) from batches').pluck().get();
  d.close();
  assert.equal(incomplete, 0, 'headers captured whole are not "incomplete"');
});
