//! Names seen in the traffic itself: the question name of DNS responses for each address they
//! answer (source `dns`), and the server name of TLS ClientHellos for the connection's
//! destination (source `sni`). Reading them never changes a counter: it runs after a frame is
//! counted, on its bytes only.
//!
//! - [`dns`]: DNS responses over UDP and TCP (source port 53)
//! - [`tls`]: the server name of a ClientHello
//! - [`hello`]: ClientHellos split over several TCP segments, joined within bounds
//! - [`collect`]: the distinct (address, name, source) pairs of each interval, bounded

pub mod collect;
pub mod dns;
pub mod hello;
pub mod tls;

use crate::parse::{Addr, Fragment, IpPacket};
use crate::table::FlowKey;

/// Where a name was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    Dns = 0,
    Sni = 1,
}

/// Per-interval counts of what could not be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameCounts {
    /// DNS messages and ClientHellos skipped, whole or in part, as malformed or hostile.
    pub malformed: u64,
    /// Split ClientHellos given up: a bound, a gap, the timeout.
    pub incomplete: u64,
}

impl NameCounts {
    pub fn add(&mut self, o: &NameCounts) {
        self.malformed += o.malformed;
        self.incomplete += o.incomplete;
    }
}

/// DNS messages read from one TCP segment at most (several may follow one another).
pub const MAX_TCP_DNS_MESSAGES: usize = 16;

const DNS_PORT: u16 = 53;
const UDP: u8 = 17;
const TCP: u8 = 6;

/// What one capture worker (or one replayed file) reads names with: its scratch memory and the
/// ClientHellos it is joining. Allocated once; a frame allocates nothing here.
pub struct Reader {
    dns: dns::Scratch,
    hellos: hello::Hellos,
    tls_scratch: Vec<u8>,
    out: [u8; 256],
}

impl Default for Reader {
    fn default() -> Self {
        Reader { dns: dns::Scratch::default(), hellos: hello::Hellos::default(), tls_scratch: Vec::new(), out: [0; 256] }
    }
}

#[inline]
fn be16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

impl Reader {
    /// The ClientHellos being joined.
    pub fn hellos(&self) -> &hello::Hellos {
        &self.hellos
    }

    /// Reads the names of one counted IP frame (`ip` parsed from `frame`), stamped `ts_ns`;
    /// emits each (address, source, name). Only UDP and TCP with source port 53 and TCP payloads
    /// that start a TLS handshake record (or continue a ClientHello being joined) are looked at.
    #[inline]
    pub fn read(&mut self, frame: &[u8], ip: &IpPacket, ts_ns: i64, counts: &mut NameCounts, emit: &mut dyn FnMut(Addr, Source, &[u8])) {
        if ip.l4 == 0 || ip.fragment != Fragment::None || !(ip.proto == UDP && ip.sport == DNS_PORT || ip.proto == TCP) {
            return;
        }
        let Some(ip_start) = frame.len().checked_sub(ip.ip_rest as usize) else { return };
        let l4 = ip_start + ip.l4 as usize;
        // The payload ends where the IP header says (Ethernet padding is not payload), or at the
        // frame's end for a TSO frame of length 0.
        let stated_end = if ip.bytes == 0 { frame.len() } else { ip_start + ip.bytes as usize };
        let end = stated_end.min(frame.len());
        if ip.proto == UDP {
            self.udp(frame, l4, end, stated_end, counts, emit);
        } else {
            self.tcp(frame, ip, l4, end, stated_end, ts_ns, counts, emit);
        }
    }

    fn udp(&mut self, frame: &[u8], l4: usize, end: usize, stated_end: usize, counts: &mut NameCounts, emit: &mut dyn FnMut(Addr, Source, &[u8])) {
        if l4 + 8 > end {
            return;
        }
        let msg_end = l4 + be16(frame, l4 + 4) as usize;
        if msg_end < l4 + 8 || msg_end > stated_end {
            counts.malformed += 1;
            return;
        }
        // A datagram the capture cut short is not read (nor counted as malformed).
        if msg_end <= end {
            self.dns(&frame[l4 + 8..msg_end], counts, emit);
        }
    }

    fn dns(&mut self, msg: &[u8], counts: &mut NameCounts, emit: &mut dyn FnMut(Addr, Source, &[u8])) {
        if dns::read(msg, &mut self.dns, &mut |a, n| emit(a, Source::Dns, n)) == dns::Outcome::Malformed {
            counts.malformed += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(&mut self, frame: &[u8], ip: &IpPacket, l4: usize, end: usize, stated_end: usize, ts_ns: i64, counts: &mut NameCounts, emit: &mut dyn FnMut(Addr, Source, &[u8])) {
        if l4 + 20 > end {
            return;
        }
        let data = l4 + (frame[l4 + 12] >> 4) as usize * 4;
        if data < l4 + 20 || data > end {
            return;
        }
        let payload = &frame[data..end];
        let whole = end == stated_end;
        if ip.sport == DNS_PORT {
            // Whole messages after their 2-byte length; one that continues in a later segment is
            // not read.
            if !whole {
                return;
            }
            let mut p = payload;
            for _ in 0..MAX_TCP_DNS_MESSAGES {
                if p.len() < 2 {
                    break;
                }
                let len = be16(p, 0) as usize;
                if p.len() < 2 + len {
                    break;
                }
                self.dns(&p[2..2 + len], counts, emit);
                p = &p[2 + len..];
            }
            return;
        }
        if payload.first() != Some(&0x16) && !self.hellos.any() {
            return;
        }
        let seg = hello::Segment {
            key: FlowKey { src: ip.src, dst: ip.dst, proto: TCP, sport: ip.sport, dport: ip.dport },
            seq: u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]),
            flags: frame[l4 + 13],
            payload,
            whole,
            ts_ns,
        };
        if let Some(n) = self.hellos.segment(&seg, &mut self.tls_scratch, &mut self.out, counts) {
            emit(ip.dst, Source::Sni, &self.out[..n]);
        }
    }
}
