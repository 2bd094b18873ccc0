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
}
// SAFETY: plain repr(C) integers, the layout of struct tc_config in ebpf/tc_filter.h.
unsafe impl aya::Pod for Config {}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("loading the eBPF socket filter needs CAP_BPF (or CAP_SYS_ADMIN); run as root, grant it, or pass --no-ebpf to filter in userspace: {0}")]
    Permission(String),
    #[error("loading the eBPF socket filter failed: {0}")]
    Load(String),
    #[error("attaching the eBPF socket filter (SO_ATTACH_BPF) failed: {0}")]
    Attach(String),
    #[error("updating the eBPF filter map {map} failed: {source}")]
    Map { map: &'static str, source: aya::maps::MapError },
    #[error("too many CIDRs in {what}: {n} (at most {max})")]
    TooMany { what: &'static str, n: usize, max: u32 },
}

fn is_permission(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if s.contains("Operation not permitted") || s.contains("Permission denied") || s.contains("EPERM") {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        s.push_str(": ");
        s.push_str(&err.to_string());
        cur = err.source();
    }
    s
}

pub struct Filter {
    ebpf: Ebpf,
    last: [u64; consts::CNT_SLOTS as usize],
    attached: usize,
}

impl Filter {
    /// Loads the program and sets its configuration. `raw_ip`: the device has no link header.
    pub fn load(snaplen: u32, raw_ip: bool) -> Result<Filter, FilterError> {
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| {
            if is_permission(&e) { FilterError::Permission(chain(&e)) } else { FilterError::Load(chain(&e)) }
        })?;
        let prog: &mut SocketFilter = ebpf
            .program_mut("tc_filter")
            .ok_or_else(|| FilterError::Load("program tc_filter missing from the object".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| FilterError::Load(chain(&e)))?;
        prog.load().map_err(|e| if is_permission(&e) { FilterError::Permission(chain(&e)) } else { FilterError::Load(chain(&e)) })?;
        let mut f = Filter { ebpf, last: [0; consts::CNT_SLOTS as usize], attached: 0 };
        f.set_config(Config {
            snaplen,
            link: if raw_ip { consts::LINK_RAW_IP } else { consts::LINK_ETHERNET },
            ignore_enabled: 0,
            accept_enabled: 0,
        })?;
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
        prog.attach(socket).map_err(|e| if is_permission(&e) { FilterError::Permission(chain(&e)) } else { FilterError::Attach(chain(&e)) })?;
        self.attached += 1;
        Ok(())
    }

    pub fn attached_sockets(&self) -> usize {
        self.attached
    }

    fn fill<const N: usize>(&mut self, map: &'static str, cidrs: &[Cidr], fam: u8) -> Result<(), FilterError> {
        let mut trie: LpmTrie<&mut MapData, [u8; N], u8> =
            LpmTrie::try_from(self.ebpf.map_mut(map).expect("lpm map")).map_err(|source| FilterError::Map { map, source })?;
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

    /// Replaces the CIDR maps without re-attaching (SIGHUP reload).
    pub fn set_rules(&mut self, ignore: &[Cidr], accept: Option<&[Cidr]>) -> Result<(), FilterError> {
        self.fill::<4>("tc_ignore_v4", ignore, 4)?;
        self.fill::<16>("tc_ignore_v6", ignore, 6)?;
        let empty: [Cidr; 0] = [];
        self.fill::<4>("tc_accept_v4", accept.unwrap_or(&empty), 4)?;
        self.fill::<16>("tc_accept_v6", accept.unwrap_or(&empty), 6)?;
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
