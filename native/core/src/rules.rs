//! CIDR rule files (`--ignore-file`, `--accept-source-file`) and their userspace matcher.
//!
//! Format: one IPv4 or IPv6 address or CIDR per line; `#` starts a comment; blank lines are
//! allowed. A bare address is a /32 or /128. Host bits below the prefix are ignored.

use crate::parse::{Addr, IpPacket};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub fam: u8,
    /// Network address, host bits cleared; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    pub prefix: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read CIDR file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {text:?} is not an IPv4 or IPv6 address or CIDR (expected e.g. 10.0.0.0/8 or 2001:db8::/32)")]
    BadLine { path: String, line: usize, text: String },
}

impl crate::error::Coded for RulesError {
    fn code(&self) -> crate::error::Code {
        crate::error::Code::CidrFile
    }
}

fn mask(bytes: &mut [u8], prefix: u8) {
    for (i, b) in bytes.iter_mut().enumerate() {
        let bits = (prefix as i32 - (i as i32) * 8).clamp(0, 8);
        *b &= if bits == 8 { 0xFF } else { !(0xFFu8 >> bits) };
    }
}

pub fn parse_cidr(s: &str) -> Option<Cidr> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = a.trim().parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match p {
        Some(p) => {
            let p = p.trim();
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let v: u32 = p.parse().ok()?;
            if v > max {
                return None;
            }
            v as u8
        }
        None => max as u8,
    };
    let mut addr = [0u8; 16];
    let fam = match ip {
        IpAddr::V4(v) => {
            addr[..4].copy_from_slice(&v.octets());
            mask(&mut addr[..4], prefix);
            4
        }
        IpAddr::V6(v) => {
            addr = v.octets();
            mask(&mut addr, prefix);
            6
        }
    };
    Some(Cidr { fam, addr, prefix })
}

pub fn parse_cidr_text(path: &str, text: &str) -> Result<Vec<Cidr>, RulesError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match parse_cidr(line) {
            Some(c) => out.push(c),
            None => return Err(RulesError::BadLine { path: path.to_string(), line: i + 1, text: line.to_string() }),
        }
    }
    Ok(out)
}

pub fn read_cidr_file(path: &Path) -> Result<Vec<Cidr>, RulesError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read { path: p.clone(), source })?;
    parse_cidr_text(&p, &text)
}

/// Longest-prefix-style membership test: one hash set per prefix length in use.
#[derive(Default, Debug, Clone)]
pub struct CidrSet {
    by_len: Vec<(u8, u8, HashSet<[u8; 16]>)>, // (fam, prefix, networks)
}

impl CidrSet {
    pub fn new(cidrs: &[Cidr]) -> CidrSet {
        let mut s = CidrSet::default();
        for c in cidrs {
            match s.by_len.iter_mut().find(|(f, p, _)| *f == c.fam && *p == c.prefix) {
                Some((_, _, set)) => {
                    set.insert(c.addr);
                }
                None => s.by_len.push((c.fam, c.prefix, HashSet::from([c.addr]))),
            }
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.by_len.is_empty()
    }

    pub fn contains(&self, a: &Addr) -> bool {
        self.by_len.iter().any(|(fam, prefix, set)| {
            if *fam != a.fam {
                return false;
            }
            let mut b = a.bytes;
            mask(&mut b[..if a.fam == 4 { 4 } else { 16 }], *prefix);
            set.contains(&b)
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Ignored,
    NotAccepted,
}

/// The rules the eBPF filter applies, evaluated in userspace (for `--no-ebpf`, replays, and
/// frames the kernel filter does not inspect such as MPLS).
#[derive(Default, Debug, Clone)]
pub struct Rules {
    pub ignore: CidrSet,
    pub accept_source: Option<CidrSet>,
}

impl Rules {
    pub fn new(ignore: &[Cidr], accept_source: Option<&[Cidr]>) -> Rules {
        Rules { ignore: CidrSet::new(ignore), accept_source: accept_source.map(CidrSet::new) }
    }

    pub fn is_noop(&self) -> bool {
        self.ignore.is_empty() && self.accept_source.is_none()
    }

    #[inline]
    pub fn verdict(&self, p: &IpPacket) -> Verdict {
        if !self.ignore.is_empty() && (self.ignore.contains(&p.src) || self.ignore.contains(&p.dst)) {
            return Verdict::Ignored;
        }
        if let Some(acc) = &self.accept_source {
            if !acc.contains(&p.src) {
                return Verdict::NotAccepted;
            }
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_blank_lines_and_both_families() {
        let c = parse_cidr_text("x", "# header\n\n10.1.2.3/8  # note\n2001:db8::1/32\n192.0.2.7\n").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!((c[0].fam, c[0].prefix, &c[0].addr[..4]), (4, 8, &[10, 0, 0, 0][..]));
        assert_eq!((c[1].fam, c[1].prefix), (6, 32));
        assert_eq!(c[2].prefix, 32);
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let e = parse_cidr_text("ignore.txt", "10.0.0.0/8\n\n10.0.0.0/33\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "ignore.txt:3: \"10.0.0.0/33\" is not an IPv4 or IPv6 address or CIDR (expected e.g. 10.0.0.0/8 or 2001:db8::/32)"
        );
        assert!(parse_cidr_text("f", "hello").is_err());
        assert!(parse_cidr_text("f", "10.0.0.0/").is_err());
        assert!(parse_cidr_text("f", "10.0.0.0/+8").is_err());
    }

    #[test]
    fn matching() {
        let set = CidrSet::new(&parse_cidr_text("x", "10.0.0.0/8\n2001:db8::/32\n0.0.0.0/0").unwrap()[..2]);
        assert!(set.contains(&Addr::v4(&[10, 9, 8, 7])));
        assert!(!set.contains(&Addr::v4(&[11, 0, 0, 1])));
        let mut v6 = [0u8; 16];
        v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6[15] = 9;
        assert!(set.contains(&Addr::v6(&v6)));
        let all = CidrSet::new(&parse_cidr_text("x", "0.0.0.0/0").unwrap());
        assert!(all.contains(&Addr::v4(&[1, 2, 3, 4])));
        assert!(!all.contains(&Addr::v6(&v6)));
    }
}
