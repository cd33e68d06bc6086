//! Per-connection limits (`[limits]`): the request-rate window each connection keeps, the send
//! buffer cap, and the rate-limited log lines for connections closed by a limit.
//!
//! The idle timeout's and the packet timeout's bookkeeping are the worker's
//! [`IdleList`](super::idle::IdleList)s; a connection's receive buffer needs no cap of its own,
//! because it never holds more than its listener's `max_packet` plus one read
//! (`connection.rs`), and `limits.packet_timeout` bounds how long it may hold that.

use std::net::SocketAddr;
use std::time::Duration;

use log::{Level, log};

use super::connection::CloseCause;
use crate::logging::LogLimiter;
use crate::settings::LimitsSettings;

/// The length of the request-rate window.
const WINDOW_NS: u64 = 1_000_000_000;

/// The limits a worker applies to each of its connections, from `[limits]`.
#[derive(Debug)]
pub(crate) struct Limits {
    /// Most unwritten reply bytes a connection may hold.
    pub(crate) max_send_buffer: usize,
    /// Most packets per connection per one-second window; `u64::MAX` when off.
    pub(crate) max_requests_per_second: u64,
    /// How long a half-closed connection waits for its replies; zero: it does not wait.
    pub(crate) half_close_timeout: Duration,
    idle_log: LogLimiter,
    slow_log: LogLimiter,
    rate_log: LogLimiter,
    listener_rate_log: LogLimiter,
    half_close_log: LogLimiter,
    packet_timeout_log: LogLimiter,
    memory_log: LogLimiter,
}

impl Limits {
    /// The limits `settings` ask for.
    pub(crate) fn new(settings: &LimitsSettings) -> Limits {
        Limits {
            max_send_buffer: usize::try_from(settings.max_send_buffer.bytes())
                .unwrap_or(usize::MAX),
            max_requests_per_second: match settings.max_requests_per_second {
                0 => u64::MAX,
                n => n,
            },
            half_close_timeout: settings.half_close_timeout,
            idle_log: LogLimiter::default(),
            slow_log: LogLimiter::default(),
            rate_log: LogLimiter::default(),
            listener_rate_log: LogLimiter::default(),
            half_close_log: LogLimiter::default(),
            packet_timeout_log: LogLimiter::default(),
            memory_log: LogLimiter::default(),
        }
    }

    /// Applies new `[limits]` (a reload); connections are judged by them from now on.
    pub(crate) fn set(&mut self, settings: &LimitsSettings) {
        let fresh = Limits::new(settings);
        self.max_send_buffer = fresh.max_send_buffer;
        self.max_requests_per_second = fresh.max_requests_per_second;
    }

    /// Logs, at most once per ten seconds per limit, that worker `worker` closed the connection
    /// from `peer` (on listener `listener`) for `cause`, if `cause` is one of the limits.
    pub(crate) fn log_close(
        &mut self,
        cause: CloseCause,
        worker: usize,
        peer: SocketAddr,
        listener: usize,
    ) {
        let (limiter, what) = match cause {
            CloseCause::Idle => (&mut self.idle_log, "idle for limits.idle_timeout"),
            CloseCause::SlowClient => (
                &mut self.slow_log,
                "its unread replies exceed limits.max_send_buffer",
            ),
            CloseCause::RateLimited => (
                &mut self.rate_log,
                "it sent more than limits.max_requests_per_second",
            ),
            CloseCause::ListenerRateLimited => (
                &mut self.listener_rate_log,
                "its listener's connections sent more than its max_requests_per_second",
            ),
            CloseCause::MaxMemory => (
                &mut self.memory_log,
                "ccsd holds more than limits.max_memory and it is one of the largest holders",
            ),
            CloseCause::PacketTimeout => (
                &mut self.packet_timeout_log,
                "its unfinished packet began more than limits.packet_timeout ago",
            ),
            CloseCause::HalfCloseTimeout => (
                &mut self.half_close_log,
                "its client shut down its side and not every reply came within limits.half_close_timeout",
            ),
            _ => return,
        };
        // Expected with clients that close without waiting for replies MCP may never send.
        let level = match cause {
            CloseCause::HalfCloseTimeout => Level::Info,
            _ => Level::Warn,
        };
        if let Some(held) = limiter.allow() {
            log!(
                level,
                "worker {worker}: closed the connection from {peer} on listen[{listener}]: {what} ({held} similar suppressed)"
            );
        }
    }
}

/// A connection's packets in its current one-second window.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RequestWindow {
    start_ns: u64,
    count: u64,
}

impl RequestWindow {
    /// How many more packets the connection may send in the window open at `now_ns` (a new
    /// window starts once the last one is a second old).
    pub(crate) fn budget(&mut self, now_ns: u64, max: u64) -> u64 {
        if now_ns.saturating_sub(self.start_ns) >= WINDOW_NS {
            self.start_ns = now_ns;
            self.count = 0;
        }
        max.saturating_sub(self.count)
    }

    /// Counts `packets` taken from the connection in the current window.
    pub(crate) fn spend(&mut self, packets: u64) {
        self.count += packets;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_budget_shrinks_with_packets_and_refills_after_a_second() {
        let mut w = RequestWindow::default();
        let t = 5 * WINDOW_NS;
        assert_eq!(w.budget(t, 10), 10);
        w.spend(7);
        assert_eq!(w.budget(t + WINDOW_NS / 2, 10), 3);
        w.spend(3);
        assert_eq!(w.budget(t + WINDOW_NS - 1, 10), 0);
        assert_eq!(w.budget(t + WINDOW_NS, 10), 10);
    }
}
