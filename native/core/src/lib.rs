//! traffic-counter capture engine, free of napi so that it unit-tests without Node.
//!
//! - [`parse`]: link-layer and IP header parsing (the counting rules)
//! - [`table`]: per-IP and per-flow counting tables with bounded keys
//! - [`batch`]: the columnar interval batch
//! - [`names`]: names seen in the traffic (DNS answers, TLS server names), per interval
//! - [`budget`]: the engine's memory at most, from its options
//! - [`rules`]: CIDR rule files and their userspace matcher
//! - [`replay`]: pcap / pcapng replay
//! - [`ring`]: AF_PACKET TPACKET_V3 rings with PACKET_FANOUT
//! - [`filter`]: the eBPF socket filter (loading, maps, counters)
//! - [`kcount`]: counting in the kernel (ebpf/count.c): its maps, buffers and test runs
//! - [`handover`]: the bounded hand-over of live batches to a slower consumer
//! - [`live`]: live capture workers and the interval merger
//! - [`error`]: the stable error codes and the one rendering of an error chain
//! - [`lock`]: the one-writer-per-database file lock
//! - [`options`]: every option's default and range, checked in one place

pub mod batch;
pub mod budget;
pub mod error;
pub mod filter;
pub mod handover;
pub mod kcount;
pub mod live;
pub mod lock;
pub mod names;
pub mod options;
pub mod parse;
pub mod replay;
pub mod ring;
pub mod rules;
pub mod table;
#[cfg(test)]
mod testing;
