//! Replay of pcap and pcapng files (through the `pcap-file` crate's zero-copy parsers over a
//! memory map). Intervals come from packet timestamps.

use crate::batch::{interval_start, Batch};
use crate::parse::{self, Parsed};
use crate::rules::{Rules, Verdict};
use crate::table::Tables;
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::PcapError;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot open capture file {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("{path} is not a pcap or pcapng capture file ({why})")]
    NotACapture { path: String, why: String },
    #[error("{path}: link type {linktype} is not supported (supported: 0 NULL, 1 Ethernet, 12/14/101 raw IP, 108 LOOP, 113 Linux SLL, 228 IPv4, 229 IPv6, 276 Linux SLL2)")]
    LinkType { path: String, linktype: u32 },
}

#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub interval_ms: i64,
    pub max_keys: usize,
    pub flows: bool,
    pub rules: Rules,
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
pub fn probe(paths: &[PathBuf]) -> Result<(), ReplayError> {
    open_all(paths).map(|_| ())
}

/// Opens and checks every file before anything is counted, so a bad file among several records
/// nothing.
fn open_all(paths: &[PathBuf]) -> Result<Vec<Mapped>, ReplayError> {
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
                Format::Pcap
            }
        };
        out.push(Mapped { path, map, format });
    }
    Ok(out)
}

/// Counting state that runs across files: one replay is one capture session.
struct Counter<'a> {
    opts: &'a ReplayOptions,
    cur_start: Option<i64>,
    tables: Tables,
    last_ts_ms: i64,
}

impl<'a> Counter<'a> {
    #[inline]
    fn packet(&mut self, ts_ms: i64, lt: u32, data: &[u8], sink: &mut dyn FnMut(ReplayEvent)) {
        self.last_ts_ms = ts_ms;
        let start = interval_start(ts_ms, self.opts.interval_ms);
        match self.cur_start {
            Some(cur) if start > cur => {
                self.flush(false, sink);
                self.cur_start = Some(start);
            }
            Some(cur) if start < cur => self.tables.totals.late += 1,
            Some(_) => {}
            None => self.cur_start = Some(start),
        }
        let parsed = parse::parse_frame(lt, data).unwrap_or(Parsed::NonIp);
        if let Parsed::Ip(ip) = &parsed {
            if !self.opts.rules.is_noop() && self.opts.rules.verdict(ip) != Verdict::Keep {
                self.tables.totals.ignored += 1;
                return;
            }
        }
        self.tables.count(&parsed);
    }

    fn flush(&mut self, last: bool, sink: &mut dyn FnMut(ReplayEvent)) {
        let Some(start) = self.cur_start else {
            return;
        };
        let fresh = self.tables.fresh();
        let t = std::mem::replace(&mut self.tables, fresh);
        let mut b = Batch::from_tables(start, start + self.opts.interval_ms, t);
        b.last = last;
        sink(ReplayEvent::Batch(b));
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

/// Replays `paths` in order as one session. `stop` ends it early (the partial interval is still
/// flushed). Returns one summary per file; warnings (a file that ends early) go to `sink`.
pub fn replay(
    paths: &[PathBuf],
    opts: &ReplayOptions,
    stop: Arc<AtomicBool>,
    sink: &mut dyn FnMut(ReplayEvent),
) -> Result<Vec<FileSummary>, ReplayError> {
    let files = open_all(paths)?;
    let total: u64 = files.iter().map(|f| f.map.len() as u64).sum();
    let mut done_before = 0u64;
    let mut c = Counter { opts, cur_start: None, tables: Tables::new(opts.max_keys, opts.flows), last_ts_ms: 0 };
    let mut summaries = Vec::new();
    for f in &files {
        let mut s = FileSummary { path: f.path.clone(), ..Default::default() };
        let data = &f.map[..];
        let res = match f.format {
            Format::Pcap => replay_pcap(data, &mut c, &mut s, &stop, done_before, total, sink),
            Format::PcapNg => replay_pcapng(data, &mut c, &mut s, &stop, done_before, total, sink),
        };
        if let Err(why) = res {
            s.truncated = true;
            sink(ReplayEvent::Warning(format!(
                "{} ends early ({why}); the {} frames before that point were recorded",
                f.path, s.frames
            )));
        }
        done_before += data.len() as u64;
        sink(ReplayEvent::Progress { done: done_before, total });
        summaries.push(s);
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    c.flush(true, sink);
    Ok(summaries)
}

const PROGRESS_EVERY: u64 = 1 << 24;
const STOP_CHECK_EVERY: u64 = 1 << 16;

/** Progress events every PROGRESS_EVERY bytes of input, and the stop check that goes with them. */
struct Progress {
    next: u64,
    before: u64,
    total: u64,
}

impl Progress {
    /// Reports `done` bytes of the current file if due; returns whether the replay should stop.
    fn tick(&mut self, done: u64, stop: &AtomicBool, sink: &mut dyn FnMut(ReplayEvent)) -> bool {
        if done < self.next {
            return false;
        }
        self.next = done + PROGRESS_EVERY;
        sink(ReplayEvent::Progress { done: self.before + done, total: self.total });
        stop.load(Ordering::Relaxed)
    }
}

fn replay_pcap(
    data: &[u8],
    c: &mut Counter,
    s: &mut FileSummary,
    stop: &AtomicBool,
    done_before: u64,
    total: u64,
    sink: &mut dyn FnMut(ReplayEvent),
) -> Result<(), String> {
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
    let mut progress = Progress { next: PROGRESS_EVERY, before: done_before, total };
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
    data: &[u8],
    c: &mut Counter,
    s: &mut FileSummary,
    stop: &AtomicBool,
    done_before: u64,
    total: u64,
    sink: &mut dyn FnMut(ReplayEvent),
) -> Result<(), String> {
    let (mut rem, mut parser) = PcapNgParser::new(data).map_err(|e| e.to_string())?;
    s.format = format!(
        "pcapng, {}-endian",
        if parser.section().endianness == pcap_file::Endianness::Big { "big" } else { "little" }
    );
    let mut progress = Progress { next: PROGRESS_EVERY, before: done_before, total };
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
}
