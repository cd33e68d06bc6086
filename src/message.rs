//! The typed messages actors exchange over their mailboxes.
//!
//! - [`Connect`]: acceptor → worker, a freshly accepted connection to own.
//! - [`DataTrans`]: MCP bridge → worker, a [`ReplyBatch`] of records from MCP (replies and close
//!   requests) for that worker's flows, in lane order, their headers decoded once by the bridge.
//! - [`Disconnect`]: main thread → worker, close these flows (admin `close`, a custom actor).
//! - [`NotifyStat`]: worker → main thread, the worker's counters and latency histogram.
//! - [`CustomMcp`]: MCP bridge → main-thread actors, a custom record from MCP.
//! - [`PortCommand`]: main thread → every worker, close or write to every connection of a listen
//!   port (asked by MCP through a custom record, or by a custom actor).
//! - `WorkerMsg::SampleConns` / [`ConnSample`]: main thread → every worker and back, a sample of
//!   each worker's connections for the admin `conns` command.
//! - [`WorkerSettings`]: main thread → every worker, the settings a reload changed.
//! - Moving a connection (`docs/architecture.md`, "Moving a connection"): `WorkerMsg::MoveOut`
//!   (main thread → the worker holding it), `MainMsg::Departed` with the connection as a
//!   [`Departure`] (that worker → main thread), `WorkerMsg::Arrive` (main thread → its new
//!   worker), and the outcome, [`MainMsg::Moved`]; `WorkerMsg::Pin` and `MainMsg::Pinned`;
//!   `MainMsg::GuestsClosed` (which moved connections closed, so the bridge forgets them).

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::actors::worker::{Fence, FrozenWorker};
use crate::conn_state::ConnState;
use crate::flow::FlowId;
use crate::load::HeavyFlows;
use crate::record::{CloseMode, RECORD_HEADER_SIZE, RecordHeader};
use crate::settings::LimitsSettings;
use crate::stats::WorkerCounters;
use crate::stats::histogram::Histogram;

/// A new client connection for a worker to own.
#[derive(Debug)]
pub(crate) struct Connect {
    /// The accepted socket, already non-blocking.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Index of the listener (in `Settings::listen`) that accepted it.
    pub listener: usize,
}

/// Records from MCP for one worker, every header already decoded and checked by the bridge.
#[derive(Debug)]
pub(crate) struct DataTrans {
    /// The records. The worker hands the emptied batch back to the bridge for reuse.
    pub batch: ReplyBatch,
}

/// Records from MCP in lane order: their decoded headers, and their payloads back to back (each
/// its header's `payload_len` bytes). Both vectors are kept when the batch is cleared, so a
/// batch that goes back and forth between the bridge and a worker allocates only while it grows.
#[derive(Debug, Default)]
pub struct ReplyBatch {
    headers: Vec<RecordHeader>,
    payloads: Vec<u8>,
}

impl ReplyBatch {
    /// Appends a record: `header`, whose `payload_len` is `payload.len()` (as decoding a record
    /// from a lane guarantees), and `payload`.
    pub fn push(&mut self, header: &RecordHeader, payload: &[u8]) {
        debug_assert_eq!(header.payload_len as usize, payload.len());
        self.headers.push(*header);
        self.payloads.extend_from_slice(payload);
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// The bytes the records took in the lane, headers included: what the batch stands for in
    /// the bridge's pacing and in `limits.max_memory`.
    pub fn record_bytes(&self) -> usize {
        self.headers.len() * RECORD_HEADER_SIZE + self.payloads.len()
    }

    /// The bytes the batch's two vectors hold allocated.
    pub fn capacity_bytes(&self) -> usize {
        self.headers.capacity() * std::mem::size_of::<RecordHeader>() + self.payloads.capacity()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.headers.clear();
        self.payloads.clear();
    }

    /// Iterates over the records as `(header, payload)`, in the order they were pushed.
    pub fn records(&self) -> BatchRecords<'_> {
        BatchRecords {
            headers: self.headers.iter(),
            payloads: &self.payloads,
        }
    }
}

/// Iterator over the records of a [`ReplyBatch`].
#[derive(Debug)]
pub struct BatchRecords<'a> {
    headers: std::slice::Iter<'a, RecordHeader>,
    payloads: &'a [u8],
}

impl<'a> Iterator for BatchRecords<'a> {
    type Item = (&'a RecordHeader, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let header = self.headers.next()?;
        // Only `push` fills a batch, with each header's own payload: the split always fits.
        let (payload, rest) = self
            .payloads
            .split_at_checked(header.payload_len as usize)?;
        self.payloads = rest;
        Some((header, payload))
    }
}

/// Close these flows of the receiving worker (MCP is told reason local).
#[derive(Debug)]
pub(crate) struct Disconnect {
    /// The flows to close.
    pub flows: Vec<FlowId>,
}

/// A worker's counters, sent to the main thread at every stats interval.
#[derive(Debug, Clone, Copy)]
pub struct NotifyStat {
    /// The worker's index.
    pub worker: usize,
    /// Its counters since it started.
    pub counters: WorkerCounters,
    /// Request→reply latency (first byte read to reply written in full) of every reply it wrote
    /// in full since it started.
    pub latency: Histogram,
    /// Messages waiting in its mailbox when it sent this.
    pub mailbox_depth: usize,
    /// Bytes waiting in its request lane for MCP.
    pub lane_used_bytes: u64,
    /// Its heaviest connections over the interval since its last report (for the rebalancer).
    pub(crate) heavy: HeavyFlows,
}

/// A custom record from MCP, for the main thread's actors. Custom records are control traffic,
/// so each is copied into its own buffer.
#[derive(Debug, Clone)]
pub struct CustomMcp {
    /// The record's header (`kind` is custom; `code` says what it asks, see `docs/protocol.md`).
    pub header: RecordHeader,
    /// The record's payload.
    pub payload: Vec<u8>,
}

/// Something every connection accepted on one listen port must do.
#[derive(Debug, Clone)]
pub(crate) enum PortCommand {
    /// Close every connection of the port.
    Close {
        /// The listen port.
        port: u16,
        /// Flush queued replies first, or not.
        mode: CloseMode,
    },
    /// Write these bytes to every connection of the port.
    Broadcast {
        /// The listen port.
        port: u16,
        /// The bytes, shared by every worker.
        payload: Arc<[u8]>,
    },
}

/// One connection as the admin `conns` command shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnInfo {
    /// Its flow.
    pub flow: FlowId,
    /// Never moved automatically.
    pub pinned: bool,
    /// The client's address.
    pub peer: SocketAddr,
    /// The local port of the listener that accepted it.
    pub listen_port: u16,
    /// How long its worker has held it.
    pub age: Duration,
    /// Bytes of an incomplete packet (or of packets waiting for room in the request lane).
    pub buffered_in: usize,
    /// Reply bytes not written to the client yet.
    pub buffered_out: usize,
    /// Requests sent to MCP not answered yet.
    pub outstanding: u64,
}

/// A worker's answer to `WorkerMsg::SampleConns`.
#[derive(Debug, Clone)]
pub(crate) struct ConnSample {
    /// The request this answers.
    pub token: u64,
    /// The worker answering.
    pub worker: usize,
    /// Its open connections.
    pub open: usize,
    /// At most the number asked for, in slot order.
    pub conns: Vec<ConnInfo>,
}

/// The worker settings a reload can change, sent to every worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerSettings {
    /// `[limits]`.
    pub limits: LimitsSettings,
    /// `stats.interval`: how often the worker sends `NotifyStat`.
    pub stats_interval: Duration,
}

/// A connection leaving worker `from` for worker `to`: its socket (out of `from`'s poller) and
/// its state.
#[derive(Debug)]
pub(crate) struct Departure {
    /// The socket, registered in no poller.
    pub socket: TcpStream,
    /// Everything else the connection is.
    pub state: ConnState,
    /// Where MCP must have read `from`'s request lane before the connection is read again.
    pub fence: Option<Fence>,
    /// The worker it leaves.
    pub from: usize,
    /// The worker it goes to.
    pub to: usize,
    /// Who asked (see [`Moved::token`]).
    pub token: u64,
}

/// Why a connection did not move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MoveRefused {
    /// It closed (or never existed).
    Closed,
    /// It is on that worker already.
    AlreadyThere,
    /// It is pinned and the move was not forced.
    Pinned,
    /// The worker is not in its listener's `workers` and the move was not forced.
    NotInWorkerSet,
    /// Its worker is stopping.
    Stopping,
    /// The new worker has no free slot.
    TableFull,
    /// The new worker's poller refused the socket (the connection was closed).
    RegisterFailed,
}

impl MoveRefused {
    /// The reason as admin answers and logs word it.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            MoveRefused::Closed => "no such flow (closed)",
            MoveRefused::AlreadyThere => "the flow is on that worker already",
            MoveRefused::Pinned => "the flow is pinned (add force)",
            MoveRefused::NotInWorkerSet => {
                "the worker is not in its listener's workers (add force)"
            }
            MoveRefused::Stopping => "ccsd is stopping",
            MoveRefused::TableFull => "the worker has no free slot",
            MoveRefused::RegisterFailed => "the worker could not register the socket",
        }
    }
}

/// The outcome of a move, from the worker that knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moved {
    /// The flow (its public id).
    pub flow: FlowId,
    /// The worker it was on.
    pub from: usize,
    /// The worker it was to go to.
    pub to: usize,
    /// Who asked: an admin request's token, or 0.
    pub token: u64,
    /// `Ok`: it is served by `to` now.
    pub outcome: Result<(), MoveRefused>,
}

/// What a worker's mailbox carries.
#[derive(Debug)]
pub(crate) enum WorkerMsg {
    /// Own a new connection.
    Connect(Connect),
    /// Replies and close requests from MCP.
    DataTrans(DataTrans),
    /// Close these flows.
    Disconnect(Disconnect),
    /// Close or write to every connection of a listen port.
    Port(PortCommand),
    /// Answer with a [`ConnSample`] of at most `max` connections (admin `conns`).
    SampleConns {
        /// Identifies the request in the answer.
        token: u64,
        /// Connections to describe at most.
        max: usize,
    },
    /// Apply settings changed by a reload.
    Reconfigure(WorkerSettings),
    /// ccsd is stopping: stop reading, close each connection once its requests are answered,
    /// close the rest at `deadline`, then end the thread.
    Shutdown {
        /// When every remaining connection is closed.
        deadline: std::time::Instant,
    },
    /// Hand connection `flow` (public id) over to worker `to`: answered with
    /// [`MainMsg::Departed`], or [`MainMsg::Moved`] when it cannot leave.
    MoveOut {
        /// The flow.
        flow: FlowId,
        /// Its new worker.
        to: usize,
        /// Move it even if it is pinned.
        force: bool,
        /// Who asked (see [`Moved::token`]).
        token: u64,
    },
    /// Adopt a connection another worker handed over.
    Arrive(Box<Departure>),
    /// A new process is taking over (hot restart): send a copy of every connection to `reply`,
    /// then wait for `Thaw` or `Release`.
    Freeze {
        /// Where the copies go.
        reply: crossbeam_channel::Sender<FrozenWorker>,
    },
    /// The takeover failed: serve on.
    Thaw,
    /// The new process serves the connections now: close their descriptors silently and end.
    Release,
    /// Pin or unpin `flow` (public id); answered with [`MainMsg::Pinned`].
    Pin {
        /// The flow.
        flow: FlowId,
        /// Pin (`true`) or unpin.
        pinned: bool,
        /// Who asked: an admin request's token, or 0.
        token: u64,
    },
}

/// What the main thread's mailbox carries.
// `NotifyStat` (counters and a histogram, about 430 bytes) is the common message; boxing it would
// allocate at every stats interval to save slots of a channel that is allocated once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum MainMsg {
    /// A worker's counters.
    NotifyStat(NotifyStat),
    /// A worker's answer to `WorkerMsg::SampleConns`.
    ConnSample(ConnSample),
    /// A connection left its worker, to be handed to its new one.
    Departed(Box<Departure>),
    /// The outcome of a move.
    Moved(Moved),
    /// The answer to `WorkerMsg::Pin`: whether the flow was found.
    Pinned {
        /// The flow.
        flow: FlowId,
        /// Pinned (`true`) or unpinned.
        pinned: bool,
        /// The request's token.
        token: u64,
        /// The flow is open on the worker that answers.
        found: bool,
    },
    /// Connections that had moved to `worker` and closed there: the bridge stops routing their
    /// flows to it.
    GuestsClosed {
        /// The worker.
        worker: usize,
        /// Their flows (public ids).
        flows: Vec<FlowId>,
    },
}
