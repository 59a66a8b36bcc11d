//! The generation cell: RCU-style publication of compiled pipelines.
//!
//! The control thread ([`Publisher`]) builds a [`Node`] — a generation's
//! shared value plus one slot per shard of per-shard working memory, all
//! allocated off the hot path — and publishes it with one Release store.
//! Each worker ([`Reader`]) checks one Acquire load between batches; on a
//! change it takes its slot from the new node, puts its old working memory
//! back into the old node's slot, and acknowledges with a Release store of
//! the new id. The worker builds nothing, allocates nothing and frees
//! nothing: the control thread frees a node (and whatever was returned to
//! it) once every shard has acknowledged a later one.
//!
//! ```text
//!   control                          worker k
//!   fill slots; store(latest, N)  ─► load(latest) == N?  (Acquire, per batch)
//!        (Release)                   take N.slot[k]; put old into O.slot[k]
//!   load(ack[k]) ≥ N (Acquire)   ◄── store(ack[k], N.id)  (Release)
//!   free every node with id < min(ack)
//! ```
//!
//! Invariants:
//! * ids increase; `ack[k]` is the id of the node worker k runs (or
//!   `u64::MAX` once the worker has gone), so `ack[k] ≤ latest.id`;
//! * a node with `id < min(ack)` is unreachable from every worker: each has
//!   moved to a later node and never loads an older one again;
//! * the latest node is never freed;
//! * slot `k` of a node is touched by worker k (take after publication,
//!   return before its next ack) and by the control thread (fill before
//!   publication, free after the acks): the Release/Acquire pairs above
//!   order those accesses.

use crate::sync::{Arc, AtomicPtr, AtomicU64, CachePadded, Ordering, UnsafeCell};
use std::collections::VecDeque;

/// One shard's slot in a node: its working memory going in, the previous
/// working memory coming back.
struct Slot<S> {
    incoming: UnsafeCell<Option<S>>,
    returned: UnsafeCell<Option<S>>,
}

/// A published generation.
pub struct Node<T, S> {
    pub id: u64,
    pub value: T,
    slots: Box<[Slot<S>]>,
}

/// The shared cell: the latest node and one acknowledgement per shard, each
/// on its own cache line (written by different threads).
pub struct Cell<T, S> {
    latest: CachePadded<AtomicPtr<Node<T, S>>>,
    acks: Box<[CachePadded<AtomicU64>]>,
}

// SAFETY: the cell hands `&Node` to several threads and moves `S` values
// between threads through the slots; the protocol in the module docs gives
// each slot one accessor at a time, ordered by Release/Acquire pairs.
unsafe impl<T: Sync + Send, S: Send> Sync for Cell<T, S> {}
// SAFETY: as above; the raw pointer is owned by the `Publisher`.
unsafe impl<T: Sync + Send, S: Send> Send for Cell<T, S> {}

/// Why a generation could not be published.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error(
        "{live} generations are still held by shards (max_live_generations = {max}); a shard is not acknowledging"
    )]
    TooManyLive { live: usize, max: usize },
    #[error("the slots given do not match the shard count {shards}")]
    SlotCount { shards: usize },
}

/// The control thread's end: publishes and reclaims. Not `Clone`: there is
/// one publisher per cell, so mutations are serialised by ownership.
pub struct Publisher<T, S> {
    cell: Arc<Cell<T, S>>,
    live: VecDeque<*mut Node<T, S>>,
    max_live: usize,
}

// SAFETY: the publisher owns the nodes in `live`; it may move to another
// thread as a whole (the control thread is created after it).
unsafe impl<T: Send + Sync, S: Send> Send for Publisher<T, S> {}

impl<T, S> Publisher<T, S> {
    /// A cell for `shards` workers starting on generation `id` with `value`
    /// and per-shard `states`.
    ///
    /// # Panics
    /// If `states.len() != shards` or `max_live < 2`.
    pub fn new(
        shards: usize,
        id: u64,
        value: T,
        states: Vec<S>,
        max_live: usize,
    ) -> Publisher<T, S> {
        assert_eq!(states.len(), shards, "one state per shard");
        assert!(max_live >= 2, "max_live_generations validated in config");
        let node = Box::into_raw(Box::new(Node {
            id,
            value,
            slots: slots(states),
        }));
        let cell = Arc::new(Cell {
            latest: CachePadded::new(AtomicPtr::new(node)),
            acks: (0..shards)
                .map(|_| CachePadded::new(AtomicU64::new(id)))
                .collect(),
        });
        let mut live = VecDeque::new();
        live.push_back(node);
        Publisher {
            cell,
            live,
            max_live,
        }
    }

    /// The shared cell, for [`Reader::new`].
    pub fn cell(&self) -> Arc<Cell<T, S>> {
        self.cell.clone()
    }

    /// The latest generation.
    pub fn latest(&self) -> &Node<T, S> {
        let p = *self.live.back().expect("the latest node is always live");
        // SAFETY: the latest node is never freed while the publisher lives.
        unsafe { &*p }
    }

    /// Publishes generation `id` (greater than the latest) with per-shard
    /// working memory `states`.
    ///
    /// # Errors
    /// `TooManyLive` when `max_live` generations are still held: a shard is
    /// stuck, and publishing more would only grow memory.
    pub fn publish(&mut self, id: u64, value: T, states: Vec<S>) -> Result<(), PublishError> {
        assert!(id > self.latest().id, "generation ids increase");
        if states.len() != self.cell.acks.len() {
            return Err(PublishError::SlotCount {
                shards: self.cell.acks.len(),
            });
        }
        self.reclaim();
        if self.live.len() >= self.max_live {
            return Err(PublishError::TooManyLive {
                live: self.live.len(),
                max: self.max_live,
            });
        }
        let node = Box::into_raw(Box::new(Node {
            id,
            value,
            slots: slots(states),
        }));
        // Pairs with the Acquire load in `Reader::changed`/`switch`: the
        // node, its value and its filled slots are visible to a worker that
        // sees the pointer.
        self.cell.latest.store(node, Ordering::Release);
        self.live.push_back(node);
        Ok(())
    }

    /// Whether every shard runs generation `id` or a later one.
    pub fn all_acked(&self, id: u64) -> bool {
        // Acquire pairs with the Release ack in `Reader::switch`.
        self.cell
            .acks
            .iter()
            .all(|a| a.load(Ordering::Acquire) >= id)
    }

    /// Shards that do not yet run generation `id`.
    pub fn laggards(&self, id: u64) -> Vec<usize> {
        (0..self.cell.acks.len())
            .filter(|&k| self.cell.acks[k].load(Ordering::Acquire) < id)
            .collect()
    }

    /// The generation each shard acknowledged (`u64::MAX`: gone).
    pub fn acks(&self) -> Vec<u64> {
        self.cell
            .acks
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .collect()
    }

    /// Frees every node no shard can reach any more; returns how many.
    pub fn reclaim(&mut self) -> usize {
        // Acquire pairs with the workers' Release acks: their last accesses
        // to older nodes (including returning working memory into a slot)
        // happen before the frees below.
        let min = self
            .cell
            .acks
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX);
        let mut freed = 0;
        while self.live.len() > 1 {
            let front = *self.live.front().expect("len > 1");
            // SAFETY: `front` is live (owned by us, not yet freed).
            let id = unsafe { (*front).id };
            if id >= min {
                break;
            }
            self.live.pop_front();
            // SAFETY: every shard acknowledged a later node, so none holds a
            // reference to `front` or will load it again (module invariants);
            // it was created by Box::into_raw in `publish`/`new`.
            drop(unsafe { Box::from_raw(front) });
            freed += 1;
        }
        freed
    }

    /// Generations published and not yet freed.
    pub fn live(&self) -> usize {
        self.live.len()
    }
}

impl<T, S> Drop for Publisher<T, S> {
    fn drop(&mut self) {
        let gone = self
            .cell
            .acks
            .iter()
            .all(|a| a.load(Ordering::Acquire) == u64::MAX);
        if !gone {
            // A worker may still hold a node: leaking is the safe choice.
            return;
        }
        for p in self.live.drain(..) {
            // SAFETY: every reader has been dropped (acks are u64::MAX), so
            // no thread references any node.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

fn slots<S>(states: Vec<S>) -> Box<[Slot<S>]> {
    states
        .into_iter()
        .map(|s| Slot {
            incoming: UnsafeCell::new(Some(s)),
            returned: UnsafeCell::new(None),
        })
        .collect()
}

/// A worker's end: the generation it runs and its working memory.
pub struct Reader<T, S> {
    cell: Arc<Cell<T, S>>,
    shard: usize,
    cur: *mut Node<T, S>,
    state: Option<S>,
}

// SAFETY: a reader belongs to one worker thread at a time; it is created on
// the control thread and moved into the worker before use.
unsafe impl<T: Send + Sync, S: Send> Send for Reader<T, S> {}

impl<T, S> Reader<T, S> {
    /// Attaches shard `shard` to the cell, taking its working memory from
    /// the latest generation.
    pub fn new(cell: Arc<Cell<T, S>>, shard: usize) -> Reader<T, S> {
        assert!(
            shard < cell.acks.len(),
            "shard index within the shard count"
        );
        let mut r = Reader {
            cell,
            shard,
            cur: std::ptr::null_mut(),
            state: None,
        };
        r.switch();
        r
    }

    /// Whether a newer generation has been published. One Acquire load:
    /// call it between batches.
    #[inline]
    pub fn changed(&self) -> bool {
        // Pairs with the Release store in `Publisher::publish`.
        self.cell.latest.load(Ordering::Acquire) != self.cur
    }

    /// Moves to the latest generation and acknowledges it. Builds nothing:
    /// the working memory was prepared by the publisher.
    #[cold]
    #[inline(never)]
    pub fn switch(&mut self) {
        self.switch_with(|_, _, _, _| {});
    }

    /// As [`Reader::switch`], first calling `hand_over(old, old_state, new,
    /// new_state)` while both generations and both working memories are
    /// this worker's: state that outlives a generation moves across, and
    /// what the old one must finish (windows of removed stages) is done
    /// under its id. Not called on the first switch (there is no old one).
    #[cold]
    #[inline(never)]
    pub fn switch_with(
        &mut self,
        hand_over: impl FnOnce(&Node<T, S>, &mut Option<S>, &Node<T, S>, &mut Option<S>),
    ) {
        let new = self.cell.latest.load(Ordering::Acquire); // pairs with publish
        if new == self.cur {
            return;
        }
        // SAFETY: `new` is the latest node; it is not freed while our ack is
        // below its id (which it is: we have not acknowledged it yet).
        let node = unsafe { &*new };
        let slot = &node.slots[self.shard];
        // SAFETY: slot `shard` of a published node is touched only by this
        // worker until it acknowledges a later node (module invariants).
        let mut incoming = slot.incoming.with_mut(|p| unsafe { (*p).take() });
        if !self.cur.is_null() {
            // SAFETY: our current node is alive: our ack still equals its
            // id, and only nodes below every ack are freed.
            let old = unsafe { &*self.cur };
            hand_over(old, &mut self.state, node, &mut incoming);
        }
        let old_state = std::mem::replace(&mut self.state, incoming);
        if !self.cur.is_null() {
            // SAFETY: our current node is alive (our ack equals its id) and
            // its slot `shard` is ours; the control thread reads it only
            // after our Release ack below.
            let old = unsafe { &*self.cur };
            old.slots[self.shard].returned.with_mut(|p| {
                // SAFETY: see above: the slot is exclusively ours until the ack.
                unsafe { *p = old_state }
            });
        }
        self.cur = new;
        // Pairs with the Acquire loads in `Publisher::{reclaim, all_acked}`.
        self.cell.acks[self.shard].store(node.id, Ordering::Release);
    }

    /// The generation this worker runs.
    #[inline]
    pub fn current(&self) -> &Node<T, S> {
        // SAFETY: the current node stays alive until we acknowledge a later
        // one (module invariants).
        unsafe { &*self.cur }
    }

    /// This shard's working memory for the current generation, and the
    /// generation itself.
    #[inline]
    pub fn parts(&mut self) -> (&Node<T, S>, Option<&mut S>) {
        // SAFETY: as in `current`.
        let node = unsafe { &*self.cur };
        (node, self.state.as_mut())
    }
}

impl<T, S> Drop for Reader<T, S> {
    fn drop(&mut self) {
        let state = self.state.take();
        if !self.cur.is_null() {
            // SAFETY: as in `switch`: our current node and our slot in it.
            let old = unsafe { &*self.cur };
            old.slots[self.shard].returned.with_mut(|p| {
                // SAFETY: the slot is exclusively ours until the ack below.
                unsafe { *p = state }
            });
        }
        // Pairs with the Acquire loads of the publisher: we are gone.
        self.cell.acks[self.shard].store(u64::MAX, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Tracked(u64, std::sync::Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn publish_switch_reclaim() {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let t = |id| Tracked(id, drops.clone());
        let mut p = Publisher::new(2, 1, t(1), vec![10u32, 11], 4);
        let mut r0 = Reader::new(p.cell(), 0);
        let mut r1 = Reader::new(p.cell(), 1);
        assert_eq!(r0.parts().1.copied(), Some(10));
        p.publish(2, t(2), vec![20, 21]).unwrap();
        assert!(r0.changed() && r1.changed());
        r0.switch();
        assert_eq!(r0.current().id, 2);
        assert_eq!(r0.parts().1.copied(), Some(20));
        assert!(!p.all_acked(2));
        assert_eq!(p.laggards(2), [1]);
        assert_eq!(p.reclaim(), 0, "shard 1 still runs generation 1");
        r1.switch();
        assert!(p.all_acked(2));
        assert_eq!(p.reclaim(), 1);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert_eq!(p.live(), 1);
        drop(r0);
        drop(r1);
        drop(p);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn stuck_shard_bounds_live_generations() {
        let mut p = Publisher::new(1, 1, (), vec![()], 3);
        let _r = Reader::new(p.cell(), 0);
        p.publish(2, (), vec![()]).unwrap();
        p.publish(3, (), vec![()]).unwrap();
        assert_eq!(
            p.publish(4, (), vec![()]),
            Err(PublishError::TooManyLive { live: 3, max: 3 })
        );
    }

    #[test]
    fn skipped_generations_are_freed_with_their_slots() {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let st = |id| Tracked(id, drops.clone());
        let mut p = Publisher::new(1, 1, (), vec![st(1)], 8);
        let mut r = Reader::new(p.cell(), 0);
        p.publish(2, (), vec![st(2)]).unwrap();
        p.publish(3, (), vec![st(3)]).unwrap();
        r.switch();
        assert_eq!(r.parts().1.map(|t| t.0), Some(3));
        assert_eq!(p.reclaim(), 2);
        // State 1 came back to node 1, state 2 was never taken: both freed.
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    }
}

/// Model checks of publish / switch / reclaim under every interleaving
/// loom explores: `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`
/// (LOOM_MAX_PREEMPTIONS=2 in CI, 3 in tools/heavy-tests.sh).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{AtomicBool, AtomicUsize};

    /// Marks its generation freed when dropped; readers check the mark
    /// through the shared flags, never through the node itself.
    struct Val {
        id: usize,
        freed: Arc<[AtomicBool; 5]>,
        drops: Arc<AtomicUsize>,
    }

    impl Drop for Val {
        fn drop(&mut self) {
            assert!(
                !self.freed[self.id].swap(true, Ordering::SeqCst),
                "generation {} freed twice",
                self.id
            );
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Per-shard working memory; counts its drops.
    struct St(Arc<AtomicUsize>);

    impl Drop for St {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn flags() -> Arc<[AtomicBool; 5]> {
        Arc::new([
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicBool::new(false),
        ])
    }

    /// Publications back to back while one shard keeps up and the
    /// other lags (it looks once, late): the control side never sees a
    /// generation acknowledged by all before the lagging shard runs it,
    /// names that shard meanwhile, and never frees what it still holds.
    /// About 12 minutes at LOOM_MAX_PREEMPTIONS=2 on two vCPUs: run by
    /// `tools/heavy-tests.sh`, not by CI's short form.
    #[test]
    #[ignore = "long: tools/heavy-tests.sh runs it"]
    fn acknowledge_under_a_storm_with_a_lagging_shard() {
        loom::model(|| {
            let freed = flags();
            let drops = Arc::new(AtomicUsize::new(0));
            let st_drops = Arc::new(AtomicUsize::new(0));
            let val = |id| Val {
                id,
                freed: freed.clone(),
                drops: drops.clone(),
            };
            let st = || vec![St(st_drops.clone()), St(st_drops.clone())];
            let mut p = Publisher::new(2, 1, val(1), st(), 4);
            let fast = {
                let (cell, freed) = (p.cell(), freed.clone());
                loom::thread::spawn(move || {
                    let mut r = Reader::new(cell, 0);
                    for _ in 0..2 {
                        if r.changed() {
                            r.switch();
                        }
                        let id = r.current().value.id;
                        assert!(!freed[id].load(Ordering::SeqCst), "{id} freed in use");
                    }
                })
            };
            let lagging = {
                let (cell, freed) = (p.cell(), freed.clone());
                loom::thread::spawn(move || {
                    let mut r = Reader::new(cell, 1);
                    let id = r.current().value.id;
                    assert!(!freed[id].load(Ordering::SeqCst), "{id} freed in use");
                    if r.changed() {
                        r.switch();
                    }
                    let id = r.current().value.id;
                    assert!(!freed[id].load(Ordering::SeqCst), "{id} freed in use");
                })
            };
            for g in 2..=3 {
                p.publish(g, val(g as usize), st()).unwrap();
                p.reclaim();
                // Acknowledgements only rise, so each later read must agree
                // with an earlier one: "all acknowledged" stays true, and a
                // shard not named late runs g.
                let all = p.all_acked(g);
                let late = p.laggards(g);
                let acks = p.acks();
                if all {
                    assert!(late.is_empty(), "acknowledged by all, yet {late:?} late");
                }
                for (k, &a) in acks.iter().enumerate() {
                    if !late.contains(&k) {
                        assert!(a >= g, "shard {k} not named late but at {a} < {g}");
                    }
                }
            }
            fast.join().unwrap();
            lagging.join().unwrap();
            drop(p);
            assert_eq!(
                drops.load(Ordering::SeqCst),
                3,
                "every generation freed once"
            );
            assert_eq!(
                st_drops.load(Ordering::SeqCst),
                6,
                "every shard state freed once"
            );
        });
    }

    #[test]
    fn publish_switch_reclaim_two_workers() {
        loom::model(|| {
            let freed = flags();
            let drops = Arc::new(AtomicUsize::new(0));
            let st_drops = Arc::new(AtomicUsize::new(0));
            let val = |id| Val {
                id,
                freed: freed.clone(),
                drops: drops.clone(),
            };
            let st = || vec![St(st_drops.clone()), St(st_drops.clone())];
            let mut p = Publisher::new(2, 1, val(1), st(), 4);
            let mut readers = Vec::new();
            for k in 0..2 {
                let cell = p.cell();
                let freed = freed.clone();
                readers.push(loom::thread::spawn(move || {
                    let mut r = Reader::new(cell, k);
                    for _ in 0..2 {
                        if r.changed() {
                            r.switch();
                        }
                        let id = r.current().value.id;
                        assert!(
                            r.parts().1.is_some(),
                            "a running shard holds working memory"
                        );
                        // Still alive after every use above.
                        assert!(
                            !freed[id].load(Ordering::SeqCst),
                            "generation {id} freed while in use"
                        );
                    }
                }));
            }
            p.publish(2, val(2), st()).unwrap();
            p.reclaim();
            p.publish(3, val(3), st()).unwrap();
            p.reclaim();
            for r in readers {
                r.join().unwrap();
            }
            drop(p);
            assert_eq!(
                drops.load(Ordering::SeqCst),
                3,
                "every generation freed exactly once"
            );
            assert_eq!(
                st_drops.load(Ordering::SeqCst),
                6,
                "every shard state freed exactly once"
            );
        });
    }
}
