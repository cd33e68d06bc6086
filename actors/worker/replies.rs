//! A worker's write side: MCP's records for its flows (replies, close requests), queued into
//! each connection's send buffer under `limits.max_send_buffer`, then written once per turn with
//! write interest armed only while bytes remain; the request→reply latency of each reply is
//! recorded when its last byte is written.

use std::sync::atomic::Ordering;

use super::{Queued, Worker};
use crate::clock::monotonic_ns;
use super::connection::{CloseCause, queue_capped, write_pending};
use crate::flow::{FlowId, StaleFlow};
use crate::message::DataTrans;
use crate::record::{CloseMode, Kind};

/// The largest emptied batch buffer given back to the MCP bridge for reuse: twice the bridge's
/// batch size (a batch grows by doubling), so a buffer grown by one large record is freed.
const RECYCLE_MAX_CAPACITY: usize = 128 * 1024;

impl Worker {
    pub(super) fn on_writable(&mut self, slot: usize) {
        if let Some((flow, _)) = self.conns.by_slot_mut(slot) {
            self.flush(flow);
        }
    }

    pub(super) fn on_data_trans(&mut self, d: DataTrans) {
        for (header, payload) in d.records() {
            match header.kind {
                Kind::Data => self.queue_reply(header.flow, payload, header.echo[0]),
                Kind::Close if header.code == CloseMode::Force as u8 => {
                    if self.conns.check(header.flow).is_ok() {
                        self.close(header.flow, CloseCause::ByMcp);
                    } else {
                        self.counters.dropped_stale_flow += 1;
                    }
                }
                Kind::Close => {
                    if self.close_after_flush(header.flow).is_err() {
                        self.counters.dropped_stale_flow += 1;
                    }
                }
                _ => self.counters.dropped_unexpected_kind += 1,
            }
        }
        let mut batch = d.batch;
        // SYNC POINT: Relaxed: the count only paces the MCP bridge (`BridgeLink::in_flight`); the
        // bridge added this batch's length before sending it, so the count never goes below zero.
        self.in_flight.fetch_sub(batch.len(), Ordering::Relaxed);
        // The bridge allocates a new buffer when none comes back; a full channel just frees this
        // one, and so does a buffer a large record made grow (memory goes back after a burst).
        if batch.capacity() <= RECYCLE_MAX_CAPACITY {
            batch.clear();
            let _ = self.recycle.try_send(batch);
        }
    }

    /// Marks `flow` to close once its queued replies are written.
    pub(super) fn close_after_flush(&mut self, flow: FlowId) -> Result<(), StaleFlow> {
        let conn = self.conns.get_mut(flow)?;
        conn.close_after_flush = true;
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(flow);
        }
        Ok(())
    }

    pub(super) fn queue_reply(&mut self, flow: FlowId, payload: &[u8], echo0_ns: u64) {
        match self.queue_bytes(flow, payload) {
            Queued::Yes => {
                if let Ok(conn) = self.conns.get_mut(flow) {
                    conn.outstanding = conn.outstanding.saturating_sub(1);
                    conn.unsent.reply_queued(echo0_ns);
                }
                self.counters.replies_out += 1;
            }
            Queued::OverCap => {}
            Queued::NoConnection => self.counters.dropped_stale_flow += 1,
        }
    }

    /// Queues `payload` for `flow`, closing it when that passes `limits.max_send_buffer`.
    pub(super) fn queue_bytes(&mut self, flow: FlowId, payload: &[u8]) -> Queued {
        match self.conns.get_mut(flow) {
            Ok(conn) if !conn.close_after_flush => {
                let written_before = self.counters.bytes_out;
                let max = self.limits.max_send_buffer;
                let queued = queue_capped(conn, payload, max, &mut self.counters.bytes_out);
                conn.recount(&mut self.buffered);
                if self.counters.bytes_out != written_before && !conn.half_closed {
                    self.idle.touch(flow.slot(), self.now);
                    // Making room wrote earlier replies.
                    let unwritten = conn.wbuf.len() - conn.wpos;
                    conn.unsent
                        .written(unwritten, monotonic_ns, &mut self.latency);
                }
                if let Err(cause) = queued {
                    self.close(flow, cause);
                    return Queued::OverCap;
                }
                if !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(flow);
                }
                Queued::Yes
            }
            _ => Queued::NoConnection,
        }
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
    pub(super) fn flush(&mut self, flow: FlowId) {
        let Ok(conn) = self.conns.get_mut(flow) else {
            return;
        };
        conn.dirty = false;
        let written_before = self.counters.bytes_out;
        let result = write_pending(conn, &mut self.counters.bytes_out);
        conn.recount(&mut self.buffered);
        if self.counters.bytes_out != written_before && !conn.half_closed {
            self.idle.touch(flow.slot(), self.now);
            let unwritten = conn.wbuf.len() - conn.wpos;
            conn.unsent
                .written(unwritten, monotonic_ns, &mut self.latency);
        }
        let want_write = match result {
            Ok(true) if conn.close_after_flush => return self.close(flow, CloseCause::ByMcp),
            Ok(true) if conn.half_closed && conn.outstanding == 0 => {
                return self.close(flow, CloseCause::Peer);
            }
            Ok(true) => false,
            Ok(false) => true,
            // The client closed fully (EPIPE, reset): no one reads the other replies.
            Err(_) if conn.half_closed => return self.close(flow, CloseCause::Peer),
            Err(_) => return self.close(flow, CloseCause::SocketError),
        };
        if want_write != conn.write_armed {
            conn.write_armed = want_write;
            if self.update_interest(flow).is_err() {
                self.close(flow, CloseCause::SocketError);
            }
        }
    }
}
