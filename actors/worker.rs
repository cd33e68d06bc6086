//! Worker: owns a share of the client connections on its own poller.
//!
//! Only the owning worker registers, reads, writes and closes its sockets; nothing here is shared
//! with another thread but the mailbox, the recycle channel for reply batches, the in-flight
//! count of reply bytes and the open-connection gauges.
//!
//! One turn of the loop ([`Worker::run`]): wait on the poller; read every readable connection
//! and push each complete packet into the worker's request lane; drain the mailbox (new
//! connections, MCP's replies, closes, control messages); write every connection that got
//! replies; close the connections whose clocks ran out (`limits.idle_timeout`,
//! `limits.packet_timeout`, `limits.half_close_timeout`, each an `IdleList` so a sweep costs
//! O(expired)); publish the lane once, waking MCP only if it sleeps.
//!
//! Follow a packet through these files:
//! - read → frame → lane: `read.rs` (readiness, back-pressure, half-close) →
//!   `connection.rs` (`Conn`: its buffers and state; `Conn::take_packets`) → `ingress.rs`
//!   (the request lane: push, full lane, MCP down, publish);
//! - reply → queue → write → close: `write.rs` (MCP's batches, `limits.max_send_buffer`,
//!   write interest) → `connection.rs` (`Conn::queue_reply`, `Conn::flush`) → `Worker::close`
//!   here (the disconnect notice, counters and gauges).
//!
//! Beside the path: `setup.rs` (what a worker is started with), `close.rs` (why a connection
//! closes), `control.rs` (port commands, admin `conns`, reloads, the graceful stop), `memory.rs`
//! (this worker's part of `limits.max_memory`), `limits.rs` (the limits and their log lines),
//! `idle.rs` (the `IdleList`), `reply_timing.rs` (request→reply latency), `migration.rs`
//! (moving a connection to another worker: handing it over, adopting one, the fence, pinning).
//!
//! Half-close: a read of 0 while requests are unanswered does not close the connection at once.
//! It stops being read and closes as soon as its replies are written, when a write fails or a
//! reset arrives (the client had closed fully, not just shut down its sending side: a read of 0
//! cannot tell the two apart), or at the half-close timeout, whichever comes first.

mod close;
mod connection;
mod control;
mod idle;
mod ingress;
mod limits;
mod memory;
mod migration;
mod read;
mod reply_timing;
mod setup;
mod takeover;
mod write;

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use log::{Level, debug, error};
use polling::{Events, PollMode, Poller};

pub(crate) use migration::Fence;
pub(crate) use setup::{Adoption, ListenerInfo, ProxyRule, WorkerSetup};
pub(crate) use takeover::FrozenWorker;

use close::CloseCause;
use connection::Conn;
use idle::IdleList;
use ingress::Ingress;
use limits::Limits;
use migration::MainOutbox;
use takeover::Unfrozen;

use crate::clock::monotonic_ns;
use crate::flow::{FlowId, FlowTable};
use crate::load::{FlowLoad, HeavyFlows};
use crate::logging::{LogLimiter, log_limited};
use crate::mailbox::Mailbox;
use crate::memory::MemoryShare;
use crate::message::{Connect, MainMsg, NotifyStat, ReplyBatch, WorkerMsg};
use crate::record::{Kind, RecordHeader, Transport};
use crate::stats::WorkerCounters;
use crate::stats::histogram::Histogram;

/// Bytes read from a socket in one call; also the most a connection buffers beyond a packet.
const READ_CHUNK: usize = 64 * 1024;
/// Mailbox messages handled per turn before the worker looks at its sockets again.
const MESSAGES_PER_TURN: usize = 256;
/// How soon a worker with paused connections looks for room in its request lane again.
const BACKPRESSURE_RETRY: Duration = Duration::from_millis(1);

/// A worker thread's state.
pub(crate) struct Worker {
    id: usize,
    poller: Arc<Poller>,
    inbox: Receiver<WorkerMsg>,
    recycle: Sender<ReplyBatch>,
    in_flight: Arc<AtomicUsize>,
    main: Mailbox<MainMsg>,
    listeners: Vec<ListenerInfo>,
    open_gauge: Arc<AtomicUsize>,
    stats_interval: Duration,
    next_stats: Instant,
    idle_spin: Duration,
    last_work: Instant,
    /// Set by `Shutdown`: when the remaining connections are closed.
    stopping: Option<Instant>,
    connect_events: bool,
    /// The connections, by flow. Borrowed apart from `ingress` while packets are framed.
    conns: FlowTable<Conn>,
    /// The request lane and what decides which packets enter it.
    ingress: Ingress,
    /// Where each read lands before it is framed.
    scratch: Vec<u8>,
    /// Connections with replies or a close request to write this turn.
    dirty: Vec<FlowId>,
    /// Connections paused because the request lane was full, in the order they paused.
    paused: Vec<FlowId>,
    /// Open, unpaused connections by last activity (`limits.idle_timeout`).
    idle: IdleList,
    /// Half-closed connections by when their client shut down its side
    /// (`limits.half_close_timeout`).
    half_closed: IdleList,
    /// Read connections holding an unfinished packet, by when it began (`limits.packet_timeout`).
    unfinished: IdleList,
    limits: Limits,
    /// When the current loop turn's wait returned: the time of its reads and writes.
    now: Instant,
    counters: WorkerCounters,
    /// Request→reply latency of the replies written in full (`reply_timing.rs`).
    latency: Histogram,
    error_log: LogLimiter,
    /// The MCP watch's verdict (`mcp.when_down = "refuse"` only).
    mcp_down: Option<Arc<AtomicBool>>,
    /// This worker's part of the `limits.max_memory` total.
    memory: MemoryShare,
    /// The capacity of every connection's buffers (`Conn::counted_bytes`), published into
    /// `memory` once per turn.
    buffered: u64,
    /// ccsd was over `limits.max_memory` at the start of this turn: readable connections pause.
    memory_over: bool,
    /// Connections not read because ccsd is over `limits.max_memory`.
    memory_paused: Vec<FlowId>,
    /// When this worker may next close its largest holders (while over `limits.max_memory`).
    next_memory_check: Instant,
    /// Reused by the search for the largest holders.
    memory_candidates: Vec<(usize, FlowId)>,
    /// The highest `buffered` since free memory was last returned to the system.
    buffered_peak: u64,
    /// When free memory may next be returned to the system.
    next_release: Instant,
    memory_log: LogLimiter,
    /// Connections that moved here and wait for MCP to pass their fence before they are read.
    fenced: Vec<FlowId>,
    /// Disconnect notices of connections that closed before their fence passed.
    fenced_notices: Vec<(RecordHeader, Fence)>,
    /// Moved-here connections that closed (public ids), for the bridge's routes.
    closed_guests: Vec<FlowId>,
    /// Messages the main thread's full mailbox could not take yet.
    outbox: MainOutbox,
    /// Connections handed over by the process this one took over from, adopted when it runs.
    adoptions: Vec<Adoption>,
    /// After a takeover: the signal to start serving (see `WorkerSetup::gate`).
    gate: Option<Receiver<bool>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("connections", &self.conns.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker ready to [`run`](Worker::run) on its own thread.
    pub(crate) fn new(setup: WorkerSetup) -> Worker {
        Worker {
            id: setup.id,
            conns: FlowTable::new(setup.epoch, setup.id as u8),
            ingress: Ingress::new(setup.lane, setup.id, setup.on_full),
            poller: setup.poller,
            inbox: setup.inbox,
            recycle: setup.recycle,
            in_flight: setup.in_flight,
            main: setup.main,
            listeners: setup.listeners,
            open_gauge: setup.open_gauge,
            stats_interval: setup.stats_interval,
            next_stats: Instant::now() + setup.stats_interval,
            idle_spin: setup.idle_spin,
            last_work: Instant::now(),
            stopping: None,
            connect_events: setup.connect_events,
            scratch: vec![0; READ_CHUNK],
            dirty: Vec::new(),
            paused: Vec::new(),
            idle: IdleList::new(setup.limits.idle_timeout),
            half_closed: IdleList::new(setup.limits.half_close_timeout),
            unfinished: IdleList::new(setup.limits.packet_timeout),
            limits: Limits::new(&setup.limits),
            now: Instant::now(),
            counters: WorkerCounters::default(),
            latency: Histogram::default(),
            error_log: LogLimiter::default(),
            mcp_down: setup.mcp_down,
            memory: MemoryShare::new(&setup.memory),
            buffered: 0,
            memory_over: false,
            memory_paused: Vec::new(),
            next_memory_check: Instant::now(),
            memory_candidates: Vec::new(),
            buffered_peak: 0,
            next_release: Instant::now(),
            memory_log: LogLimiter::default(),
            fenced: Vec::new(),
            fenced_notices: Vec::new(),
            closed_guests: Vec::new(),
            outbox: MainOutbox::default(),
            adoptions: setup.adoptions,
            gate: setup.gate,
        }
    }

    /// Runs the event loop until every mailbox sender is gone, the poller fails, or (after
    /// `Shutdown`) every connection is closed.
    pub(crate) fn run(mut self) {
        if let Some(gate) = self.gate.take() {
            if gate.recv() != Ok(true) {
                debug!("worker {}: the takeover did not happen, stopping", self.id);
                return;
            }
        }
        for Adoption {
            socket,
            state,
            fence,
            from,
        } in std::mem::take(&mut self.adoptions)
        {
            let _ = self.adopt(socket, state, fence, from);
        }
        let mut events = Events::with_capacity(NonZeroUsize::new(1024).expect("nonzero"));
        loop {
            events.clear();
            let now = Instant::now();
            let mut timeout = self.next_stats.saturating_duration_since(now);
            if !self.paused.is_empty()
                || !self.fenced.is_empty()
                || !self.fenced_notices.is_empty()
                || !self.outbox.is_empty()
            {
                // MCP does not signal free space or its progress, nor the main thread room in
                // its mailbox: look again soon.
                timeout = timeout.min(BACKPRESSURE_RETRY);
            }
            if now.duration_since(self.last_work) < self.idle_spin {
                // Busy-poll: a reply or packet arriving now is handled without a wake-up.
                timeout = Duration::ZERO;
            }
            if let Some(deadline) = self.stopping {
                timeout = timeout.min(deadline.saturating_duration_since(now));
            }
            if let Some(expiry) = self.idle.until_next_expiry(now) {
                timeout = timeout.min(expiry);
            }
            if let Some(expiry) = self.half_closed.until_next_expiry(now) {
                timeout = timeout.min(expiry);
            }
            if let Some(expiry) = self.unfinished.until_next_expiry(now) {
                timeout = timeout.min(expiry);
            }
            if let Some(check) = self.memory_wake(now) {
                timeout = timeout.min(check);
            }
            if let Err(e) = self.poller.wait(&mut events, Some(timeout)) {
                error!("worker {}: poller failed, stopping: {e}", self.id);
                return;
            }
            self.now = Instant::now();
            // SYNC POINT: pairs with the MCP watch's Release store; read once per turn.
            let refusing = self
                .mcp_down
                .as_ref()
                .is_some_and(|down| down.load(Ordering::Acquire));
            self.ingress.set_refusing(refusing);
            self.memory_over = self.memory.budget().over();
            for ev in events.iter() {
                if ev.readable {
                    self.on_readable(ev.key);
                }
                if ev.writable {
                    self.on_writable(ev.key);
                }
            }
            let Some(messages) = self.drain_inbox() else {
                debug!("worker {}: mailbox closed, stopping", self.id);
                return;
            };
            if self.idle_spin > Duration::ZERO && (messages > 0 || !events.is_empty()) {
                self.last_work = Instant::now();
            }
            self.flush_dirty();
            self.lift_fences();
            self.resume_paused();
            if self.stopping.is_some() {
                self.close_answered();
            } else {
                self.close_idle();
                self.close_unfinished_expired();
            }
            self.close_half_closed_expired();
            self.enforce_memory();
            self.publish_lane();
            self.flush_outbox();
            if Instant::now() >= self.next_stats {
                self.send_stats();
            }
            if self.stopping.is_some() && self.conns.is_empty() {
                self.send_stats();
                debug!("worker {}: every connection closed, stopping", self.id);
                return;
            }
        }
    }

    /// Handles up to [`MESSAGES_PER_TURN`] messages and returns how many; `None` when the
    /// mailbox is closed, or the worker was released to a new process (a hot restart).
    fn drain_inbox(&mut self) -> Option<usize> {
        for handled in 0..MESSAGES_PER_TURN {
            match self.inbox.try_recv() {
                Ok(WorkerMsg::Freeze { reply }) => {
                    if self.on_freeze(reply) == Unfrozen::Released {
                        return None;
                    }
                }
                Ok(msg) => self.on_message(msg),
                Err(TryRecvError::Empty) => return Some(handled),
                Err(TryRecvError::Disconnected) => return None,
            }
        }
        // More messages wait: make sure the next wait returns at once.
        let _ = self.poller.notify();
        Some(MESSAGES_PER_TURN)
    }

    /// Handles one message of the mailbox (a freeze aside: see `drain_inbox`).
    fn on_message(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Connect(c) => self.on_connect(c),
            WorkerMsg::DataTrans(d) => self.on_data_trans(d),
            WorkerMsg::Disconnect(d) => self.on_disconnect(d),
            WorkerMsg::Port(command) => self.on_port_command(command),
            WorkerMsg::SampleConns { token, max } => self.on_sample_conns(token, max),
            WorkerMsg::Reconfigure(settings) => self.on_reconfigure(&settings),
            WorkerMsg::Shutdown { deadline } => self.on_shutdown(deadline),
            WorkerMsg::MoveOut {
                flow,
                to,
                force,
                token,
            } => self.on_move_out(flow, to, force, token),
            WorkerMsg::Arrive(departure) => self.on_arrive(departure),
            WorkerMsg::Pin {
                flow,
                pinned,
                token,
            } => self.on_pin(flow, pinned, token),
            // Only meaningful while frozen (`takeover.rs`); a stray one changes nothing.
            WorkerMsg::Freeze { .. } | WorkerMsg::Thaw | WorkerMsg::Release => {}
        }
    }

    fn on_connect(&mut self, c: Connect) {
        let Connect {
            stream,
            peer,
            listener,
        } = c;
        if self.stopping.is_some() {
            // Accepted just before the listeners closed: never announced to MCP, just closed.
            self.counters.closed_shutdown += 1;
            self.forget_refused(listener);
            return;
        }
        let proxy = self.listeners[listener].proxy.as_ref();
        if proxy.is_some_and(|rule| !rule.trusts(peer.ip())) {
            // Refused before it takes a slot: MCP never hears of it.
            self.limits
                .log_close(CloseCause::ProxyUntrusted, self.id, peer, listener);
            CloseCause::ProxyUntrusted.count(&mut self.counters);
            self.forget_refused(listener);
            return;
        }
        let awaits_proxy_header = proxy.is_some();
        // Replies are written whole by ccsd; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let mut conn = Conn::new(stream, peer, listener);
        if awaits_proxy_header {
            conn.expect_proxy_header();
        }
        let Some(flow) = self.conns.insert(conn) else {
            self.counters.closed_table_full += 1;
            self.forget_refused(listener);
            return;
        };
        let conn = self.conns.get_mut(flow).expect("just inserted");
        // SAFETY: the socket stays registered only while it lives in the table; `close()` deletes
        // it from the poller before the TcpStream is dropped, so the poller never holds a closed fd.
        let added = unsafe {
            self.poller
                .add_with_mode(conn.socket(), conn.interest(flow.slot()), PollMode::Level)
        };
        if let Err(e) = added {
            log_limited!(
                self.error_log,
                Level::Warn,
                "worker {}: cannot register a connection: {e}",
                self.id
            );
            self.conns.remove(flow);
            self.counters.closed_error += 1;
            self.forget_refused(listener);
            return;
        }
        self.idle.touch(flow.slot(), self.now);
        self.counters.connections_opened += 1;
        self.counters.connections_open += 1;
        if awaits_proxy_header {
            // MCP hears of it once the header names the client (`read.rs`).
            self.unfinished.touch(flow.slot(), self.now);
        } else {
            self.announce(flow, peer, listener);
        }
    }

    /// Tells MCP about a new connection (`mcp.connect_events`).
    fn announce(&mut self, flow: FlowId, peer: SocketAddr, listener: usize) {
        if self.connect_events {
            let notice = self.notice(Kind::Connect, flow, peer, listener);
            if !self.ingress.push_notice(&notice) {
                self.counters.dropped_connect_notices += 1;
            }
        }
    }

    /// Lowers the gauges the acceptor raised for a connection this worker did not take.
    fn forget_refused(&self, listener: usize) {
        self.lower_open_gauges(listener);
    }

    /// One connection of `listener` fewer: lowers the worker's and the listener's open gauges.
    fn lower_open_gauges(&self, listener: usize) {
        // SYNC POINT: Relaxed: the gauges are counts the acceptor reads for its limits and its
        // least-connections choice; no other data is published or read through them, and a
        // read-modify-write loses no update whatever the ordering. The acceptor raised both
        // before it sent the `Connect` (the channel orders the two), so they never go below zero.
        self.open_gauge.fetch_sub(1, Ordering::Relaxed);
        self.listeners[listener]
            .open
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// A connect or disconnect notice about `flow` for MCP.
    fn notice(&self, kind: Kind, flow: FlowId, peer: SocketAddr, listener: usize) -> RecordHeader {
        let mut notice = RecordHeader::new(kind, flow);
        notice.peer = peer;
        notice.listen_port = self.listeners[listener].port;
        notice.transport = Transport::Tcp;
        notice.timestamp_ns = monotonic_ns();
        notice
    }

    /// Sets `flow`'s poller interest to what its state asks for ([`Conn::interest`]).
    fn update_interest(&mut self, flow: FlowId) -> io::Result<()> {
        let conn = self
            .conns
            .get_mut(flow)
            .map_err(|_| io::ErrorKind::NotFound)?;
        self.poller
            .modify_with_mode(conn.socket(), conn.interest(flow.slot()), PollMode::Level)
    }

    /// Closes every connection inactive for `limits.idle_timeout`, least recently active first.
    fn close_idle(&mut self) {
        while let Some(slot) = self.idle.expired(self.now) {
            match self.conns.by_slot_mut(slot) {
                Some((flow, _)) => self.close(flow, CloseCause::Idle),
                None => self.idle.remove(slot),
            }
        }
    }

    /// Closes every connection whose unfinished packet began `limits.packet_timeout` ago, the
    /// oldest first.
    fn close_unfinished_expired(&mut self) {
        while let Some(slot) = self.unfinished.expired(self.now) {
            match self.conns.by_slot_mut(slot) {
                Some((flow, conn)) if conn.awaits_proxy_header() => {
                    self.close(flow, CloseCause::ProxyTimeout)
                }
                Some((flow, _)) => self.close(flow, CloseCause::PacketTimeout),
                None => self.unfinished.remove(slot),
            }
        }
    }

    /// Closes every half-closed connection whose replies did not all arrive and get written
    /// within `limits.half_close_timeout` of its client's shutdown, the oldest first.
    fn close_half_closed_expired(&mut self) {
        while let Some(slot) = self.half_closed.expired(self.now) {
            match self.conns.by_slot_mut(slot) {
                Some((flow, _)) => self.close(flow, CloseCause::HalfCloseTimeout),
                None => self.half_closed.remove(slot),
            }
        }
    }

    /// Closes `flow` (a local id, if still open) and tells MCP why: the end of every connection.
    fn close(&mut self, flow: FlowId, cause: CloseCause) {
        let public = self.conns.public(flow);
        let Some(conn) = self.conns.remove(flow) else {
            return;
        };
        // The fd must leave the poller before it is closed (dropped).
        let _ = self.poller.delete(conn.socket());
        self.idle.remove(flow.slot());
        self.half_closed.remove(flow.slot());
        self.unfinished.remove(flow.slot());
        self.buffered -= conn.counted_bytes() as u64;
        let (peer, listener) = (conn.peer(), conn.listener());
        let announced = !conn.awaits_proxy_header();
        let fence = conn.fence().cloned();
        drop(conn);
        if public != flow {
            self.closed_guests.push(public);
        }
        self.limits.log_close(cause, self.id, peer, listener);
        cause.count(&mut self.counters);
        self.counters.connections_open -= 1;
        self.lower_open_gauges(listener);
        if !announced {
            return;
        }
        let mut notice = self.notice(Kind::Disconnect, public, peer, listener);
        notice.code = cause.reason() as u8;
        self.push_notice_after(notice, fence);
    }

    /// Publishes what this turn pushed into the request lane, waking MCP if it sleeps.
    fn publish_lane(&mut self) {
        self.ingress.publish(&mut self.counters);
    }

    fn send_stats(&mut self) {
        self.next_stats = Instant::now() + self.stats_interval;
        self.counters.buffered_bytes = self.buffered;
        self.counters.lane_resyncs = self.ingress.lane().resyncs();
        let mut heavy = HeavyFlows::default();
        for (flow, conn) in self.conns.iter_public_mut() {
            let (bytes, packets) = conn.take_load();
            if packets > 0 || bytes > 0 {
                heavy.offer(FlowLoad {
                    flow,
                    listener: conn.listener(),
                    pinned: conn.is_pinned(),
                    packets,
                    bytes,
                });
            }
        }
        let stat = NotifyStat {
            heavy,
            worker: self.id,
            counters: self.counters,
            latency: self.latency,
            mailbox_depth: self.inbox.len(),
            lane_used_bytes: self.ingress.lane().lane().used_bytes(),
        };
        // A full main mailbox loses one snapshot; the next one carries the same totals.
        let _ = self.main.try_send(MainMsg::NotifyStat(stat));
    }
}
