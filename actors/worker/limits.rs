//! Per-connection limits (`[limits]`) as a worker applies them: the send buffer cap, the request
//! rate, the half-close wait, and the rate-limited log lines for connections closed by a limit.
//!
//! Each connection keeps its own request-rate window (`connection.rs`); the idle timeout's and
//! the packet timeout's bookkeeping are the worker's [`IdleList`](super::idle::IdleList)s; a
//! connection's receive buffer needs no cap of its own, because it never holds more than its
//! listener's `max_packet` plus one read (`connection.rs`), and `limits.packet_timeout` bounds how
//! long it may hold that.

use std::net::SocketAddr;
use std::time::Duration;

use log::Level;

use super::close::CloseCause;
use crate::logging::{LogLimiter, log_limited};
use crate::settings::LimitsSettings;

/// The limits a worker applies to each of its connections, from `[limits]`.
#[derive(Debug)]
pub(super) struct Limits {
    /// Most unwritten reply bytes a connection may hold.
    pub(super) max_send_buffer: usize,
    /// Most packets per connection per one-second window; `u64::MAX` when off.
    pub(super) max_requests_per_second: u64,
    /// How long a half-closed connection waits for its replies; zero: it does not wait.
    pub(super) half_close_timeout: Duration,
    idle_log: LogLimiter,
    slow_log: LogLimiter,
    rate_log: LogLimiter,
    listener_rate_log: LogLimiter,
    half_close_log: LogLimiter,
    packet_timeout_log: LogLimiter,
    memory_log: LogLimiter,
    /// Connections refused on a `proxy_protocol` listener (one line for every kind of refusal).
    proxy_log: LogLimiter,
}

impl Limits {
    /// The limits `settings` ask for.
    pub(super) fn new(settings: &LimitsSettings) -> Limits {
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
            proxy_log: LogLimiter::default(),
        }
    }

    /// Applies new `[limits]` (a reload); connections are judged by them from now on.
    pub(super) fn set(&mut self, settings: &LimitsSettings) {
        let fresh = Limits::new(settings);
        self.max_send_buffer = fresh.max_send_buffer;
        self.max_requests_per_second = fresh.max_requests_per_second;
    }

    /// Logs, at most once per ten seconds per limit, that worker `worker` closed the connection
    /// from `peer` (on listener `listener`) for `cause`, if `cause` is one of the limits.
    pub(super) fn log_close(
        &mut self,
        cause: CloseCause,
        worker: usize,
        peer: SocketAddr,
        listener: usize,
    ) {
        if let CloseCause::ProxyMalformed(why) = cause {
            log_limited!(
                self.proxy_log,
                Level::Warn,
                "worker {worker}: closed the connection from {peer} on listen[{listener}]: malformed PROXY protocol header: {why}"
            );
            return;
        }
        let (limiter, what) = match cause {
            CloseCause::ProxyMissing => (
                &mut self.proxy_log,
                "it did not begin with a PROXY protocol header of a version listen[i].proxy_protocol accepts",
            ),
            CloseCause::ProxyUntrusted => (
                &mut self.proxy_log,
                "its source is not in listen[i].proxy_from, so it may not send a PROXY protocol header",
            ),
            CloseCause::ProxyTimeout => (
                &mut self.proxy_log,
                "no whole PROXY protocol header within limits.packet_timeout",
            ),
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
        log_limited!(
            limiter,
            level,
            "worker {worker}: closed the connection from {peer} on listen[{listener}]: {what}"
        );
    }
}
