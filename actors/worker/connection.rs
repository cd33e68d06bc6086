//! A client connection's bytes: its buffers, cutting its stream into packets pushed into the
//! worker's request lane, and writing its pending replies.
//!
//! The worker actor (`actors/worker.rs`) owns the connections and decides when these run; this
//! module holds what happens to the bytes, so that the actor file stays about events and messages.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use log::warn;

use super::ListenerInfo;
use crate::clock::monotonic_ns;
use crate::flow::FlowId;
use crate::framing::{FrameCheck, FrameError, Framer, Progress};
use crate::lane::{Producer, PushError};
use super::limits::RequestWindow;
use crate::logging::LogLimiter;
use crate::rate_limit::RateLimiter;
use crate::record::{Kind, Reason, RecordHeader, Transport};
use super::reply_timing::UnsentReplies;
use crate::settings::OnFull;
use crate::stats::WorkerCounters;

/// Buffers that grew past this are released once empty, so idle connections stay small.
const KEEP_BUFFER_CAPACITY: usize = 256 * 1024;
/// How far a receive buffer's capacity may exceed the listener's `max_packet`: one read.
const RECV_SLACK: usize = 64 * 1024;

/// Why the worker closes a connection: what MCP is told and which counter grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseCause {
    Peer,
    SocketError,
    Malformed,
    Oversize,
    ByMcp,
    QueueFull,
    Shutdown,
    /// No activity for `limits.idle_timeout`.
    Idle,
    /// Unwritten replies over `limits.max_send_buffer`.
    SlowClient,
    /// More packets in a second than `limits.max_requests_per_second`.
    RateLimited,
    /// A packet over its listener's `max_requests_per_second`.
    ListenerRateLimited,
    /// Half-closed by the client, and its replies did not all come within
    /// `limits.half_close_timeout` (counted as `closed_peer`, and in `half_close_timeouts`).
    HalfCloseTimeout,
    /// An unfinished packet older than `limits.packet_timeout`.
    PacketTimeout,
    /// One of the largest holders while ccsd held more than `limits.max_memory`.
    MaxMemory,
}

impl CloseCause {
    /// What MCP is told in the disconnect notice.
    pub(crate) fn reason(self) -> Reason {
        match self {
            CloseCause::Peer | CloseCause::HalfCloseTimeout => Reason::PeerClosed,
            CloseCause::SocketError => Reason::Error,
            CloseCause::Malformed | CloseCause::Oversize => Reason::Protocol,
            CloseCause::ByMcp => Reason::Local,
            CloseCause::QueueFull
            | CloseCause::SlowClient
            | CloseCause::RateLimited
            | CloseCause::ListenerRateLimited
            | CloseCause::MaxMemory => Reason::Overload,
            CloseCause::Shutdown => Reason::Shutdown,
            CloseCause::Idle | CloseCause::PacketTimeout => Reason::Timeout,
        }
    }

    /// Bumps the counter for this cause (exactly one `closed_*` counter per close).
    pub(crate) fn count(self, c: &mut WorkerCounters) {
        if self == CloseCause::HalfCloseTimeout {
            c.half_close_timeouts += 1;
        }
        *match self {
            CloseCause::Peer | CloseCause::HalfCloseTimeout => &mut c.closed_peer,
            CloseCause::SocketError => &mut c.closed_error,
            CloseCause::Malformed => &mut c.closed_protocol,
            CloseCause::Oversize => &mut c.closed_oversize,
            CloseCause::ByMcp => &mut c.closed_by_mcp,
            CloseCause::QueueFull => &mut c.closed_queue_full,
            CloseCause::Shutdown => &mut c.closed_shutdown,
            CloseCause::Idle => &mut c.closed_idle,
            CloseCause::PacketTimeout => &mut c.closed_packet_timeout,
            CloseCause::MaxMemory => &mut c.closed_max_memory,
            CloseCause::SlowClient => &mut c.closed_slow_client,
            CloseCause::RateLimited => &mut c.closed_rate_limited,
            CloseCause::ListenerRateLimited => &mut c.closed_listener_rate_limited,
        } += 1;
    }
}

/// One client connection.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) listener: usize,
    /// Bytes of an incomplete packet, kept between reads.
    pub(crate) rbuf: Vec<u8>,
    /// When the first byte in `rbuf` was read.
    pub(crate) rbuf_since_ns: u64,
    /// How far the framer got in the packet at the start of `rbuf`, so that it resumes there.
    pub(crate) frame_progress: Progress,
    /// Reply bytes not yet written; `wbuf[wpos..]` is pending.
    pub(crate) wbuf: Vec<u8>,
    pub(crate) wpos: usize,
    pub(crate) write_armed: bool,
    /// Not read from until the request lane has room again (`queues.on_full = "backpressure"`).
    pub(crate) paused: bool,
    /// Not read from until ccsd holds less than `limits.max_memory` again.
    pub(crate) memory_paused: bool,
    /// The capacity of `rbuf` and `wbuf` as last counted in its worker's memory figure.
    pub(crate) counted_bytes: usize,
    /// Listed in the worker's dirty list for this turn.
    pub(crate) dirty: bool,
    /// MCP asked to close once `wbuf` is written.
    pub(crate) close_after_flush: bool,
    /// Packets sent to MCP minus replies received (never below zero): during a shutdown the
    /// connection closes when this reaches zero and its replies are written.
    pub(crate) outstanding: u64,
    /// Packets taken in the current `limits.max_requests_per_second` window.
    pub(crate) requests: RequestWindow,
    /// The first buffered packet already counts in its listener's rate window (it was allowed,
    /// then the full lane held it back for a retry).
    pub(crate) listener_rate_paid: bool,
    /// The client shut down its side (a read of 0) while requests were unanswered: no longer
    /// read, kept until they are answered (`limits.half_close_timeout`).
    pub(crate) half_closed: bool,
    /// Replies in `wbuf` not written in full yet, for the request→reply latency.
    pub(crate) unsent: UnsentReplies,
    /// When the worker took the connection over (admin `conns`).
    pub(crate) opened: Instant,
}

/// Lane and counters a framing pass writes into (split from the worker to satisfy the borrow
/// checker while a connection is borrowed from the table).
pub(crate) struct LaneSink<'a> {
    pub(crate) lane: &'a mut Producer,
    pub(crate) counters: &'a mut WorkerCounters,
    pub(crate) on_full: OnFull,
    pub(crate) full_log: &'a mut LogLimiter,
    pub(crate) worker: usize,
    /// Packets a connection may send per second (`u64::MAX`: no limit).
    pub(crate) max_requests_per_second: u64,
    /// MCP is down and `mcp.when_down = "refuse"`: complete packets are dropped, not pushed.
    pub(crate) refuse: bool,
    pub(crate) down_log: &'a mut LogLimiter,
    /// Closes for a packet that breaks the framing.
    pub(crate) protocol_log: &'a mut LogLimiter,
}

impl Conn {
    /// A new connection with empty buffers.
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, listener: usize) -> Conn {
        Conn {
            stream,
            peer,
            listener,
            rbuf: Vec::new(),
            rbuf_since_ns: 0,
            frame_progress: Progress::default(),
            wbuf: Vec::new(),
            wpos: 0,
            write_armed: false,
            paused: false,
            memory_paused: false,
            counted_bytes: 0,
            dirty: false,
            close_after_flush: false,
            outstanding: 0,
            requests: RequestWindow::default(),
            listener_rate_paid: false,
            half_closed: false,
            unsent: UnsentReplies::default(),
            opened: Instant::now(),
        }
    }

    /// Brings `buffered` (its worker's figure for all its connections) up to date with this
    /// connection's buffer capacities.
    pub(crate) fn recount(&mut self, buffered: &mut u64) {
        let now = self.rbuf.capacity() + self.wbuf.capacity();
        *buffered = *buffered + now as u64 - self.counted_bytes as u64;
        self.counted_bytes = now;
    }

    /// Every request sent to MCP has had its reply, and every reply is written.
    pub(crate) fn answered(&self) -> bool {
        self.outstanding == 0 && self.wpos == self.wbuf.len()
    }
}

/// What became of a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ingested {
    /// Every complete packet is in the lane; the rest (an incomplete packet) is buffered.
    Done,
    /// The lane filled up: complete packets are still buffered and the connection must pause.
    Blocked,
}

/// Frames `conn`'s buffered bytes followed by `fresh` ones (just read, `&[]` on a retry) and
/// pushes every complete packet into the lane, keeping the rest in `conn.rbuf`. Bytes are copied
/// into the connection only when a packet is incomplete, so a connection whose reads hold whole
/// packets never grows a buffer of its own. A packet longer than the listener's `max_packet`
/// closes the connection as soon as that shows, so `conn.rbuf` never holds more than
/// `max_packet` plus one read, and its capacity never grows past `max_packet` + [`RECV_SLACK`].
/// Packets past the connection's budget of `limits.max_requests_per_second`, or its listener's
/// `max_requests_per_second`, close it before they reach the lane.
pub(crate) fn frame_connection(
    conn: &mut Conn,
    flow: FlowId,
    info: &ListenerInfo,
    fresh: &[u8],
    sink: &mut LaneSink<'_>,
) -> Result<Ingested, CloseCause> {
    let now = monotonic_ns();
    let mut header = RecordHeader::new(Kind::Data, flow);
    header.peer = conn.peer;
    header.listen_port = info.port;
    header.transport = Transport::Tcp;
    header.timestamp_ns = now;
    let framer = &*info.framer;
    let recv_cap = framer.max_packet().saturating_add(RECV_SLACK);
    let mut budget = Budget {
        connection: conn.requests.budget(now, sink.max_requests_per_second),
        listener: info.rate.as_deref(),
        listener_paid: &mut conn.listener_rate_paid,
    };
    let framed = if conn.rbuf.is_empty() {
        // Nothing of a packet is buffered: the framer starts afresh.
        conn.frame_progress = Progress::default();
        let framed = frame_packets(
            framer,
            fresh,
            &mut conn.frame_progress,
            now,
            now,
            &mut budget,
            &mut header,
            sink,
        )?;
        append_capped(&mut conn.rbuf, &fresh[framed.consumed..], recv_cap);
        conn.rbuf_since_ns = now;
        framed
    } else {
        append_capped(&mut conn.rbuf, fresh, recv_cap);
        let framed = frame_packets(
            framer,
            &conn.rbuf,
            &mut conn.frame_progress,
            conn.rbuf_since_ns,
            now,
            &mut budget,
            &mut header,
            sink,
        )?;
        conn.rbuf.drain(..framed.consumed);
        if framed.consumed > 0 {
            conn.rbuf_since_ns = now;
        }
        framed
    };
    if conn.rbuf.is_empty() && conn.rbuf.capacity() > KEEP_BUFFER_CAPACITY {
        conn.rbuf = Vec::new();
    }
    conn.outstanding += framed.pushed;
    conn.requests.spend(framed.taken);
    if let Some(interim) = conn.frame_progress.interim.take() {
        send_interim(conn, interim, sink.counters)?;
    }
    Ok(if framed.blocked {
        Ingested::Blocked
    } else {
        Ingested::Done
    })
}

/// Sends an interim response the framer asked for (HTTP's `100 Continue`) when no request of the
/// connection is waiting for its reply, so that it cannot overtake one; otherwise the client
/// goes on without it (an HTTP client sends its body after a short wait anyway).
fn send_interim(
    conn: &mut Conn,
    interim: &[u8],
    counters: &mut WorkerCounters,
) -> Result<(), CloseCause> {
    if conn.outstanding > 0 || conn.wpos < conn.wbuf.len() {
        counters.interim_responses_skipped += 1;
        return Ok(());
    }
    conn.wbuf.extend_from_slice(interim);
    conn.unsent.queued(interim.len());
    counters.interim_responses_sent += 1;
    // What the socket does not take now goes out with the next reply.
    write_pending(conn, &mut counters.bytes_out).map_err(|_| CloseCause::SocketError)?;
    Ok(())
}

/// Appends `bytes` to `buf`, doubling its capacity as a `Vec` would but never past `cap` (unless
/// the bytes themselves need more), so a buffer near the packet limit is not allocated twice over.
fn append_capped(buf: &mut Vec<u8>, bytes: &[u8], cap: usize) {
    let needed = buf.len() + bytes.len();
    if needed > buf.capacity() {
        let target = (buf.capacity() * 2).clamp(needed, cap.max(needed));
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(bytes);
}

/// What a framing pass may take from a connection.
struct Budget<'a> {
    /// Packets the connection may still send in its window (`limits.max_requests_per_second`).
    connection: u64,
    /// Its listener's window, shared with the other workers (`listen[i].max_requests_per_second`).
    listener: Option<&'a RateLimiter>,
    /// The first packet already counts in the listener's window ([`Conn::listener_rate_paid`]).
    listener_paid: &'a mut bool,
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
struct Framed {
    /// Bytes of complete packets taken into the lane (or dropped, with `on_full = "drop"`).
    consumed: usize,
    /// Stopped at a packet the full lane could not take (`on_full = "backpressure"`).
    blocked: bool,
    /// Packets pushed into the lane.
    pushed: u64,
    /// Packets taken from the connection: pushed, or dropped with `on_full = "drop"`.
    taken: u64,
}

/// Frames the packets at the start of `buf` and pushes each into the lane. Returns how many bytes
/// were consumed (the rest is an incomplete packet, or packets the full lane could not take), or
/// why the connection must close.
///
/// `progress` is how far the framer got in the first packet in earlier passes; it is left holding
/// how far it got in the packet the pass stops at.
///
/// The first packet began at `first_ns` (it may have started in an earlier read); later ones at
/// `now_ns`. Both travel to MCP in `echo[0]` and come back with the reply. A packet beyond the
/// connection's or the listener's budget closes the connection.
#[allow(clippy::too_many_arguments)] // the split borrows of frame_connection
fn frame_packets(
    framer: &dyn Framer,
    buf: &[u8],
    progress: &mut Progress,
    first_ns: u64,
    now_ns: u64,
    budget: &mut Budget<'_>,
    header: &mut RecordHeader,
    sink: &mut LaneSink<'_>,
) -> Result<Framed, CloseCause> {
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
            FrameCheck::Complete(n) if sink.refuse => {
                sink.counters.dropped_mcp_down += 1;
                if let Some(held) = sink.down_log.allow() {
                    warn!(
                        "worker {}: MCP is down, dropping packets (mcp.when_down = \"refuse\") ({held} similar suppressed)",
                        sink.worker
                    );
                }
                budget.packet_taken();
                off += n;
                taken += 1;
            }
            FrameCheck::Complete(n) => {
                let packet = &rest[..n];
                header.payload_len = n as u32;
                header.echo[0] = if off == 0 { first_ns } else { now_ns };
                match sink.lane.try_push(&[&header.encode(), packet]) {
                    Ok(()) => {
                        pushed += 1;
                        sink.counters.packets_in += 1;
                        sink.counters.bytes_in += n as u64;
                    }
                    Err(PushError::Full) if sink.on_full == OnFull::Backpressure => {
                        sink.counters.backpressure_pauses += 1;
                        return Ok(Framed {
                            consumed: off,
                            blocked: true,
                            pushed,
                            taken,
                        });
                    }
                    Err(PushError::Full) if sink.on_full == OnFull::Drop => {
                        sink.counters.dropped_queue_full += 1;
                        if let Some(held) = sink.full_log.allow() {
                            warn!(
                                "worker {}: request lane full, dropping packets ({held} similar suppressed)",
                                sink.worker
                            );
                        }
                    }
                    Err(PushError::Full) => {
                        if let Some(held) = sink.full_log.allow() {
                            warn!(
                                "worker {}: request lane full, closing connections ({held} similar suppressed)",
                                sink.worker
                            );
                        }
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
                return Err(refuse_packet(error, header, sink));
            }
            FrameCheck::Incomplete => {
                return Ok(Framed {
                    consumed: off,
                    blocked: false,
                    pushed,
                    taken,
                });
            }
            FrameCheck::Invalid(error) => return Err(refuse_packet(error, header, sink)),
        }
    }
}

/// Logs (rate-limited) a packet that breaks the framing, naming the client and why; the cause the
/// connection is closed for.
fn refuse_packet(error: FrameError, header: &RecordHeader, sink: &mut LaneSink<'_>) -> CloseCause {
    if let Some(held) = sink.protocol_log.allow() {
        warn!(
            "worker {}: closed the connection from {} on port {}: {error} ({held} similar suppressed)",
            sink.worker, header.peer, header.listen_port
        );
    }
    match error {
        FrameError::Oversize { .. } => CloseCause::Oversize,
        FrameError::Malformed(_) => CloseCause::Malformed,
    }
}

/// Appends a reply to `conn.wbuf`, keeping at most `max` bytes unwritten
/// (`limits.max_send_buffer`): when the reply would not fit, what the socket takes is written first,
/// and `Err(CloseCause::SlowClient)` means it still does not fit. Bytes already written are
/// dropped from the front once they are half the buffer, so the buffer stays within about twice
/// `max` however long a slow reader keeps up.
pub(crate) fn queue_capped(
    conn: &mut Conn,
    payload: &[u8],
    max: usize,
    bytes_out: &mut u64,
) -> Result<(), CloseCause> {
    if conn.wbuf.len() - conn.wpos + payload.len() > max {
        write_pending(conn, bytes_out).map_err(|_| CloseCause::SocketError)?;
        if conn.wbuf.len() - conn.wpos + payload.len() > max {
            return Err(CloseCause::SlowClient);
        }
    }
    if conn.wpos > 0 && conn.wpos >= conn.wbuf.len() / 2 {
        conn.wbuf.drain(..conn.wpos);
        conn.wpos = 0;
    }
    append_capped(&mut conn.wbuf, payload, max);
    conn.unsent.queued(payload.len());
    Ok(())
}

/// Writes `conn.wbuf[conn.wpos..]`; `Ok(true)` when all of it went out, `Ok(false)` when the
/// socket would block first.
pub(crate) fn write_pending(conn: &mut Conn, bytes_out: &mut u64) -> io::Result<bool> {
    while conn.wpos < conn.wbuf.len() {
        match (&conn.stream).write(&conn.wbuf[conn.wpos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.wpos += n;
                *bytes_out += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    conn.wbuf.clear();
    conn.wpos = 0;
    if conn.wbuf.capacity() > KEEP_BUFFER_CAPACITY {
        conn.wbuf = Vec::new();
    }
    Ok(true)
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
