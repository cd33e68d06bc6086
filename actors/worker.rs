//! Worker: owns a share of the client connections on its own poller.
//!
//! Only the owning worker registers, reads, writes and closes its sockets; nothing here is shared
//! with another thread but the mailbox, the recycle channel for reply buffers and one gauge.
//!
//! One turn of the loop: wait on the poller; read every readable connection into one scratch
//! buffer, frame it and push each complete packet into the worker's request lane; drain the
//! mailbox (new connections, replies, closes); write every connection that got replies, arming
//! write interest only while bytes remain; close the connections idle for `limits.idle_timeout`
//! (the least recently active first, from an [`IdleList`]) and the half-closed ones whose replies
//! did not come within `limits.half_close_timeout` (a second `IdleList`); publish the lane once,
//! waking MCP only if it sleeps.
//!
//! Half-close: a read of 0 while requests are unanswered does not close the connection at once.
//! It stops being read and closes as soon as its replies are written, when a write fails or a
//! reset arrives (the client had closed fully, not just shut down its sending side: a read of 0
//! cannot tell the two apart), or at the half-close timeout, whichever comes first.
//!
//! This file holds the loop and the read side; `replies.rs` the write side (MCP's records, send
//! buffers, latency), `control.rs` the control messages (port commands, `conns` samples, reloads,
//! the graceful stop), `memory.rs` its part of `limits.max_memory` (counting its connections'
//! buffers, pausing reads and closing the largest holders while ccsd is over the ceiling).

mod connection;
mod control;
mod idle;
mod limits;
mod memory;
mod replies;
mod reply_timing;

use std::io::{self, Read};
use std::net::SocketAddr;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use log::{debug, error, warn};
use polling::{Event, Events, PollMode, Poller};

use crate::clock::monotonic_ns;
use connection::{CloseCause, Conn, Ingested, LaneSink, frame_connection};
use crate::flow::{FlowId, FlowTable};
use crate::framing::Framer;
use crate::histogram::Histogram;
use idle::IdleList;
use crate::lane::Producer;
use limits::Limits;
use crate::logging::LogLimiter;
use crate::mailbox::Mailbox;
use crate::memory::{MemoryBudget, MemoryShare};
use crate::message::{Connect, MainMsg, NotifyStat, WorkerMsg};
use crate::rate_limit::RateLimiter;
use crate::record::{Kind, RecordHeader, Transport};
use crate::settings::{LimitsSettings, OnFull};
use crate::stats::WorkerCounters;

/// Bytes read from a socket in one call; also the most a connection buffers beyond a packet.
const READ_CHUNK: usize = 64 * 1024;
/// Reads per readable connection per turn, so one busy client cannot starve the others.
const READS_PER_TURN: usize = 4;
/// Mailbox messages handled per turn before the worker looks at its sockets again.
const MESSAGES_PER_TURN: usize = 256;
/// How soon a worker with paused connections looks for room in its request lane again.
const BACKPRESSURE_RETRY: Duration = Duration::from_millis(1);

/// What became of bytes queued for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    /// In its send buffer.
    Yes,
    /// Over `limits.max_send_buffer`: the connection was closed.
    OverCap,
    /// The connection is gone or closing.
    NoConnection,
}

/// What a worker needs to know about each listener.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// Finds packet boundaries for this listener's connections.
    pub framer: Arc<dyn Framer>,
    /// The listener's local port, copied into every record header.
    pub port: u16,
    /// The listener's open connections (raised by the acceptor, lowered here on close).
    pub open: Arc<AtomicUsize>,
    /// `listen[i].max_requests_per_second`, shared by every worker; `None`: no limit.
    pub rate: Option<Arc<RateLimiter>>,
}

/// Everything a worker thread is started with.
pub struct WorkerSetup {
    /// The worker's index (also the request lane's index and the flow id's worker field).
    pub id: usize,
    /// This ccsd start's epoch, carried in every flow id.
    pub epoch: u16,
    /// The worker's own poller; its mailbox senders notify it.
    pub poller: Arc<Poller>,
    /// The receiving end of the worker's mailbox.
    pub inbox: Receiver<WorkerMsg>,
    /// Where emptied reply batches go back to the MCP bridge.
    pub recycle: Sender<Vec<u8>>,
    /// Bytes of reply batches the bridge handed over and this worker has not taken yet
    /// (`BridgeLink::in_flight`): the worker subtracts each batch once its replies are queued.
    pub in_flight: Arc<AtomicUsize>,
    /// The main thread's mailbox, for `NotifyStat`.
    pub main: Mailbox<MainMsg>,
    /// The worker's request lane to MCP.
    pub lane: Producer,
    /// Listener details, by listener index.
    pub listeners: Vec<ListenerInfo>,
    /// What to do with a packet when the request lane is full.
    pub on_full: OnFull,
    /// Open connections of this worker, read by the acceptor's least-connections policy.
    pub open_gauge: Arc<AtomicUsize>,
    /// How often to send `NotifyStat`.
    pub stats_interval: Duration,
    /// How long to keep polling without sleeping after the last work (`broker.idle_spin`).
    pub idle_spin: Duration,
    /// The per-connection limits.
    pub limits: LimitsSettings,
    /// Tell MCP about every new connection (`mcp.connect_events`).
    pub connect_events: bool,
    /// With `mcp.when_down = "refuse"`: the MCP watch's verdict, true while MCP is down.
    pub mcp_down: Option<Arc<AtomicBool>>,
    /// `limits.max_memory`: the total every holder publishes into, and the ceiling.
    pub memory: Arc<MemoryBudget>,
}

impl std::fmt::Debug for WorkerSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSetup")
            .field("id", &self.id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// A worker thread's state.
pub struct Worker {
    id: usize,
    poller: Arc<Poller>,
    inbox: Receiver<WorkerMsg>,
    recycle: Sender<Vec<u8>>,
    in_flight: Arc<AtomicUsize>,
    main: Mailbox<MainMsg>,
    lane: Producer,
    listeners: Vec<ListenerInfo>,
    on_full: OnFull,
    open_gauge: Arc<AtomicUsize>,
    stats_interval: Duration,
    next_stats: Instant,
    idle_spin: Duration,
    last_work: Instant,
    /// Set by `Shutdown`: when the remaining connections are closed.
    stopping: Option<Instant>,
    connect_events: bool,
    conns: FlowTable<Conn>,
    scratch: Vec<u8>,
    dirty: Vec<FlowId>,
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
    full_log: LogLimiter,
    error_log: LogLimiter,
    /// The MCP watch's verdict (`mcp.when_down = "refuse"` only).
    mcp_down: Option<Arc<AtomicBool>>,
    /// MCP was down at the start of this turn: new packets are dropped.
    refusing: bool,
    down_log: LogLimiter,
    /// Closes for a broken framing (malformed or oversize packets).
    protocol_log: LogLimiter,
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
    pub fn new(setup: WorkerSetup) -> Worker {
        Worker {
            id: setup.id,
            conns: FlowTable::new(setup.epoch, setup.id as u8),
            poller: setup.poller,
            inbox: setup.inbox,
            recycle: setup.recycle,
            in_flight: setup.in_flight,
            main: setup.main,
            lane: setup.lane,
            listeners: setup.listeners,
            on_full: setup.on_full,
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
            full_log: LogLimiter::default(),
            error_log: LogLimiter::default(),
            mcp_down: setup.mcp_down,
            refusing: false,
            down_log: LogLimiter::default(),
            protocol_log: LogLimiter::default(),
            memory: MemoryShare::new(&setup.memory),
            buffered: 0,
            memory_over: false,
            memory_paused: Vec::new(),
            next_memory_check: Instant::now(),
            memory_candidates: Vec::new(),
            buffered_peak: 0,
            next_release: Instant::now(),
            memory_log: LogLimiter::default(),
        }
    }

    /// Runs the event loop until every mailbox sender is gone, the poller fails, or (after
    /// `Shutdown`) every connection is closed.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(NonZeroUsize::new(1024).expect("nonzero"));
        loop {
            events.clear();
            let now = Instant::now();
            let mut timeout = self.next_stats.saturating_duration_since(now);
            if !self.paused.is_empty() {
                // MCP does not signal free space: look again soon.
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
            self.refusing = self
                .mcp_down
                .as_ref()
                .is_some_and(|down| down.load(Ordering::Acquire));
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
    /// mailbox is closed.
    fn drain_inbox(&mut self) -> Option<usize> {
        for handled in 0..MESSAGES_PER_TURN {
            match self.inbox.try_recv() {
                Ok(WorkerMsg::Connect(c)) => self.on_connect(c),
                Ok(WorkerMsg::DataTrans(d)) => self.on_data_trans(d),
                Ok(WorkerMsg::Disconnect(d)) => self.on_disconnect(d),
                Ok(WorkerMsg::Port(command)) => self.on_port_command(command),
                Ok(WorkerMsg::SampleConns { token, max }) => self.on_sample_conns(token, max),
                Ok(WorkerMsg::Reconfigure(settings)) => self.on_reconfigure(&settings),
                Ok(WorkerMsg::Shutdown { deadline }) => self.on_shutdown(deadline),
                Err(TryRecvError::Empty) => return Some(handled),
                Err(TryRecvError::Disconnected) => return None,
            }
        }
        // More messages wait: make sure the next wait returns at once.
        let _ = self.poller.notify();
        Some(MESSAGES_PER_TURN)
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
        // Replies are written whole by ccsd; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let conn = Conn::new(stream, peer, listener);
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
                .add_with_mode(&conn.stream, Event::readable(flow.slot()), PollMode::Level)
        };
        if let Err(e) = added {
            if let Some(n) = self.error_log.allow() {
                warn!(
                    "worker {}: cannot register a connection: {e} ({n} similar suppressed)",
                    self.id
                );
            }
            self.conns.remove(flow);
            self.counters.closed_error += 1;
            self.forget_refused(listener);
            return;
        }
        self.idle.touch(flow.slot(), self.now);
        self.counters.connections_opened += 1;
        self.counters.connections_open += 1;
        if self.connect_events {
            let notice = self.notice(Kind::Connect, flow, peer, listener);
            if self.lane.try_push(&[&notice.encode()]).is_err() {
                self.counters.dropped_connect_notices += 1;
            }
        }
    }

    /// Lowers the gauges the acceptor raised for a connection this worker did not take.
    fn forget_refused(&self, listener: usize) {
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

    fn on_readable(&mut self, slot: usize) {
        for _ in 0..READS_PER_TURN {
            let Some((flow, conn)) = self.conns.by_slot_mut(slot) else {
                return;
            };
            if conn.half_closed {
                // Not read any more: readiness now means an error or a reset (the client closed
                // fully), which ends the wait for its replies.
                return self.close(flow, CloseCause::Peer);
            }
            if conn.paused || conn.memory_paused {
                return;
            }
            if self.memory_over {
                return self.memory_pause(flow);
            }
            let n = match (&conn.stream).read(&mut self.scratch) {
                Ok(0) => return self.on_peer_shutdown(flow),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(flow, CloseCause::SocketError),
            };
            self.idle.touch(slot, self.now);
            match self.ingest(flow, n) {
                Err(cause) => return self.close(flow, cause),
                Ok(Ingested::Blocked) => return self.pause(flow),
                Ok(Ingested::Done) if n < self.scratch.len() => return,
                Ok(Ingested::Done) => {}
            }
        }
    }

    /// A read of 0: the client shut down its sending side, or closed fully (the two look the
    /// same). Its packets are all in the lane already. With nothing left to answer, or with
    /// `limits.half_close_timeout` off, the connection closes now; otherwise it is kept, unread,
    /// until every request is answered and written, a write fails or a reset arrives (the client
    /// had closed fully), or the timeout passes.
    fn on_peer_shutdown(&mut self, flow: FlowId) {
        let Ok(conn) = self.conns.get_mut(flow) else {
            return;
        };
        if self.limits.half_close_timeout.is_zero() || conn.answered() {
            return self.close(flow, CloseCause::Peer);
        }
        conn.half_closed = true;
        // An incomplete packet can no longer complete.
        conn.rbuf = Vec::new();
        conn.recount(&mut self.buffered);
        self.counters.half_closes += 1;
        self.idle.remove(flow.slot());
        self.unfinished.remove(flow.slot());
        self.half_closed.touch(flow.slot(), self.now);
        if self.update_interest(flow).is_err() {
            self.close(flow, CloseCause::SocketError);
        }
    }

    /// Frames `flow`'s buffered bytes and the first `fresh` bytes of the scratch buffer (just
    /// read; 0 on a retry) into the request lane.
    fn ingest(&mut self, flow: FlowId, fresh: usize) -> Result<Ingested, CloseCause> {
        let Worker {
            id,
            conns,
            lane,
            counters,
            on_full,
            full_log,
            listeners,
            scratch,
            refusing,
            down_log,
            protocol_log,
            unfinished,
            now,
            buffered,
            ..
        } = self;
        let conn = conns.get_mut(flow).map_err(|_| CloseCause::SocketError)?;
        let packet_began_ns = (!conn.rbuf.is_empty()).then_some(conn.rbuf_since_ns);
        let mut sink = LaneSink {
            lane,
            counters,
            on_full: *on_full,
            full_log,
            worker: *id,
            max_requests_per_second: self.limits.max_requests_per_second,
            refuse: *refusing,
            down_log,
            protocol_log,
        };
        let ingested = frame_connection(
            conn,
            flow,
            &listeners[conn.listener],
            &scratch[..fresh],
            &mut sink,
        );
        conn.recount(buffered);
        let ingested = ingested?;
        // The unfinished packet's clock: it starts when a new one begins (none was buffered, or
        // the buffered one completed) and stops when none is left. A paused connection is not
        // read, so its packet cannot finish: it is off the list until it resumes.
        if conn.rbuf.is_empty() || conn.paused || conn.memory_paused {
            unfinished.remove(flow.slot());
        } else if packet_began_ns != Some(conn.rbuf_since_ns) {
            unfinished.touch(flow.slot(), *now);
        }
        Ok(ingested)
    }

    /// Stops reading `flow` until its buffered packets fit in the request lane.
    fn pause(&mut self, flow: FlowId) {
        let Ok(conn) = self.conns.get_mut(flow) else {
            return;
        };
        conn.paused = true;
        self.paused.push(flow);
        // Waiting for room in the lane is not the client's idleness, nor its slowness.
        self.idle.remove(flow.slot());
        self.unfinished.remove(flow.slot());
        if self.update_interest(flow).is_err() {
            self.close(flow, CloseCause::SocketError);
        }
    }

    /// Retries the buffered packets of paused connections, in the order they were paused, and
    /// reads from each again once all its complete packets are in the lane.
    fn resume_paused(&mut self) {
        if self.paused.is_empty() || self.stopping.is_some() {
            return;
        }
        let mut paused = std::mem::take(&mut self.paused);
        let mut still = Vec::new();
        for flow in paused.drain(..) {
            if self.conns.check(flow).is_err() {
                continue;
            }
            match self.ingest(flow, 0) {
                Err(cause) => self.close(flow, cause),
                Ok(Ingested::Blocked) => still.push(flow),
                Ok(Ingested::Done) => {
                    if let Ok(conn) = self.conns.get_mut(flow) {
                        conn.paused = false;
                        // Its unfinished packet gets a whole timeout from now.
                        if !conn.rbuf.is_empty() {
                            self.unfinished.touch(flow.slot(), self.now);
                        }
                    }
                    self.idle.touch(flow.slot(), self.now);
                    if self.update_interest(flow).is_err() {
                        self.close(flow, CloseCause::SocketError);
                    }
                }
            }
        }
        self.paused = still;
        self.publish_lane();
    }

    /// Sets `flow`'s poller interest: readable unless paused or half-closed, writable while replies
    /// are pending.
    fn update_interest(&mut self, flow: FlowId) -> io::Result<()> {
        let conn = self
            .conns
            .get_mut(flow)
            .map_err(|_| io::ErrorKind::NotFound)?;
        let slot = flow.slot();
        let not_read = conn.paused || conn.memory_paused || conn.half_closed;
        let interest = match (not_read, conn.write_armed) {
            (false, false) => Event::readable(slot),
            (false, true) => Event::all(slot),
            (true, false) => Event::none(slot),
            (true, true) => Event::writable(slot),
        };
        self.poller
            .modify_with_mode(&conn.stream, interest, PollMode::Level)
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

    /// Closes `flow` (if still open) and tells MCP why.
    fn close(&mut self, flow: FlowId, cause: CloseCause) {
        let Some(conn) = self.conns.remove(flow) else {
            return;
        };
        // The fd must leave the poller before it is closed (dropped).
        let _ = self.poller.delete(&conn.stream);
        self.idle.remove(flow.slot());
        self.half_closed.remove(flow.slot());
        self.unfinished.remove(flow.slot());
        self.buffered -= conn.counted_bytes as u64;
        self.limits
            .log_close(cause, self.id, conn.peer, conn.listener);
        cause.count(&mut self.counters);
        self.counters.connections_open -= 1;
        self.open_gauge.fetch_sub(1, Ordering::Relaxed);
        self.listeners[conn.listener]
            .open
            .fetch_sub(1, Ordering::Relaxed);
        let mut notice = self.notice(Kind::Disconnect, flow, conn.peer, conn.listener);
        notice.code = cause.reason() as u8;
        drop(conn);
        if self.lane.try_push(&[&notice.encode()]).is_err() {
            self.counters.dropped_disconnect_notices += 1;
        }
    }

    fn publish_lane(&mut self) {
        if !self.lane.has_unpublished() {
            return;
        }
        match self.lane.publish() {
            Ok(woke) => {
                self.counters.lane_publishes += 1;
                self.counters.lane_wakeups += u64::from(woke);
            }
            Err(e) => {
                if let Some(n) = self.error_log.allow() {
                    warn!(
                        "worker {}: cannot wake MCP: {e} ({n} similar suppressed)",
                        self.id
                    );
                }
            }
        }
    }

    fn send_stats(&mut self) {
        self.next_stats = Instant::now() + self.stats_interval;
        self.counters.buffered_bytes = self.buffered;
        let stat = NotifyStat {
            worker: self.id,
            counters: self.counters,
            latency: self.latency,
            mailbox_depth: self.inbox.len(),
            lane_used_bytes: self.lane.lane().used_bytes(),
        };
        // A full main mailbox loses one snapshot; the next one carries the same totals.
        let _ = self.main.try_send(MainMsg::NotifyStat(stat));
    }
}
