//! A request-rate limit shared by threads without a lock: at most `max` events per window.
//!
//! Used for `listen[i].max_requests_per_second`, where every worker holding a connection of the
//! listener draws from one budget; a UDP listener can use it per datagram. A window opens with the
//! first event after the previous window ended (the rule of `limits.max_requests_per_second`), so
//! up to twice `max` events can pass across a window boundary.
//!
//! The whole state is one `AtomicU64`, updated by compare-and-swap: the window's start in
//! milliseconds of the caller's clock (its low 32 bits) in the high half, the events counted in it
//! in the low half. Each allowed event costs one compare-and-swap on a cache line the callers
//! share; since events beyond the limit are refused, that cost per second is bounded by the limit
//! itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const NS_PER_MS: u64 = 1_000_000;
const COUNT_MASK: u64 = u32::MAX as u64;

/// At most `max` events per window, counted across threads.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    max: u64,
    window_ms: i32,
    /// `window start (ms, low 32 bits) << 32 | events in that window`; 0 before the first event.
    state: AtomicU64,
}

impl RateLimiter {
    /// A limiter allowing `max` events (at most `u32::MAX`; more is taken as that) per `window`
    /// (rounded to milliseconds, from 1 ms to 24 days).
    pub(crate) fn new(max: u64, window: Duration) -> RateLimiter {
        RateLimiter {
            max: max.min(COUNT_MASK),
            window_ms: i32::try_from(window.as_millis()).unwrap_or(i32::MAX).max(1),
            state: AtomicU64::new(0),
        }
    }

    /// Counts one event at `now_ns` (a monotonic clock in nanoseconds, the same for every caller)
    /// and says whether it is within the limit. A refused event is not counted.
    pub(crate) fn allow(&self, now_ns: u64) -> bool {
        let now_ms = (now_ns / NS_PER_MS) as u32;
        // SYNC POINT: Relaxed, as the exchange below: the word guards nothing else in memory.
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let start = (current >> 32) as u32;
            // Signed: a caller whose clock reading is a little older than the window's start
            // (read before another thread opened it) counts in that window. Gaps over 24 days
            // alias, which at worst opens a window late or early once.
            let elapsed = now_ms.wrapping_sub(start) as i32;
            let (start, count) = if current == 0 || elapsed >= self.window_ms {
                (now_ms, 0)
            } else {
                (start, current & COUNT_MASK)
            };
            if count >= self.max {
                return false;
            }
            let next = u64::from(start) << 32 | (count + 1);
            // Relaxed: the counter guards nothing else in memory.
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn max_events_pass_per_window_and_a_window_opens_with_the_first_event_after_it() {
        let limit = RateLimiter::new(3, Duration::from_secs(1));
        let t = 7 * SECOND + SECOND / 2;
        assert_eq!((0..5).filter(|i| limit.allow(t + i)).count(), 3);
        assert!(!limit.allow(t + SECOND - NS_PER_MS));
        assert!(limit.allow(t + SECOND));
        assert!(limit.allow(t + SECOND + 1));
        assert!(limit.allow(t + 2 * SECOND - NS_PER_MS));
        assert!(!limit.allow(t + 2 * SECOND - NS_PER_MS));
    }

    #[test]
    fn a_reading_older_than_the_window_start_counts_in_that_window() {
        let limit = RateLimiter::new(1, Duration::from_secs(1));
        assert!(limit.allow(9 * SECOND));
        assert!(!limit.allow(9 * SECOND - 5 * NS_PER_MS));
    }

    #[test]
    fn zero_allows_nothing() {
        let limit = RateLimiter::new(0, Duration::from_secs(1));
        assert!(!limit.allow(SECOND));
        assert!(!limit.allow(3 * SECOND));
    }

    #[test]
    fn threads_together_get_exactly_the_budget() {
        let limit = RateLimiter::new(10_000, Duration::from_secs(3600));
        let allowed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..5_000).filter(|_| limit.allow(SECOND)).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 10_000);
    }
}
