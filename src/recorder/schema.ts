/** Kysely table types of the database (see migrations/). */
import type { Generated } from 'kysely';

export interface MetaTable {
  key: string;
  value: string;
}

export interface AddressesTable {
  id: Generated<number>;
  addr: Uint8Array;
  text: string;
}

export interface SessionsTable {
  id: Generated<number>;
  session_key: string;
  node_id: string;
  kind: 'live' | 'replay';
  source: string;
  interval_ms: number;
  flows: number;
  started_at: number;
  ended_at: number | null;
  options: string;
}

export interface BatchesTable {
  id: Generated<number>;
  session_id: number;
  seq: number;
  start_ms: number;
  end_ms: number;
  frames: number;
  ip_packets: number;
  ip_bytes: number;
  ipv4_packets: number;
  ipv4_bytes: number;
  ipv6_packets: number;
  ipv6_bytes: number;
  non_ip: number;
  ip_header_incomplete: number;
  fragments_first: number;
  fragments_non_first: number;
  ip_length_field_zero: number;
  ignored: number;
  late: number;
  ring_packets: number | null;
  ring_drops: number | null;
  ring_freeze_q_cnt: number | null;
  filter_passed: number | null;
  filter_non_ip: number | null;
  filter_ignored: number | null;
  filter_not_accepted: number | null;
  ip_overflow_keys: number;
  flow_overflow_keys: number;
  ip_rows: number;
  flow_rows: number;
  last: number;
  written_at: number;
}

export interface IpDeltasTable {
  batch_id: number;
  ip_id: number;
  tx_packets: number;
  tx_bytes: number;
  rx_packets: number;
  rx_bytes: number;
}

export interface FlowDeltasTable {
  batch_id: number;
  src_id: number;
  dst_id: number;
  proto: number;
  sport: number;
  dport: number;
  packets: number;
  bytes: number;
}

export interface Database {
  meta: MetaTable;
  addresses: AddressesTable;
  sessions: SessionsTable;
  batches: BatchesTable;
  ip_deltas: IpDeltasTable;
  flow_deltas: FlowDeltasTable;
}
