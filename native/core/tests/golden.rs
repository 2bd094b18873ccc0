//! Replays every capture of ../shared/pcaps and compares totals, hosts and flows with
//! expected/<file>.json (the TypeScript golden test does the same through SQLite and tc-query).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use traffic_counter_core::replay::{replay_collect, ReplayOptions};
use traffic_counter_core::rules::Rules;

fn pcaps_dir() -> PathBuf {
    let dir = std::env::var("TC_PCAPS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pcaps"));
    assert!(dir.join("MANIFEST.md").exists(), "capture corpus not found at {} (set TC_PCAPS_DIR)", dir.display());
    dir
}

fn text(fam: u8, b: &[u8]) -> String {
    match fam {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        6 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&b[..16]).unwrap()).to_string(),
        _ => "overflow".into(),
    }
}

#[test]
fn every_capture_matches_its_reference() {
    let dir = pcaps_dir();
    let mut names: Vec<String> = std::fs::read_dir(dir.join("expected"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".json").to_string())
        .collect();
    names.sort();
    assert_eq!(names.len(), 40);
    // Names are read (the default): reading them must not change a count.
    let opts = ReplayOptions { interval_ms: 5000, max_keys: 1_000_000, flows: true, max_names: 10_000, rules: Rules::default() };
    let mut failures = Vec::new();
    let mut names_seen = 0;
    for name in &names {
        let exp: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected").join(format!("{name}.json"))).unwrap()).unwrap();
        let (batches, warnings) = replay_collect(&[&dir.join(name)], &opts).unwrap();
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        names_seen += batches.iter().map(|b| b.names.len()).sum::<usize>();
        let mut hosts: BTreeMap<String, [u64; 4]> = BTreeMap::new();
        let mut flows: BTreeMap<(String, String, u64, u64, u64), [u64; 2]> = BTreeMap::new();
        let mut tot = traffic_counter_core::table::Totals::default();
        for b in &batches {
            tot.add(&b.totals);
            let at = |i: u32| {
                let a = b.addrs.get(i);
                text(a.fam, &a.bytes)
            };
            for i in 0..b.ips.idx.len() {
                let h = hosts.entry(at(b.ips.idx[i])).or_default();
                h[0] += b.ips.tx_packets[i];
                h[1] += b.ips.tx_bytes[i];
                h[2] += b.ips.rx_packets[i];
                h[3] += b.ips.rx_bytes[i];
            }
            let f = &b.flows;
            for i in 0..f.proto.len() {
                let k = (at(f.src[i]), at(f.dst[i]), f.proto[i] as u64, f.sport[i] as u64, f.dport[i] as u64);
                let e = flows.entry(k).or_default();
                e[0] += f.packets[i];
                e[1] += f.bytes[i];
            }
        }
        let t = &exp["totals"];
        let got = [
            ("frames", tot.frames),
            ("ip_packets", tot.ip_packets),
            ("non_ip_frames", tot.non_ip),
            ("ip_header_incomplete", tot.ip_header_incomplete),
            ("ipv4_packets", tot.ipv4_packets),
            ("ipv6_packets", tot.ipv6_packets),
            ("ip_bytes", tot.ip_bytes),
            ("ipv4_bytes", tot.ipv4_bytes),
            ("ipv6_bytes", tot.ipv6_bytes),
            ("fragments_first", tot.fragments_first),
            ("fragments_non_first", tot.fragments_non_first),
            ("ip_length_field_zero", tot.ip_length_field_zero),
        ];
        for (k, v) in got {
            if t[k].as_u64() != Some(v) {
                failures.push(format!("{name}: totals.{k} expected {} got {v}", t[k]));
            }
        }
        let mut exp_hosts: BTreeMap<String, [u64; 4]> = BTreeMap::new();
        for (ip, h) in exp["hosts"].as_object().unwrap() {
            exp_hosts.insert(ip.clone(), ["tx_packets", "tx_bytes", "rx_packets", "rx_bytes"].map(|k| h[k].as_u64().unwrap()));
        }
        if exp_hosts != hosts {
            failures.push(format!("{name}: hosts differ"));
        }
        let mut exp_flows = BTreeMap::new();
        for f in exp["flows"].as_array().unwrap() {
            let k = (f["src"].as_str().unwrap().to_string(), f["dst"].as_str().unwrap().to_string(), f["proto"].as_u64().unwrap(), f["sport"].as_u64().unwrap(), f["dport"].as_u64().unwrap());
            exp_flows.insert(k, [f["packets"].as_u64().unwrap(), f["bytes"].as_u64().unwrap()]);
        }
        if exp_flows != flows {
            failures.push(format!("{name}: flows differ"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(names_seen > 0, "the reference captures hold DNS answers and ClientHellos");
}

/// The same batches, rows and counters with names off and on, but for the names themselves.
#[test]
fn names_never_change_a_count() {
    let dir = pcaps_dir();
    let on = ReplayOptions { interval_ms: 5000, max_keys: 1_000_000, flows: true, max_names: 10_000, rules: Rules::default() };
    let off = ReplayOptions { max_names: 0, ..on.clone() };
    for e in std::fs::read_dir(dir.join("expected")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().trim_end_matches(".json").to_string();
        let (a, _) = replay_collect(&[&dir.join(&name)], &on).unwrap();
        let (b, _) = replay_collect(&[&dir.join(&name)], &off).unwrap();
        assert_eq!(a.len(), b.len(), "{name}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.start_ms, x.totals, x.last), (y.start_ms, y.totals, y.last), "{name}");
            assert_eq!((&x.addrs.addr, &x.ips.tx_bytes, &x.ips.rx_bytes, &x.flows.bytes), (&y.addrs.addr, &y.ips.tx_bytes, &y.ips.rx_bytes, &y.flows.bytes), "{name}");
            assert!(y.names.is_empty() && y.name_counts == Default::default(), "{name}: names off reads nothing");
        }
    }
}
