//! Live capture: one worker thread per ring (each counting into its own tables) and one merger
//! thread that joins the workers' tables at every interval and emits one batch.
//!
//! Intervals come from the clock: a worker closes interval k when a frame stamped in a later
//! interval arrives or when the wall clock passes the interval's end, whichever comes first, and
//! sends its tables to the merger. Frames stamped before the worker's open interval (a block
//! handed over late) are counted in the open interval and in `totals.late`.

use crate::batch::{interval_start, Batch, RingStats};
use crate::error::{Code, Coded};
use crate::filter::{Filter, FilterError};
use crate::parse::{self, linktype, Parsed};
use crate::ring::{self, Ring, RingConfig, RingError};
use crate::rules::{Cidr, Rules, Verdict};
use crate::table::Tables;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

pub const DEFAULT_INTERVAL_MS: i64 = 5000;
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

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
            CaptureError::Ring(RingError::NoInterface(_)) => Code::NoInterface,
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
    pub ebpf: bool,
    pub snaplen: u32,
    pub ignore: Vec<Cidr>,
    pub accept_source: Option<Vec<Cidr>>,
}

struct Contribution {
    start: i64,
    tables: Tables,
    ring: RingStats,
    last: bool,
}

pub struct Capture {
    stop: Arc<AtomicBool>,
    rules: Arc<RwLock<Rules>>,
    filter: Option<Arc<Mutex<Filter>>>,
    workers: Vec<JoinHandle<()>>,
    merger: Option<JoinHandle<()>>,
    pub linktype: u32,
    pub attached: usize,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Capture {
    /// Sets up every ring, the filter and the fanout group, then starts the threads. `emit`
    /// receives each merged batch on the merger thread; the last one has `last = true`.
    pub fn start<E>(o: LiveOptions, mut emit: E) -> Result<Capture, CaptureError>
    where
        E: FnMut(Batch) + Send + 'static,
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

        let mut filter = if o.ebpf { Some(Filter::load(o.snaplen, lt == linktype::RAW)?) } else { None };
        if let Some(f) = filter.as_mut() {
            f.set_rules(&o.ignore, o.accept_source.as_deref())?;
        }
        if Ring::fanout_group_taken(o.fanout_group, ifindex)? {
            return Err(RingError::FanoutTaken { group: o.fanout_group }.into());
        }
        let mut rings = Vec::new();
        for _ in 0..o.workers {
            let r = Ring::open(&o.ring)?;
            if let Some(f) = filter.as_mut() {
                f.attach(&r)?;
            }
            r.bind(ifindex)?;
            r.join_fanout(o.fanout_group)?;
            rings.push(r);
        }
        let attached = filter.as_ref().map(|f| f.attached_sockets()).unwrap_or(0);
        let filter = filter.map(|f| Arc::new(Mutex::new(f)));
        let rules = Arc::new(RwLock::new(Rules::new(&o.ignore, o.accept_source.as_deref())));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<(usize, Contribution)>();
        let n = o.workers;

        let mut workers = Vec::new();
        for (wi, r) in rings.into_iter().enumerate() {
            let tx = tx.clone();
            let stop = stop.clone();
            let rules = rules.clone();
            let o = o.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("tc-worker-{wi}"))
                    .spawn(move || worker(wi, r, lt, is_loopback, o, rules, stop, tx))
                    .expect("spawn worker"),
            );
        }
        drop(tx);

        let mfilter = filter.clone();
        let interval_ms = o.interval_ms;
        let merger = std::thread::Builder::new()
            .name("tc-merger".into())
            .spawn(move || {
                // start -> (contributions so far, merged tables, ring stats, workers finished)
                let mut pending: BTreeMap<i64, (usize, Option<Tables>, RingStats, bool)> = BTreeMap::new();
                let mut done = vec![false; n];
                // The smallest interval each worker may still send.
                let mut low = vec![i64::MIN; n];
                while let Ok((wi, c)) = rx.recv() {
                    low[wi] = c.start + interval_ms;
                    if c.last {
                        done[wi] = true;
                    }
                    let e = pending.entry(c.start).or_insert((0, None, RingStats::default(), false));
                    e.0 += 1;
                    e.2.add(&c.ring);
                    e.3 |= c.last;
                    match e.1.as_mut() {
                        Some(t) => t.merge(c.tables),
                        None => e.1 = Some(c.tables),
                    }
                    // An interval is complete when no worker can still send for it.
                    let floor = low.iter().zip(&done).map(|(l, d)| if *d { i64::MAX } else { *l }).min().unwrap_or(i64::MAX);
                    while let Some((&start, _)) = pending.iter().next() {
                        if start >= floor {
                            break;
                        }
                        let (_, t, ring, _) = pending.remove(&start).unwrap();
                        let all_done = done.iter().all(|d| *d) && pending.is_empty();
                        let mut b = Batch::from_tables(start, start + interval_ms, t.unwrap());
                        b.ring = Some(ring);
                        b.filter = mfilter.as_ref().map(|f| f.lock().unwrap().counters_delta());
                        b.last = all_done;
                        emit(b);
                    }
                }
            })
            .expect("spawn merger");

        Ok(Capture { stop, rules, filter, workers, merger: Some(merger), linktype: lt, attached })
    }

    /// Replaces the CIDR rules in the kernel maps and in userspace, without re-attaching.
    pub fn reload(&self, ignore: &[Cidr], accept: Option<&[Cidr]>) -> Result<(), CaptureError> {
        if let Some(f) = &self.filter {
            f.lock().unwrap().set_rules(ignore, accept)?;
        }
        *self.rules.write().unwrap() = Rules::new(ignore, accept);
        Ok(())
    }

    /// Asks the workers to flush their open interval and stop; returns at once.
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

#[allow(clippy::too_many_arguments)]
fn worker(
    wi: usize,
    mut r: Ring,
    lt: u32,
    is_loopback: bool,
    o: LiveOptions,
    rules: Arc<RwLock<Rules>>,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<(usize, Contribution)>,
) {
    let l = o.interval_ms;
    let mut cur = interval_start(now_ms(), l);
    let mut tables = Tables::new(o.max_keys, o.flows);
    let close = |tables: &mut Tables, start: i64, r: &Ring, last: bool| {
        let fresh = tables.fresh();
        let t = std::mem::replace(tables, fresh);
        let _ = tx.send((wi, Contribution { start, tables: t, ring: r.stats(), last }));
    };
    loop {
        if stop.load(Ordering::SeqCst) {
            // Drain what the kernel already handed over, then flush the partial interval.
            while r.next_block(|_| {}) {}
            close(&mut tables, cur, &r, true);
            return;
        }
        if let Err(e) = r.wait(100) {
            eprintln!("traffic-counter: worker {wi}: {e}");
        }
        let rules_guard = rules.read().unwrap();
        let rules_ref: &Rules = &rules_guard;
        let noop = rules_ref.is_noop();
        loop {
            let processed = r.next_block(|f| {
                // On loopback every frame is seen twice (sent and received): keep one, as libpcap does.
                if is_loopback && f.pkttype == libc::PACKET_OUTGOING {
                    return;
                }
                let ts_ms = (f.ts_ns / 1_000_000) as i64;
                let s = interval_start(ts_ms, l);
                if s > cur {
                    // A frame of a later interval: close the open one(s) first.
                    while cur < s {
                        let fresh = tables.fresh();
                        let t = std::mem::replace(&mut tables, fresh);
                        let _ = tx.send((wi, Contribution { start: cur, tables: t, ring: RingStats::default(), last: false }));
                        cur += l;
                    }
                } else if s < cur {
                    tables.totals.late += 1;
                }
                let parsed = parse::parse_frame(lt, f.data).unwrap_or(Parsed::NonIp);
                if let Parsed::Ip(ip) = &parsed {
                    // The kernel filter already applied the rules when the frame arrived (so a
                    // reload never re-judges frames waiting in the ring), except to MPLS frames.
                    let judged_in_kernel = o.ebpf
                        && !(lt == linktype::ETHERNET && parse::is_mpls_behind_tags(f.data, crate::filter::consts::MAX_VLAN_TAGS as usize));
                    if !noop && !judged_in_kernel && rules_ref.verdict(ip) != Verdict::Keep {
                        tables.totals.ignored += 1;
                        return;
                    }
                }
                tables.count(&parsed);
            });
            if !processed {
                break;
            }
        }
        drop(rules_guard);
        let now_start = interval_start(now_ms(), l);
        while cur < now_start {
            close(&mut tables, cur, &r, false);
            cur += l;
        }
    }
}
