//! A worker's side of moving a connection to another worker (`docs/architecture.md`, "Moving a
//! connection"): handing one over ([`Worker::on_move_out`]), adopting one
//! ([`Worker::on_arrive`]), the fence that keeps a moved connection's packets in order
//! ([`Fence`]), pinning, and the messages to the main thread that a full mailbox must not lose.
//!
//! A connection leaves in one step of the worker's loop: out of the poller, out of the table and
//! the worker's lists, its state taken apart ([`Conn::into_state`]) and sent with the socket to
//! the main thread, which hands it to the new worker behind every reply it routed to the old one.
//! Replies this worker had already taken are in the state's unsent bytes; the ones routed after
//! the move began wait in the bridge and reach the new worker after the connection itself.
//!
//! The new worker adopts it under a local id ([`crate::flow::FlowTable::adopt`]), registers the
//! socket, and does not read it until MCP has read the old worker's request lane past the
//! connection's last packet there ([`Fence`]): MCP reads each request lane on its own, so a packet
//! pushed into the new lane earlier could overtake one still unread in the old lane.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use log::Level;
use polling::PollMode;

use super::Worker;
use super::close::CloseCause;
use super::connection::Conn;
use std::net::TcpStream;

use crate::clock::monotonic_ns;
use crate::conn_state::ConnState;
use crate::flow::FlowId;
use crate::lane::HeadWatch;
use crate::logging::log_limited;
use crate::message::{Departure, MainMsg, MoveRefused, Moved};
use crate::record::{Kind, RecordHeader};

/// Where MCP must have read a worker's request lane before a moved connection may be read again:
/// the position after the connection's last record there.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    /// The index of the request lane.
    lane: usize,
    head: HeadWatch,
    position: u64,
}

impl Fence {
    /// A fence at `position` of request lane `lane`, whose consumer head `head` watches.
    pub(crate) fn new(lane: usize, head: HeadWatch, position: u64) -> Fence {
        Fence {
            lane,
            head,
            position,
        }
    }

    /// The index of the request lane it is on.
    pub(crate) fn lane(&self) -> usize {
        self.lane
    }

    /// MCP has read (released) every record before the fence: one atomic load.
    pub(crate) fn passed(&self) -> bool {
        self.head.passed(self.position)
    }
}

/// Messages for the main thread that its full mailbox could not take yet, oldest first: they
/// carry connections and outcomes, so they are kept and sent again, in order, every turn.
#[derive(Debug, Default)]
pub(super) struct MainOutbox {
    waiting: VecDeque<MainMsg>,
}

impl MainOutbox {
    /// Whether messages wait (the worker must look again soon).
    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

impl Worker {
    /// Sends `msg` to the main thread after the ones already waiting; keeps it if the mailbox is
    /// full.
    pub(super) fn tell_main(&mut self, msg: MainMsg) {
        if self.outbox.waiting.is_empty() {
            if let Err(TrySendError::Full(msg)) = self.main.try_send(msg) {
                self.outbox.waiting.push_back(msg);
            }
        } else {
            self.outbox.waiting.push_back(msg);
        }
    }

    /// Sends what waits for the main thread, in order, as far as its mailbox takes it.
    pub(super) fn flush_outbox(&mut self) {
        if !self.closed_guests.is_empty() {
            let flows = std::mem::take(&mut self.closed_guests);
            self.tell_main(MainMsg::GuestsClosed {
                worker: self.id,
                flows,
            });
        }
        while let Some(msg) = self.outbox.waiting.pop_front() {
            match self.main.try_send(msg) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(msg)) => {
                    self.outbox.waiting.push_front(msg);
                    return;
                }
            }
        }
    }

    /// Hands connection `flow` (its public id) to worker `to`, unless it is gone, pinned (and
    /// `force` is off), or this worker is stopping; the main thread hears the outcome.
    pub(super) fn on_move_out(&mut self, flow: FlowId, to: usize, force: bool, token: u64) {
        let refused = |outcome| {
            MainMsg::Moved(Moved {
                flow,
                from: self.id,
                to,
                token,
                outcome: Err(outcome),
            })
        };
        if self.stopping.is_some() {
            self.counters.migrations_refused_stopping += 1;
            return self.tell_main(refused(MoveRefused::Stopping));
        }
        let Ok(local) = self.conns.resolve(flow) else {
            self.counters.migrations_refused_closed += 1;
            return self.tell_main(refused(MoveRefused::Closed));
        };
        if to == self.id {
            return self.tell_main(refused(MoveRefused::AlreadyThere));
        }
        let conn = self.conns.get_mut(local).expect("resolved");
        if conn.is_pinned() && !force {
            self.counters.migrations_refused_pinned += 1;
            return self.tell_main(refused(MoveRefused::Pinned));
        }
        if !self.listeners[conn.listener()].workers.contains(to) && !force {
            self.counters.migrations_refused_worker_set += 1;
            return self.tell_main(refused(MoveRefused::NotInWorkerSet));
        }
        let slot = local.slot();
        let (now, now_ns) = (Instant::now(), monotonic_ns());
        let ns_of = |at: Instant| now_ns.saturating_sub(now.duration_since(at).as_nanos() as u64);
        let last_active_ns = self.idle.last_active(slot).map(ns_of);
        let half_closed_since_ns = self.half_closed.last_active(slot).map(ns_of);
        let conn = self.conns.remove(local).expect("resolved");
        // Out of this poller before anyone else may register it: one owner at a time.
        let _ = self.poller.delete(conn.socket());
        self.idle.remove(slot);
        self.half_closed.remove(slot);
        self.unfinished.remove(slot);
        self.buffered -= conn.counted_bytes() as u64;
        self.counters.connections_open -= 1;
        // SYNC POINT: Relaxed, as in `lower_open_gauges`: a count. The listener's gauge stays:
        // the connection is still open.
        self.open_gauge.fetch_sub(1, Ordering::Relaxed);
        let identity = self.listeners[conn.listener()].identity(conn.listener());
        let (socket, state, fence) =
            conn.into_state(flow, identity, last_active_ns, half_closed_since_ns);
        // A connection still waiting for an earlier fence pushed nothing here: that fence holds.
        // Otherwise its last record is before this lane's tail.
        let fence = fence.or_else(|| {
            let lane = self.ingress.lane();
            Some(Fence::new(
                self.id,
                lane.lane().head_watch(),
                lane.tail_position(),
            ))
        });
        self.counters.migrations_out += 1;
        self.tell_main(MainMsg::Departed(Box::new(Departure {
            socket,
            state,
            fence,
            from: self.id,
            to,
            token,
        })));
    }

    /// Adopts a connection another worker handed over, and tells the main thread the outcome.
    pub(super) fn on_arrive(&mut self, departure: Box<Departure>) {
        let Departure {
            socket,
            state,
            fence,
            from,
            to,
            token,
        } = *departure;
        let flow = state.flow;
        let outcome = self.adopt(socket, state, fence, from);
        self.tell_main(MainMsg::Moved(Moved {
            flow,
            from,
            to,
            token,
            outcome,
        }));
    }

    /// Adopts a connection that lived elsewhere (another worker of this process, or the process
    /// this one took over from, `from` naming its worker there): registers it, puts it on this
    /// worker's lists with the ages it had, and reads it once its fence has passed.
    pub(super) fn adopt(
        &mut self,
        socket: TcpStream,
        state: ConnState,
        fence: Option<Fence>,
        from: usize,
    ) -> Result<(), MoveRefused> {
        let flow = state.flow;
        let (peer, listener) = (state.peer, state.listener.index);
        let (now, now_ns) = (Instant::now(), monotonic_ns());
        let instant_of = |ns: u64| {
            now.checked_sub(Duration::from_nanos(now_ns.saturating_sub(ns)))
                .unwrap_or(now)
        };
        let last_active = state.last_active_ns.map(instant_of);
        let half_closed_since = state.half_closed_since_ns.map(instant_of);
        let unfinished_since = instant_of(state.unfinished_since_ns);
        let fence = fence.filter(|f| !f.passed());
        let fenced = fence.is_some();
        let mut conn = Conn::from_state(socket, state, fence);
        if self.stopping.is_some() {
            conn.pause();
        }
        // SYNC POINT: Relaxed, as in `lower_open_gauges`: a count, raised before `close` can
        // lower it.
        self.open_gauge.fetch_add(1, Ordering::Relaxed);
        self.counters.connections_open += 1;
        let Some(local) = self.conns.adopt(flow, conn) else {
            // Dropping the connection (inside `adopt`) closed its socket.
            self.counters.connections_open -= 1;
            self.lower_open_gauges(listener);
            log_limited!(
                self.error_log,
                Level::Warn,
                "worker {}: no free slot for the connection from {peer} moved here from worker {from}; closed it",
                self.id
            );
            CloseCause::TableFull.count(&mut self.counters);
            self.counters.migrations_failed += 1;
            let mut notice = self.notice(Kind::Disconnect, flow, peer, listener);
            notice.code = CloseCause::TableFull.reason() as u8;
            self.push_notice_after(notice, None);
            return Err(MoveRefused::TableFull);
        };
        let slot = local.slot();
        let conn = self.conns.get_mut(local).expect("just adopted");
        // SAFETY: as in `on_connect`: registered only while it lives in the table, and `close`
        // or a move deletes it from the poller before the socket is dropped or handed on.
        let added = unsafe {
            self.poller
                .add_with_mode(conn.socket(), conn.interest(slot), PollMode::Level)
        };
        if added.is_err() {
            self.counters.migrations_failed += 1;
            self.close(local, CloseCause::SocketError);
            return Err(MoveRefused::RegisterFailed);
        }
        conn.recount(&mut self.buffered);
        let (paused, reading) = (conn.is_paused(), conn.is_read());
        let unfinished = conn.holds_unfinished_packet();
        // Written (or closed, if it only waited for that) at the end of this turn.
        if conn.mark_dirty() {
            self.dirty.push(local);
        }
        if let Some(at) = last_active {
            self.idle.insert_at(slot, at);
        }
        if let Some(at) = half_closed_since {
            self.half_closed.insert_at(slot, at);
        }
        if reading && unfinished {
            self.unfinished.insert_at(slot, unfinished_since);
        }
        if fenced {
            self.counters.migration_fence_waits += 1;
            self.fenced.push(local);
        } else if paused && self.stopping.is_none() {
            self.paused.push(local);
        }
        self.counters.migrations_in += 1;
        Ok(())
    }

    /// Reads again the moved connections whose fence MCP has passed, and pushes the disconnect
    /// notices that waited for theirs; one atomic load per waiting connection or notice.
    pub(super) fn lift_fences(&mut self) {
        if !self.fenced_notices.is_empty() {
            let mut waiting = std::mem::take(&mut self.fenced_notices);
            waiting.retain(|(notice, fence)| {
                if !fence.passed() {
                    return true;
                }
                if !self.ingress.push_notice(notice) {
                    self.counters.dropped_disconnect_notices += 1;
                }
                false
            });
            self.fenced_notices = waiting;
        }
        if self.fenced.is_empty() {
            return;
        }
        let mut fenced = std::mem::take(&mut self.fenced);
        fenced.retain(|&local| {
            let Ok(conn) = self.conns.get_mut(local) else {
                return false;
            };
            if !conn.fence().is_some_and(|f| f.passed()) {
                return conn.fence().is_some();
            }
            conn.lift_fence();
            if conn.is_paused() {
                // Complete packets wait in its buffer: pushed (then read again) once they fit.
                if self.stopping.is_none() {
                    self.paused.push(local);
                }
            } else {
                if conn.is_read() && conn.holds_unfinished_packet() {
                    self.unfinished.touch(local.slot(), self.now);
                }
                if self.update_interest(local).is_err() {
                    self.close(local, CloseCause::SocketError);
                }
            }
            false
        });
        // `close` above may not add to `fenced`; keep what still waits.
        self.fenced.extend(fenced);
    }

    /// Pushes a disconnect notice, or keeps it until `fence` has passed (the connection's
    /// earlier packets may still be unread in another worker's lane).
    pub(super) fn push_notice_after(&mut self, notice: RecordHeader, fence: Option<Fence>) {
        match fence.filter(|f| !f.passed()) {
            Some(fence) => self.fenced_notices.push((notice, fence)),
            None => {
                if !self.ingress.push_notice(&notice) {
                    self.counters.dropped_disconnect_notices += 1;
                }
            }
        }
    }

    /// Pins or unpins `flow` (its public id) and tells the main thread whether it was here.
    pub(super) fn on_pin(&mut self, flow: FlowId, pinned: bool, token: u64) {
        let found = match self.conns.resolve(flow) {
            Ok(local) => {
                if let Ok(conn) = self.conns.get_mut(local) {
                    conn.set_pinned(pinned);
                }
                true
            }
            Err(_) => false,
        };
        self.tell_main(MainMsg::Pinned {
            flow,
            pinned,
            token,
            found,
        });
    }
}
