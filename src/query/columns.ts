/**
 * The columns of the top and flows answers: their keys, headers and table units. Free of Node
 * and DuckDB, so that the web view (web/app.ts) shows the CLI's columns in the CLI's units.
 */
import type { ColumnSpec } from './output';
import { bitRate, bytes, si } from '../units';

export const PROTO: Record<number, string> = { 1: 'icmp', 2: 'igmp', 6: 'tcp', 17: 'udp', 41: 'ipv6', 47: 'gre', 50: 'esp', 51: 'ah', 58: 'icmpv6', 132: 'sctp' };

export const IP_COLS: ColumnSpec[] = [
  { key: 'ip', align: 'left' },
  { key: 'tx_packets', header: 'tx pkts', human: (v) => si(v as bigint) },
  { key: 'tx_bytes', header: 'tx', human: (v) => bytes(v as bigint) },
  { key: 'rx_packets', header: 'rx pkts', human: (v) => si(v as bigint) },
  { key: 'rx_bytes', header: 'rx', human: (v) => bytes(v as bigint) },
  { key: 'packets', header: 'pkts', human: (v) => si(v as bigint) },
  { key: 'bytes', header: 'bytes', human: (v) => bytes(v as bigint) },
];

export const SIDE_COLS: ColumnSpec[] = [
  { key: 'ip', align: 'left' },
  { key: 'packets', header: 'pkts', human: (v) => si(v as bigint) },
  { key: 'bytes', header: 'bytes', human: (v) => bytes(v as bigint) },
];

/** The `local` field of per-address rows: true, false, or null (no local networks for the window; the overflow row). */
export const LOCAL_COL: ColumnSpec = { key: 'local', header: 'side', align: 'left', human: (v) => (v === null || v === undefined ? '' : v ? 'local' : 'remote') };

export const FLOW_COLS: ColumnSpec[] = [
  { key: 'src', align: 'left' },
  { key: 'dst', align: 'left' },
  { key: 'proto', human: (v) => PROTO[v as number] ?? String(v) },
  { key: 'sport' },
  { key: 'dport' },
  { key: 'packets', header: 'pkts', human: (v) => si(v as bigint) },
  { key: 'bytes', human: (v) => bytes(v as bigint) },
];

/** The table's average rates over `secs`, the time the window's recorded intervals cover. */
export const rateCols = (secs: number): ColumnSpec[] => [
  { key: 'bytes', header: 'avg bit/s', human: (v) => bitRate(v as bigint, secs), tableOnly: true },
  { key: 'packets', header: 'avg pkt/s', human: (v) => si(Number(v) / Math.max(secs, 1e-9)), tableOnly: true },
];
