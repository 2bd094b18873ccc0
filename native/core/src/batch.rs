//! The interval batch handed to the recorder: columnar vectors, one entry per key, never one
//! object per key. The napi layer turns each vector into a Buffer without reshaping it.

use crate::names::collect::BatchNames;
use crate::names::NameCounts;
use crate::parse::Addr;
use crate::table::{FlowCounters, FlowKey, IpCounters, Tables, Totals};

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

/// Kernel counting's figures for one interval (live `--count-in kernel`).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct KernelStats {
    /// How long after the interval's UTC boundary the switch to the other buffer completed (the
    /// index flipped and the grace period over), in microseconds.
    pub switch_late_us: u64,
    /// Reading and clearing the old buffer after it, in microseconds.
    pub drain_us: u64,
    /// Frames the counting program handed to the ring to be counted in userspace.
    pub returned: u64,
    /// Entries of the address and flow maps at the end of the interval, and each map's capacity
    /// (`--max-keys`; the flow map holds entries only with `--flows`).
    pub ip_entries: u64,
    pub flow_entries: u64,
    pub capacity: u64,
}

/// The distinct addresses of a batch, sorted by (family, bytes); rows refer to them by index.
#[derive(Default, Debug)]
pub struct AddrTable {
    /// 4 or 6; 0 marks the overflow row's address.
    pub fam: Vec<u8>,
    /// 16 bytes per address (IPv4 in the first 4).
    pub addr: Vec<u8>,
}

impl AddrTable {
    pub fn len(&self) -> usize {
        self.fam.len()
    }
    pub fn is_empty(&self) -> bool {
        self.fam.is_empty()
    }
    pub fn get(&self, i: u32) -> Addr {
        let i = i as usize;
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&self.addr[i * 16..i * 16 + 16]);
        Addr { fam: self.fam[i], bytes }
    }
}

/// Per-IP rows, sorted by address.
#[derive(Default, Debug)]
pub struct IpColumns {
    /// Index into the batch's [`AddrTable`].
    pub idx: Vec<u32>,
    pub tx_packets: Vec<u64>,
    pub tx_bytes: Vec<u64>,
    pub rx_packets: Vec<u64>,
    pub rx_bytes: Vec<u64>,
}

/// Per-flow rows, sorted by (src, dst, proto, sport, dport).
#[derive(Default, Debug)]
pub struct FlowColumns {
    pub src: Vec<u32>,
    pub dst: Vec<u32>,
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
    pub addrs: AddrTable,
    pub ips: IpColumns,
    pub flows: FlowColumns,
    pub totals: Totals,
    pub ring: Option<RingStats>,
    pub filter: Option<FilterCounters>,
    /// Live capture counted in the kernel: the switch and the maps' fill.
    pub kernel: Option<KernelStats>,
    /// Estimated distinct keys that did not fit `max_keys` and were folded into the overflow row.
    pub ip_overflow_keys: u64,
    pub flow_overflow_keys: u64,
    /// The interval's (address, name, source) pairs, in the order of their last sightings
    /// (`names::collect`); empty with names off.
    pub names: BatchNames,
    /// What the names reader could not read in the interval.
    pub name_counts: NameCounts,
    /// The last batch of a capture or of a replayed file (flushed on stop / end of input).
    pub last: bool,
}

impl Batch {
    /// The batch of an interval's tables. The tables are consumed as their rows are taken out
    /// (their memory goes before the columns are built), and rows find their address by binary
    /// search in the sorted address table: a conversion holds the rows and the columns, never
    /// a second map of the keys (`budget::conversion_bytes`).
    pub fn from_tables(start_ms: i64, end_ms: i64, t: Tables) -> Batch {
        let (ip_overflow, flow_overflow) = (t.ip_overflow_row(), t.flow_overflow_row());
        let (ip_overflow_keys, flow_overflow_keys) = (t.ip_overflow_sketch.estimate(), t.flow_overflow_sketch.estimate());
        let Tables { ips, flows, totals, names: name_counts, .. } = t;
        // Rows sorted by key, so the database's primary-key B-trees are filled in order.
        let mut ip_rows: Vec<(Addr, IpCounters)> = ips.into_iter().collect();
        if let Some(c) = ip_overflow {
            ip_rows.push((Addr::OVERFLOW, c));
        }
        ip_rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut flow_rows: Vec<(FlowKey, FlowCounters)> = flows.into_iter().collect();
        if let Some(c) = flow_overflow {
            flow_rows.push((FlowKey::OVERFLOW, c));
        }
        flow_rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        // The address table: every per-IP address (the overflow row's too), plus flow addresses
        // that overflowed the per-IP table; sorted.
        let mut addrs: Vec<Addr> = ip_rows.iter().map(|r| r.0).collect();
        let mut extra: Vec<Addr> = flow_rows.iter().flat_map(|(k, _)| [k.src, k.dst]).filter(|a| addrs.binary_search(a).is_err()).collect();
        if !extra.is_empty() {
            extra.sort_unstable();
            extra.dedup();
            addrs.append(&mut extra);
            addrs.sort_unstable();
        }
        drop(extra);
        let index = |a: &Addr| addrs.binary_search(a).expect("every row's address is in the table") as u32;
        let mut table = AddrTable { fam: Vec::with_capacity(addrs.len()), addr: Vec::with_capacity(addrs.len() * 16) };
        for a in &addrs {
            table.fam.push(a.fam);
            table.addr.extend_from_slice(&a.bytes);
        }

        let n = ip_rows.len();
        let mut ips = IpColumns {
            idx: Vec::with_capacity(n),
            tx_packets: Vec::with_capacity(n),
            tx_bytes: Vec::with_capacity(n),
            rx_packets: Vec::with_capacity(n),
            rx_bytes: Vec::with_capacity(n),
        };
        for (a, c) in &ip_rows {
            ips.idx.push(index(a));
            ips.tx_packets.push(c.tx_packets);
            ips.tx_bytes.push(c.tx_bytes);
            ips.rx_packets.push(c.rx_packets);
            ips.rx_bytes.push(c.rx_bytes);
        }
        let n = flow_rows.len();
        let mut flows = FlowColumns {
            src: Vec::with_capacity(n),
            dst: Vec::with_capacity(n),
            proto: Vec::with_capacity(n),
            sport: Vec::with_capacity(n),
            dport: Vec::with_capacity(n),
            packets: Vec::with_capacity(n),
            bytes: Vec::with_capacity(n),
        };
        for (k, c) in &flow_rows {
            flows.src.push(index(&k.src));
            flows.dst.push(index(&k.dst));
            flows.proto.push(k.proto);
            flows.sport.push(k.sport);
            flows.dport.push(k.dport);
            flows.packets.push(c.packets);
            flows.bytes.push(c.bytes);
        }
        Batch {
            start_ms,
            end_ms,
            addrs: table,
            ips,
            flows,
            totals,
            ring: None,
            filter: None,
            ip_overflow_keys,
            flow_overflow_keys,
            names: BatchNames::default(),
            name_counts,
            last: false,
            kernel: None,
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
