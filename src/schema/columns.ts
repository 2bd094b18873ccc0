/**
 * Column lists of the tables the writer fills in bulk (tc_rows packs them in this order): the
 * delta rows of the event log and the rollup rows (migrations/ creates them).
 */

/** The counters of a per-IP row. */
export const IP_VALUES = ['tx_packets', 'tx_bytes', 'rx_packets', 'rx_bytes'] as const;
/** A flow's key (unidirectional 5-tuple; ports 0 without TCP/UDP/SCTP) and its counters. */
export const FLOW_KEY = ['src_id', 'dst_id', 'proto', 'sport', 'dport'] as const;
export const FLOW_VALUES = ['packets', 'bytes'] as const;

export const IP_DELTA_COLUMNS = ['batch_id', 'ip_id', ...IP_VALUES] as const;
export const FLOW_DELTA_COLUMNS = ['batch_id', ...FLOW_KEY, ...FLOW_VALUES] as const;
export const IP_ROLLUP_COLUMNS = ['bucket_ms', 'ip_id', ...IP_VALUES] as const;
export const FLOW_ROLLUP_COLUMNS = ['bucket_ms', ...FLOW_KEY, ...FLOW_VALUES] as const;

/** Where a name was read (`names.source` is the index): a DNS answer, or the server name of a TLS ClientHello. */
export const NAME_SOURCES = ['dns', 'sni'] as const;
