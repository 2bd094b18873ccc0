//! The eBPF socket filter: loaded with aya from the object compiled by build.rs, attached to
//! every worker socket, its CIDR maps filled from the rule files and its counters read.

use crate::batch::FilterCounters;
use crate::rules::Cidr;
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::SocketFilter;
use aya::Ebpf;
use std::os::fd::AsFd;

pub mod consts {
    include!(concat!(env!("OUT_DIR"), "/filter_consts.rs"));
}

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter.o"));

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Config {
    snaplen: u32,
    link: u32,
    ignore_enabled: u32,
    accept_enabled: u32,
    names: u32,
    names_only: u32,
}
// SAFETY: plain repr(C) integers, the layout of struct tc_config in ebpf/tc_filter.h.
unsafe impl aya::Pod for Config {}

/// What aya reported when loading or attaching the program (kept whole as the source).
#[derive(Debug, thiserror::Error)]
pub enum AyaError {
    #[error(transparent)]
    Object(#[from] aya::EbpfError),
    #[error(transparent)]
    Program(#[from] aya::programs::ProgramError),
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("loading the eBPF socket filter needs CAP_BPF (or CAP_SYS_ADMIN); run as root, grant it, or pass --no-ebpf to filter in userspace")]
    Permission {
        #[source]
        source: AyaError,
    },
    #[error("loading the eBPF socket filter failed")]
    Load {
        #[source]
        source: AyaError,
    },
    #[error("loading the eBPF socket filter failed: program tc_filter missing from the object")]
    MissingProgram,
    #[error("attaching the eBPF socket filter (SO_ATTACH_BPF) failed")]
    Attach {
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("updating the eBPF filter map {map} failed")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("waiting for the kernel's counting program to leave its old maps (an ARRAY_OF_MAPS update, or membarrier) failed")]
    GracePeriod {
        #[source]
        source: std::io::Error,
    },
    #[error("too many CIDRs in {what}: {n} (at most {max})")]
    TooMany { what: &'static str, n: usize, max: u32 },
}

impl FilterError {
    /// A failed load: a permission error when the kernel said EPERM/EACCES.
    pub(crate) fn load(e: impl Into<AyaError>) -> FilterError {
        let source = e.into();
        if crate::error::is_permission(&source) {
            FilterError::Permission { source }
        } else {
            FilterError::Load { source }
        }
    }

    pub(crate) fn attach(source: aya::programs::ProgramError) -> FilterError {
        if crate::error::is_permission(&source) {
            FilterError::Permission { source: source.into() }
        } else {
            FilterError::Attach { source }
        }
    }
}

pub struct Filter {
    ebpf: Ebpf,
    last: [u64; consts::CNT_SLOTS as usize],
    attached: usize,
}

impl Filter {
    /// Loads the program and sets its configuration. `raw_ip`: the device has no link header;
    /// `names`: DNS responses and ClientHellos pass whole (names are read).
    pub fn load(snaplen: u32, raw_ip: bool, names: bool) -> Result<Filter, FilterError> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(FilterError::load)?;
        let prog: &mut SocketFilter =
            ebpf.program_mut("tc_filter").ok_or(FilterError::MissingProgram)?.try_into().map_err(FilterError::load)?;
        prog.load().map_err(FilterError::load)?;
        let mut f = Filter { ebpf, last: [0; consts::CNT_SLOTS as usize], attached: 0 };
        f.set_config(Config {
            snaplen,
            link: if raw_ip { consts::LINK_RAW_IP } else { consts::LINK_ETHERNET },
            ignore_enabled: 0,
            accept_enabled: 0,
            names: names as u32,
            names_only: 0,
        })?;
        Ok(f)
    }

    /// Loads the program for the names socket of kernel counting: it passes DNS responses and
    /// ClientHellos whole (after the CIDR rules) and nothing else; its counters mean nothing.
    pub fn load_names_only() -> Result<Filter, FilterError> {
        let mut f = Filter::load(0, false, true)?;
        let mut c = f.config()?;
        c.names_only = 1;
        f.set_config(c)?;
        Ok(f)
    }

    fn set_config(&mut self, c: Config) -> Result<(), FilterError> {
        let mut arr: Array<&mut MapData, Config> =
            Array::try_from(self.ebpf.map_mut("tc_config").expect("tc_config map")).map_err(|source| FilterError::Map { map: "tc_config", source })?;
        arr.set(0, c, 0).map_err(|source| FilterError::Map { map: "tc_config", source })
    }

    fn config(&self) -> Result<Config, FilterError> {
        let arr: Array<&MapData, Config> =
            Array::try_from(self.ebpf.map("tc_config").expect("tc_config map")).map_err(|source| FilterError::Map { map: "tc_config", source })?;
        arr.get(&0, 0).map_err(|source| FilterError::Map { map: "tc_config", source })
    }

    pub fn attach<T: AsFd>(&mut self, socket: T) -> Result<(), FilterError> {
        let prog: &mut SocketFilter = self.ebpf.program_mut("tc_filter").unwrap().try_into().unwrap();
        prog.attach(socket).map_err(FilterError::attach)?;
        self.attached += 1;
        Ok(())
    }

    pub fn attached_sockets(&self) -> usize {
        self.attached
    }

    /// Replaces the CIDR maps without re-attaching (SIGHUP reload).
    pub fn set_rules(&mut self, ignore: &[Cidr], accept: Option<&[Cidr]>) -> Result<(), FilterError> {
        fill_rules(&mut self.ebpf, ignore, accept)?;
        let mut c = self.config()?;
        c.ignore_enabled = (!ignore.is_empty()) as u32;
        c.accept_enabled = accept.is_some() as u32;
        self.set_config(c)
    }

    /// Counter deltas since the previous call (summed over CPUs).
    pub fn counters_delta(&mut self) -> FilterCounters {
        let mut now = [0u64; consts::CNT_SLOTS as usize];
        if let Some(m) = self.ebpf.map("tc_counters") {
            if let Ok(arr) = PerCpuArray::<&MapData, u64>::try_from(m) {
                for (i, slot) in now.iter_mut().enumerate() {
                    if let Ok(v) = arr.get(&(i as u32), 0) {
                        *slot = v.iter().sum();
                    }
                }
            }
        }
        let d = |i: u32| now[i as usize].saturating_sub(self.last[i as usize]);
        let out = FilterCounters {
            passed: d(consts::CNT_PASSED),
            non_ip: d(consts::CNT_NON_IP),
            ignored: d(consts::CNT_IGNORED),
            not_accepted: d(consts::CNT_NOT_ACCEPTED),
        };
        self.last = now;
        out
    }
}

/// Fills the CIDR tries tc_ignore_v4/_v6 and tc_accept_v4/_v6 of a loaded object (the socket
/// filter's or the counting program's, which name them alike).
pub(crate) fn fill_rules(ebpf: &mut Ebpf, ignore: &[Cidr], accept: Option<&[Cidr]>) -> Result<(), FilterError> {
    fill::<4>(ebpf, "tc_ignore_v4", ignore, 4)?;
    fill::<16>(ebpf, "tc_ignore_v6", ignore, 6)?;
    let empty: [Cidr; 0] = [];
    fill::<4>(ebpf, "tc_accept_v4", accept.unwrap_or(&empty), 4)?;
    fill::<16>(ebpf, "tc_accept_v6", accept.unwrap_or(&empty), 6)
}

fn fill<const N: usize>(ebpf: &mut Ebpf, map: &'static str, cidrs: &[Cidr], fam: u8) -> Result<(), FilterError> {
    let mut trie: LpmTrie<&mut MapData, [u8; N], u8> =
        LpmTrie::try_from(ebpf.map_mut(map).expect("lpm map")).map_err(|source| FilterError::Map { map, source })?;
    let want: Vec<Key<[u8; N]>> = cidrs
        .iter()
        .filter(|c| c.fam == fam)
        .map(|c| Key::new(c.prefix as u32, <[u8; N]>::try_from(&c.addr[..N]).unwrap()))
        .collect();
    if want.len() > consts::MAX_CIDRS as usize {
        return Err(FilterError::TooMany { what: map, n: want.len(), max: consts::MAX_CIDRS });
    }
    // Insert the new entries first, then remove the stale ones, so a reload never opens a
    // window in which a CIDR present in both the old and the new file is missing.
    for k in &want {
        trie.insert(k, 1, 0).map_err(|source| FilterError::Map { map, source })?;
    }
    let old: Vec<Key<[u8; N]>> = trie.keys().filter_map(Result::ok).collect();
    for k in old {
        if !want.iter().any(|w| w.prefix_len() == k.prefix_len() && w.data() == k.data()) {
            let _ = trie.remove(&k);
        }
    }
    Ok(())
}

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h), for BPF_PROG_TEST_RUN.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}
const BPF_PROG_TEST_RUN: libc::c_long = 10;

impl Filter {
    /// Runs the loaded program `repeat` times on `frame` in the kernel (BPF_PROG_TEST_RUN) and
    /// returns its verdict (the bytes kept, 0 = dropped) and the mean time of a run in ns: for the
    /// tests and the filter's cost (examples/filter_cost.rs). bpf_prog_test_run_skb()
    /// (net/bpf/test_run.c) runs a socket filter with skb->data after an Ethernet header it pulls
    /// off the input (eth_type_trans), so a dummy one goes in front: the program then sees `frame`
    /// from its first byte, as on an AF_PACKET SOCK_RAW socket, where skb->data is the MAC header.
    /// The filter's maps (counters, the ClientHello table) change as they would in capture.
    pub fn test_run(&mut self, frame: &[u8], repeat: u32) -> std::io::Result<(u32, u32)> {
        use std::os::fd::{AsFd, AsRawFd};
        let prog: &mut SocketFilter = self.ebpf.program_mut("tc_filter").unwrap().try_into().unwrap();
        let fd = prog.fd().map_err(std::io::Error::other)?.as_fd().as_raw_fd();
        let mut data = vec![0u8; 12];
        data.extend_from_slice(&0x88B5u16.to_be_bytes());
        data.extend_from_slice(frame);
        prog_test_run(fd, &data, repeat)
    }
}

/// BPF_PROG_TEST_RUN of the program `fd` on `data`, `repeat` times: its return value and the
/// mean time of a run in ns.
pub(crate) fn prog_test_run(fd: std::os::fd::RawFd, data: &[u8], repeat: u32) -> std::io::Result<(u32, u32)> {
    let mut out = vec![0u8; data.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: fd as u32,
        data_size_in: data.len() as u32,
        data_size_out: out.len() as u32,
        data_in: data.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..Default::default()
    };
    // SAFETY: `attr` is the kernel's layout and outlives the call; the buffers it points to too.
    let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_TEST_RUN, &mut attr as *mut TestRunAttr, std::mem::size_of::<TestRunAttr>()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((attr.retval, attr.duration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::tests::{eth, pppoe};
    use crate::rules::parse_cidr_text;

    fn privileged(name: &str) -> bool {
        crate::testing::privileged(name, "bpf()")
    }

    fn run(f: &mut Filter, frame: &[u8]) -> u32 {
        f.test_run(frame, 1).expect("BPF_PROG_TEST_RUN").0
    }

    fn ipv4(total: u16, src: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&src);
        p.extend_from_slice(&[10, 0, 0, 2, 0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0]);
        p
    }

    fn ipv6(src_last: u8) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        p.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, src_last]);
        p.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0]);
        p
    }

    #[test]
    fn the_kernel_filter_passes_ip_in_pppoe_sessions_behind_any_tpid_and_applies_the_rules_to_it() {
        if !privileged("the_kernel_filter_passes_ip_in_pppoe_sessions") {
            return;
        }
        let mut f = Filter::load(consts::DEFAULT_SNAPLEN, false, true).unwrap();
        let keep = consts::DEFAULT_SNAPLEN;
        let tagged: [&[u16]; 5] = [&[], &[0x8100], &[0x88A8, 0x8100], &[0x9100], &[0x9100, 0x9100, 0x8100, 0x8100]];
        for tags in tagged {
            assert_eq!(run(&mut f, &pppoe(tags, 0x0021, &ipv4(28, [10, 0, 0, 1]))), keep, "IPv4 in PPPoE behind {tags:x?}");
            assert_eq!(run(&mut f, &pppoe(tags, 0x0057, &ipv6(1))), keep, "IPv6 in PPPoE behind {tags:x?}");
        }
        assert_eq!(f.counters_delta().passed, 10);
        // Discovery, LCP, IPCP, a session header cut short: non-IP, dropped and counted once.
        assert_eq!(run(&mut f, &eth(0x8863, &[0x11, 0x09, 0, 0, 0, 4, 1, 1, 0, 0])), 0);
        assert_eq!(run(&mut f, &pppoe(&[0x8100], 0xc021, &[9, 1, 0, 8, 0, 0, 0, 0])), 0);
        assert_eq!(run(&mut f, &pppoe(&[], 0x8021, &[1, 1, 0, 4])), 0);
        assert_eq!(run(&mut f, &eth(0x8864, &[0x11, 0, 0x12, 0x34, 0, 2, 0])), 0);
        let c = f.counters_delta();
        assert_eq!((c.passed, c.non_ip, c.ignored), (0, 4, 0));
        // The CIDR rules judge the addresses behind PPPoE.
        let ignore = parse_cidr_text("test", "10.0.0.1/32\nfd77::1/128\n").unwrap();
        f.set_rules(&ignore, None).unwrap();
        assert_eq!(run(&mut f, &pppoe(&[0x8100], 0x0021, &ipv4(28, [10, 0, 0, 1]))), 0);
        assert_eq!(run(&mut f, &pppoe(&[], 0x0057, &ipv6(1))), 0);
        assert_eq!(run(&mut f, &pppoe(&[0x9100], 0x0021, &ipv4(28, [10, 0, 0, 3]))), keep);
        let c = f.counters_delta();
        assert_eq!((c.passed, c.non_ip, c.ignored), (1, 0, 2));
    }

    /// An 802.3 frame (length field) with an LLC/SNAP header of OUI 0 carrying `et`.
    fn snap(et: u16, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![0xAA, 0xAA, 0x03, 0, 0, 0];
        body.extend_from_slice(&et.to_be_bytes());
        body.extend_from_slice(payload);
        body
    }

    #[test]
    fn the_kernel_filter_walks_llc_snap_and_vlan_tags_as_userspace_does() {
        if !privileged("the_kernel_filter_walks_llc_snap_and_vlan_tags_as_userspace_does") {
            return;
        }
        use crate::parse::{parse_frame, unjudged_by_filter, Parsed};
        let mut f = Filter::load(consts::DEFAULT_SNAPLEN, false, false).unwrap();
        let keep = consts::DEFAULT_SNAPLEN;
        let v4 = snap(0x0800, &ipv4(28, [10, 0, 0, 1]));
        let mut tagged_snap = vec![0, 5];
        tagged_snap.extend_from_slice(&(v4.len() as u16).to_be_bytes());
        tagged_snap.extend_from_slice(&v4);
        let mut deep = Vec::new();
        for _ in 0..consts::MAX_L2_STEPS + 2 {
            deep.extend_from_slice(&[0, 1, 0x81, 0x00]);
        }
        deep.extend_from_slice(&[0, 1, 0x08, 0x00]);
        deep.extend_from_slice(&ipv4(28, [10, 0, 0, 1]));
        let cases: Vec<(&str, Vec<u8>, u32)> = vec![
            ("IPv4 in LLC/SNAP", eth(v4.len() as u16, &v4), keep),
            ("IPv6 in LLC/SNAP", eth(48, &snap(0x86DD, &ipv6(1))), keep),
            ("LLC/SNAP behind a VLAN tag", eth(0x8100, &tagged_snap), keep),
            ("ARP in LLC/SNAP", eth(36, &snap(0x0806, &[0; 28])), 0),
            ("IS-IS over plain LLC", eth(30, &[0xFE, 0xFE, 0x03, 0x83, 0, 0, 0, 0]), 0),
        ];
        for (what, frame, want) in &cases {
            assert_eq!(run(&mut f, frame), *want, "{what}");
            let ip = matches!(parse_frame(crate::parse::linktype::ETHERNET, frame), Some(Parsed::Ip(_)));
            assert_eq!(ip, *want != 0, "{what}: userspace agrees");
            assert!(!unjudged_by_filter(frame, consts::MAX_L2_STEPS as usize), "{what} is judged in the kernel");
        }
        let c = f.counters_delta();
        assert_eq!((c.passed, c.non_ip), (3, 2));
        // Deeper than the filter walks: passed whole, left to userspace, which counts it as IP.
        let frame = eth(0x8100, &deep);
        assert_eq!(run(&mut f, &frame), frame.len() as u32);
        assert!(unjudged_by_filter(&frame, consts::MAX_L2_STEPS as usize));
        assert!(matches!(parse_frame(crate::parse::linktype::ETHERNET, &frame), Some(Parsed::Ip(_))));
        // The CIDR rules judge the addresses behind LLC/SNAP.
        let ignore = parse_cidr_text("test", "10.0.0.1/32\n").unwrap();
        f.set_rules(&ignore, None).unwrap();
        assert_eq!(run(&mut f, &cases[0].1), 0);
        assert_eq!(f.counters_delta().ignored, 1);
    }

    #[test]
    fn the_kernel_filter_counts_an_unusable_ipv4_header_as_non_ip_before_any_rule() {
        if !privileged("the_kernel_filter_counts_an_unusable_ipv4_header_as_non_ip") {
            return;
        }
        let mut f = Filter::load(consts::DEFAULT_SNAPLEN, false, true).unwrap();
        // An ignore rule on the sender: an unusable header is non-IP, not "ignored", as in userspace.
        let ignore = parse_cidr_text("test", "10.0.0.1/32\n").unwrap();
        f.set_rules(&ignore, None).unwrap();
        let src = [10, 0, 0, 9];
        for (what, frame, kept) in [
            ("Total Length 12 < IHL x 4", eth(0x0800, &ipv4(12, src)), false),
            ("Total Length 12 behind PPPoE", pppoe(&[], 0x0021, &ipv4(12, src)), false),
            ("Total Length 0 (TSO)", eth(0x0800, &ipv4(0, src)), true),
            ("Total Length 20", eth(0x0800, &ipv4(20, src)), true),
        ] {
            assert_eq!(run(&mut f, &frame) != 0, kept, "{what}");
        }
        let mut bad = ipv4(28, src);
        bad[0] = 0x44; // IHL 4
        assert_eq!(run(&mut f, &eth(0x0800, &bad)), 0);
        bad[0] = 0x65; // version 6 behind the IPv4 ethertype
        assert_eq!(run(&mut f, &eth(0x0800, &bad)), 0);
        let mut bad6 = ipv6(5);
        bad6[0] = 0x40;
        assert_eq!(run(&mut f, &eth(0x86DD, &bad6)), 0);
        // A header cut short is passed: userspace counts it as ip_header_incomplete.
        assert_ne!(run(&mut f, &eth(0x0800, &ipv4(12, [10, 0, 0, 1])[..12])), 0);
        let c = f.counters_delta();
        assert_eq!((c.passed, c.non_ip, c.ignored), (3, 5, 0));
        let unusable = ipv4(12, [10, 0, 0, 1]);
        assert_eq!(run(&mut f, &eth(0x0800, &unusable)), 0);
        let c = f.counters_delta();
        assert_eq!((c.non_ip, c.ignored), (1, 0), "an ignored address in an unusable header is non-IP");
    }

    #[test]
    fn with_names_dns_responses_and_client_hellos_pass_whole_other_frames_trimmed() {
        if !privileged("with_names_dns_responses_and_client_hellos_pass_whole") {
            return;
        }
        use crate::names::build::{frame, tcp, udp};
        use crate::names::dns::build::{response, rr};
        use crate::names::tls::build::{hello, records};
        let keep = consts::DEFAULT_SNAPLEN;
        let recs: Vec<Vec<u8>> = (0..20u8).map(|i| rr(&[0xC0, 12], 1, &[192, 0, 2, i])).collect();
        let dns = response("many.example", &recs);
        let mut on = Filter::load(keep, false, true).unwrap();
        let mut off = Filter::load(keep, false, false).unwrap();
        for v6 in [false, true] {
            let resp = frame(v6, 17, &udp(53, &dns), &dns, 0);
            assert!(resp.len() > 2 * keep as usize);
            assert_eq!(run(&mut on, &resp), resp.len() as u32, "a DNS response over UDP (v6 {v6}) passes whole");
            assert_eq!(run(&mut off, &resp), keep, "names off: trimmed");
            let query = frame(v6, 17, &udp(40000, &dns), &dns, 0);
            assert_eq!(run(&mut on, &query), keep, "not from port 53: trimmed");
            let tcp_dns = [&(dns.len() as u16).to_be_bytes()[..], &dns].concat();
            let f = frame(v6, 6, &tcp(53, 1, 0x18), &tcp_dns, 0);
            assert_eq!(run(&mut on, &f), f.len() as u32, "DNS over TCP (v6 {v6})");
        }
        // A fragment of a DNS response is trimmed (userspace reads no fragment).
        let mut frag = frame(false, 17, &udp(53, &dns), &dns, 0);
        frag[20] = 0x20;
        assert_eq!(run(&mut on, &frag), keep);

        // A ClientHello in three segments: each passes whole, and once its first record is
        // whole the connection's next segment is trimmed again.
        let stream = records(&hello("pq.example", 1700), 16384);
        let cuts = [0, 700, 1400, stream.len()];
        for v6 in [false, true] {
            for w in cuts.windows(2) {
                let f = frame(v6, 6, &tcp(40000, 1000 + w[0] as u32, 0x18), &stream[w[0]..w[1]], 0);
                assert_eq!(run(&mut on, &f), f.len() as u32, "segment at {} (v6 {v6})", w[0]);
            }
            let after = frame(v6, 6, &tcp(40000, 1000 + stream.len() as u32, 0x18), &[0x17; 600], 0);
            assert_eq!(run(&mut on, &after), keep, "application data after the hello (v6 {v6})");
        }
        // Another connection's data, a ServerHello, an ACK: trimmed.
        let data = frame(false, 6, &tcp(40001, 5, 0x18), &[0x17; 600], 0);
        assert_eq!(run(&mut on, &data), keep);
        let mut server_hello = records(&hello("x.example", 1700), 16384);
        server_hello[5] = 2;
        let f = frame(false, 6, &tcp(443, 5, 0x18), &server_hello[..1400], 0);
        assert_eq!(run(&mut on, &f), keep);
        // With names off the hello is trimmed too.
        let f = frame(false, 6, &tcp(40002, 5, 0x18), &stream[..700], 0);
        assert_eq!(run(&mut off, &f), keep);
        let c = on.counters_delta();
        assert_eq!((c.passed, c.non_ip), (17, 0), "every frame passed and counted once");
    }
}
