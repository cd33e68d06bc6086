//! A worker's request lane, as its connections see it: complete packets pushed in with their
//! record header, what happens when the lane is full (`queues.on_full`) or MCP is down
//! (`mcp.when_down = "refuse"`), the rate budgets a packet must fit, the connect and disconnect
//! notices, and one publish per loop turn.
//!
//! [`Conn::take_packets`](super::connection::Conn::take_packets) owns a connection's buffers and
//! calls [`Ingress::push_packets`] on them; the worker borrows its connection table and its
//! `Ingress` separately, so both are mutable at once without re-borrowing the worker.

use log::Level;

use super::close::CloseCause;
use crate::framing::{FrameCheck, FrameError, Framer, Progress};
use crate::lane::{Producer, PushError};
use crate::logging::{LogLimiter, log_limited};
use crate::rate_limit::RateLimiter;
use crate::record::RecordHeader;
use crate::settings::OnFull;
use crate::stats::WorkerCounters;

/// The worker's request lane and what decides which packets enter it.
#[derive(Debug)]
pub(super) struct Ingress {
    lane: Producer,
    /// The worker's index, for log lines.
    worker: usize,
    /// What to do with a packet when the lane is full.
    on_full: OnFull,
    /// MCP was down at the start of this turn (`mcp.when_down = "refuse"`): complete packets are
    /// dropped, not pushed.
    refusing: bool,
    full_log: LogLimiter,
    down_log: LogLimiter,
    /// Closes for a packet that breaks the framing.
    protocol_log: LogLimiter,
    wake_log: LogLimiter,
}

/// What a framing pass may take from a connection.
#[derive(Debug)]
pub(super) struct Budget<'a> {
    /// Packets the connection may still send in its window (`limits.max_requests_per_second`).
    pub(super) connection: u64,
    /// Its listener's window, shared with the other workers (`listen[i].max_requests_per_second`).
    pub(super) listener: Option<&'a RateLimiter>,
    /// The first packet already counts in the listener's window (a packet held back by a full
    /// lane, to be retried).
    pub(super) listener_paid: &'a mut bool,
}

impl Budget<'_> {
    /// Whether the listener's window has room for the next packet, which then counts in it
    /// (once: a packet held back by a full lane and retried is not counted again).
    fn listener_allows(&mut self, now_ns: u64) -> bool {
        match self.listener {
            Some(_) if *self.listener_paid => true,
            Some(window) => {
                *self.listener_paid = window.allow(now_ns);
                *self.listener_paid
            }
            None => true,
        }
    }

    /// The packet counted by [`listener_allows`](Budget::listener_allows) left the connection.
    fn packet_taken(&mut self) {
        *self.listener_paid = false;
    }
}

/// How far a framing pass got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Framed {
    /// Bytes of complete packets taken into the lane (or dropped, with `on_full = "drop"` or MCP
    /// down).
    pub(super) consumed: usize,
    /// Stopped at a packet the full lane could not take (`on_full = "backpressure"`).
    pub(super) blocked: bool,
    /// Packets pushed into the lane.
    pub(super) pushed: u64,
    /// Packets taken from the connection: pushed, or dropped.
    pub(super) taken: u64,
}

impl Ingress {
    /// Worker `worker`'s side of `lane`, handling a full lane as `on_full` says.
    pub(super) fn new(lane: Producer, worker: usize, on_full: OnFull) -> Ingress {
        Ingress {
            lane,
            worker,
            on_full,
            refusing: false,
            full_log: LogLimiter::default(),
            down_log: LogLimiter::default(),
            protocol_log: LogLimiter::default(),
            wake_log: LogLimiter::default(),
        }
    }

    /// The lane, for its fill level and its counts.
    pub(super) fn lane(&self) -> &Producer {
        &self.lane
    }

    /// Whether MCP is down this turn (`mcp.when_down = "refuse"`): packets are dropped, counted.
    pub(super) fn set_refusing(&mut self, refusing: bool) {
        self.refusing = refusing;
    }

    /// Pushes a connect or disconnect notice; false when the full lane lost it.
    pub(super) fn push_notice(&mut self, notice: &RecordHeader) -> bool {
        self.lane.try_push(&[&notice.encode()]).is_ok()
    }

    /// Publishes what this turn pushed, waking MCP if it sleeps.
    pub(super) fn publish(&mut self, counters: &mut WorkerCounters) {
        if !self.lane.has_unpublished() {
            return;
        }
        match self.lane.publish() {
            Ok(woke) => {
                counters.lane_publishes += 1;
                counters.lane_wakeups += u64::from(woke);
            }
            Err(e) => log_limited!(
                self.wake_log,
                Level::Warn,
                "worker {}: cannot wake MCP: {e}",
                self.worker
            ),
        }
    }

    /// Frames the packets at the start of `buf` and pushes each into the lane with `header`.
    /// Returns how many bytes were consumed (the rest is an incomplete packet, or packets the
    /// full lane could not take), or why the connection must close.
    ///
    /// `progress` is how far the framer got in the first packet in earlier passes; it is left
    /// holding how far it got in the packet the pass stops at.
    ///
    /// `header.echo[0]` holds when the first packet began (it may have started in an earlier
    /// read); later ones began at `header.timestamp_ns`, this read. Both travel to MCP in
    /// `echo[0]` and come back with the reply. A packet beyond the connection's or the listener's
    /// budget closes the connection.
    pub(super) fn push_packets(
        &mut self,
        framer: &dyn Framer,
        buf: &[u8],
        progress: &mut Progress,
        budget: &mut Budget<'_>,
        header: &mut RecordHeader,
        counters: &mut WorkerCounters,
    ) -> Result<Framed, CloseCause> {
        let now_ns = header.timestamp_ns;
        let mut off = 0;
        let mut pushed = 0;
        let mut taken = 0;
        loop {
            let rest = &buf[off..];
            let check = framer.check_from(rest, progress);
            if check != FrameCheck::Incomplete {
                // The next packet (or a retry of this one, held back by a full lane) starts afresh.
                *progress = Progress::default();
            }
            match check {
                FrameCheck::Complete(_) if taken == budget.connection => {
                    return Err(CloseCause::RateLimited);
                }
                FrameCheck::Complete(_) if !budget.listener_allows(now_ns) => {
                    return Err(CloseCause::ListenerRateLimited);
                }
                FrameCheck::Complete(n) if self.refusing => {
                    counters.dropped_mcp_down += 1;
                    log_limited!(
                        self.down_log,
                        Level::Warn,
                        "worker {}: MCP is down, dropping packets (mcp.when_down = \"refuse\")",
                        self.worker
                    );
                    budget.packet_taken();
                    off += n;
                    taken += 1;
                }
                FrameCheck::Complete(n) => {
                    let packet = &rest[..n];
                    header.payload_len = n as u32;
                    match self.lane.try_push(&[&header.encode(), packet]) {
                        Ok(()) => {
                            pushed += 1;
                            counters.packets_in += 1;
                            counters.bytes_in += n as u64;
                        }
                        Err(PushError::Full) if self.on_full == OnFull::Backpressure => {
                            counters.backpressure_pauses += 1;
                            return Ok(Framed {
                                consumed: off,
                                blocked: true,
                                pushed,
                                taken,
                            });
                        }
                        Err(PushError::Full) if self.on_full == OnFull::Drop => {
                            counters.dropped_queue_full += 1;
                            log_limited!(
                                self.full_log,
                                Level::Warn,
                                "worker {}: request lane full, dropping packets",
                                self.worker
                            );
                        }
                        Err(PushError::Full) => {
                            log_limited!(
                                self.full_log,
                                Level::Warn,
                                "worker {}: request lane full, closing connections",
                                self.worker
                            );
                            return Err(CloseCause::QueueFull);
                        }
                        // Settings validation makes every lane hold the largest packet.
                        Err(PushError::TooLarge { .. }) => return Err(CloseCause::Oversize),
                    }
                    budget.packet_taken();
                    off += n;
                    taken += 1;
                }
                FrameCheck::Incomplete if rest.len() > framer.max_packet() => {
                    let error = FrameError::Oversize {
                        declared: rest.len() as u64,
                        max: framer.max_packet(),
                    };
                    return Err(self.refuse_packet(error, header));
                }
                FrameCheck::Incomplete => {
                    return Ok(Framed {
                        consumed: off,
                        blocked: false,
                        pushed,
                        taken,
                    });
                }
                FrameCheck::Invalid(error) => return Err(self.refuse_packet(error, header)),
            }
            // The packets after the first began with this read.
            header.echo[0] = now_ns;
        }
    }

    /// Logs (rate-limited) a packet that breaks the framing, naming the client and why; the cause
    /// the connection is closed for.
    fn refuse_packet(&mut self, error: FrameError, header: &RecordHeader) -> CloseCause {
        log_limited!(
            self.protocol_log,
            Level::Warn,
            "worker {}: closed the connection from {} on port {}: {error}",
            self.worker,
            header.peer,
            header.listen_port
        );
        match error {
            FrameError::Oversize { .. } => CloseCause::Oversize,
            FrameError::Malformed(_) => CloseCause::Malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_packet_held_back_and_retried_counts_once_in_the_listener_window() {
        let window = RateLimiter::new(2, Duration::from_secs(1));
        let mut paid = false;
        let mut budget = Budget {
            connection: u64::MAX,
            listener: Some(&window),
            listener_paid: &mut paid,
        };
        // The first packet is allowed, then the full lane holds it back: the pass ends untaken.
        assert!(budget.listener_allows(1));
        // The retry of the same packet, then the next packet.
        let mut budget = Budget {
            connection: u64::MAX,
            listener: Some(&window),
            listener_paid: &mut paid,
        };
        assert!(budget.listener_allows(2));
        budget.packet_taken();
        assert!(budget.listener_allows(3));
        budget.packet_taken();
        assert!(!budget.listener_allows(4));
    }
}
