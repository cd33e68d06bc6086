//! The memory budget (`limits.max_memory`): how many bytes the connections' buffers and the
//! replies on their way to the workers hold together, over every thread, and whether that is over
//! the ceiling.
//!
//! Every holder (each worker for its connections' receive and send buffers, the MCP bridge for
//! the replies it holds or has handed to a worker) keeps its own exact figure in a plain field and
//! publishes it into one shared atomic total once per loop turn, as the difference from what it
//! published last ([`MemoryShare::publish`]): no lock, and no shared write per packet. Readers
//! (the acceptor before it hands over a connection, each worker once per turn) compare the total
//! with the ceiling. The total lags each holder by at most one of its turns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The shared total and the ceiling.
#[derive(Debug, Default)]
pub(crate) struct MemoryBudget {
    /// The sum of every holder's last published figure.
    held: AtomicU64,
    /// `limits.max_memory` in bytes; 0: no ceiling.
    max: AtomicU64,
}

impl MemoryBudget {
    /// A budget with ceiling `max` bytes (0: none) and nothing held.
    pub(crate) fn new(max: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            held: AtomicU64::new(0),
            max: AtomicU64::new(max),
        })
    }

    /// Applies a new ceiling (a reload); 0 turns it off.
    pub(crate) fn set_max(&self, max: u64) {
        // SYNC POINT: Relaxed: a threshold, read on its own; nothing else is published with it.
        self.max.store(max, Ordering::Relaxed);
    }

    /// The ceiling in bytes; 0: none.
    pub(crate) fn max(&self) -> u64 {
        // SYNC POINT: Relaxed, as in set_max.
        self.max.load(Ordering::Relaxed)
    }

    /// The bytes held, as last published by every holder.
    pub(crate) fn held(&self) -> u64 {
        // SYNC POINT: Relaxed: the total is a figure for a policy decision; no memory is read
        // through it. Every update is one read-modify-write on this one atomic, so none is lost
        // and the value is exact once every holder's last update has landed.
        self.held.load(Ordering::Relaxed)
    }

    /// With `held` bytes held: how many must be freed to bring the total down to the low-water
    /// mark, an eighth under the ceiling (so that closing to just under it does not put the next
    /// small growth over it again); 0 when `held` is not over the ceiling, or there is none.
    pub(crate) fn to_free(&self, held: u64) -> u64 {
        match self.max() {
            0 => 0,
            max if held > max => held - (max - max / 8),
            _ => 0,
        }
    }

    /// Whether a ceiling is set and the total is over it.
    pub(crate) fn over(&self) -> bool {
        self.to_free(self.held()) > 0
    }
}

/// Asks the allocator to give its free memory back to the system. After a burst the freed
/// buffers otherwise stay in the process (glibc keeps freed chunks in its arenas, and raises its
/// mmap threshold after freeing large blocks, so later large buffers come from the arenas too):
/// RSS would stay near the peak. With glibc this is `malloc_trim(0)`, which walks every arena
/// (milliseconds on a large heap: call it rarely, off the data path); elsewhere it does nothing.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            /// glibc, `malloc.h`: releases free memory at the top of the heap and free whole
            /// pages inside every arena; returns 1 if any was released.
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim(3) takes no pointer and touches only the allocator's own state,
        // under each arena's lock, so it is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// One holder's part of the total: its last published figure.
#[derive(Debug)]
pub(crate) struct MemoryShare {
    budget: Arc<MemoryBudget>,
    published: u64,
}

impl MemoryShare {
    /// A holder that holds nothing yet.
    pub(crate) fn new(budget: &Arc<MemoryBudget>) -> MemoryShare {
        MemoryShare {
            budget: Arc::clone(budget),
            published: 0,
        }
    }

    /// What this holder last published.
    pub(crate) fn published(&self) -> u64 {
        self.published
    }

    /// The budget this share is part of.
    pub(crate) fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Sets this holder's part of the total to `held` bytes (one atomic add of the difference,
    /// none when it did not change).
    pub(crate) fn publish(&mut self, held: u64) {
        if held == self.published {
            return;
        }
        // SYNC POINT: Relaxed, as in MemoryBudget::held. Adding the two's-complement difference
        // (fetch_add wraps) subtracts when the holder shrank; the total never goes below zero
        // because each holder only ever takes back what it added.
        self.budget
            .held
            .fetch_add(held.wrapping_sub(self.published), Ordering::Relaxed);
        self.published = held;
    }
}

impl Drop for MemoryShare {
    /// A holder that goes away (a worker thread ending) takes its part back.
    fn drop(&mut self) {
        self.publish(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_add_up_and_the_ceiling_applies_to_their_sum() {
        let budget = MemoryBudget::new(100);
        let (mut worker, mut bridge) = (MemoryShare::new(&budget), MemoryShare::new(&budget));
        worker.publish(80);
        bridge.publish(30);
        assert_eq!(budget.held(), 110);
        assert!(budget.over());
        // Down to an eighth under the ceiling.
        assert_eq!(budget.to_free(budget.held()), 110 - 88);
        worker.publish(50);
        assert_eq!(
            budget.held(),
            80,
            "a holder that shrank takes the difference back"
        );
        assert!(!budget.over());
        budget.set_max(0);
        worker.publish(1 << 40);
        assert!(!budget.over(), "no ceiling at 0");
        drop(worker);
        assert_eq!(
            budget.held(),
            30,
            "a holder that goes away takes its part back"
        );
    }
}
