//! Draining a node before it is stopped (admin `drain`): the admin's `health` answers
//! `DOWN draining` from then on, so the balancer's health check takes the node out of rotation,
//! while the node goes on serving as before: its listeners stay open, so a connection the
//! balancer sends before its check notices is accepted and served (closing a listening socket
//! would reset the connections still waiting in its backlog), and the open connections keep
//! being answered. Once the balancer has stopped sending (the acceptor's `accepted` stops
//! growing) and the connections have ended (`connections_open` 0) or the operator will wait no
//! longer, the graceful stop (SIGTERM) closes what is left.

use log::info;

use super::Broker;

impl Broker {
    /// Drains (admin `drain`): marks the node draining for `health`, logs it and tells systemd.
    pub(super) fn drain(&mut self) {
        self.mark_draining();
        info!(
            "draining: health answers DOWN draining; still accepting and serving until the stop (SIGTERM)"
        );
        self.notifier
            .notify("STATUS=draining: health answers DOWN, serving until the stop");
    }

    /// `health` answers `DOWN draining` from now on (a drain, or a graceful stop).
    pub(super) fn mark_draining(&mut self) {
        if let Some(admin) = &mut self.admin {
            admin.set_draining();
        }
    }
}
