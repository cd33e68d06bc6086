//! A worker's side of a hot restart (`docs/hot-restart.md`): when a new ccsd process takes over,
//! each worker *freezes* — it publishes its request lane, stops touching its sockets, and sends
//! the main thread a copy of every connection (a duplicate of the socket's descriptor and its
//! state) to hand over — then waits. If the new process commits, the worker is *released*: it
//! closes its own descriptors without a word to the clients or to MCP (the new process holds the
//! same sockets) and ends. If the takeover fails, the worker *thaws* and serves on as if nothing
//! had happened: it never gave anything up.

use std::net::TcpStream;

use crossbeam_channel::Sender;
use log::{Level, info};

use super::Worker;
use crate::clock::monotonic_ns;
use crate::flow::FlowId;
use crate::logging::log_limited;
use crate::message::WorkerMsg;

/// A copy of one connection for the process taking over.
#[derive(Debug)]
pub(crate) struct ExportedConn {
    /// A duplicate of its socket's descriptor (the same open socket).
    pub socket: TcpStream,
    /// Its state in the byte form (`docs/connection-state.md`), encoded here so that the
    /// workers encode their connections in parallel.
    pub state: Vec<u8>,
    /// The request lane its packets went into last, which MCP must have read up to its tail
    /// before the connection's next packet goes into another lane.
    pub lane: usize,
}

/// A frozen worker's connections.
#[derive(Debug)]
pub(crate) struct FrozenWorker {
    /// The worker.
    pub worker: usize,
    /// A copy of each of its connections.
    pub conns: Vec<ExportedConn>,
    /// Connections whose socket could not be duplicated (out of descriptors): the takeover
    /// must not go on without them.
    pub failed: usize,
}

/// What a frozen worker was told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unfrozen {
    /// Serve on.
    Thawed,
    /// The new process took over: end the thread.
    Released,
}

impl Worker {
    /// Freezes (see the module header): sends `reply` a copy of every connection, then waits for
    /// `Thaw` or `Release`. Messages that arrive meanwhile are handled after a thaw (an admin
    /// `conns` is answered at once).
    pub(super) fn on_freeze(&mut self, reply: Sender<FrozenWorker>) -> Unfrozen {
        self.publish_lane();
        let frozen = self.export();
        let exported = frozen.conns.len();
        if reply.send(frozen).is_err() {
            // The main thread gave up waiting: it thaws everyone.
            return Unfrozen::Thawed;
        }
        let mut deferred = Vec::new();
        let unfrozen = loop {
            match self.inbox.recv() {
                Ok(WorkerMsg::Thaw) => break Unfrozen::Thawed,
                Ok(WorkerMsg::Release) => break Unfrozen::Released,
                Ok(WorkerMsg::SampleConns { token, max }) => self.on_sample_conns(token, max),
                Ok(other) => deferred.push(other),
                Err(_) => break Unfrozen::Released,
            }
        };
        match unfrozen {
            Unfrozen::Thawed => {
                // The process that failed to take over may have written its pid there.
                self.ingress.lane().lane().claim_producer();
                for msg in deferred {
                    self.on_message(msg);
                }
            }
            Unfrozen::Released => {
                self.release(exported);
                if !deferred.is_empty() {
                    log_limited!(
                        self.error_log,
                        Level::Warn,
                        "worker {}: {} messages came after the handover and were dropped",
                        self.id,
                        deferred.len()
                    );
                }
            }
        }
        unfrozen
    }

    /// A copy of every connection: a duplicate of its socket and its state.
    fn export(&mut self) -> FrozenWorker {
        let (now, now_ns) = (std::time::Instant::now(), monotonic_ns());
        let ns_of = |at: std::time::Instant| {
            now_ns.saturating_sub(now.duration_since(at).as_nanos() as u64)
        };
        let mut conns = Vec::with_capacity(self.conns.len());
        let mut failed = 0;
        let locals: Vec<FlowId> = self.conns.flows().collect();
        for local in locals {
            let public = self.conns.public(local);
            let slot = local.slot();
            let last_active_ns = self.idle.last_active(slot).map(ns_of);
            let half_closed_since_ns = self.half_closed.last_active(slot).map(ns_of);
            let Some(conn) = self.conns.peek(local) else {
                continue;
            };
            let Ok(socket) = conn.socket().try_clone() else {
                failed += 1;
                continue;
            };
            let identity = self.listeners[conn.listener()].identity(conn.listener());
            let lane = conn.fence().map_or(self.id, |f| f.lane());
            let mut state = Vec::new();
            conn.to_state(public, identity, last_active_ns, half_closed_since_ns)
                .encode(now_ns, &mut state);
            conns.push(ExportedConn {
                socket,
                state,
                lane,
            });
        }
        FrozenWorker {
            worker: self.id,
            conns,
            failed,
        }
    }

    /// The new process serves these connections now: each socket leaves this worker's poller
    /// and its descriptor is closed, without a disconnect notice (the connection lives on in the
    /// new process).
    fn release(&mut self, exported: usize) {
        let locals: Vec<FlowId> = self.conns.flows().collect();
        for local in locals {
            if let Some(conn) = self.conns.remove(local) {
                let _ = self.poller.delete(conn.socket());
            }
        }
        if !self.fenced_notices.is_empty() {
            // Their connections' earlier packets were still unread in another lane: the notice
            // is lost rather than let it overtake them.
            self.counters.dropped_disconnect_notices += self.fenced_notices.len() as u64;
            self.fenced_notices.clear();
        }
        info!(
            "worker {}: handed {exported} connections over to the new process",
            self.id
        );
    }
}
