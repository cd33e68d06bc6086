//! A worker's part of `limits.max_memory`: it counts the capacity of its connections' receive and
//! send buffers (`Conn::recount` after every operation that can change one, so the figure is exact
//! at O(1) per operation), publishes that figure into the shared total once per turn, and while
//! the total is over the ceiling:
//!
//! - stops reading: a connection that becomes readable is paused (taken out of the poller's read
//!   interest, off the idle and packet clocks) instead of read, so no request adds replies and no
//!   unfinished packet grows; every paused connection is read again as soon as the total is under
//!   the ceiling;
//! - closes its largest holders first, at most every [`CLOSE_INTERVAL`], until it has freed its
//!   share of what brings the total an eighth under the ceiling (`MemoryBudget::to_free`): that
//!   × its figure ÷ the total, so that the workers together free about that without talking to
//!   each other, and the next small growth does not put ccsd over the ceiling again (the interval lets the others' frees reach the
//!   total before the next round). Finding them is one pass over the connections with buffers,
//!   keeping the [`CANDIDATES`] largest (`select_nth_unstable`), so a round costs O(connections).
//!
//! Whatever the ceiling, once its connections hold [`RELEASE_AFTER_FREED`] bytes, or half, less
//! than at their peak since the last time (and at least [`RELEASE_MIN_FREED`]), the worker asks the
//! allocator to return free memory to the system (at most every [`RELEASE_INTERVAL`]), so RSS
//! falls after a burst instead of staying at its peak.

use std::time::{Duration, Instant};

use log::{Level, debug};

use super::Worker;
use super::close::CloseCause;
use crate::flow::FlowId;
use crate::logging::log_limited;
use crate::memory::release_free_memory;

/// How often a worker over `limits.max_memory` may close its largest holders.
const CLOSE_INTERVAL: Duration = Duration::from_millis(100);
/// How soon a worker with connections paused for memory looks at the total again (no one wakes
/// it when other holders free memory).
const PAUSED_RECHECK: Duration = Duration::from_millis(10);
/// The most connections one round considers (the largest ones).
const CANDIDATES: usize = 64;
/// Buffer bytes freed since the last release that make the worker release free memory again
/// (or half of the peak, if that is less).
const RELEASE_AFTER_FREED: u64 = 32 << 20;
/// Fewer bytes freed than this are not worth a release.
const RELEASE_MIN_FREED: u64 = 1 << 20;
/// The shortest time between two releases by one worker.
const RELEASE_INTERVAL: Duration = Duration::from_secs(1);

impl Worker {
    /// How long the worker may sleep before it must look at the memory total again; `None` while
    /// it has nothing to do about memory.
    pub(super) fn memory_wake(&self, now: Instant) -> Option<Duration> {
        if !self.memory_paused.is_empty() {
            Some(PAUSED_RECHECK)
        } else if self.memory_over {
            Some(self.next_memory_check.saturating_duration_since(now))
        } else {
            None
        }
    }

    /// Stops reading `flow` while ccsd is over `limits.max_memory`.
    pub(super) fn memory_pause(&mut self, flow: FlowId) {
        let Ok(conn) = self.conns.get_mut(flow) else {
            return;
        };
        conn.pause_for_memory();
        self.memory_paused.push(flow);
        self.counters.memory_pauses += 1;
        // Not reading it is not the client's idleness, nor its slowness.
        self.idle.remove(flow.slot());
        self.unfinished.remove(flow.slot());
        log_limited!(
            self.memory_log,
            Level::Warn,
            "worker {}: ccsd holds {} bytes, over limits.max_memory ({}): not reading clients, closing the largest holders",
            self.id,
            self.memory.budget().held(),
            self.memory.budget().max()
        );
        if self.update_interest(flow).is_err() {
            self.close(flow, CloseCause::SocketError);
        }
    }

    /// Publishes this worker's figure; then, under the ceiling, reads the paused connections
    /// again, and over it, closes the largest holders when due.
    pub(super) fn enforce_memory(&mut self) {
        self.memory.publish(self.buffered);
        self.release_after_burst();
        let budget = self.memory.budget();
        let held = budget.held();
        let to_free = budget.to_free(held);
        if to_free == 0 {
            self.resume_memory_paused();
            return;
        }
        self.memory_over = true;
        if self.now < self.next_memory_check {
            return;
        }
        self.next_memory_check = self.now + CLOSE_INTERVAL;
        if self.stopping.is_some() {
            // Every connection closes by the end of the grace period anyway.
            return;
        }
        // This worker's share, rounded up (`held` is over the ceiling, so not zero).
        let share = (u128::from(to_free) * u128::from(self.buffered)).div_ceil(u128::from(held));
        self.close_largest_holders(u64::try_from(share).unwrap_or(u64::MAX));
        self.memory.publish(self.buffered);
    }

    /// Returns free memory to the system once enough buffer bytes were freed since the last time.
    fn release_after_burst(&mut self) {
        self.buffered_peak = self.buffered_peak.max(self.buffered);
        let freed = self.buffered_peak - self.buffered;
        let enough = RELEASE_AFTER_FREED.min(self.buffered_peak / 2);
        if freed >= enough.max(RELEASE_MIN_FREED) && self.now >= self.next_release {
            debug!(
                "worker {}: its buffers hold {} bytes, {freed} less than at their peak: returning free memory to the system",
                self.id, self.buffered
            );
            release_free_memory();
            self.buffered_peak = self.buffered;
            self.next_release = self.now + RELEASE_INTERVAL;
        }
    }

    /// Closes this worker's connections that hold the most buffer bytes, largest first, until
    /// `to_free` bytes are freed or [`CANDIDATES`] connections are closed.
    fn close_largest_holders(&mut self, to_free: u64) {
        let mut candidates = std::mem::take(&mut self.memory_candidates);
        candidates.clear();
        candidates.extend(self.conns.flows().filter_map(|flow| {
            let held = self.conns.peek(flow)?.counted_bytes();
            (held > 0).then_some((held, flow))
        }));
        if candidates.len() > CANDIDATES {
            candidates.select_nth_unstable_by(CANDIDATES - 1, |a, b| b.0.cmp(&a.0));
            candidates.truncate(CANDIDATES);
        }
        candidates.sort_unstable_by_key(|&(held, _)| std::cmp::Reverse(held));
        let mut freed = 0;
        for &(held, flow) in &candidates {
            if freed >= to_free {
                break;
            }
            self.close(flow, CloseCause::MaxMemory);
            freed += held as u64;
        }
        self.memory_candidates = candidates;
    }

    /// Reads every connection paused for memory again (ccsd is under `limits.max_memory`).
    fn resume_memory_paused(&mut self) {
        self.memory_over = false;
        if self.memory_paused.is_empty() {
            return;
        }
        let mut paused = std::mem::take(&mut self.memory_paused);
        for flow in paused.drain(..) {
            let Ok(conn) = self.conns.get_mut(flow) else {
                continue;
            };
            let reading = conn.resume_after_memory() && self.stopping.is_none();
            let unfinished = conn.holds_unfinished_packet();
            if reading {
                // Its clocks start again from now.
                self.idle.touch(flow.slot(), self.now);
                if unfinished {
                    self.unfinished.touch(flow.slot(), self.now);
                }
            }
            if self.update_interest(flow).is_err() {
                self.close(flow, CloseCause::SocketError);
            }
        }
        self.memory_paused = paused;
    }
}
