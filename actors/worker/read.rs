//! A worker's read side: read → frame → lane. A readable connection is read into the worker's
//! scratch buffer and its packets go into the request lane ([`Conn::take_packets`]); a full lane
//! pauses it (`queues.on_full = "backpressure"`) until its buffered packets fit; a read of 0
//! half-closes it while requests are unanswered. On a `proxy_protocol` listener the PROXY header
//! is taken first ([`Worker::take_proxy_header`]); what follows it in the same read is framed.

use std::io;

use super::Worker;
use super::close::CloseCause;
use super::connection::{Conn, Ingested};
use crate::flow::FlowId;

/// Reads per readable connection per turn, so one busy client cannot starve the others.
const READS_PER_TURN: usize = 4;

impl Worker {
    /// The poller reported `slot` readable: reads it (at most [`READS_PER_TURN`] times) and
    /// frames what came.
    pub(super) fn on_readable(&mut self, slot: usize) {
        for _ in 0..READS_PER_TURN {
            let Some((flow, conn)) = self.conns.by_slot_mut(slot) else {
                return;
            };
            if conn.is_half_closed() {
                // Not read any more: readiness now means an error or a reset (the client closed
                // fully), which ends the wait for its replies.
                return self.close(flow, CloseCause::Peer);
            }
            if !conn.is_read() {
                return;
            }
            if self.memory_over {
                return self.memory_pause(flow);
            }
            let n = match conn.read(&mut self.scratch) {
                Ok(0) => return self.on_peer_shutdown(flow),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(flow, CloseCause::SocketError),
            };
            self.idle.touch(slot, self.now);
            let n = if conn.awaits_proxy_header() {
                match self.take_proxy_header(flow, n) {
                    Some(stream_bytes) => stream_bytes,
                    None => return,
                }
            } else {
                n
            };
            match self.ingest(flow, n) {
                Err(cause) => return self.close(flow, cause),
                Ok(Ingested::Blocked) => return self.pause(flow),
                Ok(Ingested::Done) if n < self.scratch.len() => return,
                Ok(Ingested::Done) => {}
            }
        }
    }

    /// The first `n` bytes of the scratch buffer came to `flow`, which waits for its PROXY
    /// protocol header: takes the header from them. Once it is whole, the connection's peer is
    /// the client it names, MCP is told about the connection, and what followed the header is
    /// moved to the start of the scratch buffer: `Some` of its length, to frame. `None`: the
    /// header is incomplete, or broken and the connection closed.
    fn take_proxy_header(&mut self, flow: FlowId, n: usize) -> Option<usize> {
        let conn = self.conns.get_mut(flow).ok()?;
        let listener = conn.listener();
        let accepted = self.listeners[listener].proxy.as_ref()?.accepted;
        let taken = conn.take_proxy_header(&self.scratch[..n], accepted);
        conn.recount(&mut self.buffered);
        match taken {
            Ok(None) => None,
            Err(e) => {
                self.close(flow, e.into());
                None
            }
            Ok(Some(header_end)) => {
                let peer = conn.peer();
                self.counters.proxy_headers_accepted += 1;
                self.unfinished.remove(flow.slot());
                self.announce(self.conns.public(flow), peer, listener);
                self.scratch.copy_within(header_end..n, 0);
                Some(n - header_end)
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
        conn.half_close();
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
    /// read; 0 on a retry) into the request lane. The connections and the lane are borrowed
    /// apart: `conns` for the connection, `ingress` for the lane.
    fn ingest(&mut self, flow: FlowId, fresh: usize) -> Result<Ingested, CloseCause> {
        let public = self.conns.public(flow);
        let conn: &mut Conn = self
            .conns
            .get_mut(flow)
            .map_err(|_| CloseCause::SocketError)?;
        let began_ns = conn.unfinished_since_ns();
        let ingested = conn.take_packets(
            public,
            &self.listeners[conn.listener()],
            &self.scratch[..fresh],
            self.limits.max_requests_per_second,
            &mut self.ingress,
            &mut self.counters,
        );
        conn.recount(&mut self.buffered);
        let ingested = ingested?;
        // The unfinished packet's clock: it starts when a new one begins (none was buffered, or
        // the buffered one completed) and stops when none is left. A paused connection is not
        // read, so its packet cannot finish: it is off the list until it resumes.
        match conn.unfinished_since_ns() {
            Some(since) if conn.is_read() => {
                if began_ns != Some(since) {
                    self.unfinished.touch(flow.slot(), self.now);
                }
            }
            _ => self.unfinished.remove(flow.slot()),
        }
        Ok(ingested)
    }

    /// Stops reading `flow` until its buffered packets fit in the request lane.
    fn pause(&mut self, flow: FlowId) {
        let Ok(conn) = self.conns.get_mut(flow) else {
            return;
        };
        conn.pause();
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
    pub(super) fn resume_paused(&mut self) {
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
                        conn.resume();
                        // Its unfinished packet gets a whole timeout from now.
                        if conn.holds_unfinished_packet() {
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
}
