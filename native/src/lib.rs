//! The napi surface of traffic-counter: one thin module over the napi-free core
//! (`traffic-counter-core`). Batches cross the boundary as Buffers (columnar), events reach JS
//! through threadsafe functions, and no blocking work runs on the JS thread.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use traffic_counter_core::batch::Batch;
use traffic_counter_core::budget;
use traffic_counter_core::error::{self, Code, Coded};
use traffic_counter_core::handover::{self, Handover, Held};
use traffic_counter_core::live::{self, Capture as CoreCapture, LiveOptions};
use traffic_counter_core::lock;
use traffic_counter_core::options::{self, Options};
use traffic_counter_core::kcount::KernelCount;
use traffic_counter_core::replay::{self, ReplayOptions};
use traffic_counter_core::rules::{read_cidr_file, Cidr, Rules};

/// The one conversion of an engine error into a JS error: `err.code` from the error's kind,
/// the message its whole chain of causes.
fn js_error<E: Coded + 'static>(e: E) -> Error<String> {
    Error::new(e.code().as_str().to_string(), error::message(&e))
}

/// A JS error raised by this module itself (an option it checks, a thread it cannot start).
fn err(code: Code, msg: impl std::fmt::Display) -> Error<String> {
    Error::new(code.as_str().to_string(), msg.to_string())
}

/// A column as little-endian bytes; the column's own memory goes at once (a batch is converted
/// one column at a time, not held twice).
fn u64s(v: Vec<u64>) -> Buffer {
    let mut out = Vec::with_capacity(v.len() * 8);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.into()
}

/// As `u64s`.
fn u32s(v: Vec<u32>) -> Buffer {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.into()
}

/// As `u64s`.
fn u16s(v: Vec<u16>) -> Buffer {
    let mut out = Vec::with_capacity(v.len() * 2);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.into()
}

/// The u64 values of `NativeBatch.counters`, in order: each counter's name (src/schema/counters.ts
/// holds the same list; src/native.ts refuses an addon whose `counterNames()` differ) and how it
/// is read from a batch. Ring and filter counters are 0 when the batch has none
/// (`NativeBatch::has_ring`, `has_filter` say which).
const COUNTERS: [(&str, fn(&Batch) -> u64); 27] = [
    ("frames", |b| b.totals.frames),
    ("ipPackets", |b| b.totals.ip_packets),
    ("ipBytes", |b| b.totals.ip_bytes),
    ("ipv4Packets", |b| b.totals.ipv4_packets),
    ("ipv4Bytes", |b| b.totals.ipv4_bytes),
    ("ipv6Packets", |b| b.totals.ipv6_packets),
    ("ipv6Bytes", |b| b.totals.ipv6_bytes),
    ("nonIp", |b| b.totals.non_ip),
    ("ipHeaderIncomplete", |b| b.totals.ip_header_incomplete),
    ("fragmentsFirst", |b| b.totals.fragments_first),
    ("fragmentsNonFirst", |b| b.totals.fragments_non_first),
    ("ipLengthFieldZero", |b| b.totals.ip_length_field_zero),
    ("ignored", |b| b.totals.ignored),
    ("late", |b| b.totals.late),
    ("ringPackets", |b| b.ring.unwrap_or_default().packets),
    ("ringDrops", |b| b.ring.unwrap_or_default().drops),
    ("ringFreezeQCnt", |b| b.ring.unwrap_or_default().freeze_q_cnt),
    ("filterPassed", |b| b.filter.unwrap_or_default().passed),
    ("filterNonIp", |b| b.filter.unwrap_or_default().non_ip),
    ("filterIgnored", |b| b.filter.unwrap_or_default().ignored),
    ("filterNotAccepted", |b| b.filter.unwrap_or_default().not_accepted),
    ("ipOverflowKeys", |b| b.ip_overflow_keys),
    ("flowOverflowKeys", |b| b.flow_overflow_keys),
    ("namesRecorded", |b| b.names.len() as u64),
    ("namesOverflowed", |b| b.names.overflowed),
    ("namesMalformed", |b| b.name_counts.malformed),
    ("namesIncomplete", |b| b.name_counts.incomplete),
];

/// One interval, columnar. u64 columns are little-endian Buffers of 8 bytes per row, u32 of 4,
/// u16 of 2. The batch's distinct addresses (sorted) are 16 bytes each with the family (4, 6;
/// 0 = overflow row) apart; per-IP and per-flow rows refer to them by u32 index. Names are
/// (address, name, source) entries in the order of their last sightings, the names one after
/// the other in `names_text` (ASCII), each ending at its u32 in `names_end`.
#[napi(object)]
pub struct NativeBatch {
    pub start_ms: i64,
    pub end_ms: i64,
    pub last: bool,
    /// u64 values in the order of `counterNames()`.
    pub counters: Buffer,
    /// Kernel ring statistics present (live capture); without them the ring counters are 0.
    pub has_ring: bool,
    /// eBPF filter counters present (live capture with the filter); without them they are 0.
    pub has_filter: bool,
    pub addr_count: u32,
    pub addr_fam: Buffer,
    pub addr_bytes: Buffer,
    pub ip_count: u32,
    pub ip_idx: Buffer,
    pub ip_tx_packets: Buffer,
    pub ip_tx_bytes: Buffer,
    pub ip_rx_packets: Buffer,
    pub ip_rx_bytes: Buffer,
    pub flow_count: u32,
    pub flow_src: Buffer,
    pub flow_dst: Buffer,
    pub flow_proto: Buffer,
    pub flow_sport: Buffer,
    pub flow_dport: Buffer,
    pub flow_packets: Buffer,
    pub flow_bytes: Buffer,
    pub names_count: u32,
    /// 4 or 6 per entry.
    pub names_fam: Buffer,
    /// 16 bytes per entry.
    pub names_addr: Buffer,
    /// 0 = dns, 1 = sni, per entry.
    pub names_source: Buffer,
    pub names_text: Buffer,
    pub names_end: Buffer,
    /// Live capture counted in the kernel: the switch at the interval's end and the maps' fill.
    pub kernel: Option<KernelBatchStats>,
}

/// `Batch::kernel` of the core (live `--count-in kernel`).
#[napi(object)]
pub struct KernelBatchStats {
    /// How long after the interval's UTC boundary the switch to the other maps completed (µs).
    pub switch_late_us: f64,
    /// Reading and clearing the old maps after it (µs).
    pub drain_us: f64,
    /// Frames the counting program handed to the ring, counted in userspace.
    pub returned: f64,
    /// Entries of the address map and of the flow map at the interval's end.
    pub ip_entries: f64,
    pub flow_entries: f64,
    /// Entries each map holds (`--max-keys`).
    pub capacity: f64,
}

fn to_native(b: Batch) -> NativeBatch {
    let counters = COUNTERS.map(|(_, get)| get(&b));
    let kernel = b.kernel.map(|k| KernelBatchStats {
        switch_late_us: k.switch_late_us as f64,
        drain_us: k.drain_us as f64,
        returned: k.returned as f64,
        ip_entries: k.ip_entries as f64,
        flow_entries: k.flow_entries as f64,
        capacity: k.capacity as f64,
    });
    let ips = b.ips;
    let fl = b.flows;
    let names = b.names;
    NativeBatch {
        start_ms: b.start_ms,
        end_ms: b.end_ms,
        last: b.last,
        counters: u64s(counters.to_vec()),
        has_ring: b.ring.is_some(),
        has_filter: b.filter.is_some(),
        addr_count: b.addrs.len() as u32,
        addr_fam: b.addrs.fam.into(),
        addr_bytes: b.addrs.addr.into(),
        ip_count: ips.idx.len() as u32,
        ip_idx: u32s(ips.idx),
        ip_tx_packets: u64s(ips.tx_packets),
        ip_tx_bytes: u64s(ips.tx_bytes),
        ip_rx_packets: u64s(ips.rx_packets),
        ip_rx_bytes: u64s(ips.rx_bytes),
        flow_count: fl.proto.len() as u32,
        flow_src: u32s(fl.src),
        flow_dst: u32s(fl.dst),
        flow_proto: fl.proto.into(),
        flow_sport: u16s(fl.sport),
        flow_dport: u16s(fl.dport),
        flow_packets: u64s(fl.packets),
        flow_bytes: u64s(fl.bytes),
        names_count: names.fam.len() as u32,
        names_fam: names.fam.into(),
        names_addr: names.addr.into(),
        names_source: names.source.into(),
        names_text: names.text.into(),
        names_end: u32s(names.end),
        kernel,
    }
}

#[napi]
pub fn counter_names() -> Vec<String> {
    COUNTERS.iter().map(|(name, _)| name.to_string()).collect()
}

#[napi(object)]
pub struct FileSummary {
    pub path: String,
    pub format: String,
    pub frames: i64,
    pub non_packet_records: i64,
    pub truncated: bool,
    /// Frames counted outside their own interval (beyond `reorderWindowMs()`).
    pub late: i64,
}

/// An event of a replay, in order: batches, warnings and progress, then one `end` or `error`.
#[napi(discriminant = "kind", discriminant_case = "lowercase", object_from_js = false)]
pub enum ReplayEvent {
    Batch { batch: NativeBatch },
    Warning { message: String },
    /// Bytes of input read so far and in all.
    Progress { done: f64, total: f64 },
    End { files: Vec<FileSummary> },
    Error { message: String, code: String },
}

/// An event of a live capture, in order: batches and warnings, then `end` after the last batch.
/// A batch's `dropped` names the intervals dropped since the previous batch delivered, because
/// the batches already waiting for the JS thread were at the hand-over bound
/// (`handover::Handover` in the core).
#[napi(discriminant = "kind", discriminant_case = "lowercase", object_from_js = false)]
pub enum LiveEvent {
    Batch { batch: NativeBatch, dropped: Vec<DroppedInterval> },
    Warning { message: String },
    /// What ends the capture (the interface was deleted): its last batches and `end` follow.
    Failed { message: String, code: String },
    End,
}

/// A live event on its way to the JS thread, with the batch's place in the hand-over.
struct Delivery {
    event: LiveEvent,
    held: Option<Held>,
}

fn batch_bytes(b: &NativeBatch) -> usize {
    [&b.counters, &b.addr_fam, &b.addr_bytes, &b.ip_idx, &b.ip_tx_packets, &b.ip_tx_bytes, &b.ip_rx_packets, &b.ip_rx_bytes]
        .iter()
        .chain([&b.flow_src, &b.flow_dst, &b.flow_proto, &b.flow_sport, &b.flow_dport, &b.flow_packets, &b.flow_bytes].iter())
        .chain([&b.names_fam, &b.names_addr, &b.names_source, &b.names_text, &b.names_end].iter())
        .map(|x| x.len())
        .sum()
}

#[napi(object)]
pub struct DroppedInterval {
    pub start_ms: f64,
    pub end_ms: f64,
}

/// Declares a napi object from one of the core's option field lists (`count_option_fields!`,
/// `capture_option_fields!`: the fields and their documented ranges and defaults live there),
/// with fields of its own and `core()`, the core struct holding the listed ones. Types are
/// matched as identifiers (`String`, `Option<String>`), not `ty` fragments: napi-derive does not
/// see through a `ty` fragment to tell an `Option` (optional in JS) from a required field.
macro_rules! napi_options {
    ([$(#[$sm:meta])* $name:ident => $core:ident { $($(#[$om:meta])* $own:ident: $ot:ident $(<$oi:ident>)?,)* }] $($(#[$m:meta])* $f:ident: Option<$t:ident>,)*) => {
        $(#[$sm])*
        #[napi(object)]
        pub struct $name {
            $($(#[$om])* pub $own: $ot $(<$oi>)?,)*
            $($(#[$m])* pub $f: Option<$t>,)*
        }

        impl $name {
            fn core(&self) -> options::$core {
                options::$core { $($f: self.$f.clone(),)* }
            }
        }
    };
}

traffic_counter_core::count_option_fields!(napi_options! [
    #[doc = " Options shared by replay and live capture (defaults and ranges: core `options.rs`)."]
    CountOptions => CountOptions {
        #[doc = " CIDR file whose addresses are not counted (source or destination); default none."]
        ignore_file: Option<String>,
        #[doc = " CIDR file: only frames whose source is in it are counted; default none (every source)."]
        accept_source_file: Option<String>,
    }
]);

/// The defaults (and the ranges the CLI checks at entry) of `CountOptions` and
/// `LiveCaptureOptions`, from core `options.rs`.
#[napi(object)]
pub struct OptionDefaults {
    pub interval_ms: i64,
    pub min_interval_ms: i64,
    pub max_interval_ms: i64,
    pub max_keys: u32,
    pub max_names: u32,
    pub max_names_limit: u32,
    pub max_workers: u32,
    pub block_size: u32,
    pub block_count: u32,
    pub frame_size: u32,
    pub max_fanout_group: u32,
    pub snaplen: u32,
    pub queue_max_batches: u32,
    pub queue_max_bytes: f64,
}

#[napi]
pub fn option_defaults() -> OptionDefaults {
    use options::*;
    OptionDefaults {
        interval_ms: DEFAULT_INTERVAL_MS,
        min_interval_ms: MIN_INTERVAL_MS,
        max_interval_ms: MAX_INTERVAL_MS,
        max_keys: DEFAULT_MAX_KEYS as u32,
        max_names: DEFAULT_MAX_NAMES as u32,
        max_names_limit: MAX_NAMES_LIMIT as u32,
        max_workers: MAX_WORKERS,
        block_size: DEFAULT_BLOCK_SIZE,
        block_count: DEFAULT_BLOCK_COUNT,
        frame_size: DEFAULT_FRAME_SIZE,
        max_fanout_group: MAX_FANOUT_GROUP,
        snaplen: DEFAULT_SNAPLEN,
        queue_max_batches: DEFAULT_QUEUE_MAX_BATCHES,
        queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES as f64,
    }
}

/// What the capture engine may hold in memory at most, in bytes (core `budget.rs`).
#[napi(object)]
pub struct EngineMemory {
    /// TPACKET_V3 rings (live capture only).
    pub rings: f64,
    /// Counting tables, and the conversion of an interval into a batch.
    pub tables: f64,
    /// Batches converted and not yet taken by JS.
    pub batches: f64,
    /// The columns of the largest batch these options allow.
    pub batch_bytes: f64,
    /// The most distinct addresses one batch holds.
    pub batch_addrs: f64,
}

/// The engine's memory at most for a live capture with `options`, or a replay (`live` false,
/// only the counting options are read).
#[napi]
pub fn engine_memory(options: LiveCaptureOptions, live: bool) -> Result<EngineMemory, String> {
    let v = Options { count: options.count.core(), capture: options.core() }.validate().map_err(bad_option)?;
    // `auto` is budgeted as the ring, which holds more: the start line states what was settled.
    let m = match (live, v.count_in) {
        (true, options::CountIn::Kernel) => budget::live_kernel(&v),
        (true, _) => budget::live(&v),
        (false, _) => budget::replay(&v),
    };
    Ok(EngineMemory {
        rings: m.rings as f64,
        tables: m.tables as f64,
        batches: m.batches as f64,
        batch_bytes: budget::batch_bytes_with_names(&v) as f64,
        batch_addrs: budget::batch_addrs(v.max_keys, v.flows) as f64,
    })
}

/// The kernel memory (memlock, bytes) the counting program's maps take for `max_keys` and
/// `flows` (core `kcount::map_memory`; the start line states what the kernel charged).
#[napi]
pub fn kernel_map_memory(max_keys: u32, flows: bool) -> f64 {
    traffic_counter_core::kcount::map_memory(max_keys as usize, flows) as f64
}

fn bad_option(e: options::OptionError) -> Error<String> {
    err(Code::BadOption, e)
}

fn load_rules(ignore: &Option<String>, accept: &Option<String>) -> Result<(Vec<Cidr>, Option<Vec<Cidr>>), String> {
    let ig = match ignore {
        Some(p) => read_cidr_file(&PathBuf::from(p)).map_err(js_error)?,
        None => Vec::new(),
    };
    let acc = match accept {
        Some(p) => Some(read_cidr_file(&PathBuf::from(p)).map_err(js_error)?),
        None => None,
    };
    Ok((ig, acc))
}


/// Batches handed to JS and not yet handled (`ReplayHandle::handled`): the replay thread waits
/// while `budget::REPLAY_QUEUE_BATCHES` are, however fast JS takes them off the napi queue.
#[derive(Default)]
struct InJs {
    batches: Mutex<usize>,
    room: Condvar,
}

impl InJs {
    /// Waits for room (or a stop), then counts one more batch in JS.
    fn admit(&self, stop: &AtomicBool) {
        let mut n = self.batches.lock().unwrap();
        while *n >= budget::REPLAY_QUEUE_BATCHES && !stop.load(Ordering::SeqCst) {
            n = self.room.wait_timeout(n, std::time::Duration::from_millis(100)).unwrap().0;
        }
        *n += 1;
    }
}

/// A running replay; `stop()` ends it early (the partial interval is still flushed).
#[napi]
pub struct ReplayHandle {
    stop: Arc<AtomicBool>,
    in_js: Arc<InJs>,
}

#[napi]
impl ReplayHandle {
    #[napi]
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.in_js.room.notify_all();
    }

    /// JS is done with a batch event (handled, or dropped after a failure): its room goes back.
    #[napi]
    pub fn handled(&self) {
        let mut n = self.in_js.batches.lock().unwrap();
        *n = n.saturating_sub(1);
        self.in_js.room.notify_all();
    }
}

/// Replays capture files on a worker thread. Events arrive through `onEvent`, batches in
/// interval order; the replay thread waits while `budget::REPLAY_QUEUE_BATCHES` batches are in
/// JS and not yet `handled()` (the napi queue bounds the events in flight the same way).
#[napi]
pub fn replay(
    files: Vec<String>,
    options: CountOptions,
    on_event: ThreadsafeFunction<ReplayEvent, (), ReplayEvent, Status, false, false, { budget::REPLAY_QUEUE_BATCHES }>,
) -> Result<ReplayHandle, String> {
    if files.is_empty() {
        return Err(err(Code::BadOption, "--pcap needs at least one file"));
    }
    let (ignore, accept) = load_rules(&options.ignore_file, &options.accept_source_file)?;
    let v = Options { count: options.core(), ..Options::default() }.validate().map_err(bad_option)?;
    let kernel = (v.count_in == options::CountIn::Kernel).then(|| KernelCount { ignore: ignore.clone(), accept: accept.clone() });
    let opts = ReplayOptions { interval_ms: v.interval_ms, max_keys: v.max_keys, flows: v.flows, max_names: v.max_names, rules: Rules::new(&ignore, accept.as_deref()), kernel };
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let in_js = Arc::new(InJs::default());
    let in_js2 = in_js.clone();
    let paths: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    std::thread::Builder::new()
        .name("tc-replay".into())
        .spawn(move || {
            let send = |e: ReplayEvent| {
                on_event.call(e, ThreadsafeFunctionCallMode::Blocking);
            };
            let stop3 = stop2.clone();
            let res = replay::replay(&paths, &opts, stop2, &mut |ev| match ev {
                replay::ReplayEvent::Batch(b) => {
                    in_js2.admit(&stop3);
                    send(ReplayEvent::Batch { batch: to_native(b) })
                }
                replay::ReplayEvent::Warning(message) => send(ReplayEvent::Warning { message }),
                replay::ReplayEvent::Progress { done, total } => send(ReplayEvent::Progress { done: done as f64, total: total as f64 }),
            });
            match res {
                Ok(files) => send(ReplayEvent::End {
                    files: files
                        .into_iter()
                        .map(|s| FileSummary { path: s.path, format: s.format, frames: s.frames as i64, non_packet_records: s.non_packet_records as i64, truncated: s.truncated, late: s.late as i64 })
                        .collect(),
                }),
                Err(e) => send(ReplayEvent::Error { message: error::message(&e), code: e.code().as_str().into() }),
            }
        })
        .map_err(|e| err(Code::Thread, e))?;
    Ok(ReplayHandle { stop, in_js })
}

/// How long before the newest frame of its file a replayed frame may be stamped and still be
/// counted in its own interval (ms).
#[napi]
pub fn reorder_window_ms() -> i64 {
    replay::REORDER_WINDOW_MS
}

/// A capture file's identity by its whole content (length and 128-bit XXH3).
#[napi]
pub fn capture_identity(file: String) -> Result<String, String> {
    replay::identity(&PathBuf::from(file)).map_err(js_error)
}

/// A capture file's identity, or the error (its code and message) that kept it from being read.
#[napi(object)]
pub struct IdentityResult {
    pub identity: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
}

pub struct IdentityTask(PathBuf);

impl Task for IdentityTask {
    type Output = IdentityResult;
    type JsValue = IdentityResult;

    fn compute(&mut self) -> Result<IdentityResult> {
        Ok(match replay::identity(&self.0) {
            Ok(id) => IdentityResult { identity: Some(id), code: None, message: None },
            Err(e) => IdentityResult { identity: None, code: Some(e.code().as_str().to_string()), message: Some(error::message(&e)) },
        })
    }

    fn resolve(&mut self, _env: Env, out: IdentityResult) -> Result<IdentityResult> {
        Ok(out)
    }
}

/// `captureIdentity` on a thread of libuv's pool, so that the read of the whole file runs beside
/// a replay's counting instead of before it.
#[napi]
pub fn capture_identity_async(file: String) -> AsyncTask<IdentityTask> {
    AsyncTask::new(IdentityTask(PathBuf::from(file)))
}

traffic_counter_core::capture_option_fields!(napi_options! [
    #[doc = " Live capture options (see `traffic-counter record --help`; defaults and ranges: core"]
    #[doc = " `options.rs`, checked by `Options::validate`)."]
    LiveCaptureOptions => CaptureOptions {
        #[doc = " Interface to capture on (required)."]
        iface: String,
        count: CountOptions,
    }
]);

#[napi(object)]
pub struct CaptureInfo {
    pub iface: String,
    pub workers: u32,
    pub linktype: u32,
    pub ebpf_attached_sockets: u32,
    pub fanout_group: u32,
    /// "kernel" or "ring": where frames are counted.
    pub count_in: String,
    /// Why `--count-in auto` counts in the ring (empty otherwise).
    pub count_in_why: String,
    /// Memlock the kernel charged for the counting program's maps, in bytes (0 in ring mode).
    pub kernel_map_bytes: f64,
    /// Kernel mode: the socket whose ring feeds names only (0 or 1).
    pub names_sockets: u32,
}

/// A running live capture. Batches arrive through the callback given to `start`.
#[napi]
pub struct LiveCapture {
    inner: Arc<Mutex<Option<CoreCapture>>>,
    info: CaptureInfo,
    ignore_file: Option<String>,
    accept_source_file: Option<String>,
}

#[napi]
impl LiveCapture {
    /// Opens the rings, loads and attaches the filter, joins the fanout group and starts the
    /// workers. Throws with `code` ERR_TC_PERMISSION, ERR_TC_NO_INTERFACE, ERR_TC_FANOUT_TAKEN,
    /// ERR_TC_BAD_OPTION, ERR_TC_CIDR_FILE, ERR_TC_EBPF or ERR_TC_SYSCALL.
    #[napi(factory)]
    pub fn start(options: LiveCaptureOptions, on_event: Function<'_, LiveEvent, ()>) -> Result<LiveCapture, String> {
        let c = &options.count;
        let (ignore, accept) = load_rules(&c.ignore_file, &c.accept_source_file)?;
        let v = Options { count: c.core(), capture: options.core() }
        .validate()
        .map_err(bad_option)?;
        let group = v.fanout_group;
        let lo = LiveOptions {
            iface: options.iface.clone(),
            workers: v.workers,
            ring: v.ring,
            fanout_group: group,
            interval_ms: v.interval_ms,
            max_keys: v.max_keys,
            flows: v.flows,
            max_names: v.max_names,
            ebpf: v.ebpf,
            snaplen: v.snaplen,
            ignore,
            accept_source: accept,
            count_in: v.count_in,
        };
        let mut handover = Handover::new(v.handover_max_batches, v.handover_max_bytes);
        // Runs on the JS thread as each event is delivered: the batch is taken, its place given back.
        let deliver = on_event
            .build_threadsafe_function::<Delivery>()
            .build_callback(|ctx: ThreadsafeCallContext<Delivery>| {
                let Delivery { event, held } = ctx.value;
                if let Some(h) = held {
                    h.release();
                }
                Ok(event)
            })
            .map_err(|e| err(Code::Thread, e))?;
        let cap = CoreCapture::start(lo, move |ev| {
            let b = match ev {
                live::LiveEvent::Batch(b) => b,
                live::LiveEvent::Warning(message) => {
                    deliver.call(Delivery { event: LiveEvent::Warning { message }, held: None }, ThreadsafeFunctionCallMode::NonBlocking);
                    return;
                }
                live::LiveEvent::Failed { message, code } => {
                    // Blocking: it must not be lost, and it comes once.
                    deliver.call(Delivery { event: LiveEvent::Failed { message, code: code.as_str().into() }, held: None }, ThreadsafeFunctionCallMode::Blocking);
                    return;
                }
            };
            let last = b.last;
            let interval = handover::DroppedInterval { start_ms: b.start_ms, end_ms: b.end_ms };
            let batch = to_native(b);
            // The last batch (on stop) always goes; the others never hold up the engine.
            let Some(admitted) = handover.offer(interval, batch_bytes(&batch), last) else {
                return;
            };
            let dropped = admitted.dropped.iter().map(|d| DroppedInterval { start_ms: d.start_ms as f64, end_ms: d.end_ms as f64 }).collect();
            deliver.call(Delivery { event: LiveEvent::Batch { batch, dropped }, held: Some(admitted.held) }, ThreadsafeFunctionCallMode::NonBlocking);
            if last {
                deliver.call(Delivery { event: LiveEvent::End, held: None }, ThreadsafeFunctionCallMode::Blocking);
            }
        })
        .map_err(js_error)?;
        let k = &cap.counted_in;
        let info = CaptureInfo {
            iface: options.iface,
            // Kernel mode counts on one socket, whatever --workers says.
            workers: if k.kernel { 1 } else { v.workers as u32 },
            linktype: cap.linktype,
            ebpf_attached_sockets: cap.attached as u32,
            fanout_group: group as u32,
            count_in: if k.kernel { "kernel" } else { "ring" }.into(),
            count_in_why: k.why.clone(),
            kernel_map_bytes: k.map_bytes as f64,
            names_sockets: k.names_sockets as u32,
        };
        Ok(LiveCapture { inner: Arc::new(Mutex::new(Some(cap))), info, ignore_file: c.ignore_file.clone(), accept_source_file: c.accept_source_file.clone() })
    }

    #[napi(getter)]
    pub fn info(&self) -> CaptureInfo {
        CaptureInfo { iface: self.info.iface.clone(), count_in: self.info.count_in.clone(), count_in_why: self.info.count_in_why.clone(), ..self.info }
    }

    /// Re-reads the CIDR files given at start and swaps them into the filter maps and the
    /// userspace rules, without re-attaching. On a bad file nothing changes and this throws.
    #[napi]
    pub fn reload_rules(&self) -> Result<(), String> {
        let (ignore, accept) = load_rules(&self.ignore_file, &self.accept_source_file)?;
        let g = self.inner.lock().unwrap();
        if let Some(c) = g.as_ref() {
            c.reload(&ignore, accept.as_deref()).map_err(js_error)?;
        }
        Ok(())
    }

    /// Counts the frames the kernel already holds, flushes the partial interval and stops; the last batch (last = true) and an `end` event
    /// follow through the callback. Returns at once: the joins happen on a helper thread.
    #[napi]
    pub fn stop(&self) {
        let inner = self.inner.clone();
        if let Some(c) = inner.lock().unwrap().as_ref() {
            c.request_stop();
        }
        std::thread::spawn(move || {
            if let Some(mut c) = inner.lock().unwrap().take() {
                c.join();
            }
        });
    }
}

/// Checks `--count-in` for a live capture (`live`) or a replay before anything is set up;
/// throws ERR_TC_BAD_OPTION. (What the interface and the kernel allow is settled at start.)
#[napi]
pub fn check_count_in(count_in: Option<String>, live: bool) -> Result<(), String> {
    let _ = live;
    Options { count: options::CountOptions { count_in, ..Default::default() }, ..Options::default() }.validate().map_err(bad_option)?;
    Ok(())
}

/// Checks, without counting, that every file is a pcap or pcapng capture with a supported link
/// type (Ethernet only with `kernel`, for `--count-in kernel`); throws ERR_TC_NOT_A_CAPTURE or
/// ERR_TC_OPEN naming the file.
#[napi]
pub fn probe_captures(files: Vec<String>, kernel: Option<bool>) -> Result<(), String> {
    let paths: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    replay::probe(&paths, kernel.unwrap_or(false)).map_err(js_error)
}

/// Checks a CIDR file the way `--ignore-file` / `--accept-source-file` read it; returns the
/// number of entries or throws ERR_TC_CIDR_FILE naming the file and line.
#[napi]
pub fn check_cidr_file(path: String) -> Result<u32, String> {
    read_cidr_file(&PathBuf::from(&path)).map(|v| v.len() as u32).map_err(js_error)
}

/// Takes the database's writer lock (`lock::try_lock` on `path`) without waiting: the open
/// descriptor, which the caller keeps for as long as it writes (the kernel releases the lock when
/// it is closed or the process ends), or null when another process holds the lock.
#[napi]
pub fn try_lock_file(path: String) -> Result<Option<i32>, String> {
    use std::os::unix::io::IntoRawFd;
    lock::try_lock(&PathBuf::from(&path)).map(|f| f.map(|f| f.into_raw_fd())).map_err(|e| err(Code::Lock, format!("cannot lock {path}: {e}")))
}

/// The SQLite functions of native/sqlite/ (the writer's table function `tc_rows`, the readers' aggregate `tc_group`), for better-sqlite3's
/// `loadExtension(<this addon's file>, "sqlite3_tcrows_init")`. Not part of the napi surface:
/// SQLite calls it, with its own API table.
///
/// # Safety
/// Only SQLite's extension loader calls it, with a valid connection, error slot and API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_tcrows_init(db: *mut std::ffi::c_void, err: *mut *mut std::ffi::c_char, api: *const std::ffi::c_void) -> std::ffi::c_int {
    extern "C" {
        fn tc_rows_init(db: *mut std::ffi::c_void, err: *mut *mut std::ffi::c_char, api: *const std::ffi::c_void) -> std::ffi::c_int;
    }
    tc_rows_init(db, err, api)
}
