//! A worker's control messages: everything in its mailbox that is not a connection or MCP's
//! replies — a listen-port command (close, broadcast), a close request, an admin `conns` sample,
//! a reload's new limits, and the graceful stop.

use std::time::{Duration, Instant};

use super::Worker;
use super::close::CloseCause;
use super::connection::Conn;
use super::write::Queued;
use crate::clock::monotonic_ns;
use crate::flow::FlowId;
use crate::message::{ConnSample, Disconnect, MainMsg, PortCommand, WorkerSettings};
use crate::record::CloseMode;

impl Worker {
    /// Closes or writes to every connection of one listen port.
    pub(super) fn on_port_command(&mut self, command: PortCommand) {
        let port = match &command {
            PortCommand::Close { port, .. } | PortCommand::Broadcast { port, .. } => *port,
        };
        let flows: Vec<FlowId> = self
            .conns
            .flows()
            .filter(|&flow| {
                self.conns
                    .peek(flow)
                    .is_some_and(|c| self.listeners[c.listener()].port == port)
            })
            .collect();
        for flow in flows {
            match &command {
                PortCommand::Close {
                    mode: CloseMode::Force,
                    ..
                } => self.close(flow, CloseCause::ByMcp),
                PortCommand::Close { .. } => {
                    let _ = self.close_after_flush(flow);
                }
                PortCommand::Broadcast { payload, .. } => {
                    if self.queue(flow, payload, None) == Queued::Yes {
                        self.counters.broadcast_writes += 1;
                    }
                }
            }
        }
    }

    /// Describes up to `max` connections to the main thread (admin `conns`).
    pub(super) fn on_sample_conns(&mut self, token: u64, max: usize) {
        let now_ns = monotonic_ns();
        let conns = self
            .conns
            .flows()
            .take(max)
            .filter_map(|flow| {
                let c = self.conns.peek(flow)?;
                let port = self.listeners[c.listener()].port;
                Some(c.info(self.conns.public(flow), port, now_ns))
            })
            .collect();
        let sample = ConnSample {
            token,
            worker: self.id,
            open: self.conns.len(),
            conns,
        };
        // A full main mailbox: the admin reports this worker as not answering.
        let _ = self.main.try_send(MainMsg::ConnSample(sample));
    }

    /// Applies settings changed by a reload: the limits judge every connection from now on (an
    /// idle timeout just turned on counts from now), NotifyStat follows the new interval.
    pub(super) fn on_reconfigure(&mut self, settings: &WorkerSettings) {
        self.limits.set(&settings.limits);
        let was_on = self.idle.is_on();
        self.idle.set_timeout(settings.limits.idle_timeout);
        if !was_on && self.idle.is_on() && self.stopping.is_none() {
            let watched: Vec<usize> = self
                .conns
                .flows()
                .filter(|&flow| self.conns.peek(flow).is_some_and(|c| !c.is_paused()))
                .map(FlowId::slot)
                .collect();
            for slot in watched {
                self.idle.touch(slot, self.now);
            }
        }
        let was_on = self.unfinished.is_on();
        self.unfinished.set_timeout(settings.limits.packet_timeout);
        if !was_on && self.unfinished.is_on() {
            let unfinished: Vec<usize> = self
                .conns
                .flows()
                .filter(|&flow| {
                    self.conns
                        .peek(flow)
                        .is_some_and(|c| !c.is_paused() && c.holds_unfinished_packet())
                })
                .map(FlowId::slot)
                .collect();
            for slot in unfinished {
                self.unfinished.touch(slot, self.now);
            }
        }
        self.stats_interval = settings.stats_interval;
        self.next_stats = self.next_stats.min(Instant::now() + self.stats_interval);
    }

    /// Stops reading every connection; from now on each turn closes the answered ones.
    pub(super) fn on_shutdown(&mut self, deadline: Instant) {
        self.stopping = Some(self.stopping.map_or(deadline, |d| d.min(deadline)));
        self.paused.clear();
        // Nothing is read any more: neither idleness nor an unfinished packet closes a connection
        // now, and an expired entry must not keep the loop from sleeping.
        self.idle.set_timeout(Duration::ZERO);
        self.unfinished.set_timeout(Duration::ZERO);
        let flows: Vec<FlowId> = self.conns.flows().collect();
        for flow in flows {
            if let Ok(conn) = self.conns.get_mut(flow) {
                conn.pause();
            }
            if self.update_interest(flow).is_err() {
                self.close(flow, CloseCause::SocketError);
            }
        }
    }

    /// While stopping: closes each connection whose requests are all answered and written, and
    /// every connection once the deadline has passed.
    pub(super) fn close_answered(&mut self) {
        let Some(deadline) = self.stopping else {
            return;
        };
        let now = Instant::now();
        let done: Vec<FlowId> = self
            .conns
            .flows()
            .filter(|&flow| now >= deadline || self.conns.peek(flow).is_some_and(Conn::answered))
            .collect();
        for flow in done {
            self.close(flow, CloseCause::Shutdown);
        }
    }

    /// Closes flows (public ids) on request (admin `close`, a custom actor); MCP is told reason
    /// local.
    pub(super) fn on_disconnect(&mut self, d: Disconnect) {
        for flow in d.flows {
            if let Ok(local) = self.conns.resolve(flow) {
                self.close(local, CloseCause::ByMcp);
            }
        }
    }
}
