//! The options of counting (replay and live) and of live capture: every default and range, and
//! the one place they are checked (`Options::validate`). The napi layer documents them on its
//! `#[napi(object)]` fields and hands the defaults to JS (`optionDefaults()`), so the CLI shows
//! these values, not copies of them.

use crate::ring::RingConfig;

/// Interval length: a whole number of seconds, aligned to multiples of itself in epoch time.
pub const DEFAULT_INTERVAL_MS: i64 = 5000;
pub const MIN_INTERVAL_MS: i64 = 1000;
pub const MAX_INTERVAL_MS: i64 = 86_400_000;
/// Distinct addresses / flows per interval and table before the rest fold into an overflow row;
/// the default holds the recorder's memory under 512 MiB on a 2-CPU host under a spoofed flood
/// (`budget`, bench/README.md).
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Distinct (address, name, source) pairs recorded per interval (`names`); 0 turns names off
/// (nothing is parsed past the headers). The limit keeps the stated memory (`budget`) sane.
pub const DEFAULT_MAX_NAMES: usize = 10_000;
pub const MAX_NAMES_LIMIT: usize = 1_000_000;
/// Capture workers (one ring each); the default is the number of CPUs.
pub const MAX_WORKERS: u32 = 64;
/// TPACKET_V3 ring shape per worker (checked by `RingConfig::validate`).
pub const DEFAULT_BLOCK_SIZE: u32 = 1 << 20;
pub const DEFAULT_BLOCK_COUNT: u32 = 32;
pub const DEFAULT_FRAME_SIZE: u32 = 2048;
/// PACKET_FANOUT group ids are 16 bits; the default is derived from the process id.
pub const MAX_FANOUT_GROUP: u32 = 0xFFFF;
/// Bytes of each frame the eBPF filter keeps (shared with the filter through ebpf/tc_filter.h).
pub const DEFAULT_SNAPLEN: u32 = crate::filter::consts::DEFAULT_SNAPLEN;
/// Batches, and bytes of batch columns, that may wait for the JS thread (live capture) and in the
/// recorder's write queue at once; one batch may always wait, however large.
pub const DEFAULT_QUEUE_MAX_BATCHES: u32 = 64;
pub const DEFAULT_QUEUE_MAX_BYTES: u64 = 16 << 20;

/// An option out of its range, said the way the CLI spells it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OptionError(pub String);

/// The counting options (replay and live), declared once for the core's `CountOptions` and the
/// napi object JS fills in: `$m!` receives `[$head]` and the fields (docs, name, `Option<type>`)
/// and declares its struct from them, so a field and its documented range and default cannot
/// drift between the two. Docs are `#[doc = "..."]`: napi-derive 3.7 copies the `r"` of the raw
/// string a `///` becomes inside a macro into index.d.ts.
#[macro_export]
macro_rules! count_option_fields {
    ($m:ident! [$($head:tt)*]) => {
        $m! { [$($head)*]
            #[doc = " Interval length in ms: a whole number of seconds from 1 s to 86400 s; default 5000."]
            interval_ms: Option<i64>,
            #[doc = " Distinct addresses / flows per interval and table before the rest fold into an"]
            #[doc = " overflow row: at least 1; default 100,000."]
            max_keys: Option<u32>,
            #[doc = " Also count per unidirectional 5-tuple flow; default false."]
            flows: Option<bool>,
            #[doc = " New (address, name, source) pairs recorded per interval from DNS answers and TLS"]
            #[doc = " server names, the rest counted as overflowed: 0 (names off, nothing parsed past"]
            #[doc = " the headers) to 1,000,000; default 10,000."]
            max_names: Option<u32>,
        }
    };
}

/// The live capture options besides counting, declared once as `count_option_fields!` is.
#[macro_export]
macro_rules! capture_option_fields {
    ($m:ident! [$($head:tt)*]) => {
        $m! { [$($head)*]
            #[doc = " Capture workers, one ring each: 1 to 64; default the number of CPUs."]
            workers: Option<u32>,
            #[doc = " TPACKET_V3 block size in bytes: a power of two, a multiple of the page size, at"]
            #[doc = " most 1 GiB; default 1 MiB."]
            block_size: Option<u32>,
            #[doc = " Blocks per ring: at least 1 (the ring at most 8 GiB); default 32."]
            block_count: Option<u32>,
            #[doc = " TPACKET_V3 frame size in bytes: a multiple of 16, room for a frame header and 64"]
            #[doc = " bytes, at most the block size; default 2048."]
            frame_size: Option<u32>,
            #[doc = " PACKET_FANOUT group id: 0 to 65535; default derived from the process id."]
            fanout_group: Option<u32>,
            #[doc = " Load the eBPF socket filter; default true (false: rules are applied in userspace)."]
            ebpf: Option<bool>,
            #[doc = " Bytes of each frame the eBPF filter keeps; default 128 (the CLI takes 64 to 65535)."]
            snaplen: Option<u32>,
            #[doc = " Batches that may wait for the JS thread at once: at least 1; default 64 (the"]
            #[doc = " recorder's queue bound too). While JS is busy for longer (a long synchronous"]
            #[doc = " write), newer batches are dropped, not queued without bound, and the next batch"]
            #[doc = " delivered names them."]
            handover_max_batches: Option<u32>,
            #[doc = " Bytes of batch columns that may wait for the JS thread at once: at least 0; default"]
            #[doc = " 16 MiB; one batch may always wait, however large."]
            handover_max_bytes: Option<f64>,
        }
    };
}

macro_rules! given_struct {
    ([$(#[$sm:meta])* $name:ident] $($(#[$m:meta])* $f:ident: Option<$t:ident>,)*) => {
        $(#[$sm])*
        #[derive(Clone, Debug, Default)]
        pub struct $name {
            $($(#[$m])* pub $f: Option<$t>,)*
        }
    };
}

count_option_fields!(given_struct! [
    /// Counting options as given: `None` takes the default.
    CountOptions
]);
capture_option_fields!(given_struct! [
    /// Live capture options as given: `None` takes the default.
    CaptureOptions
]);

/// Options as given; replays read only the counting ones.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub count: CountOptions,
    pub capture: CaptureOptions,
}

/// Options checked, with every default filled in.
#[derive(Clone, Debug)]
pub struct Valid {
    pub interval_ms: i64,
    pub max_keys: usize,
    pub flows: bool,
    pub max_names: usize,
    pub workers: usize,
    pub ring: RingConfig,
    pub fanout_group: u16,
    pub ebpf: bool,
    pub snaplen: u32,
    pub handover_max_batches: usize,
    pub handover_max_bytes: usize,
}

impl Options {
    /// Checks every option and fills in the defaults, with messages that say what to change.
    pub fn validate(&self) -> Result<Valid, OptionError> {
        let bad = |m: String| Err(OptionError(m));
        let (c, k) = (&self.count, &self.capture);
        let fanout_group = match k.fanout_group {
            Some(g) if g > MAX_FANOUT_GROUP => return bad(format!("--fanout-group {g} must be between 0 and {MAX_FANOUT_GROUP}")),
            Some(g) => g as u16,
            None => (std::process::id() & MAX_FANOUT_GROUP) as u16,
        };
        let interval_ms = c.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS);
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&interval_ms) || interval_ms % 1000 != 0 {
            return bad(format!(
                "--interval-secs must be a whole number of seconds between {} and {} (got {interval_ms} ms)",
                MIN_INTERVAL_MS / 1000,
                MAX_INTERVAL_MS / 1000
            ));
        }
        let workers = match k.workers {
            Some(w) if w == 0 || w > MAX_WORKERS => return bad(format!("--workers {w} must be between 1 and {MAX_WORKERS}")),
            Some(w) => w as usize,
            None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        };
        let max_keys = match c.max_keys {
            Some(0) => return bad("--max-keys must be at least 1".into()),
            Some(n) => n as usize,
            None => DEFAULT_MAX_KEYS,
        };
        let max_names = match c.max_names {
            Some(n) if n as usize > MAX_NAMES_LIMIT => return bad(format!("--max-names {n} must be between 0 and {MAX_NAMES_LIMIT}")),
            Some(n) => n as usize,
            None => DEFAULT_MAX_NAMES,
        };
        let ring = RingConfig {
            block_size: k.block_size.unwrap_or(DEFAULT_BLOCK_SIZE),
            block_count: k.block_count.unwrap_or(DEFAULT_BLOCK_COUNT),
            frame_size: k.frame_size.unwrap_or(DEFAULT_FRAME_SIZE),
        };
        ring.validate().map_err(|e| OptionError(e.to_string()))?;
        Ok(Valid {
            interval_ms,
            max_keys,
            flows: c.flows.unwrap_or(false),
            max_names,
            workers,
            ring,
            fanout_group,
            ebpf: k.ebpf.unwrap_or(true),
            snaplen: k.snaplen.unwrap_or(DEFAULT_SNAPLEN),
            handover_max_batches: k.handover_max_batches.unwrap_or(DEFAULT_QUEUE_MAX_BATCHES).max(1) as usize,
            handover_max_bytes: k.handover_max_bytes.unwrap_or(DEFAULT_QUEUE_MAX_BYTES as f64).max(0.0) as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_given_is_every_default() {
        let v = Options::default().validate().unwrap();
        assert_eq!((v.interval_ms, v.max_keys, v.flows, v.ebpf, v.snaplen), (DEFAULT_INTERVAL_MS, DEFAULT_MAX_KEYS, false, true, DEFAULT_SNAPLEN));
        assert_eq!(v.max_names, DEFAULT_MAX_NAMES);
        assert_eq!((v.ring.block_size, v.ring.block_count, v.ring.frame_size), (DEFAULT_BLOCK_SIZE, DEFAULT_BLOCK_COUNT, DEFAULT_FRAME_SIZE));
        assert_eq!((v.handover_max_batches, v.handover_max_bytes), (DEFAULT_QUEUE_MAX_BATCHES as usize, DEFAULT_QUEUE_MAX_BYTES as usize));
        assert!(v.workers >= 1);
    }

    #[test]
    fn out_of_range_options_say_what_to_change() {
        let msg = |o: Options| o.validate().unwrap_err().to_string();
        assert_eq!(msg(Options { count: CountOptions { interval_ms: Some(1500), ..Default::default() }, ..Default::default() }), "--interval-secs must be a whole number of seconds between 1 and 86400 (got 1500 ms)");
        assert_eq!(msg(Options { count: CountOptions { interval_ms: Some(86_401_000), ..Default::default() }, ..Default::default() }), "--interval-secs must be a whole number of seconds between 1 and 86400 (got 86401000 ms)");
        assert_eq!(msg(Options { count: CountOptions { max_keys: Some(0), ..Default::default() }, ..Default::default() }), "--max-keys must be at least 1");
        assert_eq!(msg(Options { capture: CaptureOptions { workers: Some(65), ..Default::default() }, ..Default::default() }), "--workers 65 must be between 1 and 64");
        assert_eq!(msg(Options { count: CountOptions { max_names: Some(1_000_001), ..Default::default() }, ..Default::default() }), "--max-names 1000001 must be between 0 and 1000000");
        let off = Options { count: CountOptions { max_names: Some(0), ..Default::default() }, ..Default::default() }.validate().unwrap();
        assert_eq!(off.max_names, 0, "0 turns names off");
        assert_eq!(msg(Options { capture: CaptureOptions { fanout_group: Some(65536), ..Default::default() }, ..Default::default() }), "--fanout-group 65536 must be between 0 and 65535");
        assert!(msg(Options { capture: CaptureOptions { block_size: Some(1000), ..Default::default() }, ..Default::default() }).contains("--block-size 1000 must be a positive multiple of the page size"));
    }

    #[test]
    fn queue_bounds_are_clamped_not_refused() {
        let v = Options { capture: CaptureOptions { handover_max_batches: Some(0), handover_max_bytes: Some(-1.0), ..Default::default() }, ..Default::default() }.validate().unwrap();
        assert_eq!((v.handover_max_batches, v.handover_max_bytes), (1, 0));
    }
}
