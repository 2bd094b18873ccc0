//! Link-layer and IP header parsing: the counting rules of `shared/pcaps/MANIFEST.md`.
//!
//! Only the outermost IP header counts. Bytes are the IP length field (IPv4 Total Length,
//! IPv6 Payload Length + 40), never the frame length. Nothing is reassembled.

use crate::filter::consts;

/// pcap link types (https://www.tcpdump.org/linktypes.html) understood by [`parse_frame`].
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const RAW_OPENBSD: u32 = 12;
    pub const RAW_BSDOS: u32 = 14;
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;

    pub fn supported(lt: u32) -> bool {
        matches!(lt, NULL | ETHERNET | RAW_OPENBSD | RAW_BSDOS | RAW | LOOP | LINUX_SLL | IPV4 | IPV6 | LINUX_SLL2)
    }
}

/// An IP address as a fixed-size key: family 4 keeps its 4 bytes at the front and zeros after.
/// Family 0 is the overflow row (see `table`). IPv4-mapped IPv6 addresses stay family 6.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord, Default)]
pub struct Addr {
    pub fam: u8,
    pub bytes: [u8; 16],
}

impl std::hash::Hash for Addr {
    /// Two word-sized writes instead of seventeen byte writes: this is the per-packet hot path.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u128(u128::from_ne_bytes(self.bytes) ^ self.fam as u128);
    }
}

impl Addr {
    pub const OVERFLOW: Addr = Addr { fam: 0, bytes: [0; 16] };

    #[inline]
    pub fn v4(b: &[u8]) -> Addr {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&b[..4]);
        Addr { fam: 4, bytes }
    }

    #[inline]
    pub fn v6(b: &[u8]) -> Addr {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&b[..16]);
        Addr { fam: 6, bytes }
    }

    /// The significant bytes: 4 for IPv4, 16 for IPv6, none for the overflow row.
    pub fn as_slice(&self) -> &[u8] {
        match self.fam {
            4 => &self.bytes[..4],
            6 => &self.bytes[..],
            _ => &[],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fragment {
    None,
    First,
    NonFirst,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IpPacket {
    pub src: Addr,
    pub dst: Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// The length stated in the header (IPv4 Total Length, IPv6 Payload Length + 40).
    pub bytes: u32,
    pub fragment: Fragment,
    /// Bytes of the frame from the IP header to its end: the IP header starts at
    /// `frame.len() - ip_rest` (every header walk keeps the frame's tail).
    pub ip_rest: u32,
    /// Offset of the L4 header from the IP header; 0 when there is none to read (a non-first
    /// fragment, an extension chain not walked to its end).
    pub l4: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Parsed {
    Ip(IpPacket),
    /// ARP, STP, LLDP, IPX, PPPoE discovery, PPP control, ..., a frame too short to reach an IP
    /// header, or an IP header captured whole but unusable (MANIFEST rule 3: a bad version, an
    /// IPv4 IHL below 5, an IPv4 Total Length other than 0 below the header's own length).
    NonIp,
    /// An IP header starts but its fixed part (20 / 40 bytes) is cut short by the snap length.
    IpHeaderIncomplete,
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const ETH_P_QINQ1: u16 = 0x9100;
const ETH_P_QINQ2: u16 = 0x9200;
const ETH_P_MPLS_UC: u16 = 0x8847;
const ETH_P_MPLS_MC: u16 = 0x8848;
/// PPPoE session stage (RFC 2516 section 5.4); discovery (0x8863) is not IP.
const ETH_P_PPP_SES: u16 = 0x8864;
// The PPPoE session header's length and the PPP protocols of IP, from ebpf/tc_filter.h: the
// kernel filter walks the same header.
const PPPOE_SES_HLEN: usize = consts::PPPOE_SES_HLEN as usize;
const PPP_IP: u16 = consts::PPP_IP as u16;
const PPP_IPV6: u16 = consts::PPP_IPV6 as u16;

/// Outer-header walks (VLAN tags, MPLS labels, pseudowires) stop after this many steps, so a
/// crafted frame cannot make parsing loop long.
const MAX_ENCAP_DEPTH: usize = 32;

#[inline]
fn be16(p: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([p[off], p[off + 1]])
}

/// Parses one frame of link type `lt` (a pcap LINKTYPE_ value).
/// Returns `None` for link types this parser does not know.
#[inline]
pub fn parse_frame(lt: u32, p: &[u8]) -> Option<Parsed> {
    let r = match lt {
        linktype::ETHERNET => ethernet(p, 0),
        linktype::RAW | linktype::RAW_OPENBSD | linktype::RAW_BSDOS => match p.first().map(|b| b >> 4) {
            Some(4) => ip(4, p),
            Some(6) => ip(6, p),
            _ => Parsed::NonIp,
        },
        linktype::IPV4 => if p.is_empty() { Parsed::NonIp } else { ip(4, p) },
        linktype::IPV6 => if p.is_empty() { Parsed::NonIp } else { ip(6, p) },
        linktype::NULL => {
            if p.len() < 4 {
                Parsed::NonIp
            } else {
                // Host byte order of the capturing machine: a value above 0xFFFF means the other order.
                let mut fam = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                if fam > 0xFFFF {
                    fam = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                }
                null_family(fam, &p[4..])
            }
        }
        linktype::LOOP => {
            if p.len() < 4 {
                Parsed::NonIp
            } else {
                null_family(u32::from_be_bytes([p[0], p[1], p[2], p[3]]), &p[4..])
            }
        }
        linktype::LINUX_SLL => {
            if p.len() < 16 { Parsed::NonIp } else { ethertype(be16(p, 14), &p[16..], 0) }
        }
        linktype::LINUX_SLL2 => {
            if p.len() < 20 { Parsed::NonIp } else { ethertype(be16(p, 0), &p[20..], 0) }
        }
        _ => return None,
    };
    Some(r)
}

/// Whether the eBPF filter (ebpf/filter.c) passes this Ethernet frame without applying the CIDR
/// rules, so userspace applies them: MPLS reached within `max_steps` VLAN tags and LLC/SNAP
/// headers, or a frame still behind one of those after `max_steps`. Lengths are not checked
/// where a short frame is non-IP for both sides.
pub fn unjudged_by_filter(p: &[u8], max_steps: usize) -> bool {
    let mut off = 12;
    for step in 0..=max_steps {
        if p.len() < off + 2 {
            return false;
        }
        let et = be16(p, off);
        let walkable = matches!(et, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ1 | ETH_P_QINQ2) || et <= 1500;
        match et {
            ETH_P_MPLS_UC | ETH_P_MPLS_MC => return true,
            _ if walkable && step == max_steps => return true,
            ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ1 | ETH_P_QINQ2 => off += 4,
            l if l <= 1500 => off += 8,
            _ => return false,
        }
    }
    false
}

/// BSD loopback address families: AF_INET 2; AF_INET6 10 (Linux), 24 (NetBSD/OpenBSD),
/// 28 (FreeBSD), 30 (macOS).
fn null_family(fam: u32, p: &[u8]) -> Parsed {
    match fam {
        2 => ip(4, p),
        10 | 24 | 28 | 30 => ip(6, p),
        _ => Parsed::NonIp,
    }
}

#[inline]
fn ethernet(p: &[u8], depth: usize) -> Parsed {
    if p.len() < 14 {
        return Parsed::NonIp;
    }
    ethertype(be16(p, 12), &p[14..], depth)
}

#[inline]
fn ethertype(mut et: u16, mut p: &[u8], mut depth: usize) -> Parsed {
    loop {
        depth += 1;
        if depth > MAX_ENCAP_DEPTH {
            return Parsed::NonIp;
        }
        match et {
            ETH_P_IP => return ip(4, p),
            ETH_P_IPV6 => return ip(6, p),
            ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ1 | ETH_P_QINQ2 => {
                if p.len() < 4 {
                    return Parsed::NonIp;
                }
                et = be16(p, 2);
                p = &p[4..];
            }
            ETH_P_PPP_SES => {
                if p.len() < PPPOE_SES_HLEN {
                    return Parsed::NonIp;
                }
                let q = &p[PPPOE_SES_HLEN..];
                return match be16(p, PPPOE_SES_HLEN - 2) {
                    PPP_IP => ip(4, q),
                    PPP_IPV6 => ip(6, q),
                    _ => Parsed::NonIp,
                };
            }
            ETH_P_MPLS_UC | ETH_P_MPLS_MC => {
                // Pop labels to the bottom of the stack (S bit), then look at what follows.
                loop {
                    if p.len() < 4 {
                        return Parsed::NonIp;
                    }
                    let bos = p[2] & 1;
                    p = &p[4..];
                    depth += 1;
                    if bos == 1 || depth > MAX_ENCAP_DEPTH {
                        break;
                    }
                }
                return match p.first().map(|b| b >> 4) {
                    Some(4) => ip(4, p),
                    Some(6) => ip(6, p),
                    // Ethernet pseudowire with a control word (RFC 4385: first nibble 0).
                    Some(0) if p.len() >= 4 => ethernet(&p[4..], depth),
                    _ => Parsed::NonIp,
                };
            }
            // 802.3 length field: only LLC/SNAP with OUI 0 carries an ethertype.
            l if l <= 1500 => {
                if p.len() >= 8 && p[0] == 0xAA && p[1] == 0xAA && p[2] == 0x03 && p[3..6] == [0, 0, 0] {
                    et = be16(p, 6);
                    p = &p[8..];
                } else {
                    return Parsed::NonIp;
                }
            }
            _ => return Parsed::NonIp,
        }
    }
}

#[inline]
fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132)
}

#[inline]
fn ports_at(p: &[u8], off: usize) -> (u16, u16) {
    if p.len() >= off + 4 {
        (be16(p, off), be16(p, off + 2))
    } else {
        (0, 0)
    }
}

/// Parses the IP header that starts at `p[0]`; `version` is what the link layer announced.
#[inline]
pub fn ip(version: u8, p: &[u8]) -> Parsed {
    if version == 4 {
        if p.len() < 20 {
            return Parsed::IpHeaderIncomplete;
        }
        let ihl = ((p[0] & 15) as usize) * 4;
        let total = be16(p, 2);
        // Captured whole but unusable: tshark reports no addresses (rule 3). Total Length 0 is
        // a TSO/GSO frame and stays an IP packet of 0 bytes (rule 4).
        if p[0] >> 4 != 4 || ihl < 20 || (total != 0 && (total as usize) < ihl) {
            return Parsed::NonIp;
        }
        let fl = be16(p, 6);
        let offset = fl & 0x1FFF;
        let mf = (fl >> 13) & 1;
        let proto = p[9];
        let fragment = if offset != 0 {
            Fragment::NonFirst
        } else if mf != 0 {
            Fragment::First
        } else {
            Fragment::None
        };
        let (sport, dport) = if has_ports(proto) && offset == 0 { ports_at(p, ihl) } else { (0, 0) };
        return Parsed::Ip(IpPacket {
            src: Addr::v4(&p[12..16]),
            dst: Addr::v4(&p[16..20]),
            proto,
            sport,
            dport,
            bytes: total as u32,
            fragment,
            ip_rest: p.len() as u32,
            l4: if offset == 0 { ihl as u32 } else { 0 },
        });
    }
    if p.len() < 40 {
        return Parsed::IpHeaderIncomplete;
    }
    if p[0] >> 4 != 6 {
        return Parsed::NonIp;
    }
    let plen = be16(p, 4);
    let mut nxt = p[6];
    let mut off = 40usize;
    let mut fragment = Fragment::None;
    let mut complete = true;
    let mut steps = 0;
    // Walk Hop-by-Hop (0), Routing (43), Fragment (44) and Destination Options (60).
    while matches!(nxt, 0 | 43 | 44 | 60) {
        steps += 1;
        if steps > MAX_ENCAP_DEPTH {
            complete = false;
            break;
        }
        if nxt == 44 {
            if p.len() < off + 8 {
                complete = false;
                break;
            }
            let fo = be16(p, off + 2);
            if fo >> 3 != 0 {
                fragment = Fragment::NonFirst;
                nxt = p[off];
                complete = false;
                break;
            }
            if fo & 1 != 0 {
                fragment = Fragment::First;
            }
            nxt = p[off];
            off += 8;
        } else {
            if p.len() < off + 2 {
                complete = false;
                break;
            }
            let len = (p[off + 1] as usize + 1) * 8;
            nxt = p[off];
            off += len;
        }
    }
    let (sport, dport) = if complete && has_ports(nxt) { ports_at(p, off) } else { (0, 0) };
    Parsed::Ip(IpPacket {
        src: Addr::v6(&p[8..24]),
        dst: Addr::v6(&p[24..40]),
        proto: nxt,
        sport,
        dport,
        bytes: plen as u32 + 40,
        fragment,
        ip_rest: p.len() as u32,
        l4: if complete { off as u32 } else { 0 },
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ipv4_udp(total: u16, frag: u16, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 8, 0, 0]);
        p
    }

    pub(crate) fn eth(et: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&et.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn unwrap_ip(p: Option<Parsed>) -> IpPacket {
        match p {
            Some(Parsed::Ip(i)) => i,
            other => panic!("expected an IP packet, got {other:?}"),
        }
    }

    #[test]
    fn bytes_come_from_the_header_not_the_frame() {
        let mut f = eth(0x0800, &ipv4_udp(28, 0, 53, 1000));
        f.extend_from_slice(&[0u8; 18]); // Ethernet padding / trailer
        let i = unwrap_ip(parse_frame(linktype::ETHERNET, &f));
        assert_eq!(i.bytes, 28);
        assert_eq!((i.proto, i.sport, i.dport), (17, 53, 1000));
        assert_eq!(i.src.as_slice(), &[10, 0, 0, 1]);
    }

    #[test]
    fn tso_zero_length() {
        let i = unwrap_ip(parse_frame(linktype::ETHERNET, &eth(0x0800, &ipv4_udp(0, 0, 1, 2))));
        assert_eq!(i.bytes, 0);
    }

    #[test]
    fn an_ipv4_total_length_below_its_header_length_is_not_ip() {
        // Total Length 12 with IHL 5 (20 bytes): tshark reports no addresses (rule 3).
        assert_eq!(parse_frame(linktype::ETHERNET, &eth(0x0800, &ipv4_udp(12, 0, 1, 2))), Some(Parsed::NonIp));
        assert_eq!(parse_frame(linktype::RAW, &ipv4_udp(19, 0, 1, 2)), Some(Parsed::NonIp));
        // IHL 6 (24 bytes): 23 is below it, 24 is a packet of 24 bytes.
        let mut p = ipv4_udp(23, 0, 1, 2);
        p[0] = 0x46;
        assert_eq!(parse_frame(linktype::RAW, &p), Some(Parsed::NonIp));
        p[2..4].copy_from_slice(&24u16.to_be_bytes());
        assert_eq!(unwrap_ip(parse_frame(linktype::RAW, &p)).bytes, 24);
        // The smallest real packet: a bare 20-byte header.
        assert_eq!(unwrap_ip(parse_frame(linktype::RAW, &ipv4_udp(20, 0, 1, 2))).bytes, 20);
    }

    #[test]
    fn a_whole_header_with_a_bad_version_or_ihl_is_non_ip_not_incomplete() {
        let mut p = ipv4_udp(28, 0, 1, 2);
        p[0] = 0x44; // IHL 4
        assert_eq!(parse_frame(linktype::ETHERNET, &eth(0x0800, &p)), Some(Parsed::NonIp));
        p[0] = 0x65; // version 6 behind an IPv4 ethertype
        assert_eq!(parse_frame(linktype::ETHERNET, &eth(0x0800, &p)), Some(Parsed::NonIp));
        assert_eq!(parse_frame(linktype::IPV4, &p), Some(Parsed::NonIp));
        let mut q = ipv6(17, 8, &[0; 8]);
        q[0] = 0x40; // version 4 behind an IPv6 ethertype
        assert_eq!(parse_frame(linktype::ETHERNET, &eth(0x86DD, &q)), Some(Parsed::NonIp));
        // Cut short before the fixed header ends: incomplete, whatever the first byte says.
        assert_eq!(parse_frame(linktype::ETHERNET, &eth(0x0800, &p[..12])), Some(Parsed::IpHeaderIncomplete));
    }

    /// An Ethernet frame of PPPoE session 0x1234 carrying PPP protocol `ppp` behind VLAN tags with these TPIDs.
    pub(crate) fn pppoe(tags: &[u16], ppp: u16, payload: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut next = tags.iter().skip(1).copied().chain([0x8864]);
        for _ in tags {
            body.extend_from_slice(&[0, 7]);
            body.extend_from_slice(&next.next().unwrap().to_be_bytes());
        }
        body.extend_from_slice(&[0x11, 0x00, 0x12, 0x34]);
        body.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
        body.extend_from_slice(&ppp.to_be_bytes());
        body.extend_from_slice(payload);
        eth(tags.first().copied().unwrap_or(0x8864), &body)
    }

    #[test]
    fn pppoe_session_ip_counts_also_behind_vlan_tags_and_the_old_0x9100_tpid() {
        for tags in [&[][..], &[0x8100], &[0x88A8, 0x8100], &[0x9100], &[0x9100, 0x8100]] {
            let i = unwrap_ip(parse_frame(linktype::ETHERNET, &pppoe(tags, 0x0021, &ipv4_udp(28, 0, 53, 1000))));
            assert_eq!((i.bytes, i.proto, i.sport, i.dport), (28, 17, 53, 1000), "tags {tags:x?}");
            let i = unwrap_ip(parse_frame(linktype::ETHERNET, &pppoe(tags, 0x0057, &ipv6(58, 8, &[0; 8]))));
            assert_eq!((i.bytes, i.proto), (48, 58), "tags {tags:x?}");
        }
        // Linux cooked capture of the Ethernet side names the PPPoE ethertype.
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&pppoe(&[], 0x0021, &ipv4_udp(40, 0, 1, 2))[12..]);
        assert_eq!(unwrap_ip(parse_frame(linktype::LINUX_SLL, &sll)).bytes, 40);
        // The IP header cut short behind PPPoE: incomplete, as behind Ethernet.
        let f = pppoe(&[0x8100], 0x0021, &ipv4_udp(28, 0, 1, 2)[..10]);
        assert_eq!(parse_frame(linktype::ETHERNET, &f), Some(Parsed::IpHeaderIncomplete));
        // Rule 3 applies behind PPPoE too.
        assert_eq!(parse_frame(linktype::ETHERNET, &pppoe(&[], 0x0021, &ipv4_udp(12, 0, 1, 2))), Some(Parsed::NonIp));
    }

    #[test]
    fn pppoe_discovery_and_ppp_control_frames_are_not_ip() {
        // PADI (discovery, 0x8863) with a Service-Name tag
        let padi = eth(0x8863, &[0x11, 0x09, 0, 0, 0, 4, 0x01, 0x01, 0, 0]);
        assert_eq!(parse_frame(linktype::ETHERNET, &padi), Some(Parsed::NonIp));
        // LCP Echo-Request, IPCP, IPV6CP in a session, and a session header cut short
        for ppp in [0xc021u16, 0x8021, 0x8057] {
            let f = pppoe(&[0x8100], ppp, &[0x09, 0x01, 0x00, 0x08, 0, 0, 0, 0]);
            assert_eq!(parse_frame(linktype::ETHERNET, &f), Some(Parsed::NonIp), "PPP protocol {ppp:#x}");
        }
        assert_eq!(parse_frame(linktype::ETHERNET, &eth(0x8864, &[0x11, 0, 0x12, 0x34, 0, 2, 0])), Some(Parsed::NonIp));
    }

    #[test]
    fn vlan_qinq_any_depth() {
        let inner = ipv4_udp(28, 0, 1, 2);
        let mut payload = Vec::new();
        for tpid in [0x8100u16, 0x8100, 0x0800] {
            payload.extend_from_slice(&[0, 5]);
            payload.extend_from_slice(&tpid.to_be_bytes());
        }
        payload.extend_from_slice(&inner);
        let f = eth(0x88A8, &payload);
        assert_eq!(unwrap_ip(parse_frame(linktype::ETHERNET, &f)).bytes, 28);
    }

    #[test]
    fn mpls_then_ip_and_pseudowire() {
        let mut payload = vec![0, 0, 0x10, 64, 0, 0, 0x21, 64]; // two labels, S bit on the second
        payload.extend_from_slice(&ipv4_udp(40, 0, 7, 8));
        assert_eq!(unwrap_ip(parse_frame(linktype::ETHERNET, &eth(0x8847, &payload))).bytes, 40);

        let mut pw = vec![0, 0, 0x21, 64, 0, 0, 0, 0]; // label (S), control word
        pw.extend_from_slice(&eth(0x0800, &ipv4_udp(33, 0, 7, 8)));
        assert_eq!(unwrap_ip(parse_frame(linktype::ETHERNET, &eth(0x8847, &pw))).bytes, 33);
    }

    #[test]
    fn fragments_non_first_have_no_ports() {
        let nf = unwrap_ip(parse_frame(linktype::RAW, &ipv4_udp(100, 185, 9, 9)));
        assert_eq!(nf.fragment, Fragment::NonFirst);
        assert_eq!((nf.sport, nf.dport), (0, 0));
        let first = unwrap_ip(parse_frame(linktype::RAW, &ipv4_udp(100, 0x2000, 9, 10)));
        assert_eq!(first.fragment, Fragment::First);
        assert_eq!((first.sport, first.dport), (9, 10));
    }

    fn ipv6(next: u8, plen: u16, ext: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&plen.to_be_bytes());
        p.push(next);
        p.push(64);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(ext);
        p
    }

    #[test]
    fn ipv6_extension_chain_and_ports() {
        // Hop-by-Hop (8 bytes) -> Destination Options (8 bytes) -> UDP
        let mut ext = vec![60, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0];
        ext.extend_from_slice(&[0x12, 0x34, 0x00, 0x35, 0, 8, 0, 0]);
        let i = unwrap_ip(parse_frame(linktype::RAW, &ipv6(0, 24, &ext)));
        assert_eq!((i.proto, i.sport, i.dport, i.bytes), (17, 0x1234, 53, 64));
    }

    #[test]
    fn ipv6_fragments() {
        // non-first fragment: offset 8 -> protocol is the Fragment header's next header, ports 0
        let ext = [17, 0, 0, 0x40, 0, 0, 0, 1, 0x12, 0x34, 0, 53];
        let i = unwrap_ip(parse_frame(linktype::RAW, &ipv6(44, 100, &ext)));
        assert_eq!((i.proto, i.sport, i.fragment), (17, 0, Fragment::NonFirst));
        // atomic fragment (offset 0, M=0) is unfragmented and carries ports
        let ext = [17, 0, 0, 0, 0, 0, 0, 1, 0x12, 0x34, 0, 53];
        let i = unwrap_ip(parse_frame(linktype::RAW, &ipv6(44, 100, &ext)));
        assert_eq!((i.proto, i.sport, i.fragment), (17, 0x1234, Fragment::None));
    }

    #[test]
    fn ipv6_protocols_that_end_the_walk() {
        for proto in [50u8, 51, 59, 4, 41, 135] {
            let i = unwrap_ip(parse_frame(linktype::RAW, &ipv6(proto, 0, &[1, 2, 3, 4])));
            assert_eq!((i.proto, i.sport, i.dport, i.bytes), (proto, 0, 0, 40));
        }
    }

    #[test]
    fn truncated_headers() {
        let f = eth(0x0800, &ipv4_udp(28, 0, 1, 2)[..12]);
        assert_eq!(parse_frame(linktype::ETHERNET, &f), Some(Parsed::IpHeaderIncomplete));
        let f = eth(0x86DD, &ipv6(17, 8, &[])[..30]);
        assert_eq!(parse_frame(linktype::ETHERNET, &f), Some(Parsed::IpHeaderIncomplete));
        assert_eq!(parse_frame(linktype::ETHERNET, &[0u8; 4]), Some(Parsed::NonIp));
        // ports not captured: IP packet with ports 0
        let p = ipv4_udp(28, 0, 1, 2);
        let i = unwrap_ip(parse_frame(linktype::RAW, &p[..22]));
        assert_eq!((i.sport, i.dport, i.bytes), (0, 0, 28));
    }

    #[test]
    fn non_ip_and_snap() {
        assert_eq!(parse_frame(linktype::ETHERNET, &eth(0x0806, &[0u8; 28])), Some(Parsed::NonIp));
        let mut llc = vec![0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00];
        llc.extend_from_slice(&ipv4_udp(28, 0, 1, 2));
        assert_eq!(unwrap_ip(parse_frame(linktype::ETHERNET, &eth(36, &llc))).bytes, 28);
        let stp = eth(38, &[0x42, 0x42, 0x03, 0, 0, 0, 0, 0]);
        assert_eq!(parse_frame(linktype::ETHERNET, &stp), Some(Parsed::NonIp));
    }

    #[test]
    fn cooked_and_null_headers() {
        let ipp = ipv4_udp(28, 0, 1, 2);
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&0x0800u16.to_be_bytes());
        sll.extend_from_slice(&ipp);
        assert_eq!(unwrap_ip(parse_frame(linktype::LINUX_SLL, &sll)).bytes, 28);
        let mut sll2 = 0x0800u16.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ipp);
        assert_eq!(unwrap_ip(parse_frame(linktype::LINUX_SLL2, &sll2)).bytes, 28);
        for fam in [30u32.to_le_bytes(), 28u32.to_be_bytes()] {
            let mut n = fam.to_vec();
            n.extend_from_slice(&ipv6(58, 8, &[0; 8]));
            assert_eq!(unwrap_ip(parse_frame(linktype::NULL, &n)).proto, 58);
        }
        assert_eq!(parse_frame(9999, &ipp), None);
    }

    #[test]
    fn mpls_detection_for_the_kernel_filter_gap() {
        assert!(unjudged_by_filter(&eth(0x8847, &[0, 0, 0x11, 64]), 4));
        assert!(unjudged_by_filter(&eth(0x8100, &[0, 1, 0x88, 0x47, 0, 0, 0x11, 64]), 4));
        assert!(!unjudged_by_filter(&eth(0x0800, &ipv4_udp(28, 0, 1, 2)), 4));
        assert!(!unjudged_by_filter(&[0u8; 10], 4));
        // LLC/SNAP is walked by the filter (and judged there); past the step cap it is not.
        let mut snap = vec![0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00];
        snap.extend_from_slice(&ipv4_udp(28, 0, 1, 2));
        assert!(!unjudged_by_filter(&eth(36, &snap), 4));
        assert!(unjudged_by_filter(&eth(0x8100, &[0, 1, 0, 36]), 1));
    }

    #[test]
    fn a_crafted_tag_chain_terminates() {
        let mut payload = Vec::new();
        for _ in 0..10_000 {
            payload.extend_from_slice(&[0, 1, 0x81, 0x00]);
        }
        assert_eq!(parse_frame(linktype::ETHERNET, &eth(0x8100, &payload)), Some(Parsed::NonIp));
    }
}
