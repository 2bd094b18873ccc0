//! The server name (SNI, RFC 6066 section 3) of a TLS ClientHello (RFC 8446 section 4.1.2), read
//! from the start of a client's TCP stream: TLS records (type 22, handshake) carrying a handshake
//! message of type 1. Written by hand: tls-parser (rusticata) parses a whole ClientHello into
//! vectors of extensions, while one extension is wanted here, read in place without allocating
//! when the hello sits in one record (the common case; otherwise its fragments are copied once
//! into the reader's scratch).

/// Most bytes of a ClientHello handshake message (its 4-byte header included) read or reassembled;
/// a longer one is given up (post-quantum key shares make hellos about 1.8 KB).
pub const MAX_HELLO_BYTES: usize = 16 * 1024;
/// TLSPlaintext.length may not exceed 2^14 (RFC 8446 section 5.1).
const MAX_RECORD: usize = 1 << 14;
const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST_NAME: u8 = 0;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Hello {
    /// A whole ClientHello with a host name: its length in the output buffer.
    Sni(usize),
    /// A whole ClientHello without a host name.
    NoSni,
    /// Not the start of a ClientHello (another record type or handshake message).
    NotAHello,
    /// The start of a ClientHello whose rest has not arrived yet.
    Need,
    /// Malformed: a length past its container, a name with a byte outside printable ASCII, an
    /// empty label, a label over 63 bytes or a name over 253.
    Malformed,
    /// Longer than `MAX_HELLO_BYTES`.
    TooLong,
}

/// Whether `p` starts like a TLS handshake record (type 22, major version 3) that may hold a
/// ClientHello: the payloads worth reading or reassembling.
#[inline]
pub fn starts_hello(p: &[u8]) -> bool {
    p.len() >= 2 && p[0] == RECORD_HANDSHAKE && p[1] == 3 && p.get(5).is_none_or(|&t| t == HANDSHAKE_CLIENT_HELLO)
}

#[inline]
fn be16(p: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]) as usize)
}

/// Reads the ClientHello at the start of `stream` (a client's first TCP bytes, in order). The host
/// name goes into `out`, lower case, without a trailing dot; `scratch` holds the handshake bytes
/// when the hello spans several records.
pub fn client_hello(stream: &[u8], scratch: &mut Vec<u8>, out: &mut [u8; 256]) -> Hello {
    if stream.len() < 5 {
        return Hello::Need;
    }
    if stream[0] != RECORD_HANDSHAKE || stream[1] != 3 {
        return Hello::NotAHello;
    }
    let first = be16(stream, 3).unwrap();
    if first > MAX_RECORD {
        return Hello::Malformed;
    }
    if stream.len() < 9 {
        return if stream.get(5).is_some_and(|&t| t != HANDSHAKE_CLIENT_HELLO) { Hello::NotAHello } else { Hello::Need };
    }
    if stream[5] != HANDSHAKE_CLIENT_HELLO {
        return Hello::NotAHello;
    }
    let total = 4 + ((stream[6] as usize) << 16 | (stream[7] as usize) << 8 | stream[8] as usize);
    if total > MAX_HELLO_BYTES {
        return Hello::TooLong;
    }
    let body = if total <= first {
        match stream.get(9..5 + total) {
            Some(b) => b,
            None => return Hello::Need,
        }
    } else {
        // The hello continues in the next handshake records: join their fragments.
        scratch.clear();
        let mut pos = 0;
        while scratch.len() < total {
            let Some(hdr) = stream.get(pos..pos + 5) else { return Hello::Need };
            let len = be16(hdr, 3).unwrap();
            if hdr[0] != RECORD_HANDSHAKE || len == 0 || len > MAX_RECORD {
                return Hello::Malformed;
            }
            let Some(frag) = stream.get(pos + 5..pos + 5 + len) else { return Hello::Need };
            // Only the hello's own bytes: the scratch holds at most MAX_HELLO_BYTES.
            scratch.extend_from_slice(&frag[..frag.len().min(total - scratch.len())]);
            pos += 5 + len;
        }
        &scratch[4..total]
    };
    match server_name(body, out) {
        Some(Some(n)) => Hello::Sni(n),
        Some(None) => Hello::NoSni,
        None => Hello::Malformed,
    }
}

/// The host name of a ClientHello body (after the handshake header): `Some(None)` when it has
/// none, `None` when the body is malformed.
fn server_name(b: &[u8], out: &mut [u8; 256]) -> Option<Option<usize>> {
    // legacy_version (2), random (32), legacy_session_id <0..32>
    let sid = *b.get(34)? as usize;
    if sid > 32 {
        return None;
    }
    let mut pos = 35 + sid;
    let suites = be16(b, pos)?;
    pos += 2 + suites;
    let compression = *b.get(pos)? as usize;
    pos += 1 + compression;
    if pos == b.len() {
        return Some(None);
    }
    let ext_end = pos + 2 + be16(b, pos)?;
    if ext_end > b.len() {
        return None;
    }
    pos += 2;
    while pos < ext_end {
        let (ty, len) = (be16(b, pos)?, be16(b, pos + 2)?);
        let data = b.get(pos + 4..pos + 4 + len)?;
        if pos + 4 + len > ext_end {
            return None;
        }
        if ty == EXT_SERVER_NAME as usize {
            return host_name(data, out);
        }
        pos += 4 + len;
    }
    if pos != ext_end {
        return None;
    }
    Some(None)
}

/// The first host_name of a server_name extension's ServerNameList.
fn host_name(d: &[u8], out: &mut [u8; 256]) -> Option<Option<usize>> {
    let list_end = 2 + be16(d, 0)?;
    if list_end > d.len() {
        return None;
    }
    let mut pos = 2;
    while pos < list_end {
        let ty = *d.get(pos)?;
        let len = be16(d, pos + 1)?;
        let name = d.get(pos + 3..pos + 3 + len)?;
        if pos + 3 + len > list_end {
            return None;
        }
        if ty == NAME_TYPE_HOST_NAME {
            return host_text(name, out).map(Some);
        }
        pos += 3 + len;
    }
    Some(None)
}

/// A host name as text: lower case, one trailing dot dropped; printable ASCII only, labels of
/// 1 to 63 bytes, at most 253 bytes in all.
fn host_text(name: &[u8], out: &mut [u8; 256]) -> Option<usize> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut label = 0;
    for (i, &c) in name.iter().enumerate() {
        if c == b'.' {
            if label == 0 {
                return None;
            }
            label = 0;
        } else {
            if !(0x21..=0x7e).contains(&c) {
                return None;
            }
            label += 1;
            if label > 63 {
                return None;
            }
        }
        out[i] = c.to_ascii_lowercase();
    }
    (label > 0).then_some(name.len())
}

/// Test ClientHellos, built field by field (also used by the reassembly tests).
#[cfg(test)]
pub(crate) mod build {
    /// The handshake message of a ClientHello naming `sni` (none when empty), padded with an
    /// extension of `pad` bytes (a post-quantum key share makes a hello about 1.8 KB).
    pub fn hello(sni: &str, pad: usize) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(32);
        body.extend_from_slice(&[9u8; 32]);
        body.extend_from_slice(&[0, 4, 0x13, 1, 0x13, 2]);
        body.extend_from_slice(&[1, 0]);
        let mut ext = Vec::new();
        // supported_versions first, so the server_name is not the first extension
        ext.extend_from_slice(&[0, 43, 0, 3, 2, 3, 4]);
        if !sni.is_empty() {
            let n = sni.as_bytes();
            let list = [&[0u8][..], &(n.len() as u16).to_be_bytes(), n].concat();
            let data = [&(list.len() as u16).to_be_bytes()[..], &list].concat();
            ext.extend_from_slice(&0u16.to_be_bytes());
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend_from_slice(&data);
        }
        if pad > 0 {
            ext.extend_from_slice(&51u16.to_be_bytes());
            ext.extend_from_slice(&(pad as u16).to_be_bytes());
            ext.extend(std::iter::repeat_n(0x5a, pad));
        }
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        hs
    }

    /// `hs` in TLS records of at most `max` bytes each.
    pub fn records(hs: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in hs.chunks(max) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn sni(stream: &[u8]) -> Result<String, Hello> {
        let mut out = [0u8; 256];
        match client_hello(stream, &mut Vec::new(), &mut out) {
            Hello::Sni(n) => Ok(String::from_utf8(out[..n].to_vec()).unwrap()),
            other => Err(other),
        }
    }

    #[test]
    fn the_host_name_of_a_client_hello_in_lower_case_without_a_trailing_dot() {
        assert_eq!(sni(&records(&hello("Www.Example.ORG.", 0), 16384)), Ok("www.example.org".into()));
        assert_eq!(sni(&records(&hello("", 0), 16384)), Err(Hello::NoSni));
    }

    #[test]
    fn a_hello_over_several_records_is_joined() {
        assert_eq!(sni(&records(&hello("split.example", 1500), 700)), Ok("split.example".into()));
    }

    #[test]
    fn a_hello_cut_short_needs_more_at_every_length() {
        let s = records(&hello("cut.example", 1700), 16384);
        for cut in [0, 1, 4, 5, 8, 9, 100, s.len() - 1] {
            assert_eq!(sni(&s[..cut]), Err(Hello::Need), "cut at {cut}");
        }
        let s = records(&hello("cut.example", 1700), 600);
        for cut in [5, 600, 605, 700, s.len() - 1] {
            assert_eq!(sni(&s[..cut]), Err(Hello::Need), "cut at {cut} (records of 600)");
        }
    }

    #[test]
    fn other_records_and_handshake_messages_are_not_hellos() {
        let mut server_hello = records(&hello("x.example", 0), 16384);
        server_hello[5] = 2;
        assert_eq!(sni(&server_hello), Err(Hello::NotAHello));
        assert!(!starts_hello(&server_hello));
        assert_eq!(sni(b"GET / HTTP/1.1\r\n"), Err(Hello::NotAHello));
        assert!(starts_hello(&records(&hello("x.example", 0), 16384)));
        assert!(starts_hello(&[22, 3, 1, 0]), "too short to tell: worth waiting for");
    }

    #[test]
    fn lengths_past_their_container_and_bad_names_are_malformed() {
        let hs = hello("bad.example", 0);
        // The extensions length claims more than the hello holds.
        let ext_len_at = 4 + 2 + 32 + 1 + 32 + 6 + 2;
        let mut h = hs.clone();
        h[ext_len_at + 1] = h[ext_len_at + 1].wrapping_add(40);
        assert_eq!(sni(&records(&h, 16384)), Err(Hello::Malformed));
        // A session id longer than 32.
        let mut h = hs.clone();
        h[4 + 34] = 33;
        assert_eq!(sni(&records(&h, 16384)), Err(Hello::Malformed));
        for bad in ["bad..example", "bad\u{1}.example", "bad example", ".example", &"x".repeat(64)] {
            assert_eq!(sni(&records(&hello(bad, 0), 16384)), Err(Hello::Malformed), "{bad:?}");
        }
        assert_eq!(sni(&records(&hello(&"x".repeat(63), 0), 16384)), Ok("x".repeat(63)));
        // A record type other than handshake in the middle of a hello.
        let mut s = records(&hello("bad.example", 900), 500);
        s[505] = 23;
        assert_eq!(sni(&s), Err(Hello::Malformed));
    }

    #[test]
    fn a_hello_longer_than_the_bound_is_given_up() {
        let s = records(&hello("big.example", MAX_HELLO_BYTES), 16384);
        assert_eq!(sni(&s), Err(Hello::TooLong));
    }
}
