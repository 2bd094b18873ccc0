//! What the capture engine may hold in memory at most, computed from its options: the rings,
//! the counting tables (per worker, in the merger, in a replayed file's open intervals), the
//! conversion of an interval into a batch, and the batches waiting for the consumer. Each
//! structure that grows with the keys of an interval is bounded by `max_keys` and counted here,
//! so the figure the recorder states (`traffic-counter record --help`, its start line) is a sum
//! over these bounds, not an estimate of a typical load.

use crate::live::MAX_PENDING;
use crate::names::collect::{self, NAME_TABLES, NAME_TEXT_PER_PAIR};
use crate::names::{dns, hello, tls};
use crate::options::Valid;
use crate::parse::Addr;
use crate::replay::{OPEN_TABLES, REORDER_WINDOW_MS};
use crate::table::{FlowCounters, FlowKey, IpCounters};
use std::mem::size_of;

/// Batches a replay may have converted and not yet handed to the consumer (the napi queue; the
/// replay thread waits past it).
pub const REPLAY_QUEUE_BATCHES: usize = 4;

/// Hash buckets of a hashbrown table holding `keys` (its sizing rule: a power of two, at most 7/8 full).
pub(crate) fn buckets(keys: usize) -> usize {
    if keys < 4 {
        4
    } else if keys < 8 {
        8
    } else {
        (keys * 8).div_ceil(7).next_power_of_two()
    }
}

/// Keys a table filled to `max_keys` has room for before it grows (`Tables::room` counts this way).
pub fn table_room(max_keys: usize) -> usize {
    let b = buckets(max_keys);
    if b < 8 {
        b - 1
    } else {
        b / 8 * 7
    }
}

fn map_bytes<E>(keys: usize) -> u64 {
    // One control byte per bucket plus a group's worth (16) past the end.
    (buckets(keys) * (size_of::<E>() + 1) + 16) as u64
}

/// One worker's (or one interval's) tables filled to `max_keys`: per-IP, and per-flow with
/// `flows`, plus the two overflow sketches.
pub fn table_bytes(max_keys: usize, flows: bool) -> u64 {
    let ip = map_bytes::<(Addr, IpCounters)>(max_keys);
    let flow = if flows { map_bytes::<(FlowKey, FlowCounters)>(max_keys) } else { 0 };
    ip + flow + 2 * 8192
}

/// The same while a table grows past its last power of two: the old buckets and the new.
pub fn growing_table_bytes(max_keys: usize, flows: bool) -> u64 {
    table_bytes(max_keys, flows) + table_bytes(max_keys / 2, flows)
}

/// Distinct addresses a batch may hold: each per-IP row's, plus (with flows) addresses of flows
/// that overflowed the per-IP table, two per flow.
pub fn batch_addrs(max_keys: usize, flows: bool) -> usize {
    (max_keys + 1) * if flows { 3 } else { 1 }
}

/// The columns of the largest batch (`batch::Batch`, and the napi Buffers made from them).
pub fn batch_bytes(max_keys: usize, flows: bool) -> u64 {
    let rows = max_keys + 1;
    let addrs = batch_addrs(max_keys, flows) * 17;
    let ip = rows * (4 + 4 * 8);
    let flow = if flows { rows * (4 + 4 + 1 + 2 + 2 + 8 + 8) } else { 0 };
    (addrs + ip + flow + 23 * 8) as u64
}

/// Turning an interval's tables into a batch: the rows taken out of the tables, the sorted
/// addresses and the columns, and one column copied into its Buffer at a time.
pub fn conversion_bytes(max_keys: usize, flows: bool) -> u64 {
    let rows = max_keys + 1;
    let ip_rows = rows * size_of::<(Addr, IpCounters)>();
    let flow_rows = if flows { rows * size_of::<(FlowKey, FlowCounters)>() } else { 0 };
    let addrs = batch_addrs(max_keys, flows) * size_of::<Addr>();
    let column = batch_addrs(max_keys, flows) * 16;
    (ip_rows + flow_rows + addrs + column) as u64 + batch_bytes(max_keys, flows)
}

/// One names reader (one per capture worker, one per replayed file): the DNS scratch for the
/// names of the largest message, the TLS scratch for one hello, and the ClientHellos it joins
/// (`MAX_PENDING_BYTES` of buffers and the table of `MAX_PENDING_HELLOS` connections).
pub fn names_reader_bytes() -> u64 {
    let hellos = hello::MAX_PENDING_BYTES + buckets(hello::MAX_PENDING_HELLOS) * (hello::PENDING_ENTRY_BYTES + 1);
    (dns::SCRATCH_MAX_BYTES + 2 * (tls::MAX_HELLO_BYTES + 5 * 4) + hellos) as u64
}

/// One interval's pairs filled to `max_names` (`NameTable::bytes`).
pub fn names_table_bytes(max_names: usize) -> u64 {
    if max_names == 0 {
        return 0;
    }
    (buckets(max_names) * (collect::ENTRY_BYTES + 1) + 16 + max_names * NAME_TEXT_PER_PAIR + crate::table::OverflowSketch::BYTES) as u64
}

/// The names of the intervals not yet handed over (`NameCollector::bytes`), spread over at most
/// `tables` intervals: `NAME_TABLES` intervals' worth of pairs and text in all. A table of n
/// pairs has at most 16n/7 + 8 buckets, its text at most 1.25 times its bytes plus one growth
/// step; one table at a time grows (its old buckets and text alive while it does), and each may
/// hold an overflow sketch.
pub fn names_collector_bytes(max_names: usize, tables: usize) -> u64 {
    if max_names == 0 {
        return 0;
    }
    let pairs = NAME_TABLES * max_names;
    let buckets = (16 * pairs).div_ceil(7) + 8 * tables + buckets(max_names) / 2;
    let text = NAME_TABLES * max_names * NAME_TEXT_PER_PAIR * 5 / 4 + tables * collect::TEXT_STEP + max_names * NAME_TEXT_PER_PAIR;
    (buckets * (collect::ENTRY_BYTES + 1) + tables * (16 + crate::table::OverflowSketch::BYTES) + text) as u64
}

/// The names columns of the largest batch (`BatchNames`).
pub fn names_batch_bytes(max_names: usize) -> u64 {
    (max_names * (1 + 16 + 1 + 4 + NAME_TEXT_PER_PAIR)) as u64
}

/// Turning an interval's pairs into columns: its entries sorted, and the columns. The table
/// itself is converted where the collector's bound still holds it (under its lock, live).
pub fn names_conversion_bytes(max_names: usize) -> u64 {
    (max_names * collect::ENTRY_BYTES) as u64 + names_batch_bytes(max_names)
}

/// The engine's memory at most, in bytes, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineMemory {
    /// TPACKET_V3 rings: workers x block size x block count (mapped, filled by the kernel).
    pub rings: u64,
    /// Counting tables and the conversion of an interval into a batch.
    pub tables: u64,
    /// Batches converted and not yet taken by the consumer.
    pub batches: u64,
}

impl EngineMemory {
    pub fn total(&self) -> u64 {
        self.rings + self.tables + self.batches
    }
}

/// The columns of the largest batch, names included.
pub fn batch_bytes_with_names(v: &Valid) -> u64 {
    batch_bytes(v.max_keys, v.flows) + names_batch_bytes(v.max_names)
}

/// The names part of a capture: its readers, its collector over `tables` intervals, one conversion.
fn names_bytes(v: &Valid, readers: u64, tables: usize) -> u64 {
    if v.max_names == 0 {
        return 0;
    }
    readers * names_reader_bytes() + names_collector_bytes(v.max_names, tables) + names_conversion_bytes(v.max_names)
}

/// Live capture: each worker's open tables (growing) and at most one closed interval it waits
/// to hand over (the merger's input is a rendezvous), the one the merger is adding, at most
/// `MAX_PENDING` intervals being joined (growing as they are), one conversion, and the
/// hand-over's bound plus the one batch that may always wait. Names: a reader per worker and the
/// one collector, whose intervals are the workers' open ones, the merger's and one late.
pub fn live(v: &Valid) -> EngineMemory {
    let (k, f, w) = (v.max_keys, v.flows, v.workers as u64);
    let rings = w * v.ring.block_size as u64 * v.ring.block_count as u64;
    let names = names_bytes(v, w, v.workers + MAX_PENDING + 1);
    let tables = (w + MAX_PENDING as u64) * growing_table_bytes(k, f) + (w + 1) * table_bytes(k, f) + conversion_bytes(k, f) + names;
    let batches = v.handover_max_bytes as u64 + batch_bytes_with_names(v);
    EngineMemory { rings, tables, batches }
}

/// Live capture counted in the kernel: as `live` with three senders of tables (the counting
/// socket's worker, which counts what the program hands back, the kernel drain, and the names
/// socket's worker, whose tables stay empty but for name counts) and one ring, two with names.
/// The maps themselves are kernel memory (`kcount::map_memory`), stated apart.
pub fn live_kernel(v: &Valid) -> EngineMemory {
    let rings = if v.max_names > 0 { 2 } else { 1 };
    let senders = if v.max_names > 0 { 3 } else { 2 };
    let as_ring = Valid { workers: senders, ..v.clone() };
    let m = live(&as_ring);
    EngineMemory { rings: rings * v.ring.block_size as u64 * v.ring.block_count as u64, ..m }
}

/// Replay: the open intervals' tables (at most `OPEN_TABLES` full tables' room, the newest
/// growing), the per-IP updates held back (`table::Deferred`), with flows the flow records on
/// their way to the flow thread (`replay::FLOW_RECORDS_BYTES`), one conversion, and
/// `REPLAY_QUEUE_BATCHES` batches waiting for the consumer. Names: one reader and the collector
/// over the intervals the reorder window keeps open.
pub fn replay(v: &Valid) -> EngineMemory {
    let (k, f) = (v.max_keys, v.flows);
    let window = (REORDER_WINDOW_MS / v.interval_ms) as usize + 2;
    let tables = OPEN_TABLES as u64 * table_bytes(k, f)
        + growing_table_bytes(k, f)
        + crate::table::Deferred::BYTES as u64
        + if f { crate::replay::FLOW_RECORDS_BYTES } else { 0 }
        + conversion_bytes(k, f)
        + names_bytes(v, 1, window);
    EngineMemory { rings: 0, tables, batches: REPLAY_QUEUE_BATCHES as u64 * batch_bytes_with_names(v) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{CaptureOptions, CountOptions, Options};
    use crate::table::Tables;

    #[test]
    fn table_room_is_what_a_full_table_has_room_for() {
        for k in [1, 5, 100, 1000, 20_000, 100_000] {
            let mut t = Tables::new(k, true);
            t.ips.reserve(k);
            t.flows.reserve(k);
            assert_eq!(t.room(), 2 * table_room(k), "max_keys {k}");
            assert!(table_room(k) >= k);
        }
    }

    #[test]
    fn every_part_grows_with_its_option() {
        let v = |k: u32, w: u32, flows: bool, blocks: u32, hand: f64| {
            Options {
                count: CountOptions { max_keys: Some(k), flows: Some(flows), ..Default::default() },
                capture: CaptureOptions { workers: Some(w), block_count: Some(blocks), handover_max_bytes: Some(hand), ..Default::default() },
            }
            .validate()
            .unwrap()
        };
        let base = live(&v(10_000, 2, true, 8, 1e6));
        assert_eq!(base.rings, 2 * 8 * crate::options::DEFAULT_BLOCK_SIZE as u64);
        assert!(live(&v(20_000, 2, true, 8, 1e6)).tables > base.tables);
        assert!(live(&v(10_000, 2, false, 8, 1e6)).tables < base.tables);
        assert!(live(&v(10_000, 3, true, 8, 1e6)).tables > base.tables);
        assert_eq!(live(&v(10_000, 2, true, 16, 1e6)).rings, 2 * base.rings);
        assert_eq!(live(&v(10_000, 2, true, 8, 2e6)).batches, base.batches + 1_000_000);
        assert_eq!(replay(&v(10_000, 2, true, 8, 1e6)).rings, 0);
    }

    #[test]
    fn a_full_batch_fits_its_stated_bytes() {
        // Every key distinct and every flow's addresses outside the per-IP table: the largest batch.
        let k = 1000;
        let mut t = Tables::new(k, true);
        for i in 0..3 * k as u32 {
            let a = |n: u32| Addr::v4(&n.to_be_bytes());
            let p = crate::parse::IpPacket { src: a(i), dst: a(1 << 31 | i), proto: 17, sport: 1, dport: 2, bytes: 64, fragment: crate::parse::Fragment::None, ip_rest: 0, l4: 0 };
            t.count(&crate::parse::Parsed::Ip(p));
        }
        let b = crate::batch::Batch::from_tables(0, 1000, t);
        let bytes = b.addrs.fam.len() + b.addrs.addr.len() + b.ips.idx.len() * 36 + b.flows.proto.len() * 29;
        assert!(bytes as u64 <= batch_bytes(k, true), "{bytes} > {}", batch_bytes(k, true));
    }

    #[test]
    fn the_names_collector_stays_within_its_stated_bytes_however_its_pairs_are_spread() {
        use crate::names::collect::{NameCollector, Order};
        use crate::names::Source;
        let m = 1000;
        // One interval's worth of long names, then pairs spread over the most intervals, sized
        // just past a power of two each (the most buckets per pair).
        for (tables, per) in [(2, m), (5, 450), (5, 900), (12, 200), (61, 60)] {
            let mut c = NameCollector::new(m);
            let mut most = 0;
            for t in 0..tables as i64 {
                for i in 0..per as u32 {
                    let name = format!("{}.{}", "x".repeat((i % 200) as usize + 1), t);
                    c.see(t * 1000, Addr::v4(&(i + 100_000 * t as u32).to_be_bytes()), Source::Dns, name.as_bytes(), Order::default());
                    most = most.max(c.bytes());
                }
            }
            assert!(most as u64 <= names_collector_bytes(m, tables), "{tables} intervals of {per}: {most} > {}", names_collector_bytes(m, tables));
        }
    }

    #[test]
    fn a_names_reader_stays_within_its_stated_bytes() {
        use crate::names::hello::{Hellos, Segment, MAX_PENDING_HELLOS};
        use crate::names::NameCounts;
        let mut h = Hellos::default();
        let first = crate::names::tls::build::records(&crate::names::tls::build::hello("x.example", 15_000), 16384);
        for port in 0..2 * MAX_PENDING_HELLOS as u16 {
            let key = FlowKey { src: Addr::v4(&[10, 0, 0, 1]), dst: Addr::v4(&[10, 0, 0, 2]), proto: 6, sport: port, dport: 443 };
            let s = Segment { key, seq: 1, flags: 0x18, payload: &first[..1448], whole: true, ts_ns: 0 };
            h.segment(&s, &mut Vec::new(), &mut [0; 256], &mut NameCounts::default());
            let s = Segment { key, seq: 1449, flags: 0x18, payload: &first[1448..4000], whole: true, ts_ns: 0 };
            h.segment(&s, &mut Vec::new(), &mut [0; 256], &mut NameCounts::default());
            assert!(h.bytes() as u64 <= names_reader_bytes(), "{} > {}", h.bytes(), names_reader_bytes());
        }
    }

    #[test]
    fn names_off_cost_nothing_and_names_on_add_to_tables_and_batches() {
        let v = |n: u32| Options { count: CountOptions { max_names: Some(n), ..Default::default() }, capture: CaptureOptions { workers: Some(2), ..Default::default() } }.validate().unwrap();
        let (off, on) = (live(&v(0)), live(&v(10_000)));
        assert!(on.tables > off.tables && on.batches > off.batches);
        assert_eq!(on.tables - off.tables, 2 * names_reader_bytes() + names_collector_bytes(10_000, 2 + MAX_PENDING + 1) + names_conversion_bytes(10_000));
        assert!(replay(&v(20_000)).tables > replay(&v(10_000)).tables);
    }
}
