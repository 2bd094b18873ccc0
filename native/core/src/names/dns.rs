//! DNS responses (RFC 1035 section 4): for each A / AAAA answer, the address and the name the
//! client asked for. Written over the bytes by hand rather than with a parser crate: the crates
//! that decode whole messages (hickory-proto, domain, simple-dns) allocate a name or a record per
//! answer and do not resolve an answer's owner back to the question through the CNAME chain,
//! which is the one thing wanted here; this reads a message without allocating (its names go into
//! a scratch arena the reader keeps) and with every loop bounded.
//!
//! Hostile input is bounded, not trusted: compression pointers may only point before the name
//! they continue (so a walk cannot loop) and at most [`MAX_JUMPS`] of them per name; a label is at
//! most 63 bytes and a name at most 255 on the wire; at most [`MAX_ANSWERS`] answers are read; a
//! length past the end, a label type other than a plain label or a pointer, or a byte outside
//! printable ASCII in a name makes the whole message malformed (nothing of it is recorded).

use crate::parse::Addr;

/// Answers read from one message; a response claiming more is read up to here and counted as
/// malformed (hostile, or partly skipped).
pub const MAX_ANSWERS: usize = 64;
/// CNAME links followed from the question name.
pub const MAX_CNAME_LINKS: usize = 16;
/// Compression pointers followed in one name.
pub const MAX_JUMPS: usize = 16;
/// Longest name on the wire, length octets and the root label included (RFC 1035 2.3.4).
const MAX_NAME_WIRE: usize = 255;
const MAX_LABEL: usize = 63;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// What one message gave.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Outcome {
    /// A well-formed response; its answers (if any) were emitted.
    Read,
    /// Not a response with answers to read: a query, another opcode, an error RCODE, no question.
    Ignored,
    /// Malformed or hostile: nothing was emitted, except with more than `MAX_ANSWERS` answers,
    /// where the answers of the first `MAX_ANSWERS` were.
    Malformed,
}

/// Reusable per-reader memory: the decoded names of one message and its records, cleared for
/// each message (so a message allocates nothing once these have grown to a message's worth).
/// Bytes the scratch grows to at most: the decoded names of a message of `MAX_ANSWERS` answers
/// (the question, each owner and each CNAME target, at most 253 bytes each) and its records,
/// twice over for the vectors' growth.
pub const SCRATCH_MAX_BYTES: usize = 2 * ((1 + 2 * MAX_ANSWERS) * (253 + 8) + MAX_ANSWERS * std::mem::size_of::<Record>() + (MAX_CNAME_LINKS + 1) * 4);

#[derive(Default)]
pub struct Scratch {
    text: Vec<u8>,
    /// (start, end) of each decoded name in `text`; name 0 is the question.
    spans: Vec<(u32, u32)>,
    records: Vec<Record>,
    reachable: Vec<u32>,
}

#[derive(Clone, Copy)]
enum Rdata {
    Addr(Addr),
    Cname(u32),
}

#[derive(Clone, Copy)]
struct Record {
    owner: u32,
    data: Rdata,
}

impl Scratch {
    fn name(&self, i: u32) -> &[u8] {
        let (s, e) = self.spans[i as usize];
        &self.text[s as usize..e as usize]
    }

    /// Decodes the name at `at` as the next span; returns where the name's own bytes end.
    fn push_name(&mut self, msg: &[u8], at: usize) -> Option<usize> {
        let start = self.text.len();
        let end = read_name(msg, at, &mut self.text);
        if end.is_none() {
            self.text.truncate(start);
        }
        self.spans.push((start as u32, self.text.len() as u32));
        end
    }
}

#[inline]
fn be16(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(at)?, *m.get(at + 1)?]))
}

/// Decodes the possibly compressed name at `at` into `out`, lower case, labels joined by dots,
/// no trailing dot (the root name is empty). Returns the offset just past the name's own bytes
/// at `at`, or `None` when it is malformed.
pub(crate) fn read_name(msg: &[u8], at: usize, out: &mut Vec<u8>) -> Option<usize> {
    let mut pos = at;
    // Every pointer must point before the start of the run of labels it ends, so positions
    // strictly decrease from jump to jump: no walk can loop, whatever the message.
    let mut run_start = at;
    let mut end = None;
    let mut jumps = 0;
    let mut wire = 1;
    let first = out.len();
    loop {
        let b = *msg.get(pos)? as usize;
        match b & 0xC0 {
            0x00 if b == 0 => {
                return Some(end.unwrap_or(pos + 1));
            }
            0x00 => {
                wire += b + 1;
                if b > MAX_LABEL || wire > MAX_NAME_WIRE {
                    return None;
                }
                let label = msg.get(pos + 1..pos + 1 + b)?;
                if out.len() > first {
                    out.push(b'.');
                }
                for &c in label {
                    if !(0x21..=0x7e).contains(&c) || c == b'.' {
                        return None;
                    }
                    out.push(c.to_ascii_lowercase());
                }
                pos += 1 + b;
            }
            0xC0 => {
                let target = (b & 0x3F) << 8 | *msg.get(pos + 1)? as usize;
                jumps += 1;
                if target >= run_start || jumps > MAX_JUMPS {
                    return None;
                }
                end.get_or_insert(pos + 2);
                pos = target;
                run_start = target;
            }
            // 0x40 (extended label types, RFC 6891) and 0x80 (reserved).
            _ => return None,
        }
    }
}

/// Reads one DNS message (without the TCP length prefix) and emits (answered address, question
/// name) for each A / AAAA answer whose owner is the question name or is reached from it through
/// the CNAME records of the same message.
pub fn read(msg: &[u8], s: &mut Scratch, emit: &mut dyn FnMut(Addr, &[u8])) -> Outcome {
    match read_inner(msg, s, emit) {
        Some(o) => o,
        None => Outcome::Malformed,
    }
}

fn read_inner(msg: &[u8], s: &mut Scratch, emit: &mut dyn FnMut(Addr, &[u8])) -> Option<Outcome> {
    if msg.len() < 12 {
        return None;
    }
    let flags = be16(msg, 2)?;
    let (qd, an) = (be16(msg, 4)?, be16(msg, 6)? as usize);
    let (qr, opcode, rcode) = (flags >> 15, (flags >> 11) & 0xF, flags & 0xF);
    if qr == 0 || opcode != 0 || rcode != 0 || qd == 0 || an == 0 {
        return Some(Outcome::Ignored);
    }
    if qd != 1 {
        // No server asks two questions in one message (RFC 9619).
        return None;
    }
    s.text.clear();
    s.spans.clear();
    s.records.clear();
    let mut pos = s.push_name(msg, 12)? + 4;
    if pos > msg.len() {
        return None;
    }
    if s.name(0).is_empty() {
        return Some(Outcome::Ignored);
    }
    for _ in 0..an.min(MAX_ANSWERS) {
        let owner = s.spans.len() as u32;
        pos = s.push_name(msg, pos)?;
        let (ty, class) = (be16(msg, pos)?, be16(msg, pos + 2)?);
        let rdlen = be16(msg, pos + 8)? as usize;
        let rd = pos + 10;
        let end = rd + rdlen;
        if end > msg.len() {
            return None;
        }
        if class == CLASS_IN {
            let data = match ty {
                TYPE_A if rdlen == 4 => Some(Rdata::Addr(Addr::v4(&msg[rd..end]))),
                TYPE_AAAA if rdlen == 16 => Some(Rdata::Addr(Addr::v6(&msg[rd..end]))),
                TYPE_A | TYPE_AAAA => return None,
                TYPE_CNAME => {
                    let target = s.spans.len() as u32;
                    if s.push_name(msg, rd)? != end {
                        return None;
                    }
                    Some(Rdata::Cname(target))
                }
                _ => None,
            };
            if let Some(data) = data {
                s.records.push(Record { owner, data });
            }
        }
        pos = end;
    }
    // The names reached from the question: each pass adds the targets of CNAMEs whose owner is
    // already reached, until a pass adds none or the chain is as long as it may be.
    s.reachable.clear();
    s.reachable.push(0);
    for _ in 0..MAX_CNAME_LINKS {
        let mut added = false;
        for i in 0..s.records.len() {
            let Record { owner, data: Rdata::Cname(target) } = s.records[i] else { continue };
            if s.reachable.len() > MAX_CNAME_LINKS {
                break;
            }
            if s.is_reached(owner) && !s.is_reached(target) {
                s.reachable.push(target);
                added = true;
            }
        }
        if !added {
            break;
        }
    }
    for r in &s.records {
        if let Rdata::Addr(a) = r.data {
            if s.is_reached(r.owner) {
                emit(a, s.name(0));
            }
        }
    }
    Some(if an > MAX_ANSWERS { Outcome::Malformed } else { Outcome::Read })
}

impl Scratch {
    fn is_reached(&self, name: u32) -> bool {
        let n = self.name(name);
        self.reachable.iter().any(|&r| self.name(r) == n)
    }
}

/// Test messages, built field by field (also used by the reader's tests).
#[cfg(test)]
pub(crate) mod build {
    /// A name in wire format, uncompressed.
    pub fn name(n: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in n.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    /// A response header (QR=1, RD, RA, RCODE 0) with these counts.
    pub fn header(qd: u16, an: u16) -> Vec<u8> {
        let mut h = vec![0x12, 0x34, 0x81, 0x80];
        for v in [qd, an, 0, 0] {
            h.extend_from_slice(&v.to_be_bytes());
        }
        h
    }

    /// A resource record with its owner name already in wire format.
    pub fn rr(owner: &[u8], ty: u16, rdata: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend_from_slice(&ty.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&300u32.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    /// A response to `q` (type A, class IN) with these answer records.
    pub fn response(q: &str, answers: &[Vec<u8>]) -> Vec<u8> {
        let mut m = header(1, answers.len() as u16);
        m.extend_from_slice(&name(q));
        m.extend_from_slice(&[0, 1, 0, 1]);
        for a in answers {
            m.extend_from_slice(a);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn answers(msg: &[u8]) -> (Outcome, Vec<(String, String)>) {
        let mut out = Vec::new();
        let mut s = Scratch::default();
        let o = read(msg, &mut s, &mut |a, n| {
            let ip = match a.fam {
                4 => std::net::Ipv4Addr::new(a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3]).to_string(),
                _ => std::net::Ipv6Addr::from(a.bytes).to_string(),
            };
            out.push((ip, String::from_utf8(n.to_vec()).unwrap()));
        });
        (o, out)
    }

    fn pair(ip: &str, n: &str) -> (String, String) {
        (ip.to_string(), n.to_string())
    }

    #[test]
    fn a_and_aaaa_answers_give_the_question_name_in_lower_case_without_the_dot() {
        let q = name("WWW.Example.COM");
        let m = response("WWW.Example.COM.", &[rr(&q, 1, &[192, 0, 2, 1]), rr(&[0xC0, 12], 28, &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])]);
        assert_eq!(answers(&m), (Outcome::Read, vec![pair("192.0.2.1", "www.example.com"), pair("2001:db8::1", "www.example.com")]));
    }

    #[test]
    fn a_cname_chain_resolves_to_the_question_name_in_any_order() {
        // www.example.com -> a.cdn.net -> b.cdn.net (A), the links listed out of order, plus an
        // A record of a name the chain does not reach.
        let m = response(
            "www.example.com",
            &[
                rr(&name("a.cdn.net"), 5, &name("b.cdn.net")),
                rr(&name("b.cdn.net"), 1, &[198, 51, 100, 7]),
                rr(&[0xC0, 12], 5, &name("a.cdn.net")),
                rr(&name("other.net"), 1, &[203, 0, 113, 9]),
            ],
        );
        assert_eq!(answers(&m), (Outcome::Read, vec![pair("198.51.100.7", "www.example.com")]));
    }

    #[test]
    fn queries_error_responses_and_other_opcodes_are_ignored_not_malformed() {
        let mut m = response("a.example", &[rr(&[0xC0, 12], 1, &[192, 0, 2, 1])]);
        m[2] &= 0x7F; // QR = 0
        assert_eq!(answers(&m), (Outcome::Ignored, vec![]));
        let mut m = response("a.example", &[rr(&[0xC0, 12], 1, &[192, 0, 2, 1])]);
        m[3] |= 3; // NXDOMAIN
        assert_eq!(answers(&m).0, Outcome::Ignored);
        let mut m = response("a.example", &[rr(&[0xC0, 12], 1, &[192, 0, 2, 1])]);
        m[2] |= 2 << 3; // opcode 2 (STATUS)
        assert_eq!(answers(&m).0, Outcome::Ignored);
    }

    #[test]
    fn a_compression_loop_is_malformed() {
        // The answer's owner points at itself, and a pointer pointing forward.
        let m = response("a.example", &[]);
        let at = m.len() as u16;
        let mut looped = m.clone();
        looped[7] = 1;
        looped.extend_from_slice(&(0xC000 | at).to_be_bytes());
        looped.extend_from_slice(&rr(&[], 1, &[192, 0, 2, 1]));
        assert_eq!(answers(&looped), (Outcome::Malformed, vec![]));
        // Two labels then a pointer back to the first of them: backwards, but into the same run.
        let mut run = m.clone();
        run[7] = 1;
        run.extend_from_slice(&[1, b'x', 1, b'y']);
        run.extend_from_slice(&(0xC000 | at).to_be_bytes());
        run.extend_from_slice(&rr(&[], 1, &[192, 0, 2, 1]));
        assert_eq!(answers(&run), (Outcome::Malformed, vec![]));
    }

    #[test]
    fn a_chain_of_backward_pointers_longer_than_max_jumps_is_malformed() {
        // "a" at offset 12, then pointers each to the one before it: strictly backwards, and
        // reading the name at pointer k takes k jumps.
        let mut m = header(1, 0);
        m.extend_from_slice(&[1, b'a', 0]);
        let mut at = 12u16;
        let mut pointers = Vec::new();
        for _ in 0..=MAX_JUMPS {
            pointers.push(m.len());
            m.extend_from_slice(&(0xC000 | at).to_be_bytes());
            at = *pointers.last().unwrap() as u16;
        }
        let mut s = Vec::new();
        assert_eq!(read_name(&m, pointers[MAX_JUMPS - 1], &mut s), Some(pointers[MAX_JUMPS - 1] + 2));
        assert_eq!(s, b"a");
        assert_eq!(read_name(&m, pointers[MAX_JUMPS], &mut Vec::new()), None);
    }

    #[test]
    fn lengths_past_the_end_are_malformed() {
        let m = response("a.example", &[rr(&[0xC0, 12], 1, &[192, 0, 2, 1])]);
        for cut in [13, 20, m.len() - 9, m.len() - 1] {
            assert_eq!(answers(&m[..cut]), (Outcome::Malformed, vec![]), "cut at {cut}");
        }
        // An rdlength larger than what is left.
        let mut m = m.clone();
        let n = m.len();
        m[n - 6] = 0;
        m[n - 5] = 200;
        assert_eq!(answers(&m), (Outcome::Malformed, vec![]));
    }

    #[test]
    fn ten_thousand_answers_claimed_are_read_up_to_the_bound_and_counted() {
        // Claims 10,000 answers, holds one: the second runs past the end.
        let mut m = response("a.example", &[rr(&[0xC0, 12], 1, &[192, 0, 2, 1])]);
        m[6..8].copy_from_slice(&10_000u16.to_be_bytes());
        assert_eq!(answers(&m), (Outcome::Malformed, vec![]));
        // Holds 100 well-formed answers: the first MAX_ANSWERS are used, the message is counted.
        let recs: Vec<Vec<u8>> = (0..100u8).map(|i| rr(&[0xC0, 12], 1, &[10, 0, 0, i])).collect();
        let (o, got) = answers(&response("a.example", &recs));
        assert_eq!(o, Outcome::Malformed);
        assert_eq!(got.len(), MAX_ANSWERS);
        assert_eq!(got[MAX_ANSWERS - 1], pair("10.0.0.63", "a.example"));
    }

    #[test]
    fn a_label_of_64_bytes_a_name_over_255_bytes_and_non_printable_bytes_are_malformed() {
        let l64 = "x".repeat(64);
        assert_eq!(answers(&response(&format!("{l64}.example"), &[rr(&[0xC0, 12], 1, &[192, 0, 2, 1])])).0, Outcome::Malformed);
        let l63 = "x".repeat(63);
        assert_eq!(answers(&response(&format!("{l63}.example"), &[rr(&[0xC0, 12], 1, &[192, 0, 2, 1])])).0, Outcome::Read);
        // Four labels of 63: 4 x 64 + 1 = 257 bytes on the wire.
        let long = [l63.as_str(); 4].join(".");
        assert_eq!(answers(&response(&long, &[rr(&[0xC0, 12], 1, &[192, 0, 2, 1])])).0, Outcome::Malformed);
        for bad in [b'\0', b' ', 0x7f, 0xc3, b'.'] {
            let mut m = response("ab.example", &[rr(&[0xC0, 12], 1, &[192, 0, 2, 1])]);
            m[13] = bad;
            assert_eq!(answers(&m), (Outcome::Malformed, vec![]), "byte {bad:#x}");
        }
    }

    #[test]
    fn a_record_of_the_wrong_length_or_a_cname_with_bytes_after_its_name_is_malformed() {
        assert_eq!(answers(&response("a.example", &[rr(&[0xC0, 12], 1, &[192, 0, 2])])).0, Outcome::Malformed);
        assert_eq!(answers(&response("a.example", &[rr(&[0xC0, 12], 28, &[0; 4])])).0, Outcome::Malformed);
        let mut target = name("b.example");
        target.push(7);
        assert_eq!(answers(&response("a.example", &[rr(&[0xC0, 12], 5, &target)])).0, Outcome::Malformed);
        // Other types and classes are skipped over.
        let mut chaos = rr(&[0xC0, 12], 1, &[192, 0, 2, 1]);
        chaos[4] = 3; // class CH
        let (o, got) = answers(&response("a.example", &[rr(&[0xC0, 12], 16, b"\x04text"), chaos, rr(&[0xC0, 12], 1, &[192, 0, 2, 2])]));
        assert_eq!((o, got), (Outcome::Read, vec![pair("192.0.2.2", "a.example")]));
    }

    #[test]
    fn a_cname_loop_in_the_records_ends() {
        let m = response(
            "a.example",
            &[rr(&[0xC0, 12], 5, &name("b.example")), rr(&name("b.example"), 5, &name("a.example")), rr(&name("b.example"), 1, &[192, 0, 2, 3])],
        );
        assert_eq!(answers(&m), (Outcome::Read, vec![pair("192.0.2.3", "a.example")]));
    }
}
