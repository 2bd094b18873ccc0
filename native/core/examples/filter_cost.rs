//! What passing DNS responses and ClientHellos whole costs the eBPF filter and the ring:
//! `cargo run --release --example filter_cost -p traffic-counter-core` (as root: bpf()).
//!
//! - time per frame of the filter (BPF_PROG_TEST_RUN, 1,000,000 runs, median of 3 alternated)
//!   over ordinary frames and over the frames names are read from, names off and on;
//! - ring bytes per packet of a DNS-heavy mix, from the filter's own verdicts: a TPACKET_V3
//!   frame takes ALIGN(tp_mac + snaplen, 8) bytes of its block (net/packet/af_packet.c
//!   prb_fill_curr_block, TOTAL_PKT_LEN_INCL_ALIGN), tp_mac being 82 behind an Ethernet header
//!   (TPACKET_ALIGN(TPACKET3_HDRLEN + 16) - 14, tpacket_rcv).
use traffic_counter_core::filter::{consts, Filter};

const RUNS: u32 = 1_000_000;
const TP_MAC: usize = 82;

fn eth_v4(proto: u8, l4: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0];
    f.extend_from_slice(&((20 + l4.len() + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 192, 0, 2, 1]);
    f.extend_from_slice(l4);
    f.extend_from_slice(payload);
    f
}

fn udp(sport: u16, dport: u16, len: usize) -> Vec<u8> {
    [&sport.to_be_bytes()[..], &dport.to_be_bytes(), &((8 + len) as u16).to_be_bytes(), &[0, 0]].concat()
}

fn tcp(sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    let mut t = [&sport.to_be_bytes()[..], &dport.to_be_bytes(), &seq.to_be_bytes()].concat();
    t.extend_from_slice(&[0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

/// A DNS response to a name of `qlen` bytes with `answers` A records.
fn dns(qlen: usize, answers: u8) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, answers, 0, 0, 0, 0, qlen as u8];
    m.extend(std::iter::repeat_n(b'a', qlen));
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    for i in 0..answers {
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4, 198, 51, 100, i]);
    }
    m
}

/// The first `n` bytes of a TLS record announcing a ClientHello of `len` bytes.
fn hello_start(len: usize, n: usize) -> Vec<u8> {
    let mut h = vec![22, 3, 1];
    h.extend_from_slice(&(len as u16).to_be_bytes());
    h.extend_from_slice(&[1, 0, ((len - 4) >> 8) as u8, (len - 4) as u8]);
    h.resize(n, 0x5a);
    h
}

fn median(mut v: Vec<u32>) -> u32 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let mut on = Filter::load(consts::DEFAULT_SNAPLEN, false, true).expect("loading the filter needs root (bpf())");
    let mut off = Filter::load(consts::DEFAULT_SNAPLEN, false, false).unwrap();
    let bulk = eth_v4(6, &tcp(443, 50000, 1), &[0x17; 1448]);
    let ack = eth_v4(6, &tcp(50000, 443, 1), &[]);
    let udp_other = eth_v4(17, &udp(50000, 4500, 200), &[0; 200]);
    let d = dns(20, 4);
    let dns_resp = eth_v4(17, &udp(53, 40000, d.len()), &d);
    let frames = [("TCP data, 1514 B", &bulk), ("TCP ACK, 54 B", &ack), ("UDP, 242 B", &udp_other), ("DNS response, 4 A answers", &dns_resp)];
    println!("eBPF filter, ns per frame (BPF_PROG_TEST_RUN x {RUNS}, median of 3 alternated):");
    for (what, f) in frames {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            a.push(off.test_run(f, RUNS).unwrap().1);
            b.push(on.test_run(f, RUNS).unwrap().1);
        }
        println!("  {what:28} names off {:>4} ns   names on {:>4} ns", median(a), median(b));
    }

    // Per 1000 packets: 150 DNS responses (60 small, 60 of 8 answers, 30 of 30 answers), 10 TLS
    // connections each with a ClientHello of 1.8 KB in two segments, the rest bulk TCP data and ACKs.
    let mut mix: Vec<(Vec<u8>, usize)> = vec![
        (eth_v4(17, &udp(53, 40000, dns(24, 1).len()), &dns(24, 1)), 60),
        (eth_v4(17, &udp(53, 40000, dns(24, 8).len()), &dns(24, 8)), 60),
        (eth_v4(17, &udp(53, 40000, dns(24, 30).len()), &dns(24, 30)), 30),
    ];
    let (hello_len, first) = (1800, 1448);
    for c in 0..10u16 {
        mix.push((eth_v4(6, &tcp(40000 + c, 443, 1000), &hello_start(hello_len, first)), 1));
        mix.push((eth_v4(6, &tcp(40000 + c, 443, 1000 + first as u32), &[0x5a; 1805 - 1448]), 1));
    }
    let rest = 1000 - mix.iter().map(|m| m.1).sum::<usize>();
    mix.push((bulk.clone(), rest * 2 / 3));
    mix.push((ack.clone(), rest - rest * 2 / 3));
    let ring = |f: &mut Filter| -> (usize, usize) {
        let (mut bytes, mut n) = (0, 0);
        for (frame, count) in &mix {
            let kept = f.test_run(frame, 1).unwrap().0 as usize;
            bytes += (TP_MAC + kept.min(frame.len())).div_ceil(8) * 8 * count;
            n += count;
        }
        (bytes, n)
    };
    let (b_off, n) = ring(&mut off);
    let (b_on, _) = ring(&mut on);
    println!("ring bytes per packet, DNS-heavy mix (15% DNS responses, 2% ClientHello segments, snaplen {}):", consts::DEFAULT_SNAPLEN);
    println!("  names off {:.0} B   names on {:.0} B   (+{:.0}%)", b_off as f64 / n as f64, b_on as f64 / n as f64, (b_on as f64 / b_off as f64 - 1.0) * 100.0);
}
