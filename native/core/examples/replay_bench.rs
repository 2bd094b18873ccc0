//! Times the engine alone on a capture: `cargo run --release --example replay_bench -- FILE [--flows]`.
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
    let opts = ReplayOptions { interval_ms: 5000, max_keys: 1_000_000, flows, rules: Rules::default() };
    let t = Instant::now();
    let mut rows = (0, 0);
    let mut last = t;
    let mut batch_time = std::time::Duration::ZERO;
    replay(&[file], &opts, Arc::new(AtomicBool::new(false)), &mut |e| {
        if let ReplayEvent::Batch(b) = e {
            rows.0 += b.ips.idx.len();
            rows.1 += b.flows.src.len();
            batch_time += last.elapsed();
        }
        last = Instant::now();
    })
    .unwrap();
    println!("{:?} total, {} ip rows, {} flow rows", t.elapsed(), rows.0, rows.1);
}
