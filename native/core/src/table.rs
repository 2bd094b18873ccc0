//! Per-interval counting tables: per IP address and per unidirectional 5-tuple flow.
//!
//! Each capture worker owns one [`Tables`]; nothing here is shared or locked. At the end of an
//! interval the workers' tables are merged with [`Tables::merge`]. Memory is bounded by
//! `max_keys` per table: a key that does not fit is counted in the table's overflow row, so the
//! totals always balance, and an estimate of how many distinct keys overflowed is kept.

use crate::names::NameCounts;
use crate::parse::{Addr, Fragment, IpPacket, Parsed};
use hashbrown::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct IpCounters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
}

impl IpCounters {
    pub(crate) fn add(&mut self, o: &IpCounters) {
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
    }
    fn is_zero(&self) -> bool {
        *self == IpCounters::default()
    }
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct FlowCounters {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: Addr,
    pub dst: Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

impl Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u128(u128::from_ne_bytes(self.src.bytes));
        h.write_u128(u128::from_ne_bytes(self.dst.bytes));
        h.write_u64(
            self.src.fam as u64 | (self.dst.fam as u64) << 8 | (self.proto as u64) << 16 | (self.sport as u64) << 24 | (self.dport as u64) << 40,
        );
    }
}

impl FlowKey {
    pub const OVERFLOW: FlowKey = FlowKey { src: Addr::OVERFLOW, dst: Addr::OVERFLOW, proto: 0, sport: 0, dport: 0 };
}

/// Frame-level totals of an interval. `frames = ip_packets + non_ip`.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Totals {
    pub frames: u64,
    pub ip_packets: u64,
    pub ip_bytes: u64,
    pub ipv4_packets: u64,
    pub ipv4_bytes: u64,
    pub ipv6_packets: u64,
    pub ipv6_bytes: u64,
    pub non_ip: u64,
    pub ip_header_incomplete: u64,
    pub fragments_first: u64,
    pub fragments_non_first: u64,
    pub ip_length_field_zero: u64,
    /// Frames dropped by the userspace CIDR rules (`--no-ebpf`, replay, or frames the kernel
    /// filter could not inspect).
    pub ignored: u64,
    /// Frames whose timestamp lay before the interval they were counted in (live: late ring
    /// blocks; replay: frames stamped beyond the reorder window, `replay::REORDER_WINDOW_MS`).
    pub late: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.frames += o.frames;
        self.ip_packets += o.ip_packets;
        self.ip_bytes += o.ip_bytes;
        self.ipv4_packets += o.ipv4_packets;
        self.ipv4_bytes += o.ipv4_bytes;
        self.ipv6_packets += o.ipv6_packets;
        self.ipv6_bytes += o.ipv6_bytes;
        self.non_ip += o.non_ip;
        self.ip_header_incomplete += o.ip_header_incomplete;
        self.fragments_first += o.fragments_first;
        self.fragments_non_first += o.fragments_non_first;
        self.ip_length_field_zero += o.ip_length_field_zero;
        self.ignored += o.ignored;
        self.late += o.late;
    }
}

/// Linear-counting sketch of the distinct keys refused by a full table (mergeable by OR).
/// 2^16 bits = 8 KiB; the estimate stays within a few percent up to ~200k distinct keys.
#[derive(Clone)]
pub struct OverflowSketch {
    bits: Vec<u64>,
    any: bool,
}

const SKETCH_BITS: usize = 1 << 16;

impl Default for OverflowSketch {
    fn default() -> Self {
        OverflowSketch { bits: vec![0; SKETCH_BITS / 64], any: false }
    }
}

impl OverflowSketch {
    /// Bytes a sketch holds.
    pub const BYTES: usize = SKETCH_BITS / 8;

    #[inline]
    pub(crate) fn insert(&mut self, h: u64) {
        let b = (h as usize) & (SKETCH_BITS - 1);
        self.bits[b / 64] |= 1 << (b % 64);
        self.any = true;
    }
    /// A sketch from its bits, 64 to a word, as the kernel's counting program sets them.
    pub(crate) fn from_words(words: &[u64]) -> OverflowSketch {
        let mut bits = vec![0u64; SKETCH_BITS / 64];
        for (b, w) in bits.iter_mut().zip(words) {
            *b = *w;
        }
        let any = bits.iter().any(|&w| w != 0);
        OverflowSketch { bits, any }
    }
    pub(crate) fn merge(&mut self, o: &OverflowSketch) {
        if !o.any {
            return;
        }
        for (a, b) in self.bits.iter_mut().zip(&o.bits) {
            *a |= *b;
        }
        self.any = true;
    }
    /// Estimated number of distinct keys inserted.
    pub fn estimate(&self) -> u64 {
        if !self.any {
            return 0;
        }
        let ones: u32 = self.bits.iter().map(|w| w.count_ones()).sum();
        let zeros = SKETCH_BITS as f64 - ones as f64;
        let m = SKETCH_BITS as f64;
        if zeros < 1.0 {
            // saturated: report the lower bound the sketch can still vouch for
            return (m * m.ln()).round() as u64;
        }
        (-m * (zeros / m).ln()).round().max(1.0) as u64
    }
}

/// Starting table capacity: avoids the first dozen rehashes of a busy interval.
const INITIAL_CAPACITY: usize = 16 * 1024;

pub struct Tables {
    pub max_keys: usize,
    pub count_flows: bool,
    pub ips: HashMap<Addr, IpCounters>,
    pub flows: HashMap<FlowKey, FlowCounters>,
    pub ip_overflow: IpCounters,
    pub flow_overflow: FlowCounters,
    pub ip_overflow_sketch: OverflowSketch,
    pub flow_overflow_sketch: OverflowSketch,
    pub totals: Totals,
    /// What the names reader could not read in this interval (`names`).
    pub names: NameCounts,
}

impl Tables {
    pub fn new(max_keys: usize, count_flows: bool) -> Tables {
        Tables::with_capacity(max_keys, count_flows, INITIAL_CAPACITY)
    }

    /// Empty tables with room for `capacity` keys each (at most `max_keys`).
    pub fn with_capacity(max_keys: usize, count_flows: bool, capacity: usize) -> Tables {
        Tables {
            max_keys,
            count_flows,
            ips: HashMap::with_capacity(capacity.min(max_keys)),
            flows: HashMap::with_capacity(if count_flows { capacity.min(max_keys) } else { 0 }),
            ip_overflow: IpCounters::default(),
            flow_overflow: FlowCounters::default(),
            ip_overflow_sketch: OverflowSketch::default(),
            flow_overflow_sketch: OverflowSketch::default(),
            totals: Totals::default(),
            names: NameCounts::default(),
        }
    }

    /// A fresh, empty table with the same settings (capacity kept from this one as a hint).
    pub fn fresh(&self) -> Tables {
        let mut t = Tables::new(self.max_keys, self.count_flows);
        t.ips.reserve(self.ips.len().min(self.max_keys));
        if self.count_flows {
            t.flows.reserve(self.flows.len().min(self.max_keys));
        }
        t
    }

    /// Keys the tables have room for without growing (addresses and flows): what they hold in
    /// memory, in keys.
    pub fn room(&self) -> usize {
        self.ips.capacity() + self.flows.capacity()
    }

    /// Counts one parsed frame.
    #[inline]
    pub fn count(&mut self, parsed: &Parsed) {
        self.count_with(parsed, None)
    }

    /// Counts one parsed frame, its per-IP updates held back in `d` while that gives the same
    /// tables (`Deferred`); `d` holds only updates of these tables and is applied to them with
    /// `Deferred::apply` before they are read or counted into otherwise.
    #[inline]
    pub fn count_deferred(&mut self, parsed: &Parsed, d: &mut Deferred) {
        self.count_with(parsed, Some(d))
    }

    #[inline]
    fn count_with(&mut self, parsed: &Parsed, d: Option<&mut Deferred>) {
        self.totals.frames += 1;
        match parsed {
            Parsed::NonIp => self.totals.non_ip += 1,
            Parsed::IpHeaderIncomplete => {
                self.totals.non_ip += 1;
                self.totals.ip_header_incomplete += 1;
            }
            Parsed::Ip(p) => self.count_ip(p, d),
        }
    }

    /// Whether `n` more per-IP updates can be held back and applied later (`Deferred::apply`)
    /// with the same result as counting them now: the table is full (it never grows again), or
    /// `n` new keys fit in the room it has (it does not grow before they are applied, so `room`
    /// stays what it would be).
    #[inline]
    fn defers(&self, n: usize) -> bool {
        let len = self.ips.len();
        len >= self.max_keys || len + n <= self.ips.capacity()
    }

    #[inline]
    fn count_ip(&mut self, p: &IpPacket, d: Option<&mut Deferred>) {
        let b = p.bytes as u64;
        let t = &mut self.totals;
        t.ip_packets += 1;
        t.ip_bytes += b;
        if p.src.fam == 4 {
            t.ipv4_packets += 1;
            t.ipv4_bytes += b;
            if b == 0 {
                t.ip_length_field_zero += 1;
            }
        } else {
            t.ipv6_packets += 1;
            t.ipv6_bytes += b;
            if b == 40 {
                t.ip_length_field_zero += 1;
            }
        }
        match p.fragment {
            Fragment::First => t.fragments_first += 1,
            Fragment::NonFirst => t.fragments_non_first += 1,
            Fragment::None => {}
        }
        match d {
            Some(d) if self.defers(d.ups.len() + 2) && d.ups.len() + 2 <= d.ups.capacity() => {
                d.ups.push(IpUpdate { addr: p.src, bytes: p.bytes, rx: false });
                d.ups.push(IpUpdate { addr: p.dst, bytes: p.bytes, rx: true });
            }
            d => {
                if let Some(d) = d {
                    d.apply(self);
                }
                self.add_ip(p.src, &IpCounters { tx_packets: 1, tx_bytes: b, ..Default::default() });
                self.add_ip(p.dst, &IpCounters { rx_packets: 1, rx_bytes: b, ..Default::default() });
            }
        }
        if self.count_flows {
            let key = FlowKey { src: p.src, dst: p.dst, proto: p.proto, sport: p.sport, dport: p.dport };
            self.add_flow(key, &FlowCounters { packets: 1, bytes: b });
        }
    }

    #[inline]
    pub(crate) fn add_ip(&mut self, a: Addr, c: &IpCounters) {
        let full = self.ips.len() >= self.max_keys;
        if let Some(e) = self.ips.get_mut(&a) {
            e.add(c);
        } else if !full {
            self.ips.insert(a, *c);
        } else {
            self.ip_overflow.add(c);
            self.ip_overflow_sketch.insert(sketch_hash(&a));
        }
    }

    #[inline]
    pub(crate) fn add_flow(&mut self, k: FlowKey, c: &FlowCounters) {
        let full = self.flows.len() >= self.max_keys;
        if let Some(e) = self.flows.get_mut(&k) {
            e.packets += c.packets;
            e.bytes += c.bytes;
        } else if !full {
            self.flows.insert(k, *c);
        } else {
            self.flow_overflow.packets += c.packets;
            self.flow_overflow.bytes += c.bytes;
            self.flow_overflow_sketch.insert(sketch_hash(&k));
        }
    }

    /// Adds rows already folded into an overflow row elsewhere (the kernel's maps), with the
    /// sketch of their keys.
    pub(crate) fn add_ip_overflow(&mut self, c: &IpCounters, sketch: &OverflowSketch) {
        self.ip_overflow.add(c);
        self.ip_overflow_sketch.merge(sketch);
    }

    pub(crate) fn add_flow_overflow(&mut self, c: &FlowCounters, sketch: &OverflowSketch) {
        self.flow_overflow.packets += c.packets;
        self.flow_overflow.bytes += c.bytes;
        self.flow_overflow_sketch.merge(sketch);
    }

    /// Adds another worker's table for the same interval into this one; `max_keys` still holds.
    pub fn merge(&mut self, o: Tables) {
        self.totals.add(&o.totals);
        self.names.add(&o.names);
        for (a, c) in o.ips {
            self.add_ip(a, &c);
        }
        for (k, c) in o.flows {
            self.add_flow(k, &c);
        }
        self.ip_overflow.add(&o.ip_overflow);
        self.flow_overflow.packets += o.flow_overflow.packets;
        self.flow_overflow.bytes += o.flow_overflow.bytes;
        self.ip_overflow_sketch.merge(&o.ip_overflow_sketch);
        self.flow_overflow_sketch.merge(&o.flow_overflow_sketch);
    }

    pub fn ip_overflow_row(&self) -> Option<IpCounters> {
        (!self.ip_overflow.is_zero()).then_some(self.ip_overflow)
    }

    pub fn flow_overflow_row(&self) -> Option<FlowCounters> {
        (self.flow_overflow.packets != 0).then_some(self.flow_overflow)
    }
}

/// A hash with fixed keys (the same in every worker, so sketches merge), for keys that
/// overflowed: on a flood, or a capture with more flows than `max_keys`, that is most packets,
/// and SipHash took ~25 ns of each. A multiply-rotate over the key's words and the MurmurHash3
/// finaliser, whose low 16 bits (the sketch's) are uniform.
pub(crate) fn sketch_hash<K: Hash>(k: &K) -> u64 {
    let mut h = SketchHasher(0x9E37_79B9_7F4A_7C15);
    k.hash(&mut h);
    h.finish()
}

struct SketchHasher(u64);

impl Hasher for SketchHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0xBF58_476D_1CE4_E5B9).rotate_left(31);
    }
    #[inline]
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 33;
        x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        x ^ (x >> 33)
    }
}

/// Per-IP updates held back while that changes nothing (`Tables::defers`), then applied in the
/// order of the buckets they land in. The per-IP table of a busy interval spans megabytes and
/// its keys are looked up at random: each lookup in packet order missed the caches (about
/// 60% of a replay's counting time at 100,000 addresses); in bucket order the table is walked
/// front to back once per `DEFER_UPDATES` updates.
pub struct Deferred {
    ups: Vec<IpUpdate>,
    keys: Vec<u64>,
    tmp: Vec<u64>,
}

/// Updates held back at most (two a packet): ~1.5 MiB of updates and 1 MiB of sort keys.
pub const DEFER_UPDATES: usize = 1 << 16;

#[derive(Clone, Copy)]
struct IpUpdate {
    addr: Addr,
    bytes: u32,
    rx: bool,
}

impl IpUpdate {
    #[inline]
    fn counters(&self) -> IpCounters {
        let b = self.bytes as u64;
        if self.rx {
            IpCounters { rx_packets: 1, rx_bytes: b, ..Default::default() }
        } else {
            IpCounters { tx_packets: 1, tx_bytes: b, ..Default::default() }
        }
    }
}

impl Default for Deferred {
    fn default() -> Self {
        Deferred { ups: Vec::with_capacity(DEFER_UPDATES), keys: Vec::with_capacity(DEFER_UPDATES), tmp: Vec::with_capacity(DEFER_UPDATES) }
    }
}

impl Deferred {
    /// Bytes a `Deferred` holds.
    pub const BYTES: usize = DEFER_UPDATES * (std::mem::size_of::<IpUpdate>() + 16);

    pub fn is_empty(&self) -> bool {
        self.ups.is_empty()
    }

    /// Adds the held-back updates to `t`, the tables they were counted for.
    pub fn apply(&mut self, t: &mut Tables) {
        if self.ups.is_empty() {
            return;
        }
        // hashbrown starts a key's probe at `hash & (buckets - 1)`; its buckets are a power of
        // two holding 7/8 of them (budget::buckets).
        let buckets = crate::budget::buckets(t.ips.capacity().max(1));
        let bits = buckets.trailing_zeros().min(32);
        let mask = (buckets as u64 - 1) & 0xFFFF_FFFF;
        let hasher = t.ips.hasher();
        self.keys.clear();
        for (i, u) in self.ups.iter().enumerate() {
            self.keys.push(((hasher.hash_one(u.addr) & mask) << 32) | i as u64);
        }
        radix_sort_high(&mut self.keys, &mut self.tmp, bits);
        // Updates of keys the table holds add up in any order: in bucket order. The others
        // then go in packet order, as they would have: the first new keys up to `max_keys` get
        // a row, the rest the overflow row.
        // A full table takes no new key: theirs go to the overflow row, in any order too.
        let full = t.ips.len() >= t.max_keys;
        self.tmp.clear();
        // Each lookup's bucket is prefetched `AHEAD` updates before it. hashbrown lays bucket i
        // out at `end - (i + 1) * size`; `end` is learnt from the values found (the largest
        // estimate: a key found at its probe start). A wrong guess only wastes a prefetch.
        const AHEAD: usize = 16;
        let size = std::mem::size_of::<(Addr, IpCounters)>();
        let mut end = 0usize;
        let n = self.keys.len();
        for j in 0..n {
            let k = self.keys[j];
            if j + AHEAD < n && end != 0 {
                let f = self.keys[j + AHEAD];
                prefetch(end.wrapping_sub(((f >> 32) as usize + 1) * size));
                prefetch(&self.ups[(f & 0xFFFF_FFFF) as usize] as *const IpUpdate as usize);
            }
            let u = &self.ups[(k & 0xFFFF_FFFF) as usize];
            match t.ips.get_mut(&u.addr) {
                Some(e) => {
                    end = end.max(e as *mut IpCounters as usize + ((k >> 32) as usize + 1) * size);
                    e.add(&u.counters())
                }
                None if full => t.add_ip(u.addr, &u.counters()),
                None => self.tmp.push(k & 0xFFFF_FFFF),
            }
        }
        self.tmp.sort_unstable();
        for &i in &self.tmp {
            let u = &self.ups[i as usize];
            t.add_ip(u.addr, &u.counters());
        }
        self.ups.clear();
    }
}

/// A hint to bring the cache line at `addr` in (never faults, whatever the address).
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 reads nothing architecturally and never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Sorts `v` by its bits 32..32 + `bits` (least significant digit first, 11 bits a pass; the
/// low 32 bits keep their order within equal keys).
fn radix_sort_high(v: &mut Vec<u64>, tmp: &mut Vec<u64>, bits: u32) {
    const DIGIT: u32 = 11;
    let mut shift = 32;
    while shift < 32 + bits {
        let mut count = [0usize; 1 << DIGIT];
        for &x in v.iter() {
            count[((x >> shift) as usize) & ((1 << DIGIT) - 1)] += 1;
        }
        let mut at = 0;
        for c in count.iter_mut() {
            let n = *c;
            *c = at;
            at += n;
        }
        tmp.clear();
        tmp.resize(v.len(), 0);
        for &x in v.iter() {
            let d = ((x >> shift) as usize) & ((1 << DIGIT) - 1);
            tmp[count[d]] = x;
            count[d] += 1;
        }
        std::mem::swap(v, tmp);
        shift += DIGIT;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Addr, Fragment, IpPacket, Parsed};

    fn pkt(src: u8, dst: u8, bytes: u32) -> Parsed {
        Parsed::Ip(IpPacket {
            src: Addr::v4(&[10, 0, 0, src]),
            dst: Addr::v4(&[10, 0, 1, dst]),
            proto: 17,
            sport: 1,
            dport: 2,
            bytes,
            fragment: Fragment::None,
            ip_rest: 0,
            l4: 0,
        })
    }

    #[test]
    fn overflow_keeps_totals_balanced() {
        let mut t = Tables::new(4, true);
        for i in 0..50u8 {
            t.count(&pkt(i, i, 100));
        }
        assert_eq!(t.ips.len(), 4);
        assert_eq!(t.flows.len(), 4);
        let tx: u64 = t.ips.values().map(|c| c.tx_bytes).sum::<u64>() + t.ip_overflow.tx_bytes;
        let rx: u64 = t.ips.values().map(|c| c.rx_bytes).sum::<u64>() + t.ip_overflow.rx_bytes;
        assert_eq!((tx, rx), (5000, 5000));
        let fb: u64 = t.flows.values().map(|c| c.bytes).sum::<u64>() + t.flow_overflow.bytes;
        assert_eq!(fb, 5000);
        let est = t.ip_overflow_sketch.estimate();
        assert!((90..=100).contains(&est), "estimate {est} for 96 refused addresses");
        assert_eq!(t.flow_overflow_sketch.estimate(), 46);
    }

    #[test]
    fn deferred_updates_give_the_tables_counting_in_packet_order_gives() {
        // Addresses drawn from 300 (some far more often), max_keys 200: the table grows from
        // 16 keys, fills, and refuses the rest; the held-back updates are applied at random
        // moments, as a replay does when it reads a table or counts into another.
        for seed in 1..=20u64 {
            let mut x = seed;
            let mut next = move || {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 33) as u32
            };
            let mut direct = Tables::with_capacity(200, false, 16);
            let mut held = Tables::with_capacity(200, false, 16);
            let mut d = Deferred::default();
            for _ in 0..5000 {
                let r = next();
                let (src, dst) = if r % 3 == 0 { ((r >> 8) % 300, (r >> 20) % 300) } else { ((r >> 8) % 40, (r >> 20) % 300) };
                let p = Parsed::Ip(IpPacket {
                    src: Addr::v4(&(0x0a00_0000 + src).to_be_bytes()),
                    dst: Addr::v4(&(0x0b00_0000 + dst).to_be_bytes()),
                    proto: 17,
                    sport: 1,
                    dport: 2,
                    bytes: 60 + r % 1400,
                    fragment: Fragment::None,
                    ip_rest: 0,
                    l4: 0,
                });
                direct.count(&p);
                held.count_deferred(&p, &mut d);
                assert_eq!(held.room(), direct.room(), "the room is the same after every packet");
                if next() % 97 == 0 {
                    d.apply(&mut held);
                }
            }
            d.apply(&mut held);
            let sorted = |t: &Tables| {
                let mut v: Vec<_> = t.ips.iter().map(|(a, c)| (*a, *c)).collect();
                v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                v
            };
            assert_eq!(sorted(&held), sorted(&direct), "seed {seed}");
            assert_eq!(held.ip_overflow, direct.ip_overflow, "seed {seed}");
            assert!(direct.ip_overflow.tx_packets + direct.ip_overflow.rx_packets > 0, "the table overflowed");
            assert_eq!(held.ip_overflow_sketch.estimate(), direct.ip_overflow_sketch.estimate());
            assert_eq!(held.totals, direct.totals);
        }
    }

    #[test]
    fn merge_respects_max_keys() {
        let mut a = Tables::new(3, true);
        let mut b = Tables::new(10, true);
        a.count(&pkt(1, 1, 10));
        b.count(&pkt(2, 2, 10));
        b.count(&pkt(1, 1, 10));
        a.merge(b);
        assert_eq!(a.totals.ip_packets, 3);
        assert_eq!(a.ips.len(), 3);
        assert_eq!(a.ip_overflow.rx_packets + a.ip_overflow.tx_packets, 1);
        assert_eq!(a.ips[&Addr::v4(&[10, 0, 0, 1])].tx_bytes, 20);
    }

    #[test]
    fn self_addressed_counts_both_ways() {
        let mut t = Tables::new(10, false);
        let p = Parsed::Ip(IpPacket {
            src: Addr::v4(&[1, 1, 1, 1]),
            dst: Addr::v4(&[1, 1, 1, 1]),
            proto: 1,
            sport: 0,
            dport: 0,
            bytes: 84,
            fragment: Fragment::None,
            ip_rest: 0,
            l4: 0,
        });
        t.count(&p);
        assert_eq!(t.ips[&Addr::v4(&[1, 1, 1, 1])], IpCounters { tx_packets: 1, tx_bytes: 84, rx_packets: 1, rx_bytes: 84 });
        assert!(t.flows.is_empty());
    }
}
