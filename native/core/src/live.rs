//! Live capture: one worker thread per ring (each counting into its own tables) and one merger
//! thread that joins the workers' tables at every interval and emits one batch.
//!
//! Intervals come from the clock: a worker closes interval k when a frame stamped in a later
//! interval arrives or when the wall clock passes the interval's end, whichever comes first, and
//! sends its tables to the merger. Frames stamped before the worker's open interval (a block
//! handed over late) are counted in the open interval and in `totals.late`.

use crate::batch::{interval_start, Batch, KernelStats, RingStats};
use crate::kcount::KernelCounter;
use crate::options::CountIn;
use crate::error::{self, Code, Coded};
use crate::filter::{Filter, FilterError};
use crate::names::collect::{NameCollector, Order};
use crate::names::Reader;
use crate::parse::{self, linktype, Parsed};
use crate::ring::{self, Frame, Ring, RingConfig, RingError};
use crate::rules::{Cidr, Rules, Verdict};
use crate::table::Tables;
use std::collections::btree_map::{BTreeMap, Entry};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;


#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("{0}")]
    BadOption(String),
}

impl Coded for CaptureError {
    fn code(&self) -> Code {
        match self {
            CaptureError::Ring(RingError::Permission { .. }) | CaptureError::Filter(FilterError::Permission { .. }) => Code::Permission,
            CaptureError::Ring(RingError::NoInterface(_) | RingError::InterfaceRemoved { .. }) => Code::NoInterface,
            CaptureError::Ring(RingError::FanoutTaken { .. }) => Code::FanoutTaken,
            CaptureError::Ring(RingError::BadOption(_)) | CaptureError::BadOption(_) => Code::BadOption,
            CaptureError::Ring(RingError::Sys { .. }) => Code::Syscall,
            CaptureError::Filter(_) => Code::Ebpf,
        }
    }
}

#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub iface: String,
    pub workers: usize,
    pub ring: RingConfig,
    pub fanout_group: u16,
    pub interval_ms: i64,
    pub max_keys: usize,
    pub flows: bool,
    /// New (address, name, source) pairs per interval; 0: names are not read.
    pub max_names: usize,
    pub ebpf: bool,
    pub snaplen: u32,
    pub ignore: Vec<Cidr>,
    pub accept_source: Option<Vec<Cidr>>,
    pub count_in: CountIn,
}

/// What the engine hands its consumer, in order, on the merger thread.
pub enum LiveEvent {
    /// One merged interval; the capture's final one has `last = true`.
    Batch(Batch),
    /// A worker's trouble that does not stop the capture (the core never prints).
    Warning(String),
    /// What ends the capture (sent once, before its last batches): the workers stop and flush
    /// their open intervals, then the capture ends as on a stop.
    Failed { message: String, code: Code },
}

/// One worker's tables for one interval.
struct Contribution {
    start: i64,
    tables: Tables,
    ring: RingStats,
    /// From the kernel counting thread.
    kernel: Option<KernelStats>,
    /// The worker's final interval: it sends nothing after.
    last: bool,
}

enum ToMerger {
    Interval { worker: usize, c: Contribution },
    Warning(String),
    Failed { message: String, code: Code },
}

pub struct Capture {
    stop: Arc<AtomicBool>,
    rules: Arc<RwLock<Rules>>,
    filter: Option<Arc<Mutex<Filter>>>,
    /// Kernel counting: the counting program (rules, switches) and the names socket's filter.
    kernel: Option<Arc<Mutex<KernelCounter>>>,
    workers: Vec<JoinHandle<()>>,
    merger: Option<JoinHandle<()>>,
    pub linktype: u32,
    pub attached: usize,
    /// Where frames are counted, and why there when `auto` chose.
    pub counted_in: Counted,
}

/// Where a live capture counts, as `Capture::start` settled it.
#[derive(Clone, Debug, Default)]
pub struct Counted {
    pub kernel: bool,
    /// Why `auto` counts in the ring (empty when it counts in the kernel or was told where).
    pub why: String,
    /// Memlock the kernel charged for the counting program's maps (0 in ring mode).
    pub map_bytes: u64,
    /// Sockets: the counting one, and the names one (0 with names off).
    pub names_sockets: usize,
}

/// Where to count: the counting program loaded (kernel) or not (ring), and why not for `auto`.
fn settle(o: &LiveOptions, lt: u32) -> Result<(Option<KernelCounter>, String), CaptureError> {
    let refuse = |why: String| Err(CaptureError::BadOption(format!("--count-in kernel: {why}; use --count-in ring (or auto)")));
    let cannot = if !o.ebpf {
        Some("--no-ebpf loads no eBPF program, so nothing counts in the kernel".to_string())
    } else if lt != linktype::ETHERNET {
        Some(format!("the counting program reads Ethernet frames and interface {} has no Ethernet header", o.iface))
    } else {
        None
    };
    match (o.count_in, cannot) {
        (CountIn::Ring, _) => Ok((None, String::new())),
        (CountIn::Kernel, Some(why)) => refuse(why),
        (CountIn::Auto, Some(why)) => Ok((None, why)),
        (CountIn::Kernel, None) => Ok((Some(KernelCounter::load(o.max_keys, o.flows)?), String::new())),
        (CountIn::Auto, None) => match KernelCounter::load(o.max_keys, o.flows) {
            Ok(k) => Ok((Some(k), String::new())),
            // Without the capability the socket filter fails as well, with the message to act on.
            Err(e @ FilterError::Permission { .. }) => Err(e.into()),
            Err(e) => Ok((None, format!("the running kernel refused the counting program ({})", error::message(&e)))),
        },
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Capture {
    /// Sets up every ring, the filter and the fanout group, then starts the threads. `emit`
    /// receives each merged batch (and each warning) on the merger thread; the last batch has
    /// `last = true`.
    pub fn start<E>(o: LiveOptions, mut emit: E) -> Result<Capture, CaptureError>
    where
        E: FnMut(LiveEvent) + Send + 'static,
    {
        if o.workers == 0 || o.workers > 64 {
            return Err(CaptureError::BadOption(format!("--workers {} must be between 1 and 64", o.workers)));
        }
        if o.interval_ms < 1000 || o.interval_ms % 1000 != 0 {
            return Err(CaptureError::BadOption(format!("--interval-secs must be a whole number of seconds >= 1 (got {} ms)", o.interval_ms)));
        }
        if o.max_keys == 0 {
            return Err(CaptureError::BadOption("--max-keys must be at least 1".into()));
        }
        o.ring.validate()?;
        let ifindex = ring::ifindex(&o.iface)?;
        let hw = ring::arphrd(&o.iface);
        let is_loopback = hw == ring::ARPHRD_LOOPBACK;
        let lt = if hw == ring::ARPHRD_ETHER || is_loopback { linktype::ETHERNET } else { linktype::RAW };

        let (mut kernel, why) = settle(&o, lt)?;
        let mut counted_in = Counted { kernel: kernel.is_some(), why, ..Default::default() };
        // Kernel counting: the socket filter runs on the names socket only, passing DNS answers
        // and ClientHellos whole (`Filter::load_names_only`); without names there is none.
        let mut filter = match (&kernel, o.ebpf) {
            (Some(_), _) if o.max_names == 0 => None,
            (Some(_), _) => Some(Filter::load_names_only()?),
            (None, true) => Some(Filter::load(o.snaplen, lt == linktype::RAW, o.max_names > 0)?),
            (None, false) => None,
        };
        if let Some(f) = filter.as_mut() {
            f.set_rules(&o.ignore, o.accept_source.as_deref())?;
        }
        if let Some(k) = kernel.as_mut() {
            k.set_rules(&o.ignore, o.accept_source.as_deref())?;
            k.set_live(o.snaplen, is_loopback)?;
            counted_in.map_bytes = k.memlock();
        }
        if kernel.is_none() && Ring::fanout_group_taken(o.fanout_group, ifindex)? {
            return Err(RingError::FanoutTaken { group: o.fanout_group }.into());
        }
        let mut rings = Vec::new();
        if let Some(k) = kernel.as_mut() {
            // One socket counts: the program counts every frame where it arrives, so more
            // sockets would only run it again; the ring gets the frames it hands back. It is in
            // no fanout group: a group of one would only hash every frame to choose it.
            let r = Ring::open(&o.ring)?;
            k.attach(&r)?;
            r.bind(ifindex)?;
            rings.push(r);
            if let Some(f) = filter.as_mut() {
                // Not in the fanout group: it sees every frame, as the counting socket does.
                let r = Ring::open(&o.ring)?;
                f.attach(&r)?;
                r.bind(ifindex)?;
                rings.push(r);
                counted_in.names_sockets = 1;
            }
        } else {
            for _ in 0..o.workers {
                let r = Ring::open(&o.ring)?;
                if let Some(f) = filter.as_mut() {
                    f.attach(&r)?;
                }
                r.bind(ifindex)?;
                r.join_fanout(o.fanout_group)?;
                rings.push(r);
            }
        }
        let attached = filter.as_ref().map(|f| f.attached_sockets()).unwrap_or(0) + kernel.is_some() as usize;
        let filter = filter.map(|f| Arc::new(Mutex::new(f)));
        let kernel = kernel.map(|k| Arc::new(Mutex::new(k)));
        let rules = Arc::new(RwLock::new(Rules::new(&o.ignore, o.accept_source.as_deref())));
        let stop = Arc::new(AtomicBool::new(false));
        // A rendezvous: a worker hands its closed interval to the merger itself, so each worker
        // holds at most one closed interval besides its open one (`budget::live`).
        let (tx, rx) = mpsc::sync_channel::<ToMerger>(0);
        // In kernel mode the counting socket's frames were handed back before or after the rules
        // (so userspace judges them again, alike), and the names socket's only feed names.
        let settings = Settings { linktype: lt, is_loopback, ebpf: o.ebpf && kernel.is_none(), interval_ms: o.interval_ms, max_keys: o.max_keys, flows: o.flows, names_only: false };
        // One collector for every worker: sightings are rare next to frames (`names::collect`).
        let names = (o.max_names > 0).then(|| Arc::new(Mutex::new(NameCollector::new(o.max_names))));

        let mut workers = Vec::new();
        let senders = rings.len() + kernel.is_some() as usize;
        for (index, ring) in rings.into_iter().enumerate() {
            let names_only = kernel.is_some() && index == 1;
            let mut w = Worker::new(index, ring, Settings { names_only, ..settings }, rules.clone(), stop.clone(), tx.clone());
            w.iface = Arc::from(o.iface.as_str());
            if kernel.is_none() || names_only {
                w.counter.names = names.clone().map(|shared| WorkerNames { reader: Reader::default(), shared, seq: 0 });
            }
            workers.push(std::thread::Builder::new().name(format!("tc-worker-{index}")).spawn(move || w.run()).expect("spawn worker"));
        }
        if let Some(k) = &kernel {
            let d = KernelDrain { worker: senders - 1, k: k.clone(), s: settings, stop: stop.clone(), tx: tx.clone() };
            workers.push(std::thread::Builder::new().name("tc-kernel".into()).spawn(move || d.run()).expect("spawn kernel drain"));
        }
        drop(tx);

        // The names socket's filter counts nothing worth reporting: kernel mode has no filter counters.
        let mfilter = if kernel.is_some() { None } else { filter.clone() };
        let mut merger = Merger::new(senders, o.interval_ms);
        let merger = std::thread::Builder::new()
            .name("tc-merger".into())
            .spawn(move || {
                let mut failed = false;
                while let Ok(msg) = rx.recv() {
                    let (worker, c) = match msg {
                        ToMerger::Interval { worker, c } => (worker, c),
                        ToMerger::Warning(w) => {
                            emit(LiveEvent::Warning(w));
                            continue;
                        }
                        ToMerger::Failed { message, code } => {
                            // Every worker on the interface may see it: the first one says it.
                            if !failed {
                                failed = true;
                                emit(LiveEvent::Failed { message, code });
                            }
                            continue;
                        }
                    };
                    for m in merger.add(worker, c) {
                        let mut b = Batch::from_tables(m.start, m.start + merger.interval_ms, m.tables);
                        if let Some(n) = &names {
                            // The last batch takes every interval's names left (none is later).
                            // Converted under the lock, so that the collector's bound holds the
                            // table until its columns are made (`budget::names_conversion_bytes`).
                            b.names = n.lock().unwrap().take(if m.last { i64::MAX } else { m.start }).into_batch();
                        }
                        b.ring = Some(m.ring);
                        b.kernel = m.kernel;
                        b.filter = mfilter.as_ref().map(|f| f.lock().unwrap().counters_delta());
                        b.last = m.last;
                        emit(LiveEvent::Batch(b));
                    }
                }
            })
            .expect("spawn merger");

        Ok(Capture { stop, rules, filter, kernel, workers, merger: Some(merger), linktype: lt, attached, counted_in })
    }

    /// Replaces the CIDR rules in the kernel maps and in userspace, without re-attaching.
    pub fn reload(&self, ignore: &[Cidr], accept: Option<&[Cidr]>) -> Result<(), CaptureError> {
        if let Some(f) = &self.filter {
            f.lock().unwrap().set_rules(ignore, accept)?;
        }
        if let Some(k) = &self.kernel {
            k.lock().unwrap().set_rules(ignore, accept)?;
        }
        *self.rules.write().unwrap() = Rules::new(ignore, accept);
        Ok(())
    }

    /// Asks the workers to count what the kernel already holds, flush their open interval and
    /// stop; returns at once.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits for every thread (after `request_stop`).
    pub fn join(&mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(m) = self.merger.take() {
            let _ = m.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.request_stop();
        self.join();
    }
}

/// An interval every worker has sent (or can no longer send) its tables for.
struct Merged {
    start: i64,
    tables: Tables,
    ring: RingStats,
    kernel: Option<KernelStats>,
    /// The capture's final interval: every worker has sent its last.
    last: bool,
}

/// One interval's contributions joined so far.
struct Pending {
    tables: Tables,
    ring: RingStats,
    kernel: Option<KernelStats>,
}

/// Joins the workers' tables interval by interval. An interval is complete when no worker can
/// still send for it: each worker sends its intervals in order, so once it has sent interval k
/// it sends nothing before k + 1. At most `MAX_PENDING` intervals are joined at once: past that
/// (a worker is behind by more), the oldest goes out without the late worker's part, which is
/// then counted in the oldest interval still joined, as `late` frames.
struct Merger {
    interval_ms: i64,
    pending: BTreeMap<i64, Pending>,
    /// Per worker: the smallest interval start it may still send; None once it sent its last.
    low: Vec<Option<i64>>,
    /// End of the newest interval emitted: a part for an interval before it is late.
    emitted_end: i64,
}

/// Intervals the merger joins at once (each holds one table set: `budget::live`).
pub const MAX_PENDING: usize = 2;

impl Merger {
    fn new(workers: usize, interval_ms: i64) -> Merger {
        Merger { interval_ms, pending: BTreeMap::new(), low: vec![Some(i64::MIN); workers], emitted_end: i64::MIN }
    }

    /// Adds a worker's contribution; returns the intervals it completes, oldest first.
    fn add(&mut self, worker: usize, mut c: Contribution) -> Vec<Merged> {
        self.low[worker] = (!c.last).then_some(c.start + self.interval_ms);
        let start = if c.start < self.emitted_end {
            // Its interval already went out: every frame of it is counted late, in the oldest
            // interval still joined (or the next one), so the totals stay whole.
            c.tables.totals.late = c.tables.totals.frames;
            self.pending.keys().next().copied().unwrap_or(self.emitted_end)
        } else {
            c.start
        };
        match self.pending.entry(start) {
            Entry::Vacant(v) => {
                v.insert(Pending { tables: c.tables, ring: c.ring, kernel: c.kernel });
            }
            Entry::Occupied(mut o) => {
                let p = o.get_mut();
                // The smaller into the larger: in kernel mode the drained maps' tables meet the
                // rings' few handed-back frames.
                let mut part = c.tables;
                if part.ips.len() + part.flows.len() > p.tables.ips.len() + p.tables.flows.len() {
                    std::mem::swap(&mut p.tables, &mut part);
                }
                p.tables.merge(part);
                p.ring.add(&c.ring);
                p.kernel = p.kernel.or(c.kernel);
            }
        }
        let floor = self.low.iter().map(|l| l.unwrap_or(i64::MAX)).min().unwrap_or(i64::MAX);
        let mut out = Vec::new();
        loop {
            let over = self.pending.len() > MAX_PENDING;
            let Some(e) = self.pending.first_entry() else { break };
            if *e.key() >= floor && !over {
                break;
            }
            let (start, p) = e.remove_entry();
            self.emitted_end = start + self.interval_ms;
            out.push(Merged { start, tables: p.tables, ring: p.ring, kernel: p.kernel, last: false });
        }
        let finished = self.low.iter().all(Option::is_none) && self.pending.is_empty();
        if let Some(m) = out.last_mut() {
            m.last = finished;
        }
        out
    }
}

/// What every worker counts with (the same for all).
#[derive(Clone, Copy)]
struct Settings {
    linktype: u32,
    /// On loopback every frame is seen twice (sent and received): one is kept, as libpcap does.
    is_loopback: bool,
    /// The kernel filter judged the rules already (see `Counter::frame`).
    ebpf: bool,
    interval_ms: i64,
    max_keys: usize,
    flows: bool,
    /// The names socket of kernel counting: its frames feed names and are not counted.
    names_only: bool,
}

/// A worker's names reader and the capture's collector.
struct WorkerNames {
    reader: Reader,
    shared: Arc<Mutex<NameCollector>>,
    /// Sightings so far: with the worker, a name's place among those of the same nanosecond.
    seq: u64,
}

/// A worker's open interval and where its closed intervals go.
struct Counter {
    worker: usize,
    s: Settings,
    start: i64,
    tables: Tables,
    tx: mpsc::SyncSender<ToMerger>,
    names: Option<WorkerNames>,
}

impl Counter {
    /// Sends the open interval's tables to the merger and opens the next interval. The one
    /// close path: on a frame of a later interval, on the clock, and on stop (`last`).
    fn close(&mut self, ring: RingStats, last: bool) {
        let fresh = self.tables.fresh();
        let tables = std::mem::replace(&mut self.tables, fresh);
        let _ = self.tx.send(ToMerger::Interval { worker: self.worker, c: Contribution { start: self.start, tables, ring, kernel: None, last } });
        self.start += self.s.interval_ms;
    }

    /// Closes every open interval before `start`; the first carries `ring`.
    fn close_before(&mut self, start: i64, mut ring: RingStats) {
        while self.start < start {
            self.close(std::mem::take(&mut ring), false);
        }
    }

    fn frame(&mut self, f: &Frame, rules: &Rules, noop: bool) {
        if self.s.is_loopback && f.pkttype == libc::PACKET_OUTGOING {
            return;
        }
        let s = interval_start((f.ts_ns / 1_000_000) as i64, self.s.interval_ms);
        if s > self.start {
            self.close_before(s, RingStats::default());
        } else if s < self.start && !self.s.names_only {
            self.tables.totals.late += 1;
        }
        let parsed = parse::parse_frame(self.s.linktype, f.data).unwrap_or(Parsed::NonIp);
        if let Parsed::Ip(ip) = &parsed {
            if self.s.names_only {
                // Counted in the kernel already; the filter applied the rules.
                self.names(f, ip);
                return;
            }
            // The kernel filter already applied the rules when the frame arrived (so a reload
            // never re-judges frames waiting in the ring), except to those it passes unjudged.
            let judged_in_kernel = self.s.ebpf
                && !(self.s.linktype == linktype::ETHERNET
                    && parse::unjudged_by_filter(f.data, crate::filter::consts::MAX_L2_STEPS as usize));
            if !noop && !judged_in_kernel && rules.verdict(ip) != Verdict::Keep {
                self.tables.totals.ignored += 1;
                return;
            }
        }
        if self.s.names_only {
            return;
        }
        self.tables.count(&parsed);
        if let Parsed::Ip(ip) = &parsed {
            self.names(f, ip);
        }
    }

    /// Reads the names of a frame (with names on).
    fn names(&mut self, f: &Frame, ip: &parse::IpPacket) {
        if let Some(n) = &mut self.names {
            let (interval, worker, ts) = (self.start, (self.worker as u64) << 48, f.ts_ns as i64);
            let (shared, seq) = (&n.shared, &mut n.seq);
            // Locked once per frame that has names, not per name.
            let mut held = None;
            n.reader.read(f.data, ip, ts, &mut self.tables.names, &mut |a, src, name| {
                *seq += 1;
                let c = held.get_or_insert_with(|| shared.lock().unwrap());
                c.see(interval, a, src, name, Order { major: ts, minor: worker | *seq });
            });
        }
    }
}

/// One ring and the thread that counts it.
struct Worker {
    ring: Ring,
    rules: Arc<RwLock<Rules>>,
    stop: Arc<AtomicBool>,
    counter: Counter,
    /// The interface's name, for the message that ends the capture when it is deleted.
    iface: Arc<str>,
}

impl Worker {
    fn new(worker: usize, ring: Ring, s: Settings, rules: Arc<RwLock<Rules>>, stop: Arc<AtomicBool>, tx: mpsc::SyncSender<ToMerger>) -> Worker {
        let counter = Counter { worker, s, start: interval_start(now_ms(), s.interval_ms), tables: Tables::new(s.max_keys, s.flows), tx, names: None };
        Worker { ring, rules, stop, counter, iface: Arc::from("") }
    }

    fn run(mut self) {
        while !self.stop.load(Ordering::SeqCst) {
            match self.ring.wait(100) {
                Ok(()) => {}
                Err(RingError::InterfaceRemoved { source, .. }) => {
                    let message = format!(
                        "interface {} was removed: {source}; the recorder exits so its service manager restarts it (or run it again once the interface exists)",
                        self.iface
                    );
                    // Every thread stops and flushes its open interval, as on a stop.
                    self.stop.store(true, Ordering::SeqCst);
                    let _ = self.counter.tx.send(ToMerger::Failed { message, code: Code::NoInterface });
                }
                Err(e) => {
                    let _ = self.counter.tx.send(ToMerger::Warning(format!("worker {}: {}", self.counter.worker, error::message(&e))));
                }
            }
            self.count_ready(usize::MAX);
            let now = interval_start(now_ms(), self.counter.s.interval_ms);
            if self.counter.start < now {
                // Read only when an interval closes: PACKET_STATISTICS resets on every read.
                self.counter.close_before(now, self.ring.stats());
            }
        }
        self.finish();
    }

    /// Counts the blocks the kernel has handed over, at most `blocks` of them.
    fn count_ready(&mut self, blocks: usize) {
        let rules = self.rules.read().unwrap();
        let noop = rules.is_noop();
        let counter = &mut self.counter;
        for _ in 0..blocks {
            if !self.ring.next_block(|f| counter.frame(f, &rules, noop)) {
                break;
            }
        }
    }

    /// On stop: waits one retire timeout, so the kernel hands over its partly filled block,
    /// counts every block it holds (one ring's worth, so a flood cannot keep the worker here),
    /// and sends the open interval as the worker's last.
    fn finish(mut self) {
        let _ = self.ring.wait(2 * ring::BLOCK_TIMEOUT_MS as i32);
        self.count_ready(self.ring.block_count());
        let stats = self.ring.stats();
        self.counter.close(stats, true);
    }
}

/// Kernel counting's interval clock: at every UTC-aligned boundary it switches the counting
/// program to its other buffer and hands the drained one to the merger as one more worker's
/// tables. A frame belongs to the interval whose buffer was active when the program ran, so the
/// frames of the moments between the boundary and the switch's end count in the interval before
/// (`KernelStats::switch_late_us` says how long that was).
struct KernelDrain {
    worker: usize,
    k: Arc<Mutex<KernelCounter>>,
    s: Settings,
    stop: Arc<AtomicBool>,
    tx: mpsc::SyncSender<ToMerger>,
}

impl KernelDrain {
    fn run(self) {
        let iv = self.s.interval_ms;
        let mut start = interval_start(now_ms(), iv);
        loop {
            let end = start + iv;
            // Sleeps in short steps, to see a stop, and wakes on the boundary (not after it).
            let stopping = loop {
                if self.stop.load(Ordering::SeqCst) {
                    break true;
                }
                let left = end - now_ms();
                if left <= 0 {
                    break false;
                }
                std::thread::sleep(std::time::Duration::from_millis(left.min(50) as u64));
            };
            if stopping {
                // The ring worker waits a retire timeout before its last count; so does this, so
                // that a frame counted just before the stop is in the last interval too.
                std::thread::sleep(std::time::Duration::from_millis(2 * ring::BLOCK_TIMEOUT_MS as u64));
            }
            let boundary_us = end * 1000;
            let (c, next) = self.switch(start, boundary_us);
            let _ = self.tx.send(ToMerger::Interval { worker: self.worker, c: Contribution { last: stopping, ..c } });
            if stopping {
                return;
            }
            // A switch that ended inside the next interval (a long drain) leaves that interval
            // its own buffer, switched as soon as possible; after a stall of whole intervals (a
            // suspended host) the next is the clock's.
            start = if next > end + iv { next } else { end };
        }
    }

    /// Switches and drains the buffer that counted interval `start`.
    fn switch(&self, start: i64, boundary_us: i64) -> (Contribution, i64) {
        let mut tables = Tables::new(self.s.max_keys, self.s.flows);
        let mut stats = KernelStats { capacity: self.s.max_keys as u64, ..Default::default() };
        let mut k = self.k.lock().unwrap();
        match k.flip() {
            Ok(old) => {
                let done = now_us();
                stats.switch_late_us = (done - boundary_us).max(0) as u64;
                match k.drain(old, &mut tables) {
                    Ok(d) => {
                        stats.returned = d.returned;
                        stats.ip_entries = d.ip_entries;
                        stats.flow_entries = d.flow_entries;
                    }
                    Err(e) => {
                        let _ = self.tx.send(ToMerger::Warning(format!("kernel counting: {}", error::message(&e))));
                    }
                }
                stats.drain_us = (now_us() - done).max(0) as u64;
            }
            Err(e) => {
                let _ = self.tx.send(ToMerger::Warning(format!("kernel counting: {}", error::message(&e))));
            }
        }
        drop(k);
        let next = interval_start(now_ms(), self.s.interval_ms);
        (Contribution { start, tables, ring: RingStats::default(), kernel: Some(stats), last: false }, next)
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contribution(start: i64, frames: u64, drops: u64, last: bool) -> Contribution {
        let mut tables = Tables::new(16, false);
        tables.totals.frames = frames;
        Contribution { start, tables, ring: RingStats { drops, ..Default::default() }, kernel: None, last }
    }

    fn starts(m: &[Merged]) -> Vec<i64> {
        m.iter().map(|m| m.start).collect()
    }

    #[test]
    fn an_interval_is_merged_once_every_worker_has_moved_past_it() {
        let mut m = Merger::new(2, 1000);
        assert!(m.add(0, contribution(0, 1, 1, false)).is_empty(), "worker 1 may still send interval 0");
        assert!(m.add(0, contribution(1000, 2, 0, false)).is_empty());
        let out = m.add(1, contribution(0, 10, 5, false));
        assert_eq!(starts(&out), [0]);
        assert_eq!((out[0].tables.totals.frames, out[0].ring.drops, out[0].last), (11, 6, false));
        // Worker 1 jumps ahead (it saw no frame of 1000 before its clock passed 2000).
        let out = m.add(1, contribution(2000, 20, 0, false));
        assert_eq!(starts(&out), [1000]);
        assert_eq!(out[0].tables.totals.frames, 2);
    }

    #[test]
    fn the_last_batch_is_the_final_interval_after_every_worker_sent_its_last() {
        let mut m = Merger::new(2, 1000);
        assert!(m.add(0, contribution(0, 1, 0, true)).is_empty());
        let out = m.add(1, contribution(0, 1, 0, false));
        assert_eq!(starts(&out), [0]);
        assert!(!out[0].last, "worker 1 has not sent its last");
        let out = m.add(1, contribution(1000, 3, 0, true));
        assert_eq!(starts(&out), [1000]);
        assert!(out[0].last);
        assert_eq!(out[0].tables.totals.frames, 3);
    }

    #[test]
    fn several_intervals_completed_at_once_come_oldest_first_and_only_the_newest_is_last() {
        let mut m = Merger::new(2, 1000);
        for s in [0, 1000] {
            assert!(m.add(0, contribution(s, 1, 0, s == 1000)).is_empty());
        }
        let out = m.add(1, contribution(1000, 1, 0, true));
        assert_eq!(starts(&out), [0, 1000]);
        assert_eq!(out.iter().map(|m| m.last).collect::<Vec<_>>(), [false, true]);
    }

    #[test]
    fn a_worker_behind_by_more_than_max_pending_intervals_has_its_part_counted_late() {
        let mut m = Merger::new(2, 1000);
        // Worker 1 is stuck before interval 0; worker 0 runs ahead.
        let mut out = Vec::new();
        for s in [0, 1000, 2000] {
            out.extend(m.add(0, contribution(s, 1, 0, false)));
        }
        assert_eq!(starts(&out), [0], "past MAX_PENDING joined intervals the oldest goes out");
        assert!(m.pending.len() <= MAX_PENDING);
        // Worker 1's part of interval 0 arrives after it went out: counted in 1000, as late.
        let out = m.add(1, contribution(0, 7, 0, false));
        assert!(out.is_empty());
        let out = m.add(1, contribution(1000, 2, 0, false));
        assert_eq!(starts(&out), [1000]);
        let t = &out[0].tables.totals;
        assert_eq!((t.frames, t.late), (1 + 7 + 2, 7), "every frame counted once, the late part as late");
    }

    fn privileged(name: &str) -> bool {
        crate::testing::privileged(name, "AF_PACKET, unshare(CLONE_NEWNET)")
    }

    /// Moves the calling thread into a new network namespace (namespaces are per thread, see
    /// unshare(2)) and sets its loopback up (SIOCSIFFLAGS, netdevice(7)).
    fn own_netns_with_loopback_up() {
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare: {}", std::io::Error::last_os_error());
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            assert!(fd >= 0);
            let mut req: libc::ifreq = std::mem::zeroed();
            for (i, b) in b"lo\0".iter().enumerate() {
                req.ifr_name[i] = *b as libc::c_char;
            }
            assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req), 0);
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut req), 0, "SIOCSIFFLAGS: {}", std::io::Error::last_os_error());
            libc::close(fd);
        }
    }

    #[test]
    fn on_stop_the_blocks_the_kernel_already_handed_over_are_counted() {
        if !privileged("on_stop_the_blocks_the_kernel_already_handed_over_are_counted") {
            return;
        }
        std::thread::spawn(|| {
            own_netns_with_loopback_up();
            let cfg = RingConfig { block_size: 1 << 16, block_count: 4, frame_size: crate::options::DEFAULT_FRAME_SIZE };
            let r = Ring::open(&cfg).unwrap();
            r.bind(ring::ifindex("lo").unwrap()).unwrap();
            let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            const N: u64 = 25;
            for _ in 0..N {
                tx.send_to(b"counted", rx.local_addr().unwrap()).unwrap();
            }
            // The kernel hands the block over after its retire timeout; wait for that (bounded),
            // so the frames sit in a ready block when the worker, already told to stop, starts.
            for _ in 0..50 {
                if r.ready() {
                    break;
                }
                r.wait(100).unwrap();
            }
            assert!(r.ready(), "the kernel handed no block over within 5 s");
            // Under load the sends can straddle a retire timeout, leaving the last frames in a
            // block still open; a few more timeouts hand that one over too.
            std::thread::sleep(std::time::Duration::from_millis(4 * ring::BLOCK_TIMEOUT_MS as u64));
            let settings = Settings { linktype: linktype::ETHERNET, is_loopback: true, ebpf: false, interval_ms: 1000, max_keys: 64, flows: false, names_only: false };
            let (to_merger, from_worker) = mpsc::sync_channel(16);
            let rules = Arc::new(RwLock::new(Rules::new(&[], None)));
            let w = Worker::new(0, r, settings, rules, Arc::new(AtomicBool::new(true)), to_merger);
            w.run();
            let mut ipv4 = 0;
            let mut last = 0;
            for msg in from_worker.try_iter() {
                if let ToMerger::Interval { c, .. } = msg {
                    ipv4 += c.tables.totals.ipv4_packets;
                    last += c.last as u32;
                }
            }
            assert_eq!(last, 1, "one last interval");
            assert_eq!(ipv4, N, "every datagram sent before the stop is counted");
        })
        .join()
        .unwrap();
    }
}
