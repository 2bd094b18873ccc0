//! Replay of pcap and pcapng files (through the `pcap-file` crate's zero-copy parsers over a
//! memory map). Intervals come from packet timestamps.

use crate::batch::{interval_start, Batch};
use crate::filter::FilterError;
use crate::kcount::{test_run_takes, KernelCount, KernelCounter, Outcome, TEST_RUN_MAX};
use crate::names::collect::{NameCollector, Order};
use crate::names::Reader;
use crate::parse::{self, Parsed};
use crate::rules::{Rules, Verdict};
use crate::table::{Deferred, FlowCounters, FlowKey, Tables};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::PcapError;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot open capture file {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a pcap or pcapng capture file ({why})")]
    NotACapture { path: String, why: String },
    #[error("{path}: link type {linktype} is not supported (supported: 0 NULL, 1 Ethernet, 12/14/101 raw IP, 108 LOOP, 113 Linux SLL, 228 IPv4, 229 IPv6, 276 Linux SLL2)")]
    LinkType { path: String, linktype: u32 },
    #[error("{path}: link type {linktype} cannot be counted with --count-in kernel, which runs Ethernet frames only through the kernel's counting program; replay it with --count-in ring")]
    KernelLinkType { path: String, linktype: u32 },
    #[error("--count-in kernel: {0}")]
    Kernel(#[source] FilterError),
    #[error("--count-in kernel: running a frame of {len} bytes through the counting program (BPF_PROG_TEST_RUN) failed")]
    TestRun {
        len: usize,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Coded for ReplayError {
    fn code(&self) -> crate::error::Code {
        match self {
            ReplayError::Open { .. } => crate::error::Code::Open,
            ReplayError::NotACapture { .. } | ReplayError::LinkType { .. } => crate::error::Code::NotACapture,
            // A capture, but not one --count-in kernel can count: the option is what to change,
            // as for a live interface without an Ethernet header.
            ReplayError::KernelLinkType { .. } => crate::error::Code::BadOption,
            ReplayError::Kernel(FilterError::Permission { .. }) => crate::error::Code::Permission,
            ReplayError::Kernel(_) | ReplayError::TestRun { .. } => crate::error::Code::Ebpf,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub interval_ms: i64,
    pub max_keys: usize,
    pub flows: bool,
    /// New (address, name, source) pairs per interval; 0: names are not read.
    pub max_names: usize,
    pub rules: Rules,
    /// Count in the kernel (`--count-in kernel`): every Ethernet frame runs through the counting
    /// program (BPF_PROG_TEST_RUN); `None` counts in userspace.
    pub kernel: Option<KernelCount>,
}

pub enum ReplayEvent {
    Batch(Batch),
    Warning(String),
    /// Bytes of input read so far and in all (for a progress bar).
    Progress { done: u64, total: u64 },
}

#[derive(Default, Debug, Clone)]
pub struct FileSummary {
    pub path: String,
    pub format: String,
    pub frames: u64,
    pub non_packet_records: u64,
    pub truncated: bool,
    /// Frames counted outside their own interval (beyond `REORDER_WINDOW_MS`).
    pub late: u64,
    /// With `--count-in kernel`: frames the kernel's program counted (the rest were counted in
    /// userspace).
    pub kernel_counted: u64,
}

enum Format {
    Pcap,
    PcapNg,
}

struct Mapped {
    path: String,
    map: memmap2::Mmap,
    format: Format,
}

/// Checks that every file can be opened and starts like a pcap or pcapng file with a supported
/// link type, without counting anything.
pub fn probe(paths: &[PathBuf], kernel: bool) -> Result<(), ReplayError> {
    open_all(paths, kernel).map(|_| ())
}

/// Opens and checks every file before anything is counted, so a bad file among several records
/// nothing.
/// With `kernel`, every link type must be Ethernet (the counting program reads Ethernet frames).
fn open_all(paths: &[PathBuf], kernel: bool) -> Result<Vec<Mapped>, ReplayError> {
    let mut out = Vec::new();
    for p in paths {
        let path = p.display().to_string();
        let f = File::open(p).map_err(|source| ReplayError::Open { path: path.clone(), source })?;
        let meta = f.metadata().map_err(|source| ReplayError::Open { path: path.clone(), source })?;
        if meta.is_dir() {
            return Err(ReplayError::NotACapture { path, why: "it is a directory".into() });
        }
        if meta.len() < 4 {
            return Err(ReplayError::NotACapture { path, why: format!("only {} bytes long", meta.len()) });
        }
        // SAFETY: read-only private map; a file truncated under us would SIGBUS, as with any
        // mmap reader (tcpdump reads with stdio instead). Capture files are not rewritten in place.
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|source| ReplayError::Open { path: path.clone(), source })?;
        let _ = map.advise(memmap2::Advice::Sequential);
        let format = match &map[..4] {
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                PcapNgParser::new(&map[..]).map_err(|e| ReplayError::NotACapture { path: path.clone(), why: format!("pcapng section header: {e}") })?;
                if kernel {
                    if let Some(linktype) = pcapng_linktypes(&map[..]).into_iter().find(|&lt| lt != parse::linktype::ETHERNET) {
                        return Err(ReplayError::KernelLinkType { path, linktype });
                    }
                }
                Format::PcapNg
            }
            _ => {
                let (_, parser) = PcapParser::new(&map[..]).map_err(|e| ReplayError::NotACapture {
                    path: path.clone(),
                    why: match e {
                        PcapError::IncompleteBuffer => "shorter than a pcap file header".to_string(),
                        _ => "no pcap or pcapng magic number at its start".to_string(),
                    },
                })?;
                let lt = u32::from(parser.header().datalink) & 0x0FFF_FFFF;
                if !parse::linktype::supported(lt) {
                    return Err(ReplayError::LinkType { path, linktype: lt });
                }
                if kernel && lt != parse::linktype::ETHERNET {
                    return Err(ReplayError::KernelLinkType { path, linktype: lt });
                }
                Format::Pcap
            }
        };
        out.push(Mapped { path, map, format });
    }
    Ok(out)
}

/// The link types of every interface a pcapng file describes (its blocks read up to the first
/// damaged one: the replay reports that one).
fn pcapng_linktypes(data: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok((mut rem, mut parser)) = PcapNgParser::new(data) else {
        return out;
    };
    while !rem.is_empty() {
        let Ok((r, block)) = parser.next_block(rem) else {
            break;
        };
        rem = r;
        if let Block::InterfaceDescription(idb) = block {
            out.push(u32::from(idb.linktype) & 0x0FFF_FFFF);
        }
    }
    out
}

/// How long (ms) before the newest frame of its file a frame may be stamped and still be counted
/// in the interval its own timestamp falls in. Multi-queue captures (one ring or queue per CPU,
/// merged by the capturing tool) interleave their queues' frames out of order by up to tens of
/// seconds. An interval is flushed once the file's newest timestamp is past its end by this much;
/// a frame stamped before that (its interval already flushed) is counted in the oldest interval
/// still open and in `late`.
pub const REORDER_WINDOW_MS: i64 = 60_000;

/// Counting state of one file: each file of a replay is its own session. Several intervals are
/// open at once (those within the reorder window of the newest frame), each with its own tables.
/// Their tables hold at most `OPEN_TABLES` full tables' room in all (`open_room`): past that the
/// oldest open interval is flushed before the window has passed it, and a frame of it read
/// later is counted late, as beyond the window.
struct Counter<'a> {
    opts: &'a ReplayOptions,
    /// Open intervals by start.
    open: BTreeMap<i64, Tables>,
    /// The newest frame timestamp seen in this file.
    newest_ms: i64,
    /// End of the last interval flushed: an interval starting before it never opens again.
    flushed_end: i64,
    last_ts_ms: i64,
    /// Frames counted outside their own interval (beyond the reorder window).
    late: u64,
    /// Keys of the last interval flushed: the capacity new intervals start with.
    keys_hint: usize,
    /// Room (hash table capacity, addresses and flows) of the open intervals' tables.
    open_room: usize,
    /// The names of the open intervals, with `max_names` above 0.
    names: Option<(Reader, NameCollector)>,
    /// Names seen so far: a name's place in capture order.
    seen: u64,
    /// Counting in the kernel: the program, and the interval its active buffer counts for.
    kernel: Option<(&'a mut KernelCounter, Option<i64>)>,
    /// The first failure of the kernel path: the replay stops and reports it.
    failed: Option<ReplayError>,
    kernel_counted: u64,
    /// Per-IP updates held back for the open interval starting at `deferred.0`
    /// (`table::Deferred`): applied before that interval's tables are read, flushed, or counted
    /// into by anything else.
    deferred: (i64, Deferred),
    /// With `--flows` counted in userspace: the thread that counts the flows, and per open
    /// interval the room its flow table may have grown to (`FlowRoom`).
    flow_thread: Option<FlowThread>,
    flow_rooms: BTreeMap<i64, FlowRoom>,
}

/// Flows counted on a thread of their own (`tc-flows`) while the replay thread parses and counts
/// per address. The per-IP and flow tables are independent (each keeps its first `max_keys`
/// keys in packet order, the rest in its overflow row), so the flow thread, fed every flow key
/// in packet order, ends each interval with the flow table one thread would have counted: the
/// batches are the same, and a replay's counting takes both cores of a small host.
struct FlowThread {
    tx: Option<mpsc::SyncSender<FlowMsg>>,
    /// Record buffers the flow thread is done with, for reuse.
    spare: mpsc::Receiver<Vec<FlowRec>>,
    taken: mpsc::Receiver<Tables>,
    buf: Vec<FlowRec>,
    handle: Option<std::thread::JoinHandle<()>>,
}

struct FlowRec {
    start: i64,
    key: FlowKey,
    bytes: u32,
}

enum FlowMsg {
    /// An interval opens with flow-table room for `capacity` keys.
    Open { start: i64, capacity: usize },
    Recs(Vec<FlowRec>),
    /// Hand the interval's flow table back (it is flushed).
    Take(i64),
}

/// Flow records handed over at once.
const FLOW_BATCH: usize = 8192;
/// Batches of records waiting for the flow thread.
const FLOW_QUEUE: usize = 4;
/// Memory of the flow records in flight: the queued batches, the one the flow thread counts and
/// the one being filled (a batch is allocated only when no counted one is back for reuse).
pub const FLOW_RECORDS_BYTES: u64 = ((FLOW_QUEUE + 2) * FLOW_BATCH * std::mem::size_of::<FlowRec>()) as u64;

impl FlowThread {
    fn spawn(max_keys: usize) -> FlowThread {
        // A few batches in flight: the replay thread runs ahead of the flow thread by at most that.
        let (tx, rx) = mpsc::sync_channel::<FlowMsg>(FLOW_QUEUE);
        let (spare_tx, spare) = mpsc::channel();
        let (taken_tx, taken) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("tc-flows".into())
            .spawn(move || {
                let mut open: BTreeMap<i64, Tables> = BTreeMap::new();
                for m in rx {
                    match m {
                        FlowMsg::Open { start, capacity } => {
                            let mut t = Tables::with_capacity(max_keys, true, 0);
                            t.flows.reserve(capacity.min(max_keys));
                            open.insert(start, t);
                        }
                        FlowMsg::Recs(mut v) => {
                            for r in &v {
                                let t = open.get_mut(&r.start).expect("a flow's interval is open");
                                t.add_flow(r.key, &FlowCounters { packets: 1, bytes: r.bytes as u64 });
                            }
                            v.clear();
                            let _ = spare_tx.send(v);
                        }
                        FlowMsg::Take(start) => {
                            let _ = taken_tx.send(open.remove(&start).expect("a flushed interval was open"));
                        }
                    }
                }
            })
            .expect("spawn the flow thread");
        FlowThread { tx: Some(tx), spare, taken, buf: Vec::with_capacity(FLOW_BATCH), handle: Some(handle) }
    }

    fn send(&mut self, m: FlowMsg) {
        self.tx.as_ref().expect("sending before drop").send(m).expect("the flow thread runs while the replay does");
    }

    /// Hands the buffered records over.
    fn hand_over(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let next = self.spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(FLOW_BATCH));
        let full = std::mem::replace(&mut self.buf, next);
        self.send(FlowMsg::Recs(full));
    }

    #[inline]
    fn push(&mut self, start: i64, key: FlowKey, bytes: u32) {
        self.buf.push(FlowRec { start, key, bytes });
        if self.buf.len() == FLOW_BATCH {
            self.hand_over();
        }
    }

    fn open(&mut self, start: i64, capacity: usize) {
        self.hand_over();
        self.send(FlowMsg::Open { start, capacity });
    }

    /// The interval's flow table, once every record before this call is counted.
    fn take(&mut self, start: i64) -> Tables {
        self.hand_over();
        self.send(FlowMsg::Take(start));
        self.taken.recv().expect("the flow thread answers")
    }
}

impl Drop for FlowThread {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What the replay thread counts of an open interval's flow table on the flow thread, for the
/// bound on the open intervals' room: no more keys than flow records sent, so no more room than
/// a table grown from its opening capacity to hold that many (`budget::table_room`).
struct FlowRoom {
    records: usize,
    /// The room counted into `open_room` for this table.
    room: usize,
    opening: usize,
    /// The room of a full table: `room` never grows past it.
    full: usize,
}

/// Full tables' room the open intervals of a replayed file may hold in all (`budget::replay`).
pub const OPEN_TABLES: usize = 2;
/// Keys a new interval's tables have room for at least.
const MIN_CAPACITY: usize = 16;

impl<'a> Counter<'a> {
    fn new(opts: &'a ReplayOptions, kernel: Option<&'a mut KernelCounter>) -> Counter<'a> {
        let flow_thread = opts.flows && kernel.is_none();
        Counter::with_flow_thread(opts, kernel, flow_thread)
    }

    fn with_flow_thread(opts: &'a ReplayOptions, kernel: Option<&'a mut KernelCounter>, flow_thread: bool) -> Counter<'a> {
        let names = (opts.max_names > 0).then(|| (Reader::default(), NameCollector::new(opts.max_names)));
        Counter {
            opts,
            open: BTreeMap::new(),
            newest_ms: i64::MIN,
            flushed_end: i64::MIN,
            last_ts_ms: 0,
            late: 0,
            keys_hint: MIN_CAPACITY,
            open_room: 0,
            names,
            seen: 0,
            kernel: kernel.map(|k| (k, None)),
            failed: None,
            kernel_counted: 0,
            deferred: (i64::MIN, Deferred::default()),
            flow_thread: flow_thread.then(|| FlowThread::spawn(opts.max_keys)),
            flow_rooms: BTreeMap::new(),
        }
    }

    /// Applies the held-back per-IP updates to their interval's tables.
    fn settle(&mut self) {
        let (start, d) = &mut self.deferred;
        if !d.is_empty() {
            d.apply(self.open.get_mut(start).expect("an interval is open while updates are held back for it"));
        }
    }

    /// Switches the kernel's buffers if its active one counts for another interval than `to`
    /// (packet time crossed a boundary), adding what it counted into that interval's tables.
    fn kernel_to(&mut self, to: Option<i64>) {
        let Some((k, active)) = &mut self.kernel else {
            return;
        };
        if *active == to {
            return;
        }
        let (start, d) = &mut self.deferred;
        if !d.is_empty() {
            d.apply(self.open.get_mut(start).expect("an interval is open while updates are held back for it"));
        }
        if let Some(prev) = active.take() {
            let t = self.open.get_mut(&prev).expect("the kernel's interval is open until drained");
            let before = t.room();
            if let Err(e) = k.switch(t) {
                self.failed.get_or_insert(ReplayError::Kernel(e));
            }
            self.open_room = self.open_room + t.room() - before;
        }
        *active = to;
    }

    /// Runs an Ethernet frame through the kernel's counting program: whether it counted it.
    fn kernel_counted(&mut self, counted_in: i64, lt: u32, data: &[u8]) -> bool {
        if self.kernel.is_none() || self.failed.is_some() || lt != parse::linktype::ETHERNET || !test_run_takes(data) {
            return false;
        }
        self.kernel_to(Some(counted_in));
        let (k, _) = self.kernel.as_mut().expect("checked above");
        let frame = &data[..data.len().min(TEST_RUN_MAX)];
        match k.test_run(frame) {
            Ok(Outcome::Counted) => {
                self.kernel_counted += 1;
                true
            }
            Ok(Outcome::Returned) => false,
            Err(source) => {
                self.failed.get_or_insert(ReplayError::TestRun { len: frame.len(), source });
                false
            }
        }
    }

    /// The room the open intervals may hold: `OPEN_TABLES` tables filled to `max_keys`.
    fn max_room(&self) -> usize {
        OPEN_TABLES * crate::budget::table_room(self.opts.max_keys) * (1 + self.opts.flows as usize)
    }

    /// Whether the interval starting at `start` is past the window of the newest frame.
    #[inline]
    fn due(&self, start: i64) -> bool {
        start.saturating_add(self.opts.interval_ms).saturating_add(REORDER_WINDOW_MS) <= self.newest_ms
    }

    #[inline]
    fn packet(&mut self, ts_ms: i64, lt: u32, data: &[u8], sink: &mut dyn FnMut(ReplayEvent)) {
        self.last_ts_ms = ts_ms;
        if ts_ms > self.newest_ms {
            self.newest_ms = ts_ms;
            while let Some(&first) = self.open.keys().next() {
                if !self.due(first) {
                    break;
                }
                self.flush_first(false, sink);
            }
        }
        let start = interval_start(ts_ms, self.opts.interval_ms);
        let late = start < self.flushed_end || self.due(start);
        if !late && !self.open.contains_key(&start) {
            // Sized like the last interval flushed (a trickle keeps many small intervals open),
            // within the room the open intervals have left.
            let left = self.max_room().saturating_sub(self.open_room) / (1 + self.opts.flows as usize);
            let mut hint = self.keys_hint;
            while hint > MIN_CAPACITY && crate::budget::table_room(hint) > left {
                hint /= 2;
            }
            let t = Tables::with_capacity(self.opts.max_keys, self.opts.flows && self.flow_thread.is_none(), hint);
            self.open_room += t.room();
            if let Some(ft) = &mut self.flow_thread {
                let opening = crate::budget::table_room(hint.min(self.opts.max_keys));
                ft.open(start, hint);
                self.open_room += opening;
                let full = crate::budget::table_room(self.opts.max_keys);
                self.flow_rooms.insert(start, FlowRoom { records: 0, room: opening, opening, full });
            }
            self.open.insert(start, t);
        }
        // The newest frame's interval is never due, so one interval is always open for a late frame.
        let counted_in = if late { *self.open.keys().next().expect("the newest frame's interval is open") } else { start };
        if late {
            self.open.get_mut(&counted_in).expect("opened above").totals.late += 1;
            self.late += 1;
        }
        if self.kernel_counted(counted_in, lt, data) {
            // Counted in the kernel; userspace reads only names from it, by the same rules.
            if let Some((reader, collector)) = &mut self.names {
                if let Some(Parsed::Ip(ip)) = parse::parse_frame(lt, data) {
                    if self.opts.rules.is_noop() || self.opts.rules.verdict(&ip) == Verdict::Keep {
                        let tables = self.open.get_mut(&counted_in).expect("opened above");
                        let seen = &mut self.seen;
                        reader.read(data, &ip, ts_ms.saturating_mul(1_000_000), &mut tables.names, &mut |a, src, name| {
                            *seen += 1;
                            collector.see(counted_in, a, src, name, Order { major: 0, minor: *seen });
                        });
                    }
                }
            }
            // Its keys reach the tables when the maps are drained (`kernel_to`): the same
            // bound on the open intervals' room as below.
            while self.open_room > self.max_room() && self.open.len() > 1 && self.open.keys().next() != Some(&start) {
                self.flush_first(false, sink);
            }
            return;
        }
        if self.deferred.0 != counted_in {
            self.settle();
            self.deferred.0 = counted_in;
        }
        let tables = self.open.get_mut(&counted_in).expect("opened above");
        let before = tables.room();
        let parsed = parse::parse_frame(lt, data).unwrap_or(Parsed::NonIp);
        if let Parsed::Ip(ip) = &parsed {
            if !self.opts.rules.is_noop() && self.opts.rules.verdict(ip) != Verdict::Keep {
                tables.totals.ignored += 1;
                return;
            }
        }
        tables.count_deferred(&parsed, &mut self.deferred.1);
        if let (Some(ft), Parsed::Ip(p)) = (&mut self.flow_thread, &parsed) {
            ft.push(counted_in, FlowKey { src: p.src, dst: p.dst, proto: p.proto, sport: p.sport, dport: p.dport }, p.bytes);
            let r = self.flow_rooms.get_mut(&counted_in).expect("opened above");
            r.records += 1;
            if r.records > r.room && r.room < r.full {
                let room = r.opening.max(crate::budget::table_room(r.records.min(self.opts.max_keys)));
                self.open_room = self.open_room + room - r.room;
                r.room = room;
            }
        }
        if let (Some((reader, collector)), Parsed::Ip(ip)) = (&mut self.names, &parsed) {
            let seen = &mut self.seen;
            reader.read(data, ip, ts_ms.saturating_mul(1_000_000), &mut tables.names, &mut |a, src, name| {
                *seen += 1;
                collector.see(counted_in, a, src, name, Order { major: 0, minor: *seen });
            });
        }
        self.open_room = self.open_room + tables.room() - before;
        // Past the room, the oldest intervals go early (never the one just counted in).
        while self.open_room > self.max_room() && self.open.len() > 1 && self.open.keys().next() != Some(&start) {
            self.flush_first(false, sink);
        }
    }

    /// Flushes the oldest open interval (`last`: the final batch of the file).
    fn flush_first(&mut self, last: bool, sink: &mut dyn FnMut(ReplayEvent)) {
        self.settle();
        if let Some(&first) = self.open.keys().next() {
            if self.kernel.as_ref().is_some_and(|(_, active)| *active == Some(first)) {
                self.kernel_to(None);
            }
        }
        let Some((start, mut t)) = self.open.pop_first() else {
            return;
        };
        let end = start + self.opts.interval_ms;
        self.flushed_end = end;
        self.open_room -= t.room();
        if let Some(ft) = &mut self.flow_thread {
            self.open_room -= self.flow_rooms.remove(&start).expect("an open interval's flow room").room;
            let f = ft.take(start);
            t.count_flows = true;
            t.flows = f.flows;
            t.flow_overflow = f.flow_overflow;
            t.flow_overflow_sketch = f.flow_overflow_sketch;
        }
        self.keys_hint = t.ips.len().max(t.flows.len()).max(MIN_CAPACITY);
        let mut b = Batch::from_tables(start, end, t);
        if let Some((_, collector)) = &mut self.names {
            b.names = collector.take(start).into_batch();
        }
        b.last = last;
        sink(ReplayEvent::Batch(b));
    }

    /// Flushes every open interval in start order (end of the file, or a stop).
    fn flush_all(&mut self, sink: &mut dyn FnMut(ReplayEvent)) {
        while !self.open.is_empty() {
            let last = self.open.len() == 1;
            self.flush_first(last, sink);
        }
    }
}

fn ts_ms_from_units(units: u64, tsresol: u8) -> i64 {
    let v = (tsresol & 0x7F) as u32;
    let ms: u128 = if tsresol & 0x80 != 0 {
        ((units as u128) * 1000) >> v.min(127)
    } else if v >= 3 {
        (units as u128) / 10u128.pow((v - 3).min(30))
    } else {
        (units as u128) * 10u128.pow(3 - v)
    };
    ms.min(i64::MAX as u128) as i64
}

/// Replays `paths` in order, each file as its own session: its intervals are counted and flushed
/// on their own (a file never adds to another's intervals), and its last batch is `last`. `stop`
/// ends the replay early (the open intervals are still flushed). Returns one summary per file;
/// warnings (a file that ends early, frames beyond the reorder window) go to `sink`.
pub fn replay(
    paths: &[PathBuf],
    opts: &ReplayOptions,
    stop: Arc<AtomicBool>,
    sink: &mut dyn FnMut(ReplayEvent),
) -> Result<Vec<FileSummary>, ReplayError> {
    let files = open_all(paths, opts.kernel.is_some())?;
    let mut kernel = match &opts.kernel {
        Some(k) => {
            let mut c = KernelCounter::load(opts.max_keys, opts.flows).map_err(ReplayError::Kernel)?;
            c.set_rules(&k.ignore, k.accept.as_deref()).map_err(ReplayError::Kernel)?;
            Some(c)
        }
        None => None,
    };
    let total: u64 = files.iter().map(|f| f.map.len() as u64).sum();
    let mut done_before = 0u64;
    let mut summaries = Vec::new();
    for f in &files {
        let mut c = Counter::new(opts, kernel.as_mut());
        let mut s = FileSummary { path: f.path.clone(), ..Default::default() };
        let data = &f.map[..];
        let res = match f.format {
            Format::Pcap => replay_pcap(&f.map, &mut c, &mut s, &stop, done_before, total, sink),
            Format::PcapNg => replay_pcapng(&f.map, &mut c, &mut s, &stop, done_before, total, sink),
        };
        if let Err(why) = res {
            s.truncated = true;
            sink(ReplayEvent::Warning(format!(
                "{} ends early ({why}); the {} frames before that point were recorded",
                f.path, s.frames
            )));
        }
        c.flush_all(sink);
        if let Some(e) = c.failed.take() {
            return Err(e);
        }
        s.late = c.late;
        s.kernel_counted = c.kernel_counted;
        if c.late > 0 {
            sink(ReplayEvent::Warning(format!(
                "{}: {} frame{} stamped more than {} s before the newest frame read before {} (beyond the reorder window): counted in the oldest interval still open instead of {} own, and in `late` (tc-query status)",
                f.path,
                c.late,
                if c.late == 1 { " was" } else { "s were" },
                REORDER_WINDOW_MS / 1000,
                if c.late == 1 { "it" } else { "them" },
                if c.late == 1 { "its" } else { "their" },
            )));
        }
        done_before += data.len() as u64;
        sink(ReplayEvent::Progress { done: done_before, total });
        summaries.push(s);
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    Ok(summaries)
}

/// The identity of a capture file by its whole content: its length and the 128-bit XXH3 of
/// every byte (a file differing from another anywhere, even in one byte in the middle, has
/// another identity). What it costs: docs/recording.md.
pub fn identity(path: &Path) -> Result<String, ReplayError> {
    let p = path.display().to_string();
    let f = File::open(path).map_err(|source| ReplayError::Open { path: p.clone(), source })?;
    let len = f.metadata().map_err(|source| ReplayError::Open { path: p.clone(), source })?.len();
    let hash = if len == 0 {
        xxhash_rust::xxh3::xxh3_128(&[])
    } else {
        // SAFETY: as in `open_all`.
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|source| ReplayError::Open { path: p.clone(), source })?;
        let _ = map.advise(memmap2::Advice::Sequential);
        xxhash_rust::xxh3::xxh3_128(&map[..])
    };
    Ok(format!("{len}:{hash:032x}"))
}

const PROGRESS_EVERY: u64 = 1 << 24;
const STOP_CHECK_EVERY: u64 = 1 << 16;

/** Progress events every PROGRESS_EVERY bytes of input, and the stop check that goes with them. */
struct Progress<'m> {
    next: u64,
    before: u64,
    total: u64,
    map: &'m memmap2::Mmap,
}

impl<'m> Progress<'m> {
    fn new(map: &'m memmap2::Mmap, before: u64, total: u64) -> Progress<'m> {
        Progress { next: PROGRESS_EVERY, before, total, map }
    }

    /// Reports `done` bytes of the current file if due; returns whether the replay should stop.
    /// The pages read before `done` leave this process: the mapped file otherwise stays
    /// resident, and counts in its memory, up to the whole capture's size.
    fn tick(&mut self, done: u64, stop: &AtomicBool, sink: &mut dyn FnMut(ReplayEvent)) -> bool {
        if done < self.next {
            return false;
        }
        self.next = done + PROGRESS_EVERY;
        let page = 1 << 16;
        let upto = (done as usize) / page * page;
        // SAFETY: a private read-only mapping of a file that is not rewritten in place (see
        // `open_all`): pages dropped here read back the same bytes if touched again, and no
        // frame before `done` is still borrowed.
        let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, upto) };
        sink(ReplayEvent::Progress { done: self.before + done, total: self.total });
        stop.load(Ordering::Relaxed)
    }
}

fn replay_pcap(
    map: &memmap2::Mmap,
    c: &mut Counter,
    s: &mut FileSummary,
    stop: &AtomicBool,
    done_before: u64,
    total: u64,
    sink: &mut dyn FnMut(ReplayEvent),
) -> Result<(), String> {
    let data = &map[..];
    let (mut rem, parser) = PcapParser::new(data).map_err(|e| e.to_string())?;
    let hdr = parser.header();
    let lt = u32::from(hdr.datalink) & 0x0FFF_FFFF;
    let nanos = hdr.ts_resolution == pcap_file::TsResolution::NanoSecond;
    s.format = format!(
        "pcap, {}-endian, {} timestamps, snaplen {}, link type {lt}",
        if hdr.endianness == pcap_file::Endianness::Big { "big" } else { "little" },
        if nanos { "nanosecond" } else { "microsecond" },
        hdr.snaplen
    );
    let mut progress = Progress::new(map, done_before, total);
    while !rem.is_empty() {
        // The raw parser does not reject records whose on-wire length exceeds the snap length
        // (normal for captures taken with a small snaplen).
        let (r, pkt) = match parser.next_raw_packet(rem) {
            Ok(x) => x,
            Err(PcapError::IncompleteBuffer) => {
                return Err(format!("a record is cut short at byte {}", data.len() - rem.len()));
            }
            Err(e) => return Err(format!("damaged record at byte {}: {e}", data.len() - rem.len())),
        };
        rem = r;
        let frac_ms = if nanos { pkt.ts_frac / 1_000_000 } else { pkt.ts_frac / 1000 };
        let ts_ms = pkt.ts_sec as i64 * 1000 + frac_ms as i64;
        s.frames += 1;
        c.packet(ts_ms, lt, &pkt.data, sink);
        if s.frames % STOP_CHECK_EVERY == 0 && progress.tick((data.len() - rem.len()) as u64, stop, sink) {
            return Ok(());
        }
    }
    Ok(())
}

fn replay_pcapng(
    map: &memmap2::Mmap,
    c: &mut Counter,
    s: &mut FileSummary,
    stop: &AtomicBool,
    done_before: u64,
    total: u64,
    sink: &mut dyn FnMut(ReplayEvent),
) -> Result<(), String> {
    let data = &map[..];
    let (mut rem, mut parser) = PcapNgParser::new(data).map_err(|e| e.to_string())?;
    s.format = format!(
        "pcapng, {}-endian",
        if parser.section().endianness == pcap_file::Endianness::Big { "big" } else { "little" }
    );
    let mut progress = Progress::new(map, done_before, total);
    // (link type, if_tsresol, snaplen) of the current section's interfaces
    let iface = |parser: &PcapNgParser, id: u32| -> Result<(u32, u8, u32), String> {
        let idb = parser.interfaces().get(id as usize).ok_or_else(|| format!("packet names interface {id}, which is not described"))?;
        let tsresol = idb
            .options
            .iter()
            .find_map(|o| match o {
                InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                _ => None,
            })
            .unwrap_or(6);
        Ok((u32::from(idb.linktype) & 0x0FFF_FFFF, tsresol, idb.snaplen))
    };
    while !rem.is_empty() {
        let (r, block) = match parser.next_block(rem) {
            Ok(x) => x,
            Err(PcapError::IncompleteBuffer) => return Err(format!("a block is cut short at byte {}", data.len() - rem.len())),
            Err(e) => return Err(format!("damaged block at byte {}: {e}", data.len() - rem.len())),
        };
        rem = r;
        match block {
            Block::EnhancedPacket(epb) => {
                let (lt, res, _) = iface(&parser, epb.interface_id)?;
                let ts_ms = ts_ms_from_units(epb.timestamp.as_nanos() as u64, res);
                s.frames += 1;
                c.packet(ts_ms, lt, &epb.data, sink);
            }
            Block::SimplePacket(spb) => {
                // No timestamp and no interface id: interface 0, time of the previous packet.
                let (lt, _, snap) = iface(&parser, 0)?;
                let snap = if snap == 0 { u32::MAX } else { snap };
                let caplen = (spb.original_len.min(snap) as usize).min(spb.data.len());
                s.frames += 1;
                let ts = c.last_ts_ms;
                c.packet(ts, lt, &spb.data[..caplen], sink);
            }
            Block::Packet(pb) => {
                let (lt, res, _) = iface(&parser, pb.interface_id as u32)?;
                let ts_ms = ts_ms_from_units(pb.timestamp, res);
                s.frames += 1;
                c.packet(ts_ms, lt, &pb.data, sink);
            }
            Block::InterfaceDescription(idb) => {
                let lt = u32::from(idb.linktype) & 0x0FFF_FFFF;
                if !parse::linktype::supported(lt) {
                    sink(ReplayEvent::Warning(format!(
                        "{}: interface with link type {lt} is not supported; its frames count as non-IP",
                        s.path
                    )));
                }
            }
            Block::Unknown(u) if u.type_ == 0x0000_0BAD || u.type_ == 0x4000_0BAD => s.non_packet_records += 1,
            _ => {}
        }
        if progress.tick((data.len() - rem.len()) as u64, stop, sink) {
            return Ok(());
        }
    }
    Ok(())
}

/// Convenience for tests and tools: replays files and returns every batch.
pub fn replay_collect(paths: &[&Path], opts: &ReplayOptions) -> Result<(Vec<Batch>, Vec<String>), ReplayError> {
    let mut batches = Vec::new();
    let mut warnings = Vec::new();
    let owned: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
    replay(&owned, opts, Arc::new(AtomicBool::new(false)), &mut |e| match e {
        ReplayEvent::Batch(b) => batches.push(b),
        ReplayEvent::Warning(w) => warnings.push(w),
        ReplayEvent::Progress { .. } => {}
    })?;
    Ok((batches, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_timestamp_resolutions() {
        assert_eq!(ts_ms_from_units(1_700_000_000_123_456, 6), 1_700_000_000_123);
        assert_eq!(ts_ms_from_units(1_700_000_000_123_456_789, 9), 1_700_000_000_123);
        assert_eq!(ts_ms_from_units(5, 0), 5000);
        assert_eq!(ts_ms_from_units(3 << 10, 0x80 | 10), 3000);
    }

    /// A pcap file (Ethernet, IPv4 UDP, 100-byte packets) with one frame per timestamp (ms);
    /// each frame's source address is 10.0.0.(index + 1), so tests can tell frames apart.
    /// A temporary file, removed when dropped.
    struct Temp(PathBuf);

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    impl std::ops::Deref for Temp {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    fn pcap(name: &str, ts_ms: &[i64]) -> Temp {
        let mut out = Vec::new();
        for v in [0xa1b2c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (i, &ts) in ts_ms.iter().enumerate() {
            let mut frame = vec![0u8; 14 + 28];
            frame[12..14].copy_from_slice(&[0x08, 0x00]);
            let ip = &mut frame[14..];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&100u16.to_be_bytes());
            ip[9] = 17;
            ip[12..16].copy_from_slice(&[10, 0, 0, i as u8 + 1]);
            ip[16..20].copy_from_slice(&[192, 168, 0, 1]);
            for v in [(ts / 1000) as u32, ((ts % 1000) * 1000) as u32, frame.len() as u32, 114] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&frame);
        }
        let p = std::env::temp_dir().join(format!("tc-replay-test-{}-{name}.pcap", std::process::id()));
        std::fs::write(&p, out).unwrap();
        Temp(p)
    }

    fn opts(interval_ms: i64) -> ReplayOptions {
        ReplayOptions { interval_ms, max_keys: 1000, flows: false, max_names: 0, rules: Rules::default(), kernel: None }
    }

    /// (start s, frames, late, last, sources) of each batch.
    fn summary(batches: &[Batch]) -> Vec<(i64, u64, u64, bool, Vec<u8>)> {
        batches
            .iter()
            .map(|b| {
                let tx: Vec<u8> = (0..b.ips.idx.len()).filter(|&i| b.ips.tx_packets[i] > 0).map(|i| b.addrs.get(b.ips.idx[i]).bytes[3]).collect();
                (b.start_ms / 1000, b.totals.frames, b.totals.late, b.last, tx)
            })
            .collect()
    }

    #[test]
    fn frames_in_order_one_batch_per_interval() {
        let f = pcap("in-order", &[1_000, 2_000, 6_000, 130_000]);
        let (b, w) = replay_collect(&[&f], &opts(5000)).unwrap();
        assert_eq!(summary(&b), vec![(0, 2, 0, false, vec![1, 2]), (5, 1, 0, false, vec![3]), (130, 1, 0, true, vec![4])]);
        assert!(w.is_empty());
    }

    #[test]
    fn frames_out_of_order_within_the_window_land_in_their_own_interval() {
        // 100 s, then 130 s, then back to 102 s and 131 s, then 159.999 s: [100, 105) stays open
        // until a frame at or past 105 + 60 s.
        let f = pcap("reordered", &[100_000, 130_000, 102_000, 131_000, 164_999, 103_000]);
        let (b, w) = replay_collect(&[&f], &opts(5000)).unwrap();
        assert_eq!(summary(&b), vec![(100, 3, 0, false, vec![1, 3, 6]), (130, 2, 0, false, vec![2, 4]), (160, 1, 0, true, vec![5])]);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn frames_beyond_the_window_are_late_in_the_oldest_open_interval() {
        // 165 s closes [100, 105) (its end + 60 s): the frame at 101 s after it is late. 140 s
        // had no interval open yet, but 145 + 60 <= 210: late as well, counted in the oldest
        // open interval, [165, 170).
        let f = pcap("late", &[100_000, 165_000, 101_000, 210_000, 140_000, 166_000]);
        let (b, w) = replay_collect(&[&f], &opts(5000)).unwrap();
        assert_eq!(summary(&b), vec![(100, 1, 0, false, vec![1]), (165, 4, 2, false, vec![2, 3, 5, 6]), (210, 1, 0, true, vec![4])]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("2 frames were stamped more than 60 s"), "{}", w[0]);
        let totals: u64 = b.iter().map(|b| b.totals.frames).sum();
        assert_eq!(totals, 6, "late frames stay in the totals");
    }

    #[test]
    fn each_file_is_its_own_session_whatever_the_order() {
        // The second file is older than the first and overlaps nothing of it: its frames land
        // in their own intervals, never in the first file's.
        let newer = pcap("newer", &[1_000_000, 1_001_000]);
        let older = pcap("older", &[1_000, 2_000, 500_000]);
        let (b, w) = replay_collect(&[&newer, &older], &opts(5000)).unwrap();
        assert_eq!(summary(&b), vec![(1000, 2, 0, true, vec![1, 2]), (0, 2, 0, false, vec![1, 2]), (500, 1, 0, true, vec![3])]);
        assert!(w.is_empty());
        // Overlapping files: the same intervals twice, once per file, as when replayed apart.
        let (both, _) = replay_collect(&[&older, &older], &opts(5000)).unwrap();
        let (one, _) = replay_collect(&[&older], &opts(5000)).unwrap();
        assert_eq!(summary(&both), [summary(&one), summary(&one)].concat());
    }

    /// An Ethernet frame: UDP from 11.0.0.0 + `src` to 10.0.0.1.
    fn udp_from(src: u32) -> Vec<u8> {
        let mut f = vec![0u8; 42];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&28u16.to_be_bytes());
        f[23] = 17;
        f[26..30].copy_from_slice(&(0x0b00_0000 + src).to_be_bytes());
        f[30..34].copy_from_slice(&[10, 0, 0, 1]);
        f
    }

    /// Flows counted on the flow thread make the same batches as flows counted inline: rows,
    /// overflow rows and their key estimates, with full tables, several open intervals and late
    /// frames (the first `max_keys` flows of each interval in packet order keep their rows).
    #[test]
    fn flows_counted_on_their_own_thread_make_the_same_batches() {
        let o = ReplayOptions { max_keys: 700, flows: true, ..opts(1000) };
        let mut frames = Vec::new();
        for s in 0..40i64 {
            for k in 0..900u32 {
                // 300 sources x 3 of 5 ports a second: more flows than keys, fewer addresses.
                frames.push((s * 1000 + (k as i64 % 1000), (k % 300, (k / 300 + k + s as u32) % 5)));
                if s > 2 && k % 50 == 0 {
                    frames.push(((s - 3) * 1000 + 500, (1000 + k, 9)));
                }
            }
        }
        let run = |threaded: bool| {
            let mut c = Counter::with_flow_thread(&o, None, threaded);
            assert_eq!(c.flow_thread.is_some(), threaded);
            let mut out = Vec::new();
            let mut most_room = 0;
            for &(ts, (src, port)) in &frames {
                let mut f = udp_from(src);
                f[34..36].copy_from_slice(&(1000 + port as u16).to_be_bytes());
                c.packet(ts, 1, &f, &mut |e| {
                    if let ReplayEvent::Batch(b) = e {
                        out.push(format!("{b:?}"))
                    }
                });
                most_room = most_room.max(c.open_room);
            }
            c.flush_all(&mut |e| {
                if let ReplayEvent::Batch(b) = e {
                    out.push(format!("{b:?}"))
                }
            });
            assert!(most_room <= c.max_room(), "open room {most_room} past {}", c.max_room());
            out
        };
        let (one, two) = (run(false), run(true));
        assert_eq!(one.len(), 40);
        assert!(one.iter().all(|b| !b.contains("flow_overflow_keys: 0,")), "every second's flows overflow its table");
        assert!(one.iter().any(|b| !b.contains("late: 0,")), "some frames are late");
        assert_eq!(one, two);
    }

    #[test]
    fn the_open_intervals_hold_at_most_open_tables_full_tables_and_the_totals_stay_whole() {
        // 1 s intervals, every frame a new source, frames of each second interleaved with a
        // few of two seconds before: the window would keep 61 intervals of 1000 keys open.
        let o = ReplayOptions { max_keys: 1000, ..opts(1000) };
        let mut frames = Vec::new();
        for s in 0..120i64 {
            for k in 0..1500u32 {
                frames.push((s * 1000 + (k as i64 % 1000), s as u32 * 1500 + k));
                if s > 1 && k % 100 == 0 {
                    frames.push(((s - 2) * 1000 + 500, 900_000 + s as u32 * 100 + k / 100));
                }
            }
        }
        let mut c = Counter::new(&o, None);
        let mut batches = Vec::new();
        let mut most_room = 0;
        for &(ts, src) in &frames {
            c.packet(ts, 1, &udp_from(src), &mut |e| {
                if let ReplayEvent::Batch(b) = e {
                    batches.push(b)
                }
            });
            most_room = most_room.max(c.open_room);
        }
        c.flush_all(&mut |e| {
            if let ReplayEvent::Batch(b) = e {
                batches.push(b)
            }
        });
        assert!(most_room <= c.max_room(), "open room {most_room} past {}", c.max_room());
        assert!(c.open.is_empty());
        let ip: u64 = batches.iter().map(|b| b.totals.ip_packets).sum();
        let tx: u64 = batches.iter().map(|b| b.ips.tx_packets.iter().sum::<u64>()).sum();
        assert_eq!((ip, tx), (frames.len() as u64, frames.len() as u64), "every frame counted once, in a key or the overflow row");
        assert!(batches.iter().map(|b| b.totals.late).sum::<u64>() > 0, "frames of an interval flushed early are counted late");
        assert!(batches.iter().all(|b| b.ip_overflow_keys > 0), "each second's 1500 sources overflow its 1000 keys");
    }

    #[test]
    fn the_window_bounds_the_open_intervals() {
        // One frame per second for 10 minutes with 1 s intervals: never more than the window's
        // intervals (plus the newest) are open at once.
        let ts: Vec<i64> = (0..600).map(|s| s * 1000).collect();
        let o = opts(1000);
        let mut c = Counter::new(&o, None);
        let mut most = 0;
        let mut n = 0;
        for &t in &ts {
            c.packet(t, 1, &[0u8; 14], &mut |_| n += 1);
            most = most.max(c.open.len());
        }
        assert_eq!(most as i64, REORDER_WINDOW_MS / 1000 + 1);
        assert_eq!(n, 600 - most);
    }
}
