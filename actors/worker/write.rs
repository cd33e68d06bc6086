//! A worker's write side: reply → queue → write → close. MCP's records for its flows arrive in
//! batches from the bridge (replies, close requests); each reply is queued into its connection's
//! send buffer under `limits.max_send_buffer` ([`Conn::queue_reply`](super::connection::Conn)),
//! every connection that got some is written once at the end of the turn
//! ([`Conn::flush`](super::connection::Conn)), write interest is armed only while bytes remain,
//! and a connection whose replies are all written closes when MCP asked for it or when its
//! client had shut down its side.

use std::sync::atomic::Ordering;

use super::Worker;
use super::close::CloseCause;
use crate::flow::{FlowId, StaleFlow};
use crate::message::DataTrans;
use crate::record::{CloseMode, Kind};

/// The largest emptied batch given back to the MCP bridge for reuse: twice the bridge's batch
/// size (a batch grows by doubling), so a batch grown by one large record is freed.
const RECYCLE_MAX_CAPACITY: usize = 128 * 1024;

/// What became of bytes queued for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queued {
    /// In its send buffer.
    Yes,
    /// Over `limits.max_send_buffer`, or making room failed: the connection was closed.
    Closed,
    /// The connection is gone or closing.
    NoConnection,
}

impl Worker {
    /// The poller reported `slot` writable: writes what it has pending.
    pub(super) fn on_writable(&mut self, slot: usize) {
        if let Some((flow, _)) = self.conns.by_slot_mut(slot) {
            self.flush(flow);
        }
    }

    /// Queues each of MCP's records in `d` for its connection, in lane order, then gives the
    /// batch buffer back to the bridge.
    pub(super) fn on_data_trans(&mut self, d: DataTrans) {
        for (header, payload) in d.batch.records() {
            // MCP names connections by their public ids; a moved-here one has a local id too.
            let Ok(flow) = self.conns.resolve(header.flow) else {
                match header.kind {
                    Kind::Data | Kind::Close => self.counters.dropped_stale_flow += 1,
                    _ => self.counters.dropped_unexpected_kind += 1,
                }
                continue;
            };
            match header.kind {
                Kind::Data => self.queue_reply(flow, payload, header.echo[0]),
                Kind::Close if header.code == CloseMode::Force as u8 => {
                    self.close(flow, CloseCause::ByMcp);
                }
                Kind::Close => {
                    let _ = self.close_after_flush(flow);
                }
                _ => self.counters.dropped_unexpected_kind += 1,
            }
        }
        let mut batch = d.batch;
        // SYNC POINT: Relaxed: the count only paces the MCP bridge (`BridgeLink::in_flight`); the
        // bridge added this batch's length before sending it, so the count never goes below zero.
        self.in_flight
            .fetch_sub(batch.record_bytes(), Ordering::Relaxed);
        // The bridge allocates a new batch when none comes back; a full channel just frees this
        // one, and so does a batch a large record made grow (memory goes back after a burst).
        if batch.capacity_bytes() <= RECYCLE_MAX_CAPACITY {
            batch.clear();
            let _ = self.recycle.try_send(batch);
        }
    }

    /// Marks `flow` to close once its queued replies are written.
    pub(super) fn close_after_flush(&mut self, flow: FlowId) -> Result<(), StaleFlow> {
        let conn = self.conns.get_mut(flow)?;
        conn.close_after_flush();
        if conn.mark_dirty() {
            self.dirty.push(flow);
        }
        Ok(())
    }

    /// Queues a reply to a request of `flow` whose first byte was read at `echo0_ns`.
    fn queue_reply(&mut self, flow: FlowId, payload: &[u8], echo0_ns: u64) {
        match self.queue(flow, payload, Some(echo0_ns)) {
            Queued::Yes => self.counters.replies_out += 1,
            Queued::Closed => {}
            Queued::NoConnection => self.counters.dropped_stale_flow += 1,
        }
    }

    /// Queues `payload` for `flow` (a reply when `echo0_ns` is given, else a broadcast), closing
    /// it when that passes `limits.max_send_buffer`.
    pub(super) fn queue(&mut self, flow: FlowId, payload: &[u8], echo0_ns: Option<u64>) -> Queued {
        let conn = match self.conns.get_mut(flow) {
            Ok(conn) if !conn.closes_after_flush() => conn,
            _ => return Queued::NoConnection,
        };
        let max = self.limits.max_send_buffer;
        let (out, latency) = (&mut self.counters.bytes_out, &mut self.latency);
        let queued = match echo0_ns {
            Some(echo0_ns) => conn.queue_reply(payload, echo0_ns, max, out, latency),
            None => conn.queue(payload, max, out, latency),
        };
        conn.recount(&mut self.buffered);
        let active = match queued {
            Ok(active) => active,
            Err(cause) => {
                self.close(flow, cause);
                return Queued::Closed;
            }
        };
        if conn.mark_dirty() {
            self.dirty.push(flow);
        }
        if active {
            // Making room wrote earlier replies.
            self.idle.touch(flow.slot(), self.now);
        }
        Queued::Yes
    }

    /// Writes every connection that got replies or a close request this turn.
    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for flow in dirty.drain(..) {
            self.flush(flow);
        }
        self.dirty = dirty;
    }

    /// Writes what `flow` has pending, then closes it or sets its write interest accordingly.
    fn flush(&mut self, flow: FlowId) {
        let Ok(conn) = self.conns.get_mut(flow) else {
            return;
        };
        let flushed = conn.flush(&mut self.counters.bytes_out, &mut self.latency);
        conn.recount(&mut self.buffered);
        let flushed = match flushed {
            Ok(flushed) => flushed,
            Err(cause) => return self.close(flow, cause),
        };
        let rearm = conn.arm_write(flushed.pending);
        if flushed.active {
            self.idle.touch(flow.slot(), self.now);
        }
        if rearm && self.update_interest(flow).is_err() {
            self.close(flow, CloseCause::SocketError);
        }
    }
}
