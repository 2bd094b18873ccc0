//! The names of each interval: distinct (address, name, source) pairs, each with the order of
//! its last sighting, bounded per interval by `max_names` pairs (and `NAME_TEXT_PER_PAIR` bytes of
//! name per pair on average), and in all, over the intervals not yet handed over, by
//! `NAME_TABLES` intervals' worth. A pair refused by a bound is counted in its interval's
//! overflow estimate. A batch lists its pairs in the order of their last sightings.
//!
//! One collector serves all the workers of a live capture (sightings are rare next to frames, so
//! they share it under a lock instead of each worker holding its own interval's worth, which the
//! memory budget could not afford), and one serves each replayed file.

use super::Source;
use crate::parse::Addr;
use crate::table::{sketch_hash, OverflowSketch};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::collections::BTreeMap;
use std::hash::BuildHasher;

/// Bytes of name text an interval may hold per pair on average: `max_names` pairs of ordinary
/// names (20 to 40 bytes) fit; a flood of 253-byte names is refused past this.
pub const NAME_TEXT_PER_PAIR: usize = 48;
/// Intervals' worth of pairs (and name text) the collector holds at most over the intervals not
/// yet handed over (live: the interval closing and the next; replay: the reorder window's).
pub const NAME_TABLES: usize = 2;
/// Text is grown by a quarter of what it holds, at least this much, so its capacity stays close
/// to its length (`budget::names_collector_bytes`).
pub const TEXT_STEP: usize = 4096;
/// Bytes of one pair in a table's buckets (`budget`).
pub const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

/// Where a sighting lies in capture order: replays number the sightings of a file in the order
/// read (major 0); live capture uses the frame's time in ns and (worker, the worker's sighting
/// number), so that sightings of one time are ordered by worker, then as the worker read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Order {
    pub major: i64,
    pub minor: u64,
}

enum Seen {
    New,
    Again,
    Refused,
}

#[derive(Clone, Copy)]
struct Entry {
    addr: Addr,
    source: u8,
    len: u8,
    off: u32,
    order: Order,
}

/// One interval's pairs.
pub struct NameTable {
    hasher: DefaultHashBuilder,
    entries: HashTable<Entry>,
    text: Vec<u8>,
    overflow: Option<OverflowSketch>,
}

/// An interval's pairs, columnar, in the order of their last sightings.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct BatchNames {
    /// 4 or 6 per entry.
    pub fam: Vec<u8>,
    /// 16 bytes per entry (IPv4 in the first 4).
    pub addr: Vec<u8>,
    /// `Source` per entry (0 dns, 1 sni).
    pub source: Vec<u8>,
    /// The names, one after the other (ASCII).
    pub text: Vec<u8>,
    /// The end of each entry's name in `text`.
    pub end: Vec<u32>,
    /// Estimated distinct pairs refused by a bound.
    pub overflowed: u64,
}

impl BatchNames {
    pub fn len(&self) -> usize {
        self.fam.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fam.is_empty()
    }

    /// Entry `i`: (address, source, name).
    pub fn get(&self, i: usize) -> (Addr, u8, &str) {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&self.addr[i * 16..i * 16 + 16]);
        let start = if i == 0 { 0 } else { self.end[i - 1] as usize };
        let name = std::str::from_utf8(&self.text[start..self.end[i] as usize]).expect("names are ASCII");
        (Addr { fam: self.fam[i], bytes }, self.source[i], name)
    }

    /// Bytes of its columns.
    pub fn bytes(&self) -> usize {
        self.fam.len() + self.addr.len() + self.source.len() + self.text.len() + 4 * self.end.len()
    }
}

fn hash_of(h: &DefaultHashBuilder, addr: &Addr, source: u8, name: &[u8]) -> u64 {
    h.hash_one((addr, source, name))
}

impl Default for NameTable {
    fn default() -> Self {
        NameTable { hasher: DefaultHashBuilder::default(), entries: HashTable::new(), text: Vec::new(), overflow: None }
    }
}

impl NameTable {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn name(&self, e: &Entry) -> &[u8] {
        &self.text[e.off as usize..e.off as usize + e.len as usize]
    }

    /// Bytes held (buckets, text capacity, the overflow sketch): what `budget` bounds.
    pub fn bytes(&self) -> usize {
        let cap = self.entries.capacity();
        let buckets = if cap == 0 { 0 } else if cap < 8 { (cap + 1).next_power_of_two() } else { (cap * 8 / 7).next_power_of_two() };
        let table = if buckets == 0 { 0 } else { buckets * (std::mem::size_of::<Entry>() + 1) + 16 };
        table + self.text.capacity() + self.overflow.as_ref().map_or(0, |_| OverflowSketch::BYTES)
    }

    fn refuse(&mut self, addr: &Addr, source: u8, name: &[u8]) {
        self.overflow.get_or_insert_with(OverflowSketch::default).insert(sketch_hash(&(addr, source, name)));
    }

    /// Records a sighting; a pair seen before moves to this sighting if it is later. `room` says
    /// whether a new pair fits the collector.
    fn see(&mut self, addr: Addr, source: u8, name: &[u8], order: Order, max_names: usize, room: bool) -> Seen {
        let h = hash_of(&self.hasher, &addr, source, name);
        let text = &self.text;
        if let Some(e) = self.entries.find_mut(h, |e| e.addr == addr && e.source == source && &text[e.off as usize..e.off as usize + e.len as usize] == name) {
            e.order = e.order.max(order);
            return Seen::Again;
        }
        let max_text = max_names * NAME_TEXT_PER_PAIR;
        if !room || self.entries.len() >= max_names || self.text.len() + name.len() > max_text || name.len() > u8::MAX as usize {
            self.refuse(&addr, source, name);
            return Seen::Refused;
        }
        if self.text.len() + name.len() > self.text.capacity() {
            let want = (self.text.len() + name.len()).max(self.text.len() + (self.text.len() / 4).max(TEXT_STEP)).min(max_text);
            self.text.reserve_exact(want - self.text.len());
        }
        let off = self.text.len() as u32;
        self.text.extend_from_slice(name);
        let (hasher, text) = (&self.hasher, &self.text);
        self.entries.insert_unique(h, Entry { addr, source, len: name.len() as u8, off, order }, |e| {
            hash_of(hasher, &e.addr, e.source, &text[e.off as usize..e.off as usize + e.len as usize])
        });
        Seen::New
    }

    /// The pairs in the order of their last sightings.
    pub fn into_batch(self) -> BatchNames {
        let overflowed = self.overflow.as_ref().map_or(0, |s| s.estimate());
        let mut entries: Vec<Entry> = self.entries.into_iter().collect();
        entries.sort_unstable_by_key(|e| e.order);
        let n = entries.len();
        let mut b = BatchNames {
            fam: Vec::with_capacity(n),
            addr: Vec::with_capacity(16 * n),
            source: Vec::with_capacity(n),
            text: Vec::with_capacity(entries.iter().map(|e| e.len as usize).sum()),
            end: Vec::with_capacity(n),
            overflowed,
        };
        for e in &entries {
            b.fam.push(e.addr.fam);
            b.addr.extend_from_slice(&e.addr.bytes);
            b.source.push(e.source);
            b.text.extend_from_slice(&self.text[e.off as usize..e.off as usize + e.len as usize]);
            b.end.push(b.text.len() as u32);
        }
        b
    }
}

/// The names of the intervals not yet handed over, by interval start.
pub struct NameCollector {
    max_names: usize,
    open: BTreeMap<i64, NameTable>,
    /// Pairs and name text bytes over `open`.
    pairs: usize,
    text: usize,
}

impl NameCollector {
    pub fn new(max_names: usize) -> NameCollector {
        NameCollector { max_names, open: BTreeMap::new(), pairs: 0, text: 0 }
    }

    /// Records a sighting in the interval starting at `interval`.
    pub fn see(&mut self, interval: i64, addr: Addr, source: Source, name: &[u8], order: Order) {
        let room = self.pairs < NAME_TABLES * self.max_names && self.text + name.len() <= NAME_TABLES * self.max_names * NAME_TEXT_PER_PAIR;
        let t = self.open.entry(interval).or_default();
        if let Seen::New = t.see(addr, source as u8, name, order, self.max_names, room) {
            self.pairs += 1;
            self.text += name.len();
        }
    }

    /// Hands over the pairs of every interval starting at or before `upto`, joined into one
    /// table (an earlier interval's are those of frames counted late).
    pub fn take(&mut self, upto: i64) -> NameTable {
        let later = self.open.split_off(&upto.saturating_add(1));
        let mut taken = std::mem::replace(&mut self.open, later).into_values();
        let mut out = taken.next_back().unwrap_or_default();
        for t in taken {
            out.absorb(t, self.max_names);
        }
        let (pairs, text) = self.open.values().fold((0, 0), |(p, x), t| (p + t.len(), x + t.text.len()));
        (self.pairs, self.text) = (pairs, text);
        out
    }

    /// Bytes held over the open intervals (`budget::names_collector_bytes` bounds it).
    pub fn bytes(&self) -> usize {
        self.open.values().map(NameTable::bytes).sum()
    }

    pub fn intervals(&self) -> usize {
        self.open.len()
    }
}

impl NameTable {
    /// Adds another interval's pairs (frames counted late) into this one, within `max_names`.
    fn absorb(&mut self, o: NameTable, max_names: usize) {
        if let Some(s) = &o.overflow {
            self.overflow.get_or_insert_with(OverflowSketch::default).merge(s);
        }
        for e in o.entries.iter() {
            let name = o.name(e);
            self.see(e.addr, e.source, name, e.order, max_names, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u32) -> Addr {
        Addr::v4(&n.to_be_bytes())
    }

    fn at(i: u64) -> Order {
        Order { major: 0, minor: i }
    }

    fn names(b: &BatchNames) -> Vec<(u32, u8, String)> {
        (0..b.len())
            .map(|i| {
                let (addr, src, n) = b.get(i);
                (u32::from_be_bytes(addr.bytes[..4].try_into().unwrap()), src, n.to_string())
            })
            .collect()
    }

    #[test]
    fn each_pair_once_in_the_order_of_its_last_sighting() {
        let mut c = NameCollector::new(100);
        c.see(0, a(1), Source::Dns, b"a.example", at(1));
        c.see(0, a(2), Source::Dns, b"b.example", at(2));
        c.see(0, a(1), Source::Sni, b"a.example", at(3));
        c.see(0, a(1), Source::Dns, b"a.example", at(4));
        c.see(0, a(1), Source::Dns, b"c.example", at(5));
        let b = c.take(0).into_batch();
        assert_eq!(
            names(&b),
            vec![(2, 0, "b.example".into()), (1, 1, "a.example".into()), (1, 0, "a.example".into()), (1, 0, "c.example".into())],
            "for address 1 the last name in capture order is c.example"
        );
        assert_eq!(b.overflowed, 0);
    }

    #[test]
    fn past_max_names_new_pairs_are_refused_and_counted_seen_ones_still_move() {
        let mut c = NameCollector::new(3);
        for i in 0..10 {
            c.see(0, a(i), Source::Dns, b"x.example", at(i as u64));
        }
        c.see(0, a(0), Source::Dns, b"x.example", at(99));
        let b = c.take(0).into_batch();
        assert_eq!(names(&b).iter().map(|n| n.0).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert_eq!(b.overflowed, 7);
    }

    #[test]
    fn long_names_are_refused_past_the_text_bound() {
        let mut c = NameCollector::new(10);
        let long = vec![b'x'; 200];
        for i in 0..10 {
            c.see(0, a(i), Source::Sni, &long, at(i as u64));
        }
        let b = c.take(0).into_batch();
        assert_eq!(b.len(), 10 * NAME_TEXT_PER_PAIR / 200);
        assert_eq!(b.overflowed, 10 - b.len() as u64);
    }

    #[test]
    fn the_intervals_not_yet_taken_hold_at_most_name_tables_intervals_worth() {
        let mut c = NameCollector::new(100);
        for iv in 0..5i64 {
            for i in 0..100 {
                c.see(iv * 1000, a(i + iv as u32 * 1000), Source::Dns, b"n.example", at(i as u64));
            }
        }
        let held: Vec<usize> = (0..5).map(|iv| c.take(iv * 1000).len()).collect();
        assert_eq!(held, vec![100, 100, 0, 0, 0]);
        assert_eq!(c.intervals(), 0);
        assert_eq!((c.pairs, c.text), (0, 0));
    }

    #[test]
    fn taking_an_interval_takes_the_earlier_ones_with_it() {
        let mut c = NameCollector::new(100);
        c.see(1000, a(1), Source::Dns, b"late.example", at(7));
        c.see(2000, a(1), Source::Dns, b"late.example", at(3));
        c.see(2000, a(2), Source::Dns, b"on-time.example", at(5));
        c.see(3000, a(3), Source::Dns, b"next.example", at(1));
        let b = c.take(2000).into_batch();
        assert_eq!(names(&b), vec![(2, 0, "on-time.example".into()), (1, 0, "late.example".into())]);
        assert_eq!(c.intervals(), 1);
        assert_eq!(c.pairs, 1);
    }

    #[test]
    fn live_sightings_of_several_workers_are_ordered_by_packet_time_then_worker() {
        // Worker 1 hands its sightings in before worker 0's earlier ones (its block came first).
        let live = |ts: i64, worker: u64, seq: u64| Order { major: ts, minor: worker << 48 | seq };
        let mut c = NameCollector::new(100);
        c.see(0, a(1), Source::Dns, b"late.example", live(300, 1, 1));
        c.see(0, a(2), Source::Dns, b"tie.example", live(200, 1, 2));
        c.see(0, a(1), Source::Dns, b"early.example", live(100, 0, 1));
        c.see(0, a(3), Source::Dns, b"tie.example", live(200, 0, 2));
        let b = c.take(0).into_batch();
        assert_eq!(names(&b), vec![(1, 0, "early.example".into()), (3, 0, "tie.example".into()), (2, 0, "tie.example".into()), (1, 0, "late.example".into())]);
    }
}
