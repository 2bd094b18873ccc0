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
/// ClientHellos it is joining. The scratch grows once to a message's worth; a frame allocates
/// nothing here but the buffer of a ClientHello it begins.
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

/// Test frames carrying names (also used by the eBPF filter's tests).
#[cfg(test)]
pub(crate) mod build {
    /// An Ethernet frame: IPv4 (or IPv6 behind a Hop-by-Hop header) with this L4 header and payload.
    pub fn frame(v6: bool, proto: u8, l4: &[u8], payload: &[u8], pad: usize) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        let body = [l4, payload].concat();
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&((body.len() + 8) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 64]);
            f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53]);
            f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            f.extend_from_slice(&[proto, 0, 0, 0, 0, 0, 0, 0]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x46, 0]);
            f.extend_from_slice(&((24 + body.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 53, 10, 0, 0, 1, 1, 1, 0, 0]);
        }
        f.extend_from_slice(&body);
        f.extend(std::iter::repeat_n(0x16, pad));
        f
    }

    pub fn udp(sport: u16, payload: &[u8]) -> Vec<u8> {
        [&sport.to_be_bytes()[..], &[0x30, 0x39], &((8 + payload.len()) as u16).to_be_bytes(), &[0, 0]].concat()
    }

    pub fn tcp(sport: u16, seq: u32, flags: u8) -> Vec<u8> {
        let mut t = sport.to_be_bytes().to_vec();
        t.extend_from_slice(&443u16.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        t
    }

}

#[cfg(test)]
mod tests {
    use super::build::{frame, tcp, udp};
    use super::dns::build::{name, response, rr};
    use super::tls::build::{hello, records};
    use super::*;
    use crate::parse::{linktype, parse_frame, Parsed};

    fn read_all(frames: &[Vec<u8>]) -> (Vec<(Addr, Source, String)>, NameCounts) {
        let mut r = Reader::default();
        let mut counts = NameCounts::default();
        let mut out = Vec::new();
        for f in frames {
            let Some(Parsed::Ip(ip)) = parse_frame(linktype::ETHERNET, f) else { panic!("not IP") };
            r.read(f, &ip, 0, &mut counts, &mut |a, s, n| out.push((a, s, String::from_utf8(n.to_vec()).unwrap())));
        }
        (out, counts)
    }

    fn dns_answer() -> Vec<u8> {
        response("host.example", &[rr(&[0xC0, 12], 1, &[192, 0, 2, 7])])
    }

    #[test]
    fn dns_over_udp_behind_ipv4_options_and_ipv6_extension_headers_padding_not_read() {
        let msg = dns_answer();
        for v6 in [false, true] {
            let (got, counts) = read_all(&[frame(v6, 17, &udp(53, &msg), &msg, 30)]);
            assert_eq!(got, vec![(Addr::v4(&[192, 0, 2, 7]), Source::Dns, "host.example".into())], "v6 {v6}");
            assert_eq!(counts, NameCounts::default());
        }
        // Not from port 53, or a fragment: not read.
        assert!(read_all(&[frame(false, 17, &udp(5353, &msg), &msg, 0)]).0.is_empty());
        let mut frag = frame(false, 17, &udp(53, &msg), &msg, 0);
        frag[20] = 0x20; // MF
        assert!(read_all(&[frag]).0.is_empty());
    }

    #[test]
    fn dns_over_tcp_counts_only_whole_messages_in_one_segment() {
        let msg = dns_answer();
        let two = [&(msg.len() as u16).to_be_bytes()[..], &msg, &(msg.len() as u16).to_be_bytes(), &msg].concat();
        let (got, _) = read_all(&[frame(false, 6, &tcp(53, 1, 0x18), &two, 0)]);
        assert_eq!(got.len(), 2, "two messages in one segment");
        let split = [&(msg.len() as u16).to_be_bytes()[..], &msg[..20]].concat();
        let (got, counts) = read_all(&[frame(false, 6, &tcp(53, 1, 0x18), &split, 0), frame(false, 6, &tcp(53, 1 + split.len() as u32, 0x18), &msg[20..], 0)]);
        assert!(got.is_empty(), "a message split over two segments gives no name");
        assert_eq!(counts.incomplete, 0);
    }

    #[test]
    fn the_server_name_is_the_destination_s_in_one_segment_or_three() {
        let stream = records(&hello("tls.example", 1700), 16384);
        let (got, _) = read_all(&[frame(false, 6, &tcp(40000, 7, 0x18), &stream, 0)]);
        assert_eq!(got, vec![(Addr::v4(&[10, 0, 0, 1]), Source::Sni, "tls.example".into())]);
        let segs: Vec<Vec<u8>> = [(0, 700), (700, 1400), (1400, stream.len())]
            .iter()
            .map(|&(a, b)| frame(true, 6, &tcp(40000, 7 + a as u32, 0x18), &stream[a..b], 0))
            .collect();
        let (got, counts) = read_all(&segs);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].1, got[0].2.as_str()), (Source::Sni, "tls.example"));
        assert_eq!(got[0].0.as_slice()[15], 1);
        assert_eq!(counts, NameCounts::default());
        // A truncated hello whose connection then resets: given up, counted.
        let (got, counts) = read_all(&[frame(false, 6, &tcp(40000, 7, 0x18), &stream[..700], 0), frame(false, 6, &tcp(40000, 707, 0x14), &[], 0)]);
        assert!(got.is_empty());
        assert_eq!(counts.incomplete, 1);
    }

    #[test]
    fn a_frame_cut_by_the_snap_length_is_not_read_nor_counted() {
        let msg = response("cut.example", &[rr(&name("cut.example"), 1, &[192, 0, 2, 9])]);
        let f = frame(false, 17, &udp(53, &msg), &msg, 0);
        let (got, counts) = read_all(&[f[..f.len() - 10].to_vec()]);
        assert!(got.is_empty());
        assert_eq!(counts, NameCounts::default());
    }
}
