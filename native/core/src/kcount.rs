//! Counting in the kernel (ebpf/count.c): the program parses and counts every frame it can into
//! BPF maps, and hands back (return value `TC_KC_RETURN`) the frames it cannot count exactly,
//! which userspace counts by `parse` as in ring mode. Each frame is counted once.
//!
//! Two buffers of maps: the program counts into the one `tc_kc_config.active` names, read once
//! per run. At an interval boundary [`KernelCounter::switch`] flips the index and then waits
//! until every run that began before the flip has ended ([`GracePeriod`]: an update of an
//! ARRAY_OF_MAPS, which `maybe_wait_bpf_programs()` makes wait for an RCU grace period). After
//! it no run writes the old buffer, which is then read whole and cleared: nothing of interval k
//! lands in k+1 and nothing is lost between reading and clearing.
//!
//! Why an index and not the maps themselves in map-in-maps: a buffer is three maps of different
//! types (the address hash, the flow hash, the counters array), and every inner map of an outer
//! map must match its template's type, key and value size, so a buffer would need three outer
//! maps switched by three updates; a run between two of them would count a frame's rows in one
//! interval and its totals in the other. One index read once per run switches all three at once.
//! (aya 0.13.1 has no map-in-map API either; aya 0.14.0 adds ArrayOfMaps, and needs Rust 1.87;
//! 0.15 and 0.16 need Rust 1.98, newer than this toolchain's 1.95.)
//!
//! Memory: the hash maps are preallocated (no allocation on the packet path) and shared by every
//! CPU with atomic adds, so memlock does not grow with the CPU count: two buffers of
//! `--max-keys` addresses, and with `--flows` two of `--max-keys` flows ([`KernelCounter::memlock`]).

use crate::filter::{fill_rules, prog_test_run, FilterError};
use crate::parse::Addr;
use crate::rules::Cidr;
use crate::table::{FlowCounters, FlowKey, IpCounters, OverflowSketch, Tables, Totals};
use aya::maps::{Array, HashMap, Map, MapData};
use aya::programs::SocketFilter;
use aya::{Ebpf, EbpfLoader};
use std::os::fd::{AsFd, AsRawFd};

pub mod consts {
    include!(concat!(env!("OUT_DIR"), "/count_consts.rs"));
}

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/count.o"));

/// BPF_PROG_TEST_RUN refuses (EINVAL) a frame shorter than an Ethernet header or longer than a
/// page less the skb's head- and tailroom (bpf_test_init() in net/bpf/test_run.c; 3,712 bytes
/// measured on x86-64 with 4 KiB pages): longer frames are fed by their first bytes, which hold
/// every header the count reads (a header past them is returned and counted in userspace).
pub const TEST_RUN_MIN: usize = 14;
pub const TEST_RUN_MAX: usize = 3712;

/// Whether BPF_PROG_TEST_RUN takes `frame`: besides the sizes above, it refuses a frame whose
/// ethertype (the Ethernet header's, as eth_type_trans() reads it) is IPv4 or IPv6 but which
/// ends before that fixed IP header (measured on 6.18: 0x0800 under 34 bytes, 0x86DD under 54).
/// The program would return such a frame anyway (its IP header is cut short): userspace counts
/// it, as `ip_header_incomplete`.
pub fn test_run_takes(frame: &[u8]) -> bool {
    if frame.len() < TEST_RUN_MIN {
        return false;
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => frame.len() >= 14 + 20,
        0x86DD => frame.len() >= 14 + 40,
        _ => true,
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Config {
    active: u32,
    flows: u32,
    ignore_enabled: u32,
    accept_enabled: u32,
    keep: u32,
    skip_outgoing: u32,
    data_at_mac: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct IpKey {
    addr: [u8; 16],
    fam: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct IpVal {
    tx_packets: u64,
    tx_bytes: u64,
    rx_packets: u64,
    rx_bytes: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FlowKeyC {
    src: [u8; 16],
    dst: [u8; 16],
    fam: u8,
    proto: u8,
    sport: u16,
    dport: u16,
    pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FlowVal {
    packets: u64,
    bytes: u64,
}

// SAFETY: plain repr(C) integers and byte arrays without implicit padding, the layouts of
// struct tc_kc_config, tc_kc_ip_key, tc_kc_ip_val, tc_kc_flow_key, tc_kc_flow_val in
// ebpf/tc_count.h.
unsafe impl aya::Pod for Config {}
unsafe impl aya::Pod for IpKey {}
unsafe impl aya::Pod for IpVal {}
unsafe impl aya::Pod for FlowKeyC {}
unsafe impl aya::Pod for FlowVal {}

/// What the program made of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Counted (or dropped by a CIDR rule) in the kernel.
    Counted,
    /// Not counted: userspace counts it.
    Returned,
}

/// What one buffer held when it was drained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Frames the program handed back (userspace counts them).
    pub returned: u64,
    /// Entries of the address map and of the flow map: the interval's fill (a map only grows
    /// while it counts), against `max_keys`.
    pub ip_entries: u64,
    pub flow_entries: u64,
}

/// Where a replay counts: `None` in userspace (ring mode), else in the kernel with these rules.
#[derive(Clone, Debug, Default)]
pub struct KernelCount {
    pub ignore: Vec<Cidr>,
    pub accept: Option<Vec<Cidr>>,
}

const BUFFERS: [(&str, &str, &str); 2] =
    [("tc_kc_ips_a", "tc_kc_flows_a", "tc_kc_counts_a"), ("tc_kc_ips_b", "tc_kc_flows_b", "tc_kc_counts_b")];

pub struct KernelCounter {
    ebpf: Ebpf,
    grace: GracePeriod,
    config: Config,
    max_keys: usize,
    flows: bool,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> FilterError {
    move |source| FilterError::Map { map, source }
}

impl KernelCounter {
    /// Loads the program with maps of `max_keys` entries (flow maps too with `flows`).
    pub fn load(max_keys: usize, flows: bool) -> Result<KernelCounter, FilterError> {
        let keys = max_keys.min(u32::MAX as usize) as u32;
        let flow_keys = if flows { keys } else { consts::KC_UNUSED_ENTRIES };
        let mut loader = EbpfLoader::new();
        for (ips, fl, _) in BUFFERS {
            loader.set_max_entries(ips, keys);
            loader.set_max_entries(fl, flow_keys);
        }
        let mut ebpf = loader.load(OBJECT).map_err(FilterError::load)?;
        let prog: &mut SocketFilter =
            ebpf.program_mut("tc_count").ok_or(FilterError::MissingProgram)?.try_into().map_err(FilterError::load)?;
        prog.load().map_err(FilterError::load)?;
        let mut k = KernelCounter { ebpf, grace: GracePeriod::new(), config: Config { flows: flows as u32, keep: consts::KC_RETURN, ..Default::default() }, max_keys, flows };
        k.write_config()?;
        Ok(k)
    }

    fn write_config(&mut self) -> Result<(), FilterError> {
        let mut arr: Array<&mut MapData, Config> =
            Array::try_from(self.ebpf.map_mut("tc_kc_config").expect("tc_kc_config map")).map_err(map_err("tc_kc_config"))?;
        arr.set(0, self.config, 0).map_err(map_err("tc_kc_config"))
    }

    /// Sets the CIDR rules (an empty ignore list and no accept list: every frame counts).
    pub fn set_rules(&mut self, ignore: &[Cidr], accept: Option<&[Cidr]>) -> Result<(), FilterError> {
        fill_rules(&mut self.ebpf, ignore, accept)?;
        self.config.ignore_enabled = (!ignore.is_empty()) as u32;
        self.config.accept_enabled = accept.is_some() as u32;
        self.write_config()
    }

    /// Runs the program once on `frame` (BPF_PROG_TEST_RUN): `frame` must hold
    /// `TEST_RUN_MIN..=TEST_RUN_MAX` bytes.
    pub fn test_run(&mut self, frame: &[u8]) -> std::io::Result<Outcome> {
        let prog: &mut SocketFilter = self.ebpf.program_mut("tc_count").unwrap().try_into().unwrap();
        let fd = prog.fd().map_err(std::io::Error::other)?.as_fd().as_raw_fd();
        let (ret, _) = prog_test_run(fd, frame, 1)?;
        Ok(if ret == 0 { Outcome::Counted } else { Outcome::Returned })
    }

    /// For live capture: a frame handed back keeps `snaplen` bytes in the ring; with
    /// `skip_outgoing` (loopback) frames the host sends are neither counted nor passed.
    pub fn set_live(&mut self, snaplen: u32, skip_outgoing: bool) -> Result<(), FilterError> {
        self.config.keep = snaplen.max(1);
        self.config.skip_outgoing = skip_outgoing as u32;
        self.config.data_at_mac = 1;
        self.write_config()
    }

    /// Attaches the program to a packet socket (SO_ATTACH_BPF).
    pub fn attach<T: AsFd>(&mut self, socket: T) -> Result<(), FilterError> {
        let prog: &mut SocketFilter = self.ebpf.program_mut("tc_count").unwrap().try_into().unwrap();
        prog.attach(socket).map_err(FilterError::attach)?;
        Ok(())
    }

    /// Switches the buffers (the program counts into the other one from now on), waits until no
    /// run still writes the old one, and adds what it counted into `into` before clearing it.
    pub fn switch(&mut self, into: &mut Tables) -> Result<Drained, FilterError> {
        let old = self.flip()?;
        self.drain(old, into)
    }

    /// The first half of `switch`: flips the index and waits until no run still writes the old
    /// buffer, whose number it returns for `drain`.
    pub fn flip(&mut self) -> Result<usize, FilterError> {
        let old = self.config.active as usize;
        self.config.active ^= 1;
        self.write_config()?;
        self.grace.wait().map_err(|source| FilterError::GracePeriod { source })?;
        Ok(old)
    }

    /// The second half of `switch`: reads buffer `buf` into `into` and clears it.
    pub fn drain(&mut self, buf: usize, into: &mut Tables) -> Result<Drained, FilterError> {
        let (ips_name, flows_name, counts_name) = BUFFERS[buf];
        let rows = take_map::<IpKey, IpVal>(&mut self.ebpf, ips_name, "tc_kc_ips")?;
        let ip_entries = rows.len() as u64;
        let mut flow_entries = 0;
        for (k, v) in rows {
            let a = Addr { fam: k.fam as u8, bytes: k.addr };
            into.add_ip(a, &IpCounters { tx_packets: v.tx_packets, tx_bytes: v.tx_bytes, rx_packets: v.rx_packets, rx_bytes: v.rx_bytes });
        }
        if self.flows {
            let mut rows = take_map::<FlowKeyC, FlowVal>(&mut self.ebpf, flows_name, "tc_kc_flows")?;
            flow_entries = rows.len() as u64;
            into.flows.reserve(rows.len().min(into.max_keys));
            // The program counted a flow's frames in its entry only (count.c count()): each
            // entry adds to its source's tx and its destination's rx. In source order a source's
            // flows come one after another and add to its row once: entry by entry, each add
            // was a cache miss in a table of many addresses.
            rows.sort_unstable_by(|a, b| (a.0.fam, a.0.src).cmp(&(b.0.fam, b.0.src)));
            let mut src = Run::default();
            let mut dst = Run::default();
            for (k, v) in rows {
                let key = FlowKey {
                    src: Addr { fam: k.fam, bytes: k.src },
                    dst: Addr { fam: k.fam, bytes: k.dst },
                    proto: k.proto,
                    sport: k.sport,
                    dport: k.dport,
                };
                src.add(into, key.src, &IpCounters { tx_packets: v.packets, tx_bytes: v.bytes, ..Default::default() });
                dst.add(into, key.dst, &IpCounters { rx_packets: v.packets, rx_bytes: v.bytes, ..Default::default() });
                into.add_flow(key, &FlowCounters { packets: v.packets, bytes: v.bytes });
            }
            src.end(into);
            dst.end(into);
        }
        let mut counts: Array<&mut MapData, u64> =
            Array::try_from(self.ebpf.map_mut(counts_name).expect("counts map")).map_err(map_err("tc_kc_counts"))?;
        let mut c = vec![0u64; consts::KC_COUNTS_ENTRIES as usize];
        for (i, slot) in c.iter_mut().enumerate() {
            *slot = counts.get(&(i as u32), 0).map_err(map_err("tc_kc_counts"))?;
            if *slot != 0 {
                counts.set(i as u32, 0, 0).map_err(map_err("tc_kc_counts"))?;
            }
        }
        let g = |s: u32| c[s as usize];
        let (v4, v6) = (g(consts::KC_IPV4_PACKETS), g(consts::KC_IPV6_PACKETS));
        into.totals.add(&Totals {
            frames: v4 + v6 + g(consts::KC_NON_IP),
            ip_packets: v4 + v6,
            ip_bytes: g(consts::KC_IPV4_BYTES) + g(consts::KC_IPV6_BYTES),
            ipv4_packets: v4,
            ipv4_bytes: g(consts::KC_IPV4_BYTES),
            ipv6_packets: v6,
            ipv6_bytes: g(consts::KC_IPV6_BYTES),
            non_ip: g(consts::KC_NON_IP),
            fragments_first: g(consts::KC_FRAGMENTS_FIRST),
            fragments_non_first: g(consts::KC_FRAGMENTS_NON_FIRST),
            ip_length_field_zero: g(consts::KC_IP_LENGTH_FIELD_ZERO),
            ignored: g(consts::KC_IGNORED),
            ..Default::default()
        });
        into.add_ip_overflow(
            &IpCounters {
                tx_packets: g(consts::KC_IP_OVF_TX_PACKETS),
                tx_bytes: g(consts::KC_IP_OVF_TX_BYTES),
                rx_packets: g(consts::KC_IP_OVF_RX_PACKETS),
                rx_bytes: g(consts::KC_IP_OVF_RX_BYTES),
            },
            &OverflowSketch::from_words(&c[consts::KC_SLOTS as usize..][..consts::KC_SKETCH_WORDS as usize]),
        );
        let flow_sketch = (consts::KC_SLOTS + consts::KC_SKETCH_WORDS) as usize;
        into.add_flow_overflow(
            &FlowCounters { packets: g(consts::KC_FLOW_OVF_PACKETS), bytes: g(consts::KC_FLOW_OVF_BYTES) },
            &OverflowSketch::from_words(&c[flow_sketch..][..consts::KC_SKETCH_WORDS as usize]),
        );
        Ok(Drained { returned: g(consts::KC_RETURNED), ip_entries, flow_entries })
    }

    /// Entries of each hash map (addresses, and flows with `--flows`).
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The kernel memory charged for the program's maps (memlock, bytes), from
    /// /proc/self/fdinfo of each map.
    pub fn memlock(&self) -> u64 {
        self.ebpf
            .maps()
            .filter_map(|(_, m)| {
                let data = match m {
                    Map::Array(d) | Map::HashMap(d) | Map::LpmTrie(d) => d,
                    _ => return None,
                };
                let fd = data.fd().as_fd().as_raw_fd();
                let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
                info.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse::<u64>().ok())
            })
            .sum()
    }
}

/// Consecutive adds to one address, summed before they reach the tables.
#[derive(Default)]
struct Run(Option<(Addr, IpCounters)>);

impl Run {
    fn add(&mut self, into: &mut Tables, a: Addr, c: &IpCounters) {
        match &mut self.0 {
            Some((at, sum)) if *at == a => sum.add(c),
            run => {
                if let Some((at, sum)) = run.replace((a, *c)) {
                    into.add_ip(at, &sum);
                }
            }
        }
    }

    fn end(&mut self, into: &mut Tables) {
        if let Some((at, sum)) = self.0.take() {
            into.add_ip(at, &sum);
        }
    }
}

/// The `batch` member of `union bpf_attr` (include/uapi/linux/bpf.h), for BPF_MAP_*_BATCH.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}
const BPF_MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;
/// Entries read per call (a hash bucket never holds this many: the kernel would say ENOSPC).
const BATCH: usize = 8192;

/// Reads and deletes every entry of the hash map `fd` with BPF_MAP_LOOKUP_AND_DELETE_BATCH
/// (`__htab_map_lookup_and_delete_batch()` in kernel/bpf/hashtab.c, since 5.6): one call per
/// 8,192 entries instead of three per entry (next key, lookup, delete). Only for a map no program
/// writes any more (after the grace period). Also says whether it took the whole map: not when
/// the kernel refuses the command (older kernels) or fails midway; the caller reads the rest
/// entry by entry.
fn take_all<K: Copy + Default, V: Copy + Default>(fd: std::os::fd::RawFd) -> (Vec<(K, V)>, bool) {
    let mut keys = vec![K::default(); BATCH];
    let mut values = vec![V::default(); BATCH];
    let mut out = Vec::new();
    let (mut token_in, mut token_out) = (0u32, 0u32);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &token_in as *const u32 as u64 },
            out_batch: &mut token_out as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH as u32,
            map_fd: fd as u32,
            ..Default::default()
        };
        // SAFETY: `attr` is the kernel's layout; the key, value and token buffers it points to
        // hold `count` entries of the map's key and value sizes and outlive the call.
        let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_AND_DELETE_BATCH, &mut attr as *mut BatchAttr, std::mem::size_of::<BatchAttr>()) };
        let err = (r < 0).then(std::io::Error::last_os_error);
        let n = (attr.count as usize).min(BATCH);
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        match err {
            None => {}
            // The end of the map: what this call took is in `out`.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return (out, true),
            Some(_) => return (out, false),
        }
        token_in = token_out;
        first = false;
    }
}

/// The descriptor of the hash map `name` of a loaded object.
/// Reads and clears hash map `name` (errors say `label`): in batches (take_all), then entry by
/// entry for what the batches left (a kernel without batch operations, or a failed batch).
fn take_map<K: aya::Pod + Default, V: aya::Pod + Default>(ebpf: &mut Ebpf, name: &str, label: &'static str) -> Result<Vec<(K, V)>, FilterError> {
    let (mut rows, whole) = take_all::<K, V>(hash_fd(ebpf, name));
    if !whole {
        let mut m: HashMap<&mut MapData, K, V> = HashMap::try_from(ebpf.map_mut(name).expect("a map of ebpf/count.c")).map_err(map_err(label))?;
        let rest: Vec<(K, V)> = m.iter().collect::<Result<_, _>>().map_err(map_err(label))?;
        for (k, _) in &rest {
            m.remove(k).map_err(map_err(label))?;
        }
        rows.extend(rest);
    }
    Ok(rows)
}

fn hash_fd(ebpf: &Ebpf, name: &str) -> std::os::fd::RawFd {
    match ebpf.map(name) {
        Some(Map::HashMap(d)) => d.fd().as_fd().as_raw_fd(),
        _ => panic!("{name} is a hash map of ebpf/count.c"),
    }
}

/// The kernel memory the counting program's maps take (memlock) for `max_keys` and `flows`,
/// computed as `htab_map_mem_usage()` in kernel/bpf/hashtab.c charges a preallocated hash map:
/// a 16-byte bucket per entry rounded up to a power of two, and per entry a `struct htab_elem`
/// (48 bytes on 64-bit) with the key and value each rounded up to 8 bytes. Both buffers, and the
/// small maps (counters arrays, config) besides; the few entries per CPU a map keeps spare are
/// left out, so the figure does not depend on the CPU count, as the maps do not (shared, not
/// per-CPU). `KernelCounter::memlock` reads what the kernel actually charged.
pub fn map_memory(max_keys: usize, flows: bool) -> u64 {
    const BUCKET: u64 = 16;
    const ELEM: u64 = 48;
    let r8 = |n: usize| (n as u64).div_ceil(8) * 8;
    let hash = |entries: u64, key: usize, value: usize| BUCKET * entries.next_power_of_two() + entries * (ELEM + r8(key) + r8(value));
    let keys = max_keys as u64;
    let flow_keys = if flows { keys } else { consts::KC_UNUSED_ENTRIES as u64 };
    let ip = hash(keys, std::mem::size_of::<IpKey>(), std::mem::size_of::<IpVal>());
    let flow = hash(flow_keys, std::mem::size_of::<FlowKeyC>(), std::mem::size_of::<FlowVal>());
    let counts = consts::KC_COUNTS_ENTRIES as u64 * 8;
    2 * (ip + flow + counts)
}

/// A one-slot BPF_MAP_TYPE_ARRAY_OF_MAPS and the array it points at, made with raw bpf(2) calls
/// (aya 0.13 creates no outer map): updating its slot from userspace returns only once every
/// BPF program run that began before it has ended. `maybe_wait_bpf_programs()` in
/// kernel/bpf/syscall.c calls `synchronize_rcu()` after an update of an ARRAY_OF_MAPS or
/// HASH_OF_MAPS (since 5.0; 6.9 also waits for sleepable programs); a socket filter runs inside
/// an RCU read-side section. If the kernel refuses the map, `membarrier(MEMBARRIER_CMD_GLOBAL)`
/// waits the same way (kernel/sched/membarrier.c: `synchronize_rcu()` with more than one CPU
/// online; refused on nohz_full kernels), as libbpf's selftests' kern_sync_rcu() does.
struct GracePeriod {
    outer: Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
}

/// The leading fields of `union bpf_attr` for BPF_MAP_CREATE and BPF_MAP_UPDATE_ELEM
/// (include/uapi/linux/bpf.h), the rest zero.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    _rest: [u32; 14],
}

#[repr(C)]
#[derive(Default)]
struct MapUpdateAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

fn map_create(map_type: u32, inner_map_fd: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let attr = MapCreateAttr { map_type, key_size: 4, value_size: 4, max_entries: 1, inner_map_fd, ..Default::default() };
    // SAFETY: `attr` is the kernel's layout (zero past the fields set) and outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, &attr as *const MapCreateAttr, std::mem::size_of::<MapCreateAttr>()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd the kernel just gave us and nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

impl GracePeriod {
    fn new() -> GracePeriod {
        let outer = map_create(BPF_MAP_TYPE_ARRAY, 0)
            .and_then(|inner| map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, inner.as_raw_fd() as u32).map(|outer| (outer, inner)))
            .ok();
        GracePeriod { outer }
    }

    /// Waits until every BPF program run that began before this call has ended.
    fn wait(&self) -> std::io::Result<()> {
        if let Some((outer, inner)) = &self.outer {
            let key = 0u32;
            let value = inner.as_raw_fd() as u32;
            let attr = MapUpdateAttr { map_fd: outer.as_raw_fd() as u32, key: &key as *const u32 as u64, value: &value as *const u32 as u64, ..Default::default() };
            // SAFETY: `attr` and the key and value it points to outlive the call.
            let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_UPDATE_ELEM, &attr as *const MapUpdateAttr, std::mem::size_of::<MapUpdateAttr>()) };
            if r == 0 {
                return Ok(());
            }
        }
        const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;
        // SAFETY: membarrier takes two integers and touches no memory of ours.
        let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0 as libc::c_long) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::tests::{eth, pppoe};
    use crate::parse::{parse_frame, Parsed};
    use crate::rules::parse_cidr_text;

    fn privileged(name: &str) -> bool {
        crate::testing::privileged(name, "bpf()")
    }

    /// An Ethernet frame: UDP `sport` -> 53 from 10.0.0.`src` to 10.0.0.2, Total Length `total`.
    fn udp4(src: u8, sport: u16, total: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, src, 10, 0, 0, 2];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
        eth(0x0800, &p)
    }

    fn drained(k: &mut KernelCounter, flows: bool) -> (Tables, u64) {
        let mut t = Tables::new(k.max_keys(), flows);
        let returned = k.switch(&mut t).unwrap().returned;
        (t, returned)
    }

    #[test]
    fn the_counting_program_passes_the_verifier_of_the_running_kernel() {
        if !privileged("the_counting_program_passes_the_verifier") {
            return;
        }
        for flows in [false, true] {
            let mut k = KernelCounter::load(1000, flows).expect("the verifier accepts ebpf/count.c");
            assert_eq!(k.test_run(&udp4(1, 1000, 28)).unwrap(), Outcome::Counted);
            let (t, returned) = drained(&mut k, flows);
            assert_eq!((t.totals.frames, t.totals.ip_packets, t.totals.ip_bytes, returned), (1, 1, 28, 0));
            assert_eq!(t.flows.len(), flows as usize);
        }
    }

    #[test]
    fn what_the_kernel_cannot_read_whole_goes_back_to_userspace_uncounted() {
        if !privileged("what_the_kernel_cannot_read_whole_goes_back") {
            return;
        }
        let mut k = KernelCounter::load(1000, true).unwrap();
        // Ports cut short (the frame ends inside the UDP header): parse.rs gives ports 0, the
        // kernel cannot tell that from data outside its reach, so it returns the frame.
        let f = udp4(1, 1000, 28);
        assert_eq!(k.test_run(&f[..14 + 22]).unwrap(), Outcome::Returned);
        // Thirteen VLAN tags: past the program's TC_KC_MAX_STEPS, within parse.rs's 32.
        let mut deep = Vec::new();
        for _ in 0..13 {
            deep.extend_from_slice(&[0, 1, 0x81, 0x00]);
        }
        deep[13 * 4 - 2..].copy_from_slice(&[0x08, 0x00]);
        deep.extend_from_slice(&udp4(1, 1000, 28)[14..]);
        let deep = eth(0x8100, &deep);
        assert!(matches!(parse_frame(1, &deep), Some(Parsed::Ip(_))));
        assert_eq!(k.test_run(&deep).unwrap(), Outcome::Returned);
        // Eleven are within it; PPPoE and MPLS pseudowires too.
        let mut ok = deep[..14].to_vec();
        ok.extend_from_slice(&deep[14 + 2 * 4..]);
        assert_eq!(k.test_run(&ok).unwrap(), Outcome::Counted);
        assert_eq!(k.test_run(&pppoe(&[0x8100], 0x0021, &udp4(1, 1, 28)[14..])).unwrap(), Outcome::Counted);
        let mut pw = vec![0, 0, 0x10, 64, 0, 0, 0x21, 64, 0, 0, 0, 0]; // two labels, control word
        pw.extend_from_slice(&udp4(3, 7, 33));
        assert_eq!(k.test_run(&eth(0x8847, &pw)).unwrap(), Outcome::Counted);
        // An IPv6 Fragment header cut after 4 of its 8 bytes: parse.rs stops the walk there
        // (protocol 44, ports 0); the program returns the frame rather than read on.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        v6.extend_from_slice(&[0xfd; 32]);
        v6.extend_from_slice(&[17, 0, 0, 0x40]);
        let cut = eth(0x86DD, &v6);
        assert!(matches!(parse_frame(1, &cut), Some(Parsed::Ip(p)) if p.proto == 44));
        assert_eq!(k.test_run(&cut).unwrap(), Outcome::Returned);
        let (t, returned) = drained(&mut k, true);
        assert_eq!(returned, 3);
        assert_eq!((t.totals.frames, t.totals.ip_packets, t.totals.ip_bytes), (3, 3, 28 + 28 + 33));
    }

    #[test]
    fn a_full_map_counts_in_the_overflow_row_and_the_totals_balance() {
        if !privileged("a_full_map_counts_in_the_overflow_row") {
            return;
        }
        let mut k = KernelCounter::load(8, true).unwrap();
        // 200 sources, 3 ports each: 201 addresses, 600 flows for maps of 8.
        for src in 1..=200u8 {
            for sport in 0..3 {
                assert_eq!(k.test_run(&udp4(src, 1000 + sport, 100)).unwrap(), Outcome::Counted);
            }
        }
        let (t, _) = drained(&mut k, true);
        assert_eq!(t.ips.len(), 8);
        assert_eq!(t.flows.len(), 8);
        let tx: u64 = t.ips.values().map(|c| c.tx_packets).sum::<u64>() + t.ip_overflow.tx_packets;
        let rx: u64 = t.ips.values().map(|c| c.rx_packets).sum::<u64>() + t.ip_overflow.rx_packets;
        let fl: u64 = t.flows.values().map(|c| c.bytes).sum::<u64>() + t.flow_overflow.bytes;
        assert_eq!((tx, rx, fl, t.totals.ip_packets), (600, 600, 60_000, 600));
        let (ipo, flo) = (t.ip_overflow_sketch.estimate(), t.flow_overflow_sketch.estimate());
        assert!((190..=197).contains(&ipo), "about 193 addresses overflowed: {ipo}");
        assert!((580..=600).contains(&flo), "about 592 flows overflowed: {flo}");
    }

    #[test]
    fn a_switch_ends_the_interval_the_next_buffer_starts_empty_and_the_rules_hold() {
        if !privileged("a_switch_ends_the_interval") {
            return;
        }
        let mut k = KernelCounter::load(100, false).unwrap();
        assert!(k.grace.outer.is_some(), "the running kernel makes the ARRAY_OF_MAPS the switch waits on");
        let t0 = std::time::Instant::now();
        k.grace.wait().unwrap();
        eprintln!("one grace period: {:?}", t0.elapsed());
        let ignore = parse_cidr_text("test", "10.0.0.9/32\n").unwrap();
        k.set_rules(&ignore, None).unwrap();
        for i in 0..5u8 {
            k.test_run(&udp4(1 + i % 2, 1, 40)).unwrap();
        }
        k.test_run(&udp4(9, 1, 40)).unwrap();
        k.test_run(&eth(0x0806, &[0; 28])).unwrap();
        let (a, _) = drained(&mut k, false);
        assert_eq!((a.totals.frames, a.totals.ip_packets, a.totals.non_ip, a.totals.ignored), (6, 5, 1, 1));
        assert_eq!(a.ips.len(), 2, "10.0.0.1 and 10.0.0.2; the ignored 10.0.0.9 is not counted");
        // The other buffer counts now; the drained one was cleared, so it starts empty next time.
        k.test_run(&udp4(7, 1, 60)).unwrap();
        let (b, _) = drained(&mut k, false);
        assert_eq!((b.totals.frames, b.totals.ip_bytes, b.ips.len()), (1, 60, 2));
        let (c, _) = drained(&mut k, false);
        assert_eq!((c.totals.frames, c.ips.len()), (0, 0));
    }

    /// Every frame the program counts, it counts as parse.rs and the tables do: corpus frames of
    /// every encapsulation cut at every length up to 130 bytes, and with header bytes flipped
    /// (seeded), counted once in the kernel (those it takes) and once in userspace.
    #[test]
    fn cut_and_flipped_frames_count_alike_in_the_kernel_and_in_userspace() {
        if !privileged("cut_and_flipped_frames_count_alike") {
            return;
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pcaps");
        if !dir.join("MANIFEST.md").exists() {
            eprintln!("skipped: no capture corpus at {}", dir.display());
            return;
        }
        let mut frames = Vec::new();
        for name in ["tcpreplay_test.pcap", "ndpi_dns_fragmented.pcap", "zeek_ipv6-http-atomic-frag.pcap", "tcpdump_ipv6-routing-header.pcap", "zeek_vlan-qinqinq.pcap", "packetnet_802.1ad_vlan_ipv4.pcap", "ndpi_sctp_bigendian.cap", "libtrace_vlan.pcap"] {
            let data = std::fs::read(dir.join(name)).unwrap();
            let mut r = pcap_file::pcap::PcapReader::new(&data[..]).unwrap();
            let mut n = 0;
            while let Some(Ok(p)) = r.next_packet() {
                if n < 40 {
                    frames.push(p.data.to_vec());
                }
                n += 1;
            }
        }
        let mut seed = 0x2545_f491u32;
        let mut cases = Vec::new();
        for f in &frames {
            for len in 14..=f.len().min(130) {
                cases.push(f[..len].to_vec());
            }
            for _ in 0..20 {
                let mut g = f.clone();
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let at = 12 + (seed as usize % 60).min(g.len().saturating_sub(13));
                g[at] ^= (seed >> 8) as u8 | 1;
                cases.push(g);
            }
        }
        for flows in [true, false] {
            let mut k = KernelCounter::load(1_000_000, flows).unwrap();
            let mut user = Tables::new(1_000_000, flows);
            let mut counted = 0;
            for c in &cases {
                if !test_run_takes(c) {
                    continue;
                }
                if k.test_run(&c[..c.len().min(TEST_RUN_MAX)]).unwrap() == Outcome::Counted {
                    user.count(&parse_frame(1, c).unwrap());
                    counted += 1;
                }
            }
            let (kern, _) = drained(&mut k, flows);
            assert!(counted * 2 > cases.len(), "the kernel counted {counted} of {} cases", cases.len());
            assert_eq!(kern.totals, user.totals, "flows {flows}");
            let sorted = |t: &Tables| {
                let mut ips: Vec<_> = t.ips.iter().map(|(a, c)| (*a, *c)).collect();
                ips.sort_by_key(|x| x.0);
                let mut fl: Vec<_> = t.flows.iter().map(|(a, c)| (*a, c.packets, c.bytes)).collect();
                fl.sort_by_key(|x| x.0);
                (ips, fl)
            };
            assert!(sorted(&kern) == sorted(&user), "rows differ (flows {flows})");
        }
    }

    /// The figure docs/recording.md gives for draining full maps (no threshold: a measurement).
    #[test]
    fn draining_full_maps_of_the_default_size() {
        if !privileged("draining_full_maps") {
            return;
        }
        let keys = crate::options::DEFAULT_MAX_KEYS;
        let mut k = KernelCounter::load(keys, true).unwrap();
        for i in 0..keys as u32 {
            let mut f = udp4(1, 1000, 28);
            f[14 + 12..14 + 16].copy_from_slice(&(0x0a00_0000 | (i + 16)).to_be_bytes());
            assert_eq!(k.test_run(&f).unwrap(), Outcome::Counted);
        }
        let mut t = Tables::new(keys, true);
        let t0 = std::time::Instant::now();
        let old = k.flip().unwrap();
        let flipped = t0.elapsed();
        let d = k.drain(old, &mut t).unwrap();
        eprintln!("switch of full maps ({} addresses, {} flows): flip and grace period {:?}, drain {:?}", d.ip_entries, d.flow_entries, flipped, t0.elapsed() - flipped);
        // Each frame counted in its flow's entry only; the addresses come from the flows.
        assert_eq!((d.ip_entries, d.flow_entries), (0, keys as u64));
        assert_eq!((t.totals.ip_packets, t.ips.len(), t.flows.len()), (keys as u64, keys, keys));
    }

    #[test]
    fn map_memory_at_the_defaults_and_at_a_million_keys_with_flows() {
        if !privileged("map_memory") {
            return;
        }
        for (keys, flows) in [(crate::options::DEFAULT_MAX_KEYS, false), (crate::options::DEFAULT_MAX_KEYS, true), (1_000_000, true)] {
            let k = KernelCounter::load(keys, flows).unwrap();
            let m = k.memlock();
            let est = map_memory(keys, flows);
            eprintln!("map memlock, --max-keys {keys}{}: {:.1} MiB (computed {:.1} MiB)", if flows { " --flows" } else { "" }, m as f64 / (1 << 20) as f64, est as f64 / (1 << 20) as f64);
            assert!(m > 0);
            // The computed figure (the start line, --help) is what the kernel charges, within 2%.
            assert!((est as f64 - m as f64).abs() < 0.02 * m as f64, "computed {est}, charged {m}");
        }
    }
}
