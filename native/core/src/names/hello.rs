//! ClientHellos split over several TCP segments (post-quantum key shares make them about 1.8 KB,
//! more than one segment), joined per connection within stated bounds: contiguous segments in
//! sequence order only, at most `MAX_HELLO_BYTES` per hello, `MAX_PENDING_HELLOS` connections and
//! `MAX_PENDING_BYTES` bytes waiting per reader, each given up after `HELLO_TIMEOUT_NS` of packet
//! time, at a gap, a reset or a FIN, or when the capture cut a segment short. Every hello given
//! up is counted (`NameCounts::incomplete`).

use super::tls::{self, Hello, MAX_HELLO_BYTES};
use super::NameCounts;
use crate::table::FlowKey;
use hashbrown::HashMap;

/// Connections whose ClientHello is waiting for its next segment, per reader (worker). A client
/// sends its hello's segments back to back, so in packet time a hello waits microseconds: these
/// bounds hold a busy server's; a flood of first segments is given up past them.
pub const MAX_PENDING_HELLOS: usize = 256;
/// Bytes held for those connections, per reader (buffer capacity; a 1.8 KB hello holds its size).
pub const MAX_PENDING_BYTES: usize = 512 << 10;
/// A hello not whole after this much packet time (ns) since its first segment is given up.
pub const HELLO_TIMEOUT_NS: i64 = 10_000_000_000;
/// How often (packet time, ns) the pending hellos are checked for the timeout.
const SWEEP_EVERY_NS: i64 = 1_000_000_000;

/// Most bytes buffered for one hello: the hello and the headers of up to four records.
const MAX_BUF: usize = MAX_HELLO_BYTES + 4 * 5;
/// Bytes of one connection in the table of pending hellos (`budget`).
pub const PENDING_ENTRY_BYTES: usize = std::mem::size_of::<(FlowKey, Pending)>();

const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

struct Pending {
    next_seq: u32,
    started_ns: i64,
    buf: Vec<u8>,
}

/// One TCP segment of a connection, client to server.
pub struct Segment<'a> {
    pub key: FlowKey,
    pub seq: u32,
    pub flags: u8,
    /// The payload captured (at most what the IP header states).
    pub payload: &'a [u8],
    /// Whether the capture holds the whole payload (not cut by the snap length).
    pub whole: bool,
    pub ts_ns: i64,
}

/// The connections whose ClientHello has begun and not ended, by 5-tuple.
#[derive(Default)]
pub struct Hellos {
    pending: HashMap<FlowKey, Pending>,
    /// Capacity of the pending buffers.
    bytes: usize,
    last_sweep_ns: i64,
}

impl Hellos {
    /// Whether any connection waits for its next segment (then every TCP segment is looked up).
    #[inline]
    pub fn any(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes held: the buffers' capacity and the table's buckets (`budget::names_reader_bytes` bounds it).
    pub fn bytes(&self) -> usize {
        let buckets = if self.pending.capacity() == 0 { 0 } else { (self.pending.capacity() * 8 / 7).next_power_of_two() };
        self.bytes + buckets * (std::mem::size_of::<(FlowKey, Pending)>() + 1)
    }

    fn give_up(&mut self, key: &FlowKey, counts: &mut NameCounts) {
        if let Some(p) = self.pending.remove(key) {
            self.bytes -= p.buf.capacity();
            counts.incomplete += 1;
        }
    }

    /// Gives up the hellos older than the timeout at packet time `now`.
    fn sweep(&mut self, now: i64, counts: &mut NameCounts) {
        self.last_sweep_ns = now;
        let before = self.pending.len();
        let mut freed = 0;
        self.pending.retain(|_, p| {
            let keep = now.saturating_sub(p.started_ns) <= HELLO_TIMEOUT_NS;
            if !keep {
                freed += p.buf.capacity();
            }
            keep
        });
        self.bytes -= freed;
        counts.incomplete += (before - self.pending.len()) as u64;
    }

    /// Reads one client-to-server segment: the host name (in `out`, its length returned) when it
    /// ends a ClientHello, whether begun in it or in earlier segments.
    pub fn segment(&mut self, s: &Segment, scratch: &mut Vec<u8>, out: &mut [u8; 256], counts: &mut NameCounts) -> Option<usize> {
        if self.any() {
            if s.ts_ns.saturating_sub(self.last_sweep_ns) >= SWEEP_EVERY_NS || s.ts_ns < self.last_sweep_ns {
                self.sweep(s.ts_ns, counts);
            }
            if let Some(r) = self.continued(s, scratch, out, counts) {
                return r;
            }
        }
        if !s.whole || !tls::starts_hello(s.payload) {
            return None;
        }
        match tls::client_hello(s.payload, scratch, out) {
            Hello::Sni(n) => Some(n),
            Hello::NoSni | Hello::NotAHello => None,
            Hello::Malformed => {
                counts.malformed += 1;
                None
            }
            Hello::TooLong => {
                counts.incomplete += 1;
                None
            }
            Hello::Need => {
                self.begin(s, counts);
                None
            }
        }
    }

    fn begin(&mut self, s: &Segment, counts: &mut NameCounts) {
        if self.pending.len() >= MAX_PENDING_HELLOS {
            self.sweep(s.ts_ns, counts);
        }
        let room = MAX_PENDING_BYTES - self.bytes;
        // Room for the first record as announced (or the segment), within the bounds.
        let announced = s.payload.get(3..5).map(|l| 5 + u16::from_be_bytes([l[0], l[1]]) as usize).unwrap_or(0);
        let cap = announced.min(s.payload.len() * 2).max(s.payload.len());
        if self.pending.len() >= MAX_PENDING_HELLOS || cap > room {
            counts.incomplete += 1;
            return;
        }
        let mut buf = Vec::with_capacity(cap);
        buf.extend_from_slice(s.payload);
        self.bytes += buf.capacity();
        self.pending.insert(s.key, Pending { next_seq: s.seq.wrapping_add(s.payload.len() as u32), started_ns: s.ts_ns, buf });
    }

    /// A segment of a connection whose hello is pending: `None` when there is none, else what it gave.
    fn continued(&mut self, s: &Segment, scratch: &mut Vec<u8>, out: &mut [u8; 256], counts: &mut NameCounts) -> Option<Option<usize>> {
        let p = self.pending.get_mut(&s.key)?;
        if s.flags & TCP_RST != 0 {
            self.give_up(&s.key, counts);
            return Some(None);
        }
        // Bytes already held are skipped (a retransmission); a segment past the next byte is a gap.
        let ahead = s.seq.wrapping_sub(p.next_seq) as i32;
        let skip = if ahead < 0 { ahead.unsigned_abs() as usize } else { 0 };
        if ahead > 0 || !s.whole {
            self.give_up(&s.key, counts);
            // A new hello on the same 5-tuple starts over.
            return if s.whole && tls::starts_hello(s.payload) { None } else { Some(None) };
        }
        if skip >= s.payload.len() {
            if s.flags & TCP_FIN != 0 {
                self.give_up(&s.key, counts);
            }
            return Some(None);
        }
        let new = &s.payload[skip..];
        let len = p.buf.len() + new.len();
        if len > MAX_BUF {
            self.give_up(&s.key, counts);
            return Some(None);
        }
        let before = p.buf.capacity();
        if len > before {
            let want = len.max(before * 2).min(MAX_BUF);
            if self.bytes + (want - before) > MAX_PENDING_BYTES {
                self.give_up(&s.key, counts);
                return Some(None);
            }
            p.buf.reserve_exact(want - p.buf.len());
            self.bytes += p.buf.capacity() - before;
        }
        p.buf.extend_from_slice(new);
        p.next_seq = p.next_seq.wrapping_add(new.len() as u32);
        let r = match tls::client_hello(&p.buf, scratch, out) {
            Hello::Need if s.flags & TCP_FIN == 0 => return Some(None),
            Hello::Need | Hello::TooLong => {
                self.give_up(&s.key, counts);
                return Some(None);
            }
            Hello::Sni(n) => Some(n),
            Hello::NoSni | Hello::NotAHello => None,
            Hello::Malformed => {
                counts.malformed += 1;
                None
            }
        };
        let p = self.pending.remove(&s.key).expect("pending");
        self.bytes -= p.buf.capacity();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tls::build::{hello, records};
    use super::*;
    use crate::parse::Addr;

    fn key(port: u16) -> FlowKey {
        FlowKey { src: Addr::v4(&[10, 0, 0, 1]), dst: Addr::v4(&[192, 0, 2, 1]), proto: 6, sport: port, dport: 443 }
    }

    struct Conn {
        h: Hellos,
        counts: NameCounts,
    }

    impl Conn {
        fn new() -> Conn {
            Conn { h: Hellos::default(), counts: NameCounts::default() }
        }
        fn seg(&mut self, port: u16, seq: u32, payload: &[u8], ts_s: i64) -> Option<String> {
            self.seg_flags(port, seq, payload, ts_s, 0x18, true)
        }
        fn seg_flags(&mut self, port: u16, seq: u32, payload: &[u8], ts_s: i64, flags: u8, whole: bool) -> Option<String> {
            let mut out = [0u8; 256];
            let s = Segment { key: key(port), seq, flags, payload, whole, ts_ns: ts_s * 1_000_000_000 };
            self.h.segment(&s, &mut Vec::new(), &mut out, &mut self.counts).map(|n| String::from_utf8(out[..n].to_vec()).unwrap())
        }
    }

    fn split(stream: &[u8], at: &[usize]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut from = 0;
        for &to in at.iter().chain([stream.len()].iter()) {
            out.push((1000 + from as u32, stream[from..to].to_vec()));
            from = to;
        }
        out
    }

    #[test]
    fn a_hello_in_two_or_three_segments_is_joined_in_sequence_order() {
        let s = records(&hello("pq.example", 1700), 16384);
        for cuts in [&[1448][..], &[1000, 1448], &[3, 1448]] {
            let mut c = Conn::new();
            let segs = split(&s, cuts);
            for (i, (seq, p)) in segs.iter().enumerate() {
                let got = c.seg(5000, *seq, p, 1);
                assert_eq!(got.as_deref(), if i + 1 == segs.len() { Some("pq.example") } else { None }, "cuts {cuts:?}, segment {i}");
            }
            assert!(c.h.is_empty());
            assert_eq!(c.h.bytes, 0);
            assert_eq!(c.counts, NameCounts::default());
        }
    }

    #[test]
    fn retransmissions_and_overlaps_are_taken_once_a_gap_gives_up() {
        let s = records(&hello("rt.example", 1700), 16384);
        let mut c = Conn::new();
        assert_eq!(c.seg(1, 1000, &s[..1000], 1), None);
        assert_eq!(c.seg(1, 1000, &s[..1000], 1), None, "the first segment again");
        assert_eq!(c.seg(1, 1500, &s[500..1200], 1), None, "overlapping the held bytes");
        assert_eq!(c.seg(1, 1000 + 1200, &s[1200..], 1).as_deref(), Some("rt.example"));
        assert_eq!(c.counts, NameCounts::default());
        // A segment past the next byte: the hello is given up and counted.
        assert_eq!(c.seg(2, 1000, &s[..1000], 1), None);
        assert_eq!(c.seg(2, 1000 + 1100, &s[1100..], 1), None);
        assert!(c.h.is_empty());
        assert_eq!(c.counts.incomplete, 1);
    }

    #[test]
    fn a_reset_a_fin_a_cut_segment_or_the_timeout_gives_up() {
        let s = records(&hello("gone.example", 1700), 16384);
        let mut c = Conn::new();
        c.seg(1, 1000, &s[..1000], 1);
        c.seg_flags(1, 2000, &[], 1, TCP_RST, true);
        c.seg(2, 1000, &s[..1000], 1);
        c.seg_flags(2, 2000, &s[1000..1200], 1, TCP_FIN | 0x10, true);
        c.seg(3, 1000, &s[..1000], 1);
        c.seg_flags(3, 2000, &s[1000..], 1, 0x18, false);
        assert_eq!(c.counts.incomplete, 3);
        c.seg(4, 1000, &s[..1000], 100);
        assert_eq!(c.h.len(), 1);
        // 10 s of packet time later (another connection's packet): still waiting; past it, given up.
        c.seg(9, 1, b"\x17\x03\x03\x00\x01x", 110);
        assert_eq!(c.h.len(), 1);
        c.seg(9, 7, b"\x17\x03\x03\x00\x01x", 111);
        assert!(c.h.is_empty());
        assert_eq!(c.counts.incomplete, 4);
        assert_eq!(c.h.bytes, 0);
    }

    #[test]
    fn the_pending_connections_and_bytes_are_bounded() {
        let s = records(&hello("many.example", 1700), 16384);
        let mut c = Conn::new();
        for port in 0..(MAX_PENDING_HELLOS as u16 + 100) {
            c.seg(port, 1000, &s[..600], 1);
            assert!(c.h.len() <= MAX_PENDING_HELLOS);
            assert!(c.h.bytes <= MAX_PENDING_BYTES, "{} bytes", c.h.bytes);
        }
        assert!(c.counts.incomplete >= 100, "refused ones are counted ({})", c.counts.incomplete);
        assert_eq!(c.counts.incomplete as usize + c.h.len(), MAX_PENDING_HELLOS + 100);
        // A hello announcing more than MAX_HELLO_BYTES is given up at once; one whose records
        // (of 16 bytes each) take more than the bound before it ends, when the bound is reached.
        let mut c = Conn::new();
        c.seg(1, 1000, &records(&hello("big.example", MAX_HELLO_BYTES), 16384)[..1400], 1);
        assert!(c.h.is_empty());
        let small = records(&hello("small.example", 14_000), 16);
        let mut seq = 1000;
        for chunk in small.chunks(1400) {
            assert_eq!(c.seg(2, seq, chunk, 1), None);
            seq += chunk.len() as u32;
        }
        assert!(c.h.is_empty());
        assert_eq!(c.counts.incomplete, 2);
        assert_eq!(c.h.bytes, 0);
    }
}
