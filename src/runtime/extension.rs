//! Custom main-thread actors and control requests: [`BrokerBuilder`], calling actors with an
//! [`ActorContext`] and carrying out what they ask, MCP's custom records (`CustomMcp`), and the
//! listen-port commands (close, broadcast) both can send to every worker.

use std::fmt;
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{Level, info};

use super::keys::MainKeys;
use super::migrations::Asker;
use super::{Broker, StartError};
use crate::actor::{ActorContext, ActorRequest, MainActor, Registrations, StatsSnapshot};
use crate::flow::FlowId;
use crate::framing::{self, FramerFactory};
use crate::logging::log_limited;
use crate::message::{CustomMcp, PortCommand, WorkerMsg};
use crate::record::{CloseMode, CustomOp};
use crate::settings::Settings;

/// Listen-port commands kept per worker while its mailbox is full.
const PENDING_PORT_COMMANDS: usize = 64;

/// A custom actor and the fds it registered.
pub(super) struct ActorSlot {
    pub(super) actor: Box<dyn MainActor>,
    pub(super) registrations: Registrations,
}

/// Builds a [`Broker`] with custom main-thread actors and framers, for a binary of one's own.
///
/// ```no_run
/// use ccsd::runtime::Broker;
/// use ccsd::settings::Settings;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let builder = Broker::builder(); // .framer(..) and .actor(..) here
/// // Framers are registered by now, so the settings may name them.
/// let settings = Settings::load(None).map_err(|e| e.problems.join("; "))?;
/// builder.start(&settings)?.run()?;
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct BrokerBuilder {
    actors: Vec<Box<dyn MainActor>>,
    reload_from: Option<Option<PathBuf>>,
    takeover: bool,
}

impl fmt::Debug for BrokerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.actors.iter().map(|a| a.name()).collect();
        f.debug_struct("BrokerBuilder")
            .field("actors", &names)
            .finish()
    }
}

impl BrokerBuilder {
    /// Adds a custom actor to the main thread; actors are called in the order they were added.
    pub fn actor(mut self, actor: impl MainActor + 'static) -> BrokerBuilder {
        self.actors.push(Box::new(actor));
        self
    }

    /// Registers a framer under `name` for this process (see [`framing::register`]) at once, so
    /// that settings loaded after this call may name it in `[[listen]] framing`.
    pub fn framer(self, name: &str, factory: FramerFactory) -> BrokerBuilder {
        framing::register(name, factory);
        self
    }

    /// Takes over the running ccsd of the same queues instead of starting anew (hot restart,
    /// `ccsd --takeover`): its listening sockets, its lock and every live connection; see
    /// `docs/hot-restart.md`. SIGUSR2 and admin `upgrade` restart the running binary with its own
    /// arguments plus `--takeover`: a binary of one's own must accept that flag and pass it here.
    pub fn takeover(mut self, takeover: bool) -> BrokerBuilder {
        self.takeover = takeover;
        self
    }

    /// Says where the settings came from: [`Settings::load`] of `path` (`None`: the built-in
    /// defaults), so that the admin `reload` command can read them again. Without it `reload`
    /// answers an error.
    pub fn settings_file(mut self, path: Option<&Path>) -> BrokerBuilder {
        self.reload_from = Some(path.map(Path::to_path_buf));
        self
    }

    /// Starts the broker with these actors; see [`Broker::start`].
    ///
    /// # Errors
    /// Any [`StartError`], including an actor whose `start` failed.
    pub fn start(self, settings: &Settings) -> Result<Broker, StartError> {
        let mut broker = Broker::start_bare(settings, self.takeover)?;
        broker.reload_from = self.reload_from;
        for actor in self.actors {
            broker.actors.push(ActorSlot {
                actor,
                registrations: Registrations::default(),
            });
            let i = broker.actors.len() - 1;
            let result = broker.with_actor(i, |actor, ctx| actor.start(ctx));
            if let Err(source) = result {
                let name = broker.actors[i].actor.name().to_owned();
                broker.abandon();
                return Err(StartError::Actor { name, source });
            }
            info!("actor {} started", broker.actors[i].actor.name());
        }
        Ok(broker)
    }
}

impl Broker {
    /// Runs `f` on custom actor `i` with a context, then carries out what it asked.
    pub(super) fn with_actor<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut dyn MainActor, &mut ActorContext<'_>) -> R,
    ) -> R {
        let slot = &mut self.actors[i];
        let mut ctx = ActorContext {
            poller: &self.poller,
            key_base: MainKeys::actor_base(i),
            registrations: &mut slot.registrations,
            requests: &mut self.actor_requests,
            local_addrs: &self.local_addrs,
        };
        let result = f(slot.actor.as_mut(), &mut ctx);
        self.carry_out_actor_requests();
        result
    }

    /// Runs `f` on every custom actor in turn.
    pub(super) fn each_actor(
        &mut self,
        mut f: impl FnMut(&mut dyn MainActor, &mut ActorContext<'_>),
    ) {
        for i in 0..self.actors.len() {
            self.with_actor(i, &mut f);
        }
    }

    pub(super) fn carry_out_actor_requests(&mut self) {
        for request in mem::take(&mut self.actor_requests) {
            match request {
                ActorRequest::CloseFlow(flow) => self.close_flow(flow),
                ActorRequest::ClosePort(port, mode) => {
                    self.port_command(PortCommand::Close { port, mode });
                }
                ActorRequest::Broadcast(port, payload) => {
                    self.port_command(PortCommand::Broadcast { port, payload });
                }
                ActorRequest::Stop => self.stop_requested = true,
            }
        }
    }

    /// Closes one flow (admin `close`, a custom actor); a full mailbox: the flow stays open and
    /// the operator sees it.
    pub(super) fn close_flow(&mut self, flow: FlowId) {
        // Whichever worker holds it now, behind the replies routed to it.
        self.bridge.close_flow(flow);
    }

    /// Sends `command` to every worker, queueing it for the workers whose mailbox is full.
    pub(super) fn port_command(&mut self, command: PortCommand) {
        for w in 0..self.worker_mailboxes.len() {
            let pending = &mut self.pending_port_commands[w];
            if pending.len() >= PENDING_PORT_COMMANDS {
                self.control.dropped_port_commands += 1;
                log_limited!(
                    self.control_log,
                    Level::Warn,
                    "worker {w} mailbox full: dropped a listen-port command"
                );
                continue;
            }
            pending.push_back(command.clone());
        }
        self.send_port_commands();
    }

    /// Delivers the queued listen-port commands, in order, as far as each mailbox takes them.
    pub(super) fn send_port_commands(&mut self) {
        for (w, pending) in self.pending_port_commands.iter_mut().enumerate() {
            while let Some(command) = pending.pop_front() {
                if let Err(e) = self.worker_mailboxes[w].try_send(WorkerMsg::Port(command)) {
                    let WorkerMsg::Port(command) = e.into_inner() else {
                        unreachable!("a PortCommand was sent")
                    };
                    pending.push_front(command);
                    break;
                }
                self.control.port_commands += 1;
            }
        }
    }

    /// Acts on MCP's custom records and hands each to every custom actor.
    pub(super) fn on_customs(&mut self, customs: Vec<CustomMcp>) {
        for msg in customs {
            let port = msg.header.listen_port;
            match CustomOp::from_code(msg.header.code) {
                Some(CustomOp::ClosePort) => self.port_command(PortCommand::Close {
                    port,
                    mode: CloseMode::AfterFlush,
                }),
                Some(CustomOp::ClosePortNow) => self.port_command(PortCommand::Close {
                    port,
                    mode: CloseMode::Force,
                }),
                Some(CustomOp::Broadcast) => self.port_command(PortCommand::Broadcast {
                    port,
                    payload: Arc::from(msg.payload.as_slice()),
                }),
                Some(CustomOp::MigrateFlow) => {
                    let to = msg
                        .payload
                        .first_chunk::<4>()
                        .map(|b| u32::from_le_bytes(*b));
                    let outcome = match to {
                        Some(to) => {
                            self.migrate(msg.header.flow, to as usize, false, Asker::Nobody)
                        }
                        None => {
                            Err("the payload does not name a worker (a little-endian u32)".into())
                        }
                    };
                    if let Err(why) = outcome {
                        self.control.custom_refused += 1;
                        log_limited!(
                            self.control_log,
                            Level::Warn,
                            "MCP asked to migrate flow {}: {why}",
                            msg.header.flow
                        );
                    }
                }
                Some(op @ (CustomOp::PinFlow | CustomOp::UnpinFlow)) => {
                    let pinned = op == CustomOp::PinFlow;
                    if let Err(why) = self.pin(msg.header.flow, pinned, Asker::Nobody) {
                        self.control.custom_refused += 1;
                        log_limited!(
                            self.control_log,
                            Level::Warn,
                            "MCP asked to pin or unpin flow {}: {why}",
                            msg.header.flow
                        );
                    }
                }
                Some(CustomOp::Application) if self.actors.is_empty() => {
                    self.control.custom_unhandled += 1;
                }
                Some(CustomOp::Application) => {}
                None => {
                    self.control.custom_unknown_op += 1;
                    log_limited!(
                        self.control_log,
                        Level::Warn,
                        "custom record with unknown code {}",
                        msg.header.code
                    );
                }
            }
            self.each_actor(|actor, ctx| actor.on_custom(&msg, ctx));
        }
    }

    /// Hands readiness of custom actor `i`'s source `token` to the actor.
    pub(super) fn on_actor_event(
        &mut self,
        i: usize,
        token: usize,
        readable: bool,
        writable: bool,
    ) {
        if i < self.actors.len() {
            self.with_actor(i, |actor, ctx| {
                actor.on_ready(token, readable, writable, ctx)
            });
        }
    }

    /// Runs the timers of actors whose deadline has passed; returns the time to the next one.
    pub(super) fn run_actor_timers(&mut self) -> Option<Duration> {
        if self.actors.is_empty() {
            return None;
        }
        let now = Instant::now();
        for i in 0..self.actors.len() {
            if self.actors[i]
                .actor
                .next_deadline()
                .is_some_and(|d| d <= now)
            {
                self.with_actor(i, |actor, ctx| actor.on_timer(now, ctx));
            }
        }
        self.actors
            .iter()
            .filter_map(|a| a.actor.next_deadline())
            .min()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Gives every actor the counters just reported.
    pub(super) fn notify_actors_of_stats(&mut self) {
        if self.actors.is_empty() {
            return;
        }
        let main = self.main_counters();
        let workers = self.stats.workers().to_vec();
        let snapshot = StatsSnapshot {
            totals: self.stats.totals(),
            workers: &workers,
            main: &main,
            uptime: self.stats.uptime(),
        };
        self.each_actor(|actor, ctx| actor.on_stats(&snapshot, ctx));
    }
}
