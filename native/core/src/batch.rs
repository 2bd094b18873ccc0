//! The interval batch handed to the recorder: columnar vectors, one entry per key, never one
//! object per key. The napi layer turns each vector into a Buffer without reshaping it.

use crate::table::{Tables, Totals};

/// Kernel ring statistics for the interval (PACKET_STATISTICS resets on read, so these are
/// deltas). See packet(7) and `struct tpacket_stats_v3` in include/uapi/linux/if_packet.h.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct RingStats {
    pub packets: u64,
    pub drops: u64,
    pub freeze_q_cnt: u64,
}

impl RingStats {
    pub fn add(&mut self, o: &RingStats) {
        self.packets += o.packets;
        self.drops += o.drops;
        self.freeze_q_cnt += o.freeze_q_cnt;
    }
}

/// Counters of the eBPF socket filter, as deltas over the interval.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct FilterCounters {
    pub passed: u64,
    pub non_ip: u64,
    pub ignored: u64,
    pub not_accepted: u64,
}

#[derive(Default, Debug)]
pub struct IpColumns {
    /// 4 or 6; 0 marks the overflow row.
    pub fam: Vec<u8>,
    /// 16 bytes per row (IPv4 in the first 4).
    pub addr: Vec<u8>,
    pub tx_packets: Vec<u64>,
    pub tx_bytes: Vec<u64>,
    pub rx_packets: Vec<u64>,
    pub rx_bytes: Vec<u64>,
}

#[derive(Default, Debug)]
pub struct FlowColumns {
    pub src_fam: Vec<u8>,
    pub src: Vec<u8>,
    pub dst_fam: Vec<u8>,
    pub dst: Vec<u8>,
    pub proto: Vec<u8>,
    pub sport: Vec<u16>,
    pub dport: Vec<u16>,
    pub packets: Vec<u64>,
    pub bytes: Vec<u64>,
}

#[derive(Debug)]
pub struct Batch {
    /// Interval bounds in UTC epoch milliseconds, aligned to multiples of the interval length.
    pub start_ms: i64,
    pub end_ms: i64,
    pub ips: IpColumns,
    pub flows: FlowColumns,
    pub totals: Totals,
    pub ring: Option<RingStats>,
    pub filter: Option<FilterCounters>,
    /// Estimated distinct keys that did not fit `max_keys` and were folded into the overflow row.
    pub ip_overflow_keys: u64,
    pub flow_overflow_keys: u64,
    /// The last batch of a capture or replay (flushed on stop / end of input).
    pub last: bool,
}

impl Batch {
    pub fn from_tables(start_ms: i64, end_ms: i64, t: Tables) -> Batch {
        let n = t.ips.len() + 1;
        let mut ips = IpColumns {
            fam: Vec::with_capacity(n),
            addr: Vec::with_capacity(n * 16),
            tx_packets: Vec::with_capacity(n),
            tx_bytes: Vec::with_capacity(n),
            rx_packets: Vec::with_capacity(n),
            rx_bytes: Vec::with_capacity(n),
        };
        let overflow_ip = t.ip_overflow_row().map(|c| (crate::parse::Addr::OVERFLOW, c));
        for (a, c) in t.ips.iter().map(|(a, c)| (*a, *c)).chain(overflow_ip) {
            ips.fam.push(a.fam);
            ips.addr.extend_from_slice(&a.bytes);
            ips.tx_packets.push(c.tx_packets);
            ips.tx_bytes.push(c.tx_bytes);
            ips.rx_packets.push(c.rx_packets);
            ips.rx_bytes.push(c.rx_bytes);
        }
        let n = t.flows.len() + 1;
        let mut flows = FlowColumns {
            src_fam: Vec::with_capacity(n),
            src: Vec::with_capacity(n * 16),
            dst_fam: Vec::with_capacity(n),
            dst: Vec::with_capacity(n * 16),
            proto: Vec::with_capacity(n),
            sport: Vec::with_capacity(n),
            dport: Vec::with_capacity(n),
            packets: Vec::with_capacity(n),
            bytes: Vec::with_capacity(n),
        };
        let overflow_flow = t.flow_overflow_row().map(|c| (crate::table::FlowKey::OVERFLOW, c));
        for (k, c) in t.flows.iter().map(|(k, c)| (*k, *c)).chain(overflow_flow) {
            flows.src_fam.push(k.src.fam);
            flows.src.extend_from_slice(&k.src.bytes);
            flows.dst_fam.push(k.dst.fam);
            flows.dst.extend_from_slice(&k.dst.bytes);
            flows.proto.push(k.proto);
            flows.sport.push(k.sport);
            flows.dport.push(k.dport);
            flows.packets.push(c.packets);
            flows.bytes.push(c.bytes);
        }
        Batch {
            start_ms,
            end_ms,
            ips,
            flows,
            totals: t.totals,
            ring: None,
            filter: None,
            ip_overflow_keys: t.ip_overflow_sketch.estimate(),
            flow_overflow_keys: t.flow_overflow_sketch.estimate(),
            last: false,
        }
    }
}

/// Start of the interval containing `ts_ms`, aligned to multiples of `interval_ms` in epoch time.
#[inline]
pub fn interval_start(ts_ms: i64, interval_ms: i64) -> i64 {
    ts_ms.div_euclid(interval_ms) * interval_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_is_utc_epoch_multiples() {
        assert_eq!(interval_start(1_700_000_003_999, 5000), 1_700_000_000_000);
        assert_eq!(interval_start(1_700_000_005_000, 5000), 1_700_000_005_000);
        assert_eq!(interval_start(-1, 5000), -5000);
        assert_eq!(interval_start(3_599_999, 3_600_000), 0);
    }
}
