//! The bounded hand-over of live batches from the engine to a slower consumer (the JS thread).
//!
//! The engine never waits for the consumer: while the batches already handed over and not yet
//! taken reach the bound (a count and a byte total), newer batches are dropped and their
//! intervals remembered, and the next batch admitted names them. Each admitted batch is counted
//! as waiting for as long as its `Held` lives; the consumer releases it when it takes the batch
//! (or it is released when the batch is dropped undelivered). Without `Held` nothing bounds the
//! queue: back-pressure is this type, not a field someone may find unused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;


#[derive(Default, Debug)]
struct Waiting {
    batches: AtomicUsize,
    bytes: AtomicUsize,
}

/// An interval the engine counted but could not hand over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DroppedInterval {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The producer's side: decides, batch by batch, whether it goes or is dropped.
pub struct Handover {
    waiting: Arc<Waiting>,
    max_batches: usize,
    max_bytes: usize,
    dropped: Vec<DroppedInterval>,
}

/// A batch admitted: counted as waiting until this is released or dropped.
#[must_use = "dropping a Held releases its place in the hand-over at once"]
#[derive(Debug)]
pub struct Held {
    bytes: usize,
    on: Arc<Waiting>,
}

impl Held {
    /// The consumer took the batch.
    pub fn release(self) {}
}

impl Drop for Held {
    fn drop(&mut self) {
        self.on.batches.fetch_sub(1, Ordering::SeqCst);
        self.on.bytes.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// What goes with an admitted batch: its place in the hand-over, and the intervals dropped
/// since the previous admitted batch (oldest first).
#[derive(Debug)]
pub struct Admitted {
    pub held: Held,
    pub dropped: Vec<DroppedInterval>,
}

impl Handover {
    /// `max_batches` below 1 is taken as 1: one batch may always wait, however large.
    pub fn new(max_batches: usize, max_bytes: usize) -> Handover {
        Handover { waiting: Arc::default(), max_batches: max_batches.max(1), max_bytes, dropped: Vec::new() }
    }

    /// Admits a batch of `bytes` for `interval`, or drops it (None) when the batches waiting are
    /// at the bound. A `last` batch (the capture's final one) is always admitted.
    pub fn offer(&mut self, interval: DroppedInterval, bytes: usize, last: bool) -> Option<Admitted> {
        let (batches, held_bytes) = self.waiting();
        if !last && batches > 0 && (batches >= self.max_batches || held_bytes + bytes > self.max_bytes) {
            self.dropped.push(interval);
            return None;
        }
        self.waiting.batches.fetch_add(1, Ordering::SeqCst);
        self.waiting.bytes.fetch_add(bytes, Ordering::SeqCst);
        Some(Admitted { held: Held { bytes, on: self.waiting.clone() }, dropped: std::mem::take(&mut self.dropped) })
    }

    /// Batches and bytes handed over and not yet taken.
    pub fn waiting(&self) -> (usize, usize) {
        (self.waiting.batches.load(Ordering::SeqCst), self.waiting.bytes.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(k: i64) -> DroppedInterval {
        DroppedInterval { start_ms: k * 1000, end_ms: (k + 1) * 1000 }
    }

    #[test]
    fn batches_past_the_count_bound_are_dropped_and_named_by_the_next_one_admitted() {
        let mut h = Handover::new(2, usize::MAX);
        let a = h.offer(iv(0), 10, false).unwrap();
        let b = h.offer(iv(1), 10, false).unwrap();
        assert!(a.dropped.is_empty() && b.dropped.is_empty());
        assert!(h.offer(iv(2), 10, false).is_none());
        assert!(h.offer(iv(3), 10, false).is_none());
        assert_eq!(h.waiting(), (2, 20));
        a.held.release();
        let c = h.offer(iv(4), 10, false).unwrap();
        assert_eq!(c.dropped, vec![iv(2), iv(3)]);
        assert_eq!(h.waiting(), (2, 20));
        // Named once: the next admitted batch names nothing more.
        drop((b, c));
        assert!(h.offer(iv(5), 10, false).unwrap().dropped.is_empty());
    }

    #[test]
    fn the_byte_bound_drops_a_batch_that_would_pass_it_but_one_batch_may_always_wait() {
        let mut h = Handover::new(64, 100);
        let big = h.offer(iv(0), 1000, false).expect("one batch waits however large");
        assert!(h.offer(iv(1), 1, false).is_none());
        big.held.release();
        let a = h.offer(iv(2), 60, false).unwrap();
        assert_eq!(a.dropped, vec![iv(1)]);
        assert!(h.offer(iv(3), 41, false).is_none());
        let b = h.offer(iv(4), 40, false).unwrap();
        assert_eq!(b.dropped, vec![iv(3)]);
        assert_eq!(h.waiting(), (2, 100));
        drop((a, b));
        assert_eq!(h.waiting(), (0, 0));
    }

    #[test]
    fn the_last_batch_is_always_admitted() {
        let mut h = Handover::new(1, usize::MAX);
        let _a = h.offer(iv(0), 1, false).unwrap();
        assert!(h.offer(iv(1), 1, false).is_none());
        let last = h.offer(iv(2), 1, true).expect("the last batch goes");
        assert_eq!(last.dropped, vec![iv(1)]);
    }

    #[test]
    fn a_batch_dropped_undelivered_gives_its_place_back() {
        let mut h = Handover::new(1, usize::MAX);
        let a = h.offer(iv(0), 5, false).unwrap();
        drop(a);
        assert_eq!(h.waiting(), (0, 0));
        assert!(h.offer(iv(1), 5, false).is_some());
    }
}
