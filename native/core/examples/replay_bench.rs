//! Times the engine alone on a capture: `cargo run --release --example replay_bench -- FILE [--flows] [--max-names N] [--max-keys N]`
//! (`--max-keys` defaults to the recorder's default, as `record --pcap` runs it).
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;
use traffic_counter_core::replay::{replay, ReplayEvent, ReplayOptions};
use traffic_counter_core::rules::Rules;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = PathBuf::from(&args[1]);
    let flows = args.iter().any(|a| a == "--flows");
    let max_names = args.iter().position(|a| a == "--max-names").map(|i| args[i + 1].parse().expect("--max-names N")).unwrap_or(traffic_counter_core::options::DEFAULT_MAX_NAMES);
    let max_keys = args.iter().position(|a| a == "--max-keys").map(|i| args[i + 1].parse().expect("--max-keys N")).unwrap_or(traffic_counter_core::options::DEFAULT_MAX_KEYS);
    let opts = ReplayOptions { interval_ms: 5000, max_keys, flows, max_names, rules: Rules::default(), kernel: None };
    let t = Instant::now();
    let mut rows = (0, 0, 0);
    let mut last = t;
    let mut batch_time = std::time::Duration::ZERO;
    replay(&[file], &opts, Arc::new(AtomicBool::new(false)), &mut |e| {
        if let ReplayEvent::Batch(b) = e {
            rows.0 += b.ips.idx.len();
            rows.1 += b.flows.src.len();
            rows.2 += b.names.len();
            batch_time += last.elapsed();
        }
        last = Instant::now();
    })
    .unwrap();
    println!("{:?} total, {} ip rows, {} flow rows, {} names", t.elapsed(), rows.0, rows.1, rows.2);
}
