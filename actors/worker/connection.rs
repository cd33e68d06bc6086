//! One client connection of a worker: its socket and its state as one value, and the state
//! machine that value goes through.
//!
//! A connection is *read* while it is neither paused (a full request lane, or a graceful stop),
//! nor paused for `limits.max_memory`, nor half-closed. What is read is cut into packets
//! ([`Conn::take_packets`]) and pushed into the request lane through the worker's
//! [`Ingress`]; an incomplete packet waits in the receive buffer. MCP's replies are queued into
//! the send buffer ([`Conn::queue_reply`], capped by `limits.max_send_buffer`) and written by
//! [`Conn::flush`]; the poller interest follows from the state ([`Conn::interest`]): readable
//! while read, writable while bytes remain. A connection ends with one [`CloseCause`]: the worker
//! takes it out of its table and drops it, which closes the socket.
//!
//! Everything but the socket is plain data (buffers, flags, counts, clocks), so a connection can
//! move between workers as one value. The socket is a type parameter: a worker's connections hold
//! a `TcpStream`; the unit tests below hold a scripted socket, so the state machine is tested
//! without a network.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use polling::Event;

use super::close::CloseCause;
use super::ingress::{Budget, Ingress};
use super::migration::Fence;
use super::reply_timing::UnsentReplies;
use super::setup::ListenerInfo;
use crate::clock::monotonic_ns;
use crate::conn_state::{ConnState, ListenerIdentity, RateWindow};
use crate::flow::FlowId;
use crate::framing::Progress;
use crate::message::ConnInfo;
use crate::proxy_protocol::{self, Accepted, HeaderError, MAX_HEADER, Parsed};
use crate::record::{Kind, RecordHeader, Transport};
use crate::stats::WorkerCounters;
use crate::stats::histogram::Histogram;

/// Buffers that grew past this are released once empty, so idle connections stay small.
const KEEP_BUFFER_CAPACITY: usize = 256 * 1024;
/// How far a receive buffer's capacity may exceed the listener's `max_packet`: one read.
const RECV_SLACK: usize = 64 * 1024;
/// The length of the request-rate window (`limits.max_requests_per_second`).
const WINDOW_NS: u64 = 1_000_000_000;

/// One client connection: its socket `S` and everything the worker knows about it.
#[derive(Debug)]
pub(super) struct Conn<S = TcpStream> {
    socket: S,
    peer: SocketAddr,
    /// Index of the listener that accepted it.
    listener: usize,
    /// When it was accepted (`CLOCK_MONOTONIC` ns; admin `conns`).
    opened_ns: u64,
    /// Bytes of an incomplete packet, kept between reads.
    rbuf: Vec<u8>,
    /// When the first byte in `rbuf` was read.
    rbuf_since_ns: u64,
    /// How far the framer got in the packet at the start of `rbuf`, so that it resumes there.
    frame_progress: Progress,
    /// Packets taken in the current `limits.max_requests_per_second` window.
    requests: RequestWindow,
    /// The first buffered packet already counts in its listener's rate window (it was allowed,
    /// then the full lane held it back for a retry).
    listener_rate_paid: bool,
    /// Reply bytes not yet written; `wbuf[wpos..]` is pending.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Replies in `wbuf` not written in full yet, for the request→reply latency.
    unsent: UnsentReplies,
    /// Packets sent to MCP minus replies received (never below zero): during a graceful stop the
    /// connection closes when this reaches zero and its replies are written.
    outstanding: u64,
    /// Not read until resumed: the request lane had no room (`queues.on_full = "backpressure"`),
    /// or ccsd is stopping.
    paused: bool,
    /// Not read until ccsd holds less than `limits.max_memory` again.
    memory_paused: bool,
    /// The client shut down its side (a read of 0) while requests were unanswered: no longer
    /// read, kept until they are answered (`limits.half_close_timeout`).
    half_closed: bool,
    /// Write interest is armed in the poller.
    write_armed: bool,
    /// Listed in the worker's list of connections to write this turn.
    dirty: bool,
    /// MCP asked to close once the send buffer is written.
    close_after_flush: bool,
    /// The capacity of `rbuf` and `wbuf` as last counted in its worker's memory figure.
    counted_bytes: usize,
    /// Its listener has `proxy_protocol` on and the header has not come yet: `rbuf` holds what
    /// came of it, nothing is framed, and MCP has not been told about the connection.
    awaits_proxy_header: bool,
    /// Never moved to another worker by the rebalancer, nor by admin `migrate` unless forced.
    pinned: bool,
    /// It moved here and MCP has not yet read its last packet from its old worker's lane: not
    /// read until it has, so that its next packet cannot overtake that one.
    fence: Option<Fence>,
    /// Bytes and packets read from it since it was accepted (its load, for the rebalancer).
    bytes_in: u64,
    packets_in: u64,
    /// `bytes_in` and `packets_in` at its worker's last stats report.
    load_mark: (u64, u64),
}

/// What became of a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ingested {
    /// Every complete packet is in the lane; the rest (an incomplete packet) is buffered.
    Done,
    /// The lane filled up: complete packets are still buffered and the connection must pause.
    Blocked,
}

/// What a write pass did, when the connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Flushed {
    /// Bytes went out to a client still on the idle clock (not half-closed): activity.
    pub(super) active: bool,
    /// Bytes remain: the socket would block, write interest must be armed.
    pub(super) pending: bool,
}

impl<S> Conn<S> {
    /// A new connection with empty buffers, read from now on.
    pub(super) fn new(socket: S, peer: SocketAddr, listener: usize) -> Conn<S> {
        Conn {
            socket,
            peer,
            listener,
            opened_ns: monotonic_ns(),
            rbuf: Vec::new(),
            rbuf_since_ns: 0,
            frame_progress: Progress::default(),
            requests: RequestWindow::default(),
            listener_rate_paid: false,
            wbuf: Vec::new(),
            wpos: 0,
            unsent: UnsentReplies::default(),
            outstanding: 0,
            paused: false,
            memory_paused: false,
            half_closed: false,
            write_armed: false,
            dirty: false,
            close_after_flush: false,
            counted_bytes: 0,
            awaits_proxy_header: false,
            pinned: false,
            fence: None,
            bytes_in: 0,
            packets_in: 0,
            load_mark: (0, 0),
        }
    }

    /// The connection a moved connection's `state` describes, on `socket`, waiting for `fence`
    /// (if any) before it is read. Its buffers are the state's; write interest, the worker's
    /// lists and its memory figure are its new worker's to set.
    pub(super) fn from_state(socket: S, state: ConnState, fence: Option<Fence>) -> Conn<S> {
        Conn {
            socket,
            peer: state.peer,
            listener: state.listener.index,
            opened_ns: state.opened_ns,
            rbuf: state.unfinished,
            rbuf_since_ns: state.unfinished_since_ns,
            frame_progress: state.progress,
            requests: RequestWindow {
                start_ns: state.rate_window.start_ns,
                count: state.rate_window.count,
            },
            listener_rate_paid: state.listener_rate_paid,
            wbuf: state.unsent,
            wpos: 0,
            unsent: UnsentReplies::from_state(&state.unsent_timing),
            outstanding: state.outstanding,
            paused: state.paused,
            memory_paused: false,
            half_closed: state.half_closed_since_ns.is_some(),
            write_armed: false,
            dirty: false,
            close_after_flush: state.close_after_flush,
            counted_bytes: 0,
            awaits_proxy_header: state.awaits_proxy_header,
            pinned: state.pinned,
            fence,
            bytes_in: state.bytes_in,
            packets_in: state.packets_in,
            load_mark: (state.bytes_in, state.packets_in),
        }
    }

    /// Takes the connection apart into its socket and its state, as flow `flow` (its public id)
    /// of `listener`, last active at `last_active_ns` and half-closed since
    /// `half_closed_since_ns` (its worker's lists know those). A fence it still waits for is
    /// returned beside the state: it names a position in this process's lanes.
    pub(super) fn into_state(
        mut self,
        flow: FlowId,
        listener: ListenerIdentity,
        last_active_ns: Option<u64>,
        half_closed_since_ns: Option<u64>,
    ) -> (S, ConnState, Option<Fence>) {
        self.wbuf.drain(..self.wpos);
        let buffers = (
            std::mem::take(&mut self.rbuf),
            std::mem::take(&mut self.wbuf),
        );
        let state = self.state_with(
            buffers,
            flow,
            listener,
            last_active_ns,
            half_closed_since_ns,
        );
        (self.socket, state, self.fence)
    }

    /// Its state as [`into_state`](Conn::into_state) gives it, copied: the connection stays as it
    /// is (a hot restart hands a copy over and keeps the original until the new process commits).
    pub(super) fn to_state(
        &self,
        flow: FlowId,
        listener: ListenerIdentity,
        last_active_ns: Option<u64>,
        half_closed_since_ns: Option<u64>,
    ) -> ConnState {
        let buffers = (self.rbuf.clone(), self.wbuf[self.wpos..].to_vec());
        self.state_with(
            buffers,
            flow,
            listener,
            last_active_ns,
            half_closed_since_ns,
        )
    }

    /// The state with `unfinished` and `unsent` bytes given (moved or copied by the caller).
    fn state_with(
        &self,
        (unfinished, unsent): (Vec<u8>, Vec<u8>),
        flow: FlowId,
        listener: ListenerIdentity,
        last_active_ns: Option<u64>,
        half_closed_since_ns: Option<u64>,
    ) -> ConnState {
        ConnState {
            flow,
            peer: self.peer,
            listener,
            opened_ns: self.opened_ns,
            last_active_ns,
            unfinished,
            unfinished_since_ns: self.rbuf_since_ns,
            progress: self.frame_progress,
            unsent,
            unsent_timing: self.unsent.to_state(),
            outstanding: self.outstanding,
            paused: self.paused,
            close_after_flush: self.close_after_flush,
            rate_window: RateWindow {
                start_ns: self.requests.start_ns,
                count: self.requests.count,
            },
            listener_rate_paid: self.listener_rate_paid,
            half_closed_since_ns: half_closed_since_ns.filter(|_| self.half_closed),
            awaits_proxy_header: self.awaits_proxy_header,
            pinned: self.pinned,
            packets_in: self.packets_in,
            bytes_in: self.bytes_in,
        }
    }

    /// Pins or unpins it: a pinned connection is never moved by the rebalancer, nor by admin
    /// `migrate` unless forced.
    pub(super) fn set_pinned(&mut self, pinned: bool) {
        self.pinned = pinned;
    }

    /// Whether it is pinned.
    pub(super) fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// The fence it waits for before it is read, if any.
    pub(super) fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// MCP has read past its fence: it may be read again (unless paused for another reason).
    pub(super) fn lift_fence(&mut self) {
        self.fence = None;
    }

    /// Bytes and packets read from it since its worker's last stats report, which this call
    /// starts anew (its load, for the rebalancer).
    pub(super) fn take_load(&mut self) -> (u64, u64) {
        let load = (
            self.bytes_in - self.load_mark.0,
            self.packets_in - self.load_mark.1,
        );
        self.load_mark = (self.bytes_in, self.packets_in);
        load
    }

    /// Makes it wait for a PROXY protocol header before anything is framed; the wait counts as
    /// an unfinished packet begun now (`limits.packet_timeout`).
    pub(super) fn expect_proxy_header(&mut self) {
        self.awaits_proxy_header = true;
        self.rbuf_since_ns = monotonic_ns();
    }

    /// It waits for its PROXY protocol header: MCP does not know it yet.
    pub(super) fn awaits_proxy_header(&self) -> bool {
        self.awaits_proxy_header
    }

    /// Takes the PROXY protocol header from the bytes that came so far and `fresh` ones (at most
    /// [`MAX_HEADER`] bytes are ever buffered). `Ok(None)`: incomplete, waiting for more.
    /// `Ok(Some(n))`: the header is whole and ends `n` bytes into `fresh`, whose rest is the
    /// client's stream; the peer is now the client it names (unless it names none). Bytes are
    /// copied into the connection only when the header is split over reads.
    pub(super) fn take_proxy_header(
        &mut self,
        fresh: &[u8],
        accepted: Accepted,
    ) -> Result<Option<usize>, HeaderError> {
        let before = self.rbuf.len();
        let take = fresh.len().min(MAX_HEADER - before);
        let parsed = if before == 0 {
            proxy_protocol::parse(fresh, accepted)?
        } else {
            self.rbuf.extend_from_slice(&fresh[..take]);
            proxy_protocol::parse(&self.rbuf, accepted)?
        };
        match parsed {
            Parsed::Incomplete => {
                if before == 0 {
                    self.rbuf.extend_from_slice(&fresh[..take]);
                }
                Ok(None)
            }
            Parsed::Complete(header) => {
                self.rbuf.clear();
                self.awaits_proxy_header = false;
                if let Some(client) = header.source {
                    self.peer = client;
                }
                // An incomplete parse of `before` bytes means the header is longer.
                Ok(Some(header.len - before))
            }
        }
    }

    /// The socket, to register in the poller.
    pub(super) fn socket(&self) -> &S {
        &self.socket
    }

    /// The client's address.
    pub(super) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Index of the listener that accepted it.
    pub(super) fn listener(&self) -> usize {
        self.listener
    }

    /// Whether the worker reads it: not paused for any reason (a full lane, memory, a fence),
    /// not half-closed.
    pub(super) fn is_read(&self) -> bool {
        !self.paused && !self.memory_paused && !self.half_closed && self.fence.is_none()
    }

    /// Paused for a full request lane or a graceful stop.
    pub(super) fn is_paused(&self) -> bool {
        self.paused
    }

    /// The client shut down its side with requests unanswered.
    pub(super) fn is_half_closed(&self) -> bool {
        self.half_closed
    }

    /// MCP asked to close it once its replies are written.
    pub(super) fn closes_after_flush(&self) -> bool {
        self.close_after_flush
    }

    /// Bytes of an unfinished packet are buffered.
    /// (A connection waiting for its PROXY header counts as one: the header is unfinished.)
    pub(super) fn holds_unfinished_packet(&self) -> bool {
        !self.rbuf.is_empty() || self.awaits_proxy_header
    }

    /// When the unfinished packet's first byte was read (`CLOCK_MONOTONIC` ns), if there is one.
    pub(super) fn unfinished_since_ns(&self) -> Option<u64> {
        self.holds_unfinished_packet().then_some(self.rbuf_since_ns)
    }

    /// The poller interest its state asks for, under key `slot`: readable while it is read,
    /// writable while write interest is armed.
    pub(super) fn interest(&self, slot: usize) -> Event {
        match (self.is_read(), self.write_armed) {
            (true, false) => Event::readable(slot),
            (true, true) => Event::all(slot),
            (false, false) => Event::none(slot),
            (false, true) => Event::writable(slot),
        }
    }

    /// Stops reading it (a full request lane, a graceful stop) until [`resume`](Conn::resume).
    pub(super) fn pause(&mut self) {
        self.paused = true;
    }

    /// Reads it again after [`pause`](Conn::pause), unless it is paused for memory.
    pub(super) fn resume(&mut self) {
        self.paused = false;
    }

    /// Stops reading it while ccsd holds more than `limits.max_memory`.
    pub(super) fn pause_for_memory(&mut self) {
        self.memory_paused = true;
    }

    /// ccsd is under `limits.max_memory` again; returns whether it is read now.
    pub(super) fn resume_after_memory(&mut self) -> bool {
        self.memory_paused = false;
        self.is_read()
    }

    /// The client shut down its side while requests are unanswered: it is not read any more, and
    /// its unfinished packet, which can no longer complete, is dropped.
    pub(super) fn half_close(&mut self) {
        self.half_closed = true;
        self.rbuf = Vec::new();
    }

    /// MCP asked to close it once its replies are written.
    pub(super) fn close_after_flush(&mut self) {
        self.close_after_flush = true;
    }

    /// Marks it to be written this turn; true when it was not marked yet (the caller lists it).
    pub(super) fn mark_dirty(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }

    /// Sets whether write interest is armed; true when that changed (the poller must be told).
    pub(super) fn arm_write(&mut self, armed: bool) -> bool {
        armed != std::mem::replace(&mut self.write_armed, armed)
    }

    /// Every request sent to MCP has had its reply, and every reply is written.
    pub(super) fn answered(&self) -> bool {
        self.outstanding == 0 && self.wpos == self.wbuf.len()
    }

    /// The capacity of its buffers as last counted by [`recount`](Conn::recount).
    pub(super) fn counted_bytes(&self) -> usize {
        self.counted_bytes
    }

    /// Brings `buffered` (its worker's figure for all its connections) up to date with this
    /// connection's buffer capacities.
    pub(super) fn recount(&mut self, buffered: &mut u64) {
        let now = self.rbuf.capacity() + self.wbuf.capacity();
        *buffered = *buffered + now as u64 - self.counted_bytes as u64;
        self.counted_bytes = now;
    }

    /// How the admin `conns` command shows it, as flow `flow` (its public id), at `now_ns`.
    pub(super) fn info(&self, flow: FlowId, listen_port: u16, now_ns: u64) -> ConnInfo {
        ConnInfo {
            flow,
            pinned: self.pinned,
            peer: self.peer,
            listen_port,
            age: Duration::from_nanos(now_ns.saturating_sub(self.opened_ns)),
            buffered_in: self.rbuf.len(),
            buffered_out: self.wbuf.len() - self.wpos,
            outstanding: self.outstanding,
        }
    }

    /// The send buffer changed after bytes went out (`wrote`): records the latency of the replies
    /// written in full. Returns whether that counts as activity (not on a half-closed connection,
    /// which is off the idle clock).
    fn note_written(&mut self, wrote: bool, latency: &mut Histogram) -> bool {
        let active = wrote && !self.half_closed;
        if active {
            let unwritten = self.wbuf.len() - self.wpos;
            self.unsent.written(unwritten, monotonic_ns, latency);
        }
        active
    }
}

impl<S> Conn<S>
where
    for<'a> &'a S: Read + Write,
{
    /// Reads from the socket into `buf`.
    pub(super) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.socket).read(buf)
    }

    /// Queues a reply to a request whose first byte was read at `echo0_ns`, keeping at most `max`
    /// bytes unwritten (`limits.max_send_buffer`); see [`queue`](Conn::queue).
    pub(super) fn queue_reply(
        &mut self,
        payload: &[u8],
        echo0_ns: u64,
        max: usize,
        bytes_out: &mut u64,
        latency: &mut Histogram,
    ) -> Result<bool, CloseCause> {
        let active = self.queue(payload, max, bytes_out, latency)?;
        self.outstanding = self.outstanding.saturating_sub(1);
        self.unsent.reply_queued(echo0_ns);
        Ok(active)
    }

    /// Appends bytes for the client (a reply, a broadcast) to the send buffer, keeping at most
    /// `max` bytes unwritten: when they would not fit, what the socket takes is written first,
    /// and `Err(CloseCause::SlowClient)` means they still do not fit. Bytes already written are
    /// dropped from the front once they are half the buffer, so the buffer stays within about
    /// twice `max` however long a slow reader keeps up. `Ok(true)`: making room wrote bytes, an
    /// activity (see [`Flushed::active`]).
    pub(super) fn queue(
        &mut self,
        payload: &[u8],
        max: usize,
        bytes_out: &mut u64,
        latency: &mut Histogram,
    ) -> Result<bool, CloseCause> {
        let mut active = false;
        if self.wbuf.len() - self.wpos + payload.len() > max {
            let before = *bytes_out;
            let written = self.write_pending(bytes_out);
            active = self.note_written(*bytes_out != before, latency);
            written.map_err(|_| CloseCause::SocketError)?;
            if self.wbuf.len() - self.wpos + payload.len() > max {
                return Err(CloseCause::SlowClient);
            }
        }
        if self.wpos > 0 && self.wpos >= self.wbuf.len() / 2 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        append_capped(&mut self.wbuf, payload, max);
        self.unsent.queued(payload.len());
        Ok(active)
    }

    /// Writes what is pending. `Err` names why the connection must close now: its replies are
    /// written and MCP asked for the close, or it is half-closed and every request is answered,
    /// or the write failed.
    pub(super) fn flush(
        &mut self,
        bytes_out: &mut u64,
        latency: &mut Histogram,
    ) -> Result<Flushed, CloseCause> {
        self.dirty = false;
        let before = *bytes_out;
        let written = self.write_pending(bytes_out);
        let active = self.note_written(*bytes_out != before, latency);
        match written {
            Ok(true) if self.close_after_flush => Err(CloseCause::ByMcp),
            Ok(true) if self.half_closed && self.outstanding == 0 => Err(CloseCause::Peer),
            Ok(all) => Ok(Flushed {
                active,
                pending: !all,
            }),
            // The client closed fully (EPIPE, reset): no one reads the other replies.
            Err(_) if self.half_closed => Err(CloseCause::Peer),
            Err(_) => Err(CloseCause::SocketError),
        }
    }

    /// Writes `wbuf[wpos..]`; `Ok(true)` when all of it went out, `Ok(false)` when the socket
    /// would block first.
    fn write_pending(&mut self, bytes_out: &mut u64) -> io::Result<bool> {
        while self.wpos < self.wbuf.len() {
            match (&self.socket).write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wpos += n;
                    *bytes_out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.wbuf.capacity() > KEEP_BUFFER_CAPACITY {
            self.wbuf = Vec::new();
        }
        Ok(true)
    }

    /// Frames the buffered bytes followed by `fresh` ones (just read, `&[]` on a retry) and
    /// pushes every complete packet of flow `flow` into the lane through `ingress`, keeping the
    /// rest in the receive buffer. Bytes are copied into the connection only when a packet is
    /// incomplete, so a connection whose reads hold whole packets never grows a buffer of its
    /// own. A packet longer than the listener's `max_packet` closes the connection as soon as
    /// that shows, so the receive buffer never holds more than `max_packet` plus one read, and
    /// its capacity never grows past `max_packet` + [`RECV_SLACK`]. Packets past the
    /// connection's budget of `max_requests_per_second` (`limits.max_requests_per_second`,
    /// `u64::MAX`: no limit) or its listener's close it before they reach the lane.
    pub(super) fn take_packets(
        &mut self,
        flow: FlowId,
        info: &ListenerInfo,
        fresh: &[u8],
        max_requests_per_second: u64,
        ingress: &mut Ingress,
        counters: &mut WorkerCounters,
    ) -> Result<Ingested, CloseCause> {
        let now = monotonic_ns();
        let mut header = RecordHeader::new(Kind::Data, flow);
        header.peer = self.peer;
        header.listen_port = info.port;
        header.transport = Transport::Tcp;
        header.timestamp_ns = now;
        let framer = &*info.framer;
        let recv_cap = framer.max_packet().saturating_add(RECV_SLACK);
        let mut budget = Budget {
            connection: self.requests.budget(now, max_requests_per_second),
            listener: info.rate.as_deref(),
            listener_paid: &mut self.listener_rate_paid,
        };
        let framed = if self.rbuf.is_empty() {
            // Nothing of a packet is buffered: the framer starts afresh.
            self.frame_progress = Progress::default();
            header.echo[0] = now;
            let framed = ingress.push_packets(
                framer,
                fresh,
                &mut self.frame_progress,
                &mut budget,
                &mut header,
                counters,
            )?;
            append_capped(&mut self.rbuf, &fresh[framed.consumed..], recv_cap);
            self.rbuf_since_ns = now;
            framed
        } else {
            append_capped(&mut self.rbuf, fresh, recv_cap);
            header.echo[0] = self.rbuf_since_ns;
            let framed = ingress.push_packets(
                framer,
                &self.rbuf,
                &mut self.frame_progress,
                &mut budget,
                &mut header,
                counters,
            )?;
            self.rbuf.drain(..framed.consumed);
            if framed.consumed > 0 {
                self.rbuf_since_ns = now;
            }
            framed
        };
        if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_BUFFER_CAPACITY {
            self.rbuf = Vec::new();
        }
        self.outstanding += framed.pushed;
        self.requests.spend(framed.taken);
        self.packets_in += framed.taken;
        self.bytes_in += fresh.len() as u64;
        if let Some(interim) = self.frame_progress.interim.take() {
            self.send_interim(interim, counters)?;
        }
        Ok(if framed.blocked {
            Ingested::Blocked
        } else {
            Ingested::Done
        })
    }

    /// Sends an interim response the framer asked for (HTTP's `100 Continue`) when no request of
    /// the connection is waiting for its reply, so that it cannot overtake one; otherwise the
    /// client goes on without it (an HTTP client sends its body after a short wait anyway).
    fn send_interim(
        &mut self,
        interim: &[u8],
        counters: &mut WorkerCounters,
    ) -> Result<(), CloseCause> {
        if self.outstanding > 0 || self.wpos < self.wbuf.len() {
            counters.interim_responses_skipped += 1;
            return Ok(());
        }
        self.wbuf.extend_from_slice(interim);
        self.unsent.queued(interim.len());
        counters.interim_responses_sent += 1;
        // What the socket does not take now goes out with the next reply.
        self.write_pending(&mut counters.bytes_out)
            .map_err(|_| CloseCause::SocketError)?;
        Ok(())
    }
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

/// A connection's packets in its current one-second window (`limits.max_requests_per_second`).
#[derive(Debug, Default, Clone, Copy)]
struct RequestWindow {
    start_ns: u64,
    count: u64,
}

impl RequestWindow {
    /// How many more packets the connection may send in the window open at `now_ns` (a new
    /// window starts once the last one is a second old).
    fn budget(&mut self, now_ns: u64, max: u64) -> u64 {
        if now_ns.saturating_sub(self.start_ns) >= WINDOW_NS {
            self.start_ns = now_ns;
            self.count = 0;
        }
        max.saturating_sub(self.count)
    }

    /// Counts `packets` taken from the connection in the current window.
    fn spend(&mut self, packets: u64) {
        self.count += packets;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::sync::Arc;

    use super::*;
    use crate::framing::LineFramer;
    use crate::lane::{Consumer, Lane};
    use crate::record::RECORD_HEADER_SIZE;
    use crate::settings::OnFull;

    /// A client socket that takes at most `room` bytes, then would block; or fails every write.
    #[derive(Debug, Default)]
    struct Client {
        received: RefCell<Vec<u8>>,
        room: Cell<usize>,
        broken: Cell<bool>,
    }

    impl Read for &Client {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    impl Write for &Client {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.broken.get() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.room.get());
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.room.set(self.room.get() - n);
            self.received.borrow_mut().extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn conn(room: usize) -> Conn<Client> {
        let client = Client::default();
        client.room.set(room);
        Conn::new(client, "127.0.0.1:4000".parse().unwrap(), 0)
    }

    fn received(c: &Conn<Client>) -> Vec<u8> {
        c.socket().received.borrow().clone()
    }

    #[test]
    fn replies_the_socket_cannot_take_stay_queued_and_ask_for_write_interest() {
        let mut c = conn(3);
        let (mut out, mut latency) = (0, Histogram::default());
        assert_eq!(
            c.queue_reply(b"hello", 1, 100, &mut out, &mut latency),
            Ok(false)
        );
        assert!(c.mark_dirty());
        assert!(!c.mark_dirty(), "listed once per turn");
        let flushed = c.flush(&mut out, &mut latency).unwrap();
        assert_eq!(
            flushed,
            Flushed {
                active: true,
                pending: true
            }
        );
        assert_eq!((received(&c), out), (b"hel".to_vec(), 3));
        assert!(c.arm_write(true));
        assert!(!c.arm_write(true), "already armed");
        assert_eq!(c.interest(7), Event::all(7));
        assert!(!c.answered());
        assert_eq!(latency.count(), 0, "the reply is not written in full");

        c.socket().room.set(10);
        let flushed = c.flush(&mut out, &mut latency).unwrap();
        assert_eq!(
            flushed,
            Flushed {
                active: true,
                pending: false
            }
        );
        assert_eq!(received(&c), b"hello");
        assert!(c.answered());
        assert_eq!(latency.count(), 1, "measured when its last byte went out");
        assert!(c.arm_write(false));
        assert_eq!(c.interest(7), Event::readable(7));
        assert!(c.mark_dirty(), "the flush took it off this turn's list");
    }

    #[test]
    fn a_reply_over_the_send_buffer_cap_is_made_room_for_or_closes_the_slow_client() {
        let (mut out, mut latency) = (0, Histogram::default());
        let mut slow = conn(0);
        assert_eq!(slow.queue(b"123456", 8, &mut out, &mut latency), Ok(false));
        assert_eq!(
            slow.queue(b"789abc", 8, &mut out, &mut latency),
            Err(CloseCause::SlowClient)
        );

        let mut reading = conn(0);
        assert_eq!(
            reading.queue(b"123456", 8, &mut out, &mut latency),
            Ok(false)
        );
        reading.socket().room.set(4);
        // Writing 4 bytes leaves 2 unwritten: 2 + 6 fit in 8.
        assert_eq!(
            reading.queue(b"789abc", 8, &mut out, &mut latency),
            Ok(true)
        );
        reading.socket().room.set(100);
        reading.flush(&mut out, &mut latency).unwrap();
        assert_eq!(received(&reading), b"123456789abc");
    }

    #[test]
    fn a_close_after_flush_closes_once_the_replies_are_written() {
        let (mut out, mut latency) = (0, Histogram::default());
        let mut c = conn(0);
        c.queue(b"bye", 100, &mut out, &mut latency).unwrap();
        c.close_after_flush();
        assert!(c.closes_after_flush());
        assert_eq!(
            c.flush(&mut out, &mut latency),
            Ok(Flushed {
                active: false,
                pending: true
            })
        );
        c.socket().room.set(3);
        assert_eq!(c.flush(&mut out, &mut latency), Err(CloseCause::ByMcp));
        assert_eq!(received(&c), b"bye");
    }

    #[test]
    fn a_failed_write_closes_with_an_error_unless_the_client_had_shut_down_its_side() {
        let (mut out, mut latency) = (0, Histogram::default());
        let mut open = conn(10);
        open.queue(b"x", 100, &mut out, &mut latency).unwrap();
        open.socket().broken.set(true);
        assert_eq!(
            open.flush(&mut out, &mut latency),
            Err(CloseCause::SocketError)
        );

        let mut half = conn(10);
        half.half_close();
        half.queue(b"x", 100, &mut out, &mut latency).unwrap();
        half.socket().broken.set(true);
        assert_eq!(half.flush(&mut out, &mut latency), Err(CloseCause::Peer));
    }

    #[test]
    fn a_half_closed_connection_is_not_read_and_closes_once_everything_is_answered() {
        let (mut out, mut latency) = (0, Histogram::default());
        let mut c = conn(10);
        c.half_close();
        assert!(!c.is_read());
        assert_eq!(c.interest(2), Event::none(2));
        c.queue(b"late", 100, &mut out, &mut latency).unwrap();
        assert_eq!(c.flush(&mut out, &mut latency), Err(CloseCause::Peer));
        assert_eq!(received(&c), b"late");
        assert_eq!(latency.count(), 0, "off the clocks once half-closed");
    }

    #[test]
    fn each_pause_stops_reading_until_its_own_resume() {
        let mut c = conn(0);
        assert!(c.is_read());
        c.pause();
        c.pause_for_memory();
        assert_eq!(c.interest(1), Event::none(1));
        assert!(!c.resume_after_memory(), "still paused for the lane");
        c.resume();
        assert!(c.is_read());
        c.arm_write(true);
        c.pause_for_memory();
        assert_eq!(c.interest(1), Event::writable(1));
        assert!(c.resume_after_memory());
        assert_eq!(c.interest(1), Event::all(1));
    }

    #[test]
    fn the_memory_figure_follows_the_buffers_capacity() {
        let (mut out, mut latency) = (0, Histogram::default());
        let mut c = conn(0);
        let mut buffered = 1_000;
        c.queue(&[0; 5000], 1 << 20, &mut out, &mut latency)
            .unwrap();
        c.recount(&mut buffered);
        assert_eq!(buffered, 1_000 + c.counted_bytes() as u64);
        assert!(c.counted_bytes() >= 5000);
        c.socket().room.set(usize::MAX);
        c.flush(&mut out, &mut latency).unwrap();
        c.recount(&mut buffered);
        assert_eq!(buffered - 1_000, c.counted_bytes() as u64);
    }

    /// A request lane in `/dev/shm`, removed when dropped (also when the test panics).
    struct RequestLane(std::path::PathBuf);

    impl Drop for RequestLane {
        fn drop(&mut self) {
            let _ = Lane::remove_files(&self.0);
        }
    }

    /// A request lane of `capacity` bytes: the worker's side as an [`Ingress`] that pauses on a
    /// full lane, and MCP's side.
    fn request_lane(tag: &str, capacity: u64) -> (RequestLane, Ingress, Consumer) {
        let files = RequestLane(std::path::PathBuf::from(format!(
            "/dev/shm/ccsd-lanetest-conn-{tag}-{}.req",
            std::process::id()
        )));
        let mcp = Lane::create_or_attach(&files.0, capacity)
            .unwrap()
            .into_consumer();
        let worker = Lane::attach(&files.0, None).unwrap().into_producer();
        (files, Ingress::new(worker, 0, OnFull::Backpressure), mcp)
    }

    fn line_listener() -> ListenerInfo {
        ListenerInfo {
            framer: Arc::new(LineFramer::new(2048)),
            local: "127.0.0.1:7000".parse().unwrap(),
            port: 7000,
            open: Arc::default(),
            rate: None,
            proxy: None,
            workers: crate::load::WorkerSet::all(1),
        }
    }

    /// The payloads MCP can read now.
    fn requests(mcp: &mut Consumer) -> Vec<(RecordHeader, Vec<u8>)> {
        let mut out = Vec::new();
        let mut record = Vec::new();
        while mcp.pop_into(&mut record).unwrap().is_some() {
            let header = RecordHeader::decode(&record).unwrap();
            out.push((header, record[RECORD_HEADER_SIZE..].to_vec()));
            record.clear();
        }
        out
    }

    #[test]
    fn a_packet_split_over_reads_enters_the_lane_once_whole_timed_from_its_first_byte() {
        let (_files, mut ingress, mut mcp) = request_lane("split", 1 << 16);
        let (info, mut counters) = (line_listener(), WorkerCounters::default());
        let flow = FlowId::new(1, 0, 0, 5);
        let mut c = conn(0);
        let mut take = |c: &mut Conn<Client>, bytes: &[u8]| {
            c.take_packets(flow, &info, bytes, u64::MAX, &mut ingress, &mut counters)
        };
        assert_eq!(take(&mut c, b"hel"), Ok(Ingested::Done));
        let began = c.unfinished_since_ns().expect("an unfinished packet");
        assert_eq!(take(&mut c, b"lo\nwor"), Ok(Ingested::Done));
        ingress.publish(&mut counters);
        let got = requests(&mut mcp);
        assert_eq!(got.len(), 1);
        let (header, payload) = &got[0];
        assert_eq!(payload, b"hello\n");
        assert_eq!((header.flow, header.listen_port), (flow, 7000));
        assert_eq!(header.echo[0], began, "timed from its first byte");
        assert_eq!((counters.packets_in, counters.bytes_in), (1, 6));
        assert_ne!(c.unfinished_since_ns(), Some(began), "`wor` began later");
        assert!(!c.answered(), "one request waits for its reply");
    }

    #[test]
    fn packets_a_full_lane_cannot_take_stay_buffered_until_a_retry_fits_them() {
        let (_files, mut ingress, mut mcp) = request_lane("full", 4096);
        let (info, mut counters) = (line_listener(), WorkerCounters::default());
        let flow = FlowId::new(1, 0, 0, 6);
        let mut line = vec![b'x'; 999];
        line.push(b'\n');
        let burst = line.repeat(8);
        let mut c = conn(0);
        let taken = c.take_packets(flow, &info, &burst, u64::MAX, &mut ingress, &mut counters);
        assert_eq!(taken, Ok(Ingested::Blocked));
        assert_eq!(counters.backpressure_pauses, 1);
        ingress.publish(&mut counters);
        let mut delivered = requests(&mut mcp).len();
        assert!((1..8).contains(&delivered), "{delivered} of 8 fit at first");
        assert!(c.holds_unfinished_packet(), "the rest is buffered");
        while delivered < 8 {
            let retry = c.take_packets(flow, &info, &[], u64::MAX, &mut ingress, &mut counters);
            ingress.publish(&mut counters);
            let now = requests(&mut mcp);
            assert!(
                now.iter().all(|(_, p)| *p == line),
                "whole packets, in order"
            );
            assert!(!now.is_empty(), "a retry after MCP read makes progress");
            delivered += now.len();
            assert_eq!(retry == Ok(Ingested::Done), delivered == 8);
        }
        assert!(!c.holds_unfinished_packet());
        assert_eq!(counters.packets_in, 8);
    }

    #[test]
    fn a_proxy_header_split_over_reads_is_buffered_then_the_rest_of_the_read_is_the_stream() {
        let header = b"PROXY TCP4 203.0.113.9 10.0.0.1 40001 7300\r\n";
        for cut in 1..header.len() {
            let mut c = conn(0);
            c.expect_proxy_header();
            assert!(
                c.holds_unfinished_packet(),
                "the header counts as unfinished"
            );
            assert_eq!(c.take_proxy_header(&header[..cut], Accepted::V1), Ok(None));
            let second = [&header[cut..], b"hello\n"].concat();
            let end = c.take_proxy_header(&second, Accepted::V1).unwrap().unwrap();
            assert_eq!(&second[end..], b"hello\n", "cut at {cut}");
            assert!(!c.awaits_proxy_header());
            assert!(
                !c.holds_unfinished_packet(),
                "the header bytes are released"
            );
            assert_eq!(c.peer(), "203.0.113.9:40001".parse().unwrap());
        }
    }

    #[test]
    fn a_whole_proxy_header_in_one_read_buffers_nothing_and_unknown_keeps_the_peer() {
        let mut c = conn(0);
        c.expect_proxy_header();
        let read = b"PROXY UNKNOWN\r\nping\n";
        assert_eq!(c.take_proxy_header(read, Accepted::Any), Ok(Some(15)));
        assert_eq!(c.rbuf.capacity(), 0, "nothing was copied");
        assert_eq!(c.peer(), "127.0.0.1:4000".parse().unwrap());
    }

    #[test]
    fn a_broken_proxy_header_is_refused_when_the_read_that_breaks_it_comes() {
        let mut c = conn(0);
        c.expect_proxy_header();
        assert_eq!(
            c.take_proxy_header(b"PROXY TCP4 1.2.3.4 5.6.", Accepted::V1),
            Ok(None)
        );
        assert_eq!(
            c.take_proxy_header(b"7.8 1 2\n", Accepted::V1),
            Err(HeaderError::V1Syntax("line does not end in \\r\\n"))
        );

        let mut endless = conn(0);
        endless.expect_proxy_header();
        assert_eq!(
            endless.take_proxy_header(b"PROXY UNKNOWN ", Accepted::V1),
            Ok(None)
        );
        let mut refused = None;
        for _ in 0..10 {
            match endless.take_proxy_header(&[b'x'; 40], Accepted::V1) {
                Ok(None) => assert!(endless.rbuf.len() < proxy_protocol::MAX_V1_HEADER),
                other => {
                    refused = Some(other);
                    break;
                }
            }
        }
        assert_eq!(refused, Some(Err(HeaderError::V1TooLong)));
    }

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
