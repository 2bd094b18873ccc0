//! Benchmark traffic: 64-byte UDP/IPv4 Ethernet frames from many spoofed sources, sent with
//! sendmmsg on an AF_PACKET socket bound to IFACE, as fast as the sender can, bounded by a
//! packet count and a time limit. Only for the project's own network namespaces.
//! `flood IFACE DST_MAC COUNT SOURCES SECONDS`
use std::time::{Duration, Instant};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 {
        eprintln!("usage: flood IFACE DST_MAC COUNT SOURCES SECONDS");
        std::process::exit(2);
    }
    let iface = &a[1];
    let mac: Vec<u8> = a[2].split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
    let count: u64 = a[3].parse().unwrap();
    let sources: u32 = a[4].parse().unwrap();
    let limit = Duration::from_secs(a[5].parse().unwrap());
    let ifindex = traffic_counter_core::ring::ifindex(iface).expect("interface");
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&mac);
    const BATCH: usize = 256;
    let mut frames = vec![[0u8; 60]; BATCH];
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(BATCH);
    let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(BATCH);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut n = 0u32;
    while sent < count && start.elapsed() < limit {
        iov.clear();
        hdrs.clear();
        for f in frames.iter_mut() {
            f[..6].copy_from_slice(&mac);
            f[6..12].copy_from_slice(&[2, 0, 0, 0, 0x77, 1]);
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let ip = &mut f[14..];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&46u16.to_be_bytes());
            ip[8] = 64;
            ip[9] = 17;
            let src = 0x0b00_0000u32 + (n % sources);
            ip[12..16].copy_from_slice(&src.to_be_bytes());
            ip[16..20].copy_from_slice(&[10, 77, 0, 2]);
            ip[20..22].copy_from_slice(&(1024 + (n % 7) as u16).to_be_bytes());
            ip[22..24].copy_from_slice(&9999u16.to_be_bytes());
            ip[24..26].copy_from_slice(&26u16.to_be_bytes());
            n = n.wrapping_add(1);
        }
        for f in frames.iter_mut() {
            iov.push(libc::iovec { iov_base: f.as_mut_ptr() as *mut libc::c_void, iov_len: 60 });
        }
        for v in iov.iter_mut() {
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = &mut sll as *mut libc::sockaddr_ll as *mut libc::c_void;
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            h.msg_hdr.msg_iov = v as *mut libc::iovec;
            h.msg_hdr.msg_iovlen = 1;
            hdrs.push(h);
        }
        let want = ((count - sent) as usize).min(BATCH);
        let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), want as u32, 0) };
        if r > 0 {
            sent += r as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{sent} {secs:.3}");
}
