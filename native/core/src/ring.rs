//! AF_PACKET sockets with a TPACKET_V3 RX ring, joined to a PACKET_FANOUT group.
//!
//! Kernel references: packet(7); Documentation/networking/packet_mmap.rst (TPACKET_V3 block
//! layout and the block_status hand-over); include/uapi/linux/if_packet.h (structs and flags);
//! net/packet/af_packet.c (fanout_add: a group joined with another mode or device is EINVAL).

use crate::batch::RingStats;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};

/// Block retire timeout: a partly filled block is handed to userspace after this many ms.
pub const BLOCK_TIMEOUT_MS: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("{0}")]
    BadOption(String),
    #[error("interface {0:?} does not exist (see `ip link`)")]
    NoInterface(String),
    #[error("opening an AF_PACKET socket needs CAP_NET_RAW; run as root or grant CAP_NET_RAW: socket(AF_PACKET) failed")]
    Permission {
        #[source]
        source: std::io::Error,
    },
    #[error("{call} failed")]
    Sys {
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The bound interface was deleted (its index no longer names one): the socket will never
    /// receive again.
    #[error("interface index {ifindex} was removed")]
    InterfaceRemoved {
        ifindex: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("PACKET_FANOUT group {group} is already in use on this host (by another capture, with another mode or interface); choose another --fanout-group")]
    FanoutTaken { group: u16 },
}

#[derive(Clone, Copy, Debug)]
pub struct RingConfig {
    pub block_size: u32,
    pub block_count: u32,
    pub frame_size: u32,
}

impl RingConfig {
    /// Checks the ring shape with the kernel's rules (packet_set_ring in af_packet.c), with
    /// messages that say what to change.
    pub fn validate(&self) -> Result<(), RingError> {
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
        let hdr = (std::mem::size_of::<libc::tpacket3_hdr>() as u32 + 15) & !15;
        let (b, n, f) = (self.block_size, self.block_count, self.frame_size);
        let bad = |m: String| Err(RingError::BadOption(m));
        if b == 0 || b % page != 0 {
            return bad(format!("--block-size {b} must be a positive multiple of the page size {page}"));
        }
        if !b.is_power_of_two() {
            return bad(format!("--block-size {b} must be a power of two (e.g. {})", b.next_power_of_two()));
        }
        if b > (1 << 30) {
            return bad(format!("--block-size {b} is larger than 1 GiB"));
        }
        if f < hdr + 64 || f % 16 != 0 {
            return bad(format!("--frame-size {f} must be a multiple of 16 and at least {}", hdr + 64));
        }
        if f > b {
            return bad(format!("--frame-size {f} must not exceed --block-size {b}"));
        }
        if n == 0 {
            return bad("--block-count must be at least 1".into());
        }
        let total = b as u64 * n as u64;
        if total > (8u64 << 30) {
            return bad(format!("the ring of --block-size {b} x --block-count {n} = {total} bytes per worker exceeds 8 GiB"));
        }
        if (b / f) as u64 * n as u64 > u32::MAX as u64 {
            return bad("too many frames in the ring; lower --block-count".into());
        }
        Ok(())
    }
}

fn sys(call: &'static str) -> RingError {
    RingError::Sys { call, source: std::io::Error::last_os_error() }
}

fn setsockopt<T>(fd: i32, level: i32, opt: i32, val: &T, call: &'static str) -> Result<(), RingError> {
    let r = unsafe { libc::setsockopt(fd, level, opt, val as *const T as *const libc::c_void, std::mem::size_of::<T>() as u32) };
    if r != 0 {
        return Err(sys(call));
    }
    Ok(())
}

pub fn ifindex(name: &str) -> Result<u32, RingError> {
    let c = std::ffi::CString::new(name).map_err(|_| RingError::NoInterface(name.to_string()))?;
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(RingError::NoInterface(name.to_string()));
    }
    Ok(i)
}

/// Whether an interface has this index (if_indextoname(3)).
fn index_exists(ifindex: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
}

/// ARPHRD_* type of the interface (include/uapi/linux/if_arp.h), from sysfs.
pub fn arphrd(name: &str) -> u32 {
    std::fs::read_to_string(format!("/sys/class/net/{name}/type")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1)
}

pub const ARPHRD_ETHER: u32 = 1;
pub const ARPHRD_LOOPBACK: u32 = 772;

pub struct Ring {
    fd: OwnedFd,
    map: *mut u8,
    size: usize,
    block_size: usize,
    block_count: usize,
    cur: usize,
    /// The interface `bind` bound to (0: not bound).
    ifindex: std::cell::Cell<u32>,
    /// The socket reported the interface down (ENETDOWN): it may have been deleted.
    down: std::cell::Cell<bool>,
}

// SAFETY: the mapping is owned by this Ring and used by one thread at a time.
unsafe impl Send for Ring {}

impl AsFd for Ring {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One frame of a ring block.
pub struct Frame<'a> {
    pub ts_ns: u64,
    pub data: &'a [u8],
    /// sockaddr_ll.sll_pkttype (PACKET_HOST, PACKET_OUTGOING, ...)
    pub pkttype: u8,
}

impl Ring {
    /// Creates the socket (protocol 0: receives nothing until bound, so no frame reaches the
    /// ring before the filter is attached) and maps its TPACKET_V3 ring.
    pub fn open(cfg: &RingConfig) -> Result<Ring, RingError> {
        cfg.validate()?;
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EACCES) {
                return Err(RingError::Permission { source: e });
            }
            return Err(RingError::Sys { call: "socket(AF_PACKET, SOCK_RAW)", source: e });
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let v: i32 = libc::tpacket_versions::TPACKET_V3 as i32;
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VERSION, &v, "setsockopt PACKET_VERSION TPACKET_V3")?;
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_count,
            tp_frame_size: cfg.frame_size,
            tp_frame_nr: (cfg.block_size / cfg.frame_size) * cfg.block_count,
            tp_retire_blk_tov: BLOCK_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req, "setsockopt PACKET_RX_RING")?;
        let size = cfg.block_size as usize * cfg.block_count as usize;
        let map = unsafe { libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_POPULATE, raw, 0) };
        if map == libc::MAP_FAILED {
            return Err(sys("mmap of the TPACKET_V3 ring"));
        }
        Ok(Ring { fd, map: map as *mut u8, size, block_size: cfg.block_size as usize, block_count: cfg.block_count as usize, cur: 0, ifindex: std::cell::Cell::new(0), down: std::cell::Cell::new(false) })
    }

    /// Binds to the interface for every protocol (ETH_P_ALL), both directions.
    pub fn bind(&self, ifindex: u32) -> Result<(), RingError> {
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        let r = unsafe {
            libc::bind(self.fd.as_raw_fd(), &sll as *const libc::sockaddr_ll as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32)
        };
        if r != 0 {
            return Err(sys("bind(AF_PACKET)"));
        }
        self.ifindex.set(ifindex);
        Ok(())
    }

    fn fanout_arg(group: u16, mode: u32) -> u32 {
        group as u32 | (mode << 16)
    }

    /// Joins `group` in hash mode. Not with PACKET_FANOUT_FLAG_DEFRAG: that flag reassembles
    /// IPv4 fragments before the group's sockets see them (ip_check_defrag() in
    /// packet_rcv_fanout(), net/packet/af_packet.c), so a datagram sent as three fragments was
    /// counted as one packet of the reassembled length, where the counting rules count each
    /// fragment by its own IP header. Each worker counts the frames it gets, so no datagram needs
    /// its fragments on one worker.
    pub fn join_fanout(&self, group: u16) -> Result<(), RingError> {
        let arg = Self::fanout_arg(group, libc::PACKET_FANOUT_HASH);
        setsockopt(self.fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_FANOUT, &arg, "setsockopt PACKET_FANOUT").map_err(|e| match e {
            RingError::Sys { source, .. } if source.raw_os_error() == Some(libc::EINVAL) || source.raw_os_error() == Some(libc::ENOSPC) => {
                RingError::FanoutTaken { group }
            }
            e => e,
        })
    }

    /// Tells whether a fanout group with this id already exists (made by another process), by
    /// trying to create it with a different mode from a throw-away socket bound to `ifindex`:
    /// the kernel refuses (EINVAL) when the id is taken, and otherwise the probe group vanishes
    /// with the probe socket.
    pub fn fanout_group_taken(group: u16, ifindex: u32) -> Result<bool, RingError> {
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(RingError::Permission { source: std::io::Error::last_os_error() });
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        // An unused ethertype: the probe socket receives nothing.
        sll.sll_protocol = 0x88b5u16.to_be();
        sll.sll_ifindex = ifindex as i32;
        if unsafe { libc::bind(raw, &sll as *const libc::sockaddr_ll as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_ll>() as u32) } != 0 {
            return Err(sys("bind(AF_PACKET) of the fanout probe"));
        }
        let arg = Self::fanout_arg(group, libc::PACKET_FANOUT_LB);
        let r = unsafe { libc::setsockopt(raw, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg as *const u32 as *const libc::c_void, 4) };
        drop(fd);
        Ok(r != 0)
    }

    /// Waits up to `timeout_ms` for the current block to be ready.
    pub fn wait(&self, timeout_ms: i32) -> Result<(), RingError> {
        if self.ready() {
            return Ok(());
        }
        let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN | libc::POLLERR, revents: 0 };
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(RingError::Sys { call: "poll", source: e });
            }
        }
        if r > 0 && p.revents & libc::POLLERR != 0 {
            let err = self.take_error();
            if err == libc::ENETDOWN || err == libc::ENODEV {
                self.down.set(true);
            }
        }
        // Deleting an interface takes it down first (ENETDOWN, NETDEV_DOWN in packet_notifier,
        // net/packet/af_packet.c) and unlists it after (unregister_netdevice_many_notify in
        // net/core/dev.c), with no second error; so once down, each wait asks whether the index
        // still names an interface. A down interface keeps it, and the socket waits on.
        let ifindex = self.ifindex.get();
        if self.down.get() && ifindex != 0 && !index_exists(ifindex) {
            return Err(RingError::InterfaceRemoved { ifindex, source: std::io::Error::from_raw_os_error(libc::ENODEV) });
        }
        Ok(())
    }

    /// Reads and so clears the socket's pending error. The kernel sets ENETDOWN when the
    /// interface is down at bind or goes down later (packet_do_bind, packet_notifier in
    /// net/packet/af_packet.c), and poll reports POLLERR until it is read: left unread, every
    /// wait would return at once and the worker would spin while the interface is down. The
    /// socket stays bound and receives again once the interface is up.
    fn take_error(&self) -> i32 {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        unsafe { libc::getsockopt(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR, &mut err as *mut libc::c_int as *mut libc::c_void, &mut len) };
        err
    }

    fn block(&self, i: usize) -> *mut u8 {
        unsafe { self.map.add(i * self.block_size) }
    }

    /// The header of block `i`: `struct tpacket_block_desc` with its `tpacket_hdr_v1`
    /// (include/uapi/linux/if_packet.h), shared with the kernel, which hands the block over by
    /// `block_status`.
    fn desc(&self, i: usize) -> *mut libc::tpacket_block_desc {
        self.block(i) as *mut libc::tpacket_block_desc
    }

    fn status_ptr(&self, i: usize) -> *mut u32 {
        // SAFETY: the block lies inside the mapping; only the pointer is formed, no reference.
        unsafe { std::ptr::addr_of_mut!((*self.desc(i)).hdr.bh1.block_status) }
    }

    pub(crate) fn ready(&self) -> bool {
        let st = unsafe { std::ptr::read_volatile(self.status_ptr(self.cur)) };
        st & libc::TP_STATUS_USER != 0
    }

    /// Blocks in the ring.
    pub fn block_count(&self) -> usize {
        self.block_count
    }

    /// Hands every frame of the current block to `f` if the block is ready, returns it to the
    /// kernel and moves on. Returns whether a block was processed.
    pub fn next_block<F: FnMut(&Frame)>(&mut self, mut f: F) -> bool {
        if !self.ready() {
            return false;
        }
        fence(Ordering::Acquire);
        let base = self.block(self.cur);
        unsafe {
            let bh1 = std::ptr::addr_of!((*self.desc(self.cur)).hdr.bh1);
            let num_pkts = std::ptr::read(std::ptr::addr_of!((*bh1).num_pkts)) as usize;
            let first = std::ptr::read(std::ptr::addr_of!((*bh1).offset_to_first_pkt)) as usize;
            let mut off = first;
            let hdr_len = (std::mem::size_of::<libc::tpacket3_hdr>() + 15) & !15;
            for _ in 0..num_pkts {
                if off + std::mem::size_of::<libc::tpacket3_hdr>() > self.block_size {
                    break;
                }
                let h = &*(base.add(off) as *const libc::tpacket3_hdr);
                let mac = h.tp_mac as usize;
                let snap = h.tp_snaplen as usize;
                if off + mac + snap <= self.block_size {
                    let sll = &*(base.add(off + hdr_len) as *const libc::sockaddr_ll);
                    let frame = Frame {
                        ts_ns: h.tp_sec as u64 * 1_000_000_000 + h.tp_nsec as u64,
                        data: std::slice::from_raw_parts(base.add(off + mac), snap),
                        pkttype: sll.sll_pkttype,
                    };
                    f(&frame);
                }
                if h.tp_next_offset == 0 {
                    break;
                }
                off += h.tp_next_offset as usize;
            }
        }
        fence(Ordering::Release);
        unsafe { std::ptr::write_volatile(self.status_ptr(self.cur), libc::TP_STATUS_KERNEL) };
        self.cur = (self.cur + 1) % self.block_count;
        true
    }

    /// Kernel statistics since the previous call (PACKET_STATISTICS resets them on read).
    pub fn stats(&self) -> RingStats {
        let mut s = libc::tpacket_stats_v3 { tp_packets: 0, tp_drops: 0, tp_freeze_q_cnt: 0 };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as u32;
        let r = unsafe {
            libc::getsockopt(self.fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_STATISTICS, &mut s as *mut _ as *mut libc::c_void, &mut len)
        };
        if r != 0 {
            return RingStats::default();
        }
        RingStats { packets: s.tp_packets as u64, drops: s.tp_drops as u64, freeze_q_cnt: s.tp_freeze_q_cnt as u64 }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.map as *mut libc::c_void, self.size) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{DEFAULT_BLOCK_COUNT, DEFAULT_BLOCK_SIZE, DEFAULT_FRAME_SIZE};

    #[test]
    fn the_block_header_fields_sit_where_the_kernel_puts_them() {
        // include/uapi/linux/if_packet.h: version, offset_to_priv, then the 8-aligned union
        // whose tpacket_hdr_v1 starts with block_status, num_pkts, offset_to_first_pkt.
        let d = std::mem::MaybeUninit::<libc::tpacket_block_desc>::uninit();
        let base = d.as_ptr() as usize;
        let at = |p: *const u32| p as usize - base;
        unsafe {
            let bh1 = std::ptr::addr_of!((*d.as_ptr()).hdr.bh1);
            assert_eq!(at(std::ptr::addr_of!((*bh1).block_status)), 8);
            assert_eq!(at(std::ptr::addr_of!((*bh1).num_pkts)), 12);
            assert_eq!(at(std::ptr::addr_of!((*bh1).offset_to_first_pkt)), 16);
        }
    }

    #[test]
    fn a_wait_on_a_down_interface_blocks_instead_of_returning_at_once() {
        if !crate::testing::privileged("a_wait_on_a_down_interface_blocks_instead_of_returning_at_once", "AF_PACKET, unshare(CLONE_NEWNET)") {
            return;
        }
        std::thread::spawn(|| {
            // A new namespace's loopback is down: binding to it leaves ENETDOWN pending.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare: {}", std::io::Error::last_os_error());
            let cfg = RingConfig { block_size: 1 << 16, block_count: 2, frame_size: DEFAULT_FRAME_SIZE };
            let r = Ring::open(&cfg).unwrap();
            r.bind(ifindex("lo").unwrap()).unwrap();
            r.wait(10).unwrap();
            assert_eq!(r.take_error(), 0, "the wait read the pending error");
            let mut p = libc::pollfd { fd: r.fd.as_raw_fd(), events: libc::POLLIN | libc::POLLERR, revents: 0 };
            assert_eq!(unsafe { libc::poll(&mut p, 1, 0) }, 0, "nothing left for poll to report: revents {:#x}", p.revents);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn ring_shape_messages() {
        let ok = RingConfig { block_size: DEFAULT_BLOCK_SIZE, block_count: DEFAULT_BLOCK_COUNT, frame_size: DEFAULT_FRAME_SIZE };
        assert!(ok.validate().is_ok());
        let e = RingConfig { block_size: 1000, ..ok }.validate().unwrap_err().to_string();
        assert!(e.contains("--block-size 1000 must be a positive multiple of the page size"), "{e}");
        let e = RingConfig { block_size: 3 * 4096, ..ok }.validate().unwrap_err().to_string();
        assert!(e.contains("power of two"), "{e}");
        let e = RingConfig { frame_size: 100, ..ok }.validate().unwrap_err().to_string();
        assert!(e.contains("--frame-size 100"), "{e}");
        let e = RingConfig { block_count: 0, ..ok }.validate().unwrap_err().to_string();
        assert!(e.contains("--block-count"), "{e}");
    }
}
