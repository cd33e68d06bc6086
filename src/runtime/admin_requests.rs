//! The main loop's side of the admin commands that reach beyond the admin actor: `close`,
//! `shutdown`, `conns` (a sample from every worker, collected without waiting) and `reload` (the
//! settings file read again, what can change applied to the acceptor, the bridge, the admin, the
//! stats reporter and, by message, to every worker).

use std::collections::VecDeque;

use log::{info, warn};

use super::migrations::Asker;
use super::{Broker, fd_limit, reload};
use crate::actors::admin::{Admin, AdminAction, AdminView};
use crate::message::{MainMsg, WorkerMsg, WorkerSettings};
use crate::settings::Settings;

impl Broker {
    /// Runs `f` on the admin (if any) with a view of the current counters, then carries out the
    /// actions it returns, and those that follow from them, in order.
    pub(super) fn with_admin(
        &mut self,
        f: impl FnOnce(&mut Admin, &AdminView<'_>) -> Vec<AdminAction>,
    ) {
        let mut queue = VecDeque::from(self.admin_call(f));
        while let Some(action) = queue.pop_front() {
            queue.extend(self.on_admin_action(action));
        }
    }

    /// Runs `f` on the admin (if any) with a view of the current counters.
    fn admin_call(
        &mut self,
        f: impl FnOnce(&mut Admin, &AdminView<'_>) -> Vec<AdminAction>,
    ) -> Vec<AdminAction> {
        let view = AdminView {
            stats: &self.stats,
            main: self.main_counters(),
            workers: self.worker_mailboxes.len(),
        };
        match &mut self.admin {
            Some(admin) => f(admin, &view),
            None => Vec::new(),
        }
    }

    /// Carries out one admin action; returns the actions of the client's next commands, which an
    /// answer lets the admin read.
    fn on_admin_action(&mut self, action: AdminAction) -> Vec<AdminAction> {
        match action {
            AdminAction::Close(flow) => {
                self.close_flow(flow);
                Vec::new()
            }
            AdminAction::Shutdown => {
                self.stop_requested = true;
                // Seen by this turn or, if it came from the mailbox drain, at once by the next.
                let _ = self.poller.notify();
                Vec::new()
            }
            AdminAction::SampleConns { token, max } => {
                let mut next = Vec::new();
                for w in 0..self.worker_mailboxes.len() {
                    let asked =
                        self.worker_mailboxes[w].try_send(WorkerMsg::SampleConns { token, max });
                    if asked.is_err() {
                        next.extend(
                            self.admin_call(|admin, view| admin.conn_sample(token, w, None, view)),
                        );
                    }
                }
                next
            }
            AdminAction::Drain => {
                self.drain();
                Vec::new()
            }
            AdminAction::Reload { token } => {
                let text = self.reload();
                self.admin_call(|admin, view| admin.answer(token, &text, view))
            }
            AdminAction::Upgrade { token } => {
                self.upgrade_for_admin(token);
                Vec::new()
            }
            AdminAction::Migrate {
                token,
                flow,
                to,
                force,
            } => match self.migrate(flow, to, force, Asker::Admin(token)) {
                Ok(()) => Vec::new(),
                Err(why) => {
                    let text = format!("ERROR {why}\r\n");
                    self.admin_call(|admin, view| admin.answer(token, &text, view))
                }
            },
            AdminAction::Rebalance { token } => {
                let text = match self.rebalance(true) {
                    0 => "OK balanced: nothing to move\r\n".to_owned(),
                    n => format!("OK rebalance: {n} migrations started\r\n"),
                };
                self.admin_call(|admin, view| admin.answer(token, &text, view))
            }
            AdminAction::Pin {
                token,
                flow,
                pinned,
            } => match self.pin(flow, pinned, Asker::Admin(token)) {
                Ok(()) => Vec::new(),
                Err(why) => {
                    let text = format!("ERROR {why}\r\n");
                    self.admin_call(|admin, view| admin.answer(token, &text, view))
                }
            },
        }
    }

    /// Handles one message from a worker.
    pub(super) fn on_main_msg(&mut self, msg: MainMsg) {
        match msg {
            MainMsg::NotifyStat(stat) => {
                self.stats.on_notify_stat(stat);
                self.acceptor.set_worker_loads(self.stats.worker_loads());
            }
            MainMsg::ConnSample(sample) => {
                let (token, worker) = (sample.token, sample.worker);
                self.with_admin(|admin, view| admin.conn_sample(token, worker, Some(sample), view));
            }
            MainMsg::Departed(departure) => self.on_departed(departure),
            MainMsg::Moved(moved) => self.on_moved(moved),
            MainMsg::Pinned {
                flow,
                pinned,
                token,
                found,
            } => self.on_pinned(flow, pinned, token, found),
            MainMsg::GuestsClosed { worker, flows } => {
                self.bridge.on_guests_closed(worker, &flows);
            }
        }
    }

    /// SIGHUP (`systemctl reload`): the same reload as the admin command; its outcome is logged.
    pub(super) fn reload_on_hangup(&mut self) {
        info!("SIGHUP: reloading the settings");
        let answer = self.reload();
        info!("SIGHUP: {}", answer.lines().next().unwrap_or_default());
    }

    /// A settings reload (admin `reload`, SIGHUP), told to systemd: `RELOADING=1` before, then
    /// `READY=1` with the outcome as `STATUS=` (a failed reload leaves ccsd serving as before).
    fn reload(&mut self) -> String {
        self.notifier.reloading();
        let answer = self.reload_settings();
        let outcome = answer.lines().next().unwrap_or_default();
        self.notifier
            .notify(&format!("READY=1\nSTATUS=serving; last reload: {outcome}"));
        answer
    }

    /// Reads the settings again, applies what can change at run time and answers what changed
    /// and what needs a restart; invalid settings change nothing.
    fn reload_settings(&mut self) -> String {
        let Some(path) = self.reload_from.clone() else {
            return "ERROR reload: this binary did not say where its settings came from (BrokerBuilder::settings_file)\r\n".to_owned();
        };
        let origin = path
            .as_ref()
            .map_or("the built-in settings".to_owned(), |p| {
                p.display().to_string()
            });
        let file = match Settings::load(path.as_deref()) {
            Ok(file) => file,
            Err(e) => {
                let problems = e.problems.join("; ").replace(['\r', '\n'], " ");
                warn!("reload: {origin} is invalid, nothing applied: {problems}");
                return format!("ERROR reload: invalid settings, nothing applied: {problems}\r\n");
            }
        };
        let plan = reload::plan(&self.settings, log::max_level(), &file);
        self.apply(&plan.next);
        self.settings = plan.next;
        let mut out = format!(
            "OK reloaded {origin}: {} changed, {} need a restart\r\n",
            plan.changed.len(),
            plan.needs_restart.len()
        );
        for line in &plan.changed {
            info!("reload: {line}");
            out.push_str(&format!("changed {line}\r\n"));
        }
        for key in &plan.needs_restart {
            info!("reload: {key} changed, not applied: it needs a restart");
            out.push_str(&format!("restart {key} (not applied)\r\n"));
        }
        out.push_str("END\r\n");
        out
    }

    /// Hands reloaded settings to whoever uses them.
    fn apply(&mut self, next: &Settings) {
        let old = &self.settings;
        log::set_max_level(next.log.level);
        if next.broker.max_connections > old.broker.max_connections {
            let needed = fd_limit::fd_budget(
                next.broker.max_connections,
                self.worker_mailboxes.len(),
                next.listen.len(),
            );
            fd_limit::raise_for(needed, next.broker.max_connections);
        }
        let per_listener: Vec<usize> = next.listen.iter().map(|l| l.max_connections).collect();
        self.acceptor
            .set_max_connections(next.broker.max_connections, &per_listener);
        self.bridge.set_reply_max_age(next.mcp.reply_max_age);
        self.memory.set_max(next.limits.max_memory.bytes());
        if let Some(admin) = &mut self.admin {
            admin.set_timeouts(next.admin.idle_timeout, next.admin.login_timeout);
        }
        self.stats.set_interval(next.stats.interval);
        self.rebalancer.configure(next);
        if next.limits != old.limits || next.stats.interval != old.stats.interval {
            let worker_settings = WorkerSettings {
                limits: next.limits.clone(),
                stats_interval: next.stats.interval,
            };
            for pending in &mut self.pending_reconfigure {
                *pending = Some(worker_settings.clone());
            }
            self.send_reconfigure();
        }
    }

    /// Delivers reloaded settings to the workers whose mailbox takes them (the others are tried
    /// again next turn; a later reload replaces what still waits).
    pub(super) fn send_reconfigure(&mut self) {
        for (w, pending) in self.pending_reconfigure.iter_mut().enumerate() {
            let Some(settings) = pending.take() else {
                continue;
            };
            if let Err(e) = self.worker_mailboxes[w].try_send(WorkerMsg::Reconfigure(settings)) {
                let WorkerMsg::Reconfigure(settings) = e.into_inner() else {
                    unreachable!("a Reconfigure was sent")
                };
                *pending = Some(settings);
            }
        }
    }
}
