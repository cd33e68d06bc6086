//! The main loop's side of moving connections between workers (`docs/architecture.md`, "Moving a
//! connection"): starting a move (admin `migrate`, the rebalancer, MCP's custom record), passing
//! a departed connection on to its new worker through the MCP bridge (which holds the replies
//! that came meanwhile), and reporting each outcome to whoever asked; pinning.

use std::time::Instant;

use log::{Level, debug, info};

use super::Broker;
use crate::flow::FlowId;
use crate::load::HeavyFlows;
use crate::load::rebalance::WorkerView;
use crate::logging::log_limited;
use crate::message::{Departure, MoveRefused, Moved, WorkerMsg};

/// Who asked for a move or a pin, for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asker {
    /// An admin client, by its deferred command's token.
    Admin(u64),
    /// The rebalancer or MCP: nobody waits; the outcome is counted (and logged if it failed).
    Nobody,
}

impl Asker {
    fn token(self) -> u64 {
        match self {
            Asker::Admin(token) => token,
            Asker::Nobody => 0,
        }
    }
}

impl Broker {
    /// Begins moving `flow` to worker `to` (moved even if pinned when `force`). `Err` says why it
    /// cannot begin; otherwise the outcome comes later as `MainMsg::Moved`.
    pub(super) fn migrate(
        &mut self,
        flow: FlowId,
        to: usize,
        force: bool,
        asker: Asker,
    ) -> Result<(), String> {
        let refused = |control: &mut crate::stats::ControlCounters, why: String| {
            control.migrations_refused += 1;
            Err(why)
        };
        if self.stopping_requested() {
            return refused(&mut self.control, "ccsd is stopping".to_owned());
        }
        let workers = self.worker_mailboxes.len();
        if to >= workers {
            return refused(
                &mut self.control,
                format!("worker {to} does not exist (workers 0 to {})", workers - 1),
            );
        }
        match self.bridge.begin_move(flow, to, force, asker.token()) {
            Ok(from) if from == to => Ok(()),
            Ok(from) => {
                self.control.migrations_started += 1;
                debug!("migrating flow {flow} from worker {from} to worker {to}");
                Ok(())
            }
            Err(e) => refused(&mut self.control, e.reason().to_owned()),
        }
    }

    /// One rebalancing round (`forced`: admin `rebalance`) on the loads and heavy flows the
    /// workers last reported: starts the migrations the policy plans; returns how many started.
    pub(super) fn rebalance(&mut self, forced: bool) -> usize {
        let heavy: Vec<HeavyFlows> = self
            .stats
            .workers()
            .iter()
            .map(|w| w.map(|stat| stat.heavy).unwrap_or_default())
            .collect();
        let loads = self.stats.worker_loads().to_vec();
        let views: Vec<WorkerView<'_>> = heavy
            .iter()
            .zip(&loads)
            .map(|(heavy, &load)| WorkerView { load, heavy })
            .collect();
        let moves = self.rebalancer.plan(Instant::now(), &views, forced);
        if moves.is_empty() {
            return 0;
        }
        self.control.rebalance_rounds += 1;
        let mut started = 0;
        for step in &moves {
            if self
                .migrate(step.flow, step.to, false, Asker::Nobody)
                .is_ok()
            {
                started += 1;
                self.control.rebalance_migrations += 1;
            }
        }
        info!(
            "rebalance: started {started} of {} planned migrations (worker loads {loads:?})",
            moves.len()
        );
        started
    }

    /// Pins or unpins `flow` on whichever worker holds it. `Err` when the flow names no worker
    /// or is moving; otherwise the answer comes later as `MainMsg::Pinned`.
    pub(super) fn pin(&mut self, flow: FlowId, pinned: bool, asker: Asker) -> Result<(), String> {
        let owner = self.bridge.owner(flow).map_err(|e| e.reason().to_owned())?;
        let token = asker.token();
        self.bridge.send_control(
            owner,
            WorkerMsg::Pin {
                flow,
                pinned,
                token,
            },
        );
        Ok(())
    }

    /// A connection left its worker: on to its new one, through the bridge.
    pub(super) fn on_departed(&mut self, departure: Box<Departure>) {
        self.bridge.on_departed(departure);
    }

    /// The outcome of a move: the bridge's routes follow it, the counters count it, and an admin
    /// client that asked gets its answer.
    pub(super) fn on_moved(&mut self, moved: Moved) {
        let Moved {
            flow,
            from,
            to,
            token,
            outcome,
        } = moved;
        let text = match outcome {
            Ok(()) => {
                self.control.migrations_done += 1;
                format!("OK migrated {flow} from worker {from} to worker {to}\r\n")
            }
            Err(MoveRefused::AlreadyThere) => {
                self.control.migrations_refused += 1;
                format!("ERROR {}\r\n", MoveRefused::AlreadyThere.reason())
            }
            Err(refused) => {
                self.bridge.on_move_failed(&moved);
                self.control.migrations_failed += 1;
                if token == 0 {
                    log_limited!(
                        self.control_log,
                        Level::Info,
                        "migrating flow {flow} from worker {from} to worker {to} failed: {}",
                        refused.reason()
                    );
                }
                format!("ERROR {}\r\n", refused.reason())
            }
        };
        if token != 0 {
            self.with_admin(|admin, view| admin.answer(token, &text, view));
        }
    }

    /// A worker's answer to a pin request.
    pub(super) fn on_pinned(&mut self, flow: FlowId, pinned: bool, token: u64, found: bool) {
        let text = if found {
            self.control.pin_requests += 1;
            let verb = if pinned { "pinned" } else { "unpinned" };
            format!("OK {verb} {flow}\r\n")
        } else {
            "ERROR no such flow (closed)\r\n".to_owned()
        };
        if token != 0 {
            self.with_admin(|admin, view| admin.answer(token, &text, view));
        }
    }
}
