//! The runtime: builds the lanes, listeners and actors from the settings, starts the worker
//! threads, and runs the main thread's event loop.
//!
//! [`Broker::start`] does everything that can fail because of the environment (queue files,
//! ports, threads) and reports it as a [`StartError`]; [`Broker::run`] then serves forever.
//! [`Broker::builder`] does the same for a binary of one's own that adds custom main-thread
//! actors ([`crate::actor::MainActor`]) and framers.
//!
//! This file holds the broker and its main loop; `start.rs` builds it, `extension.rs` holds the
//! builder, custom actors and control requests (custom records, listen-port commands), and
//! `admin_requests.rs` the admin commands that reach beyond the admin actor.
//!
//! The main poller's keys are made and read in `keys.rs` (`MainKey`); every source in the main
//! poller is held in a `Watched` guard (`src/watched.rs`), which takes it out of the poller
//! before it is closed. Under `runtime/` also live what only the runtime uses: the
//! listening sockets (`listener.rs`), the signals, the single-instance lock, the pid file, the
//! open-file limit and what a reload may change (`reload.rs`).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{error, info};
use polling::{Events, Poller};

use crate::actor::ActorRequest;
use crate::actors::acceptor::Acceptor;
use crate::actors::admin::{Admin, AdminBindError};
use crate::actors::mcp_bridge::{HELD_RETRY, McpBridge, RECORDS_PER_TURN};
use crate::actors::mcp_watch::McpWatch;
use crate::actors::stats_reporter::StatsReporter;
use crate::actors::udp::UdpActor;
use crate::lane::LaneError;
use crate::load::rebalance::Rebalancer;
use crate::logging::LogLimiter;
use crate::mailbox::Mailbox;
use crate::main_lane::MainLane;
use crate::memory::MemoryBudget;
use crate::message::{MainMsg, PortCommand, WorkerMsg, WorkerSettings};
use crate::settings::Settings;
use crate::stats::ControlCounters;
use crate::stats::MainCounters;
use crate::watched::Watched;

/// While stopping, how often the main loop checks whether every worker has finished.
const STOP_POLL: Duration = Duration::from_millis(10);

mod admin_requests;
mod drain;
mod extension;
// Public only for `tests/broker/fd_limit.rs`, which checks the descriptor budget against the formula.
#[doc(hidden)]
pub mod fd_limit;
mod instance;
mod keys;
mod listener;
mod migrations;
mod pid_file;
mod reload;
mod sd_notify;
mod signals;
mod socket_activation;
mod start;
pub(crate) mod takeover;
mod upgrade;

use extension::ActorSlot;
pub use extension::BrokerBuilder;
use instance::{InstanceError, InstanceLock};
use keys::{MainKey, MainKeys};
use pid_file::{PidFile, PidFileError};
use sd_notify::Notifier;
use signals::Signals;
pub use socket_activation::ActivationError;
use takeover::channel::HandoverListener;
pub use takeover::take_over::TakeoverError;
use upgrade::Upgrade;
// Public only for `tests/broker/hot_restart_rollback.rs`: test-only faults of a hot restart.
#[doc(hidden)]
pub use takeover::fault::{FAULT_ENV, FAULT_EXIT_CODE, STEP_TIMEOUT_ENV};

/// Why ccsd could not start.
#[derive(Debug)]
pub enum StartError {
    /// Another ccsd uses the same queues, or the lock file is unusable.
    Instance(InstanceError),
    /// The pid file is in use by another ccsd or cannot be written.
    PidFile(PidFileError),
    /// A lane could not be created or attached.
    Queue(LaneError),
    /// A listener could not be bound.
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the kernel said.
        source: io::Error,
    },
    /// A listener's framing could not be built.
    Framing {
        /// Index in `listen`.
        listener: usize,
        /// Why.
        source: io::Error,
    },
    /// The admin Unix socket (`admin.unix`) could not be made.
    AdminUnix(AdminBindError),
    /// The sockets systemd passed (socket activation) cannot be used.
    SocketActivation(ActivationError),
    /// A step of the start failed on a system call: creating a poller or a thread, installing
    /// the signal handlers, or watching a socket in the main poller.
    System {
        /// The step, with what it acted on.
        step: StartStep,
        /// What the system said.
        source: io::Error,
    },
    /// `--takeover`: the running ccsd could not be taken over (it serves on).
    Takeover(TakeoverError),
    /// A custom actor's `start` failed.
    Actor {
        /// The actor's name.
        name: String,
        /// What it reported.
        source: io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Instance(e) => write!(f, "{e}"),
            StartError::PidFile(e) => write!(f, "{e}"),
            StartError::Queue(e) => write!(f, "queue: {e}"),
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Framing { listener, source } => {
                write!(f, "listen[{listener}].framing: {source}")
            }
            StartError::AdminUnix(e) => write!(f, "{e}"),
            StartError::SocketActivation(e) => write!(f, "socket activation: {e}"),
            StartError::Takeover(e) => write!(f, "takeover: {e}"),
            StartError::System { step, source } => write!(f, "cannot {step}: {source}"),
            StartError::Actor { name, source } => write!(f, "actor {name}: {source}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Instance(e) => Some(e),
            StartError::PidFile(e) => Some(e),
            StartError::Queue(e) => Some(e),
            StartError::AdminUnix(e) => Some(e),
            StartError::SocketActivation(e) => Some(e),
            StartError::Takeover(e) => Some(e),
            StartError::Bind { source, .. }
            | StartError::Framing { source, .. }
            | StartError::System { source, .. }
            | StartError::Actor { source, .. } => Some(source),
        }
    }
}

/// A start step that can fail on a system call, named with what it acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartStep {
    /// Creating the main thread's poller.
    MainPoller,
    /// Creating worker `i`'s poller.
    WorkerPoller(usize),
    /// Starting worker `i`'s thread.
    WorkerThread(usize),
    /// Watching listener `listener` (bound to `addr`) in the main poller.
    WatchListener {
        /// Index in `listen`.
        listener: usize,
        /// The bound address.
        addr: SocketAddr,
    },
    /// Watching the response lane's wake-up FIFO (next to the lane at this path).
    WatchResponseLane(PathBuf),
    /// Installing the handlers of SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2.
    SignalHandlers,
    /// Watching the socket the signal handlers write to.
    WatchSignals,
    /// Watching the admin listeners (`admin.addr`, and `admin.unix` when set).
    WatchAdmin(SocketAddr),
}

impl fmt::Display for StartStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartStep::MainPoller => write!(f, "create the main poller"),
            StartStep::WorkerPoller(i) => write!(f, "create worker {i}'s poller"),
            StartStep::WorkerThread(i) => write!(f, "start worker {i}'s thread"),
            StartStep::WatchListener { listener, addr } => {
                write!(f, "watch listen[{listener}] ({addr}) in the main poller")
            }
            StartStep::WatchResponseLane(path) => write!(
                f,
                "watch the wake-up FIFO of the response lane {} in the main poller",
                path.display()
            ),
            StartStep::SignalHandlers => write!(
                f,
                "install the signal handlers (SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2)"
            ),
            StartStep::WatchSignals => write!(f, "watch the signal socket in the main poller"),
            StartStep::WatchAdmin(addr) => {
                write!(f, "watch the admin port {addr} in the main poller")
            }
        }
    }
}

impl StartError {
    /// A [`StartError::System`] for `step`: `.map_err(StartError::at(step))`.
    pub(crate) fn at(step: StartStep) -> impl FnOnce(io::Error) -> StartError {
        move |source| StartError::System { step, source }
    }
}

/// A started ccsd: lanes attached, listeners bound, workers running.
pub struct Broker {
    poller: Arc<Poller>,
    keys: MainKeys,
    acceptor: Acceptor,
    udp: UdpActor,
    bridge: McpBridge,
    /// The bridge's wake-up FIFO (a duplicate descriptor) in the main poller.
    _response_fifo: Watched<OwnedFd>,
    main_lane: MainLane,
    mcp_watch: McpWatch,
    stats: StatsReporter,
    inbox: Receiver<MainMsg>,
    local_addrs: Vec<SocketAddr>,
    epoch: u16,
    idle_spin: Duration,
    shutdown_grace: Duration,
    stop_deadline: Instant,
    workers: Vec<JoinHandle<()>>,
    worker_mailboxes: Vec<Mailbox<WorkerMsg>>,
    signals: Signals,
    /// systemd's notification socket (does nothing when not run by systemd).
    notifier: Notifier,
    admin: Option<Admin>,
    actors: Vec<ActorSlot>,
    actor_requests: Vec<ActorRequest>,
    /// Listen-port commands a full worker mailbox could not take yet, per worker.
    pending_port_commands: Vec<VecDeque<PortCommand>>,
    control: ControlCounters,
    control_log: LogLimiter,
    /// A custom actor or the admin asked for a graceful stop.
    stop_requested: bool,
    /// A graceful stop has begun: nothing moves between workers any more.
    stop_begun: bool,
    /// Which connections to move between workers, and when (`broker.rebalance*`).
    rebalancer: Rebalancer,
    /// Declared before `instance`: removed before the instance lock is released.
    pid_file: Option<PidFile>,
    /// The settings in force (those read at start, with what reloads changed).
    settings: Settings,
    /// Where admin `reload` reads the settings: `None` when the binary did not say
    /// ([`BrokerBuilder::settings_file`]), `Some(None)` for the built-in defaults.
    reload_from: Option<Option<PathBuf>>,
    /// Settings a reload changed, per worker, until its mailbox takes them.
    pending_reconfigure: Vec<Option<WorkerSettings>>,
    /// `limits.max_memory`: the total the workers and the bridge publish into, and the ceiling.
    memory: Arc<MemoryBudget>,
    instance: InstanceLock,
    /// The socket a process taking over connects to (hot restart); `None` once handed over.
    handover: Option<Watched<HandoverListener>>,
    /// Workers frozen by a takeover in progress (thawed if it fails).
    frozen_workers: Vec<usize>,
    /// A takeover in progress froze the acceptor, the UDP actor and the bridge.
    takeover_frozen: bool,
    /// How to start a successor (SIGUSR2, admin `upgrade`), and the one running.
    upgrade: Upgrade,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("epoch", &self.epoch)
            .field("local_addrs", &self.local_addrs)
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Broker {
    /// Binds the listeners, creates or attaches the lanes and starts the workers.
    ///
    /// The epoch stored in the response lane is advanced, so that replies addressed to flows of
    /// an earlier start (still in the lane) are recognised as stale.
    ///
    /// # Errors
    /// Any [`StartError`]; nothing is left running when it fails.
    pub fn start(settings: &Settings) -> Result<Broker, StartError> {
        Broker::builder().start(settings)
    }

    /// A builder for a broker with custom actors and framers.
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    /// The bound address of each listener, in `Settings::listen` order (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// This start's epoch, carried in every flow id.
    pub fn epoch(&self) -> u16 {
        self.epoch
    }

    /// Starts a graceful stop (SIGTERM, SIGINT, admin `shutdown`): stop accepting, tell every
    /// worker. A second request closes everything at once.
    fn begin_stop(&mut self, stopping: &mut bool, stop_pending: &mut Vec<usize>) {
        let grace = if *stopping {
            Duration::ZERO
        } else {
            self.shutdown_grace
        };
        info!("stopping: closing listeners, {grace:?} for pending replies");
        if !*stopping {
            self.notifier
                .notify("STOPPING=1\nSTATUS=stopping: closing connections");
        }
        self.acceptor.stop();
        self.udp.stop();
        self.mark_draining();
        if !*stopping {
            self.each_actor(|actor, ctx| actor.on_stop(ctx));
        }
        *stopping = true;
        self.stop_begun = true;
        *stop_pending = (0..self.worker_mailboxes.len()).collect();
        self.stop_deadline = Instant::now() + grace;
    }

    /// Stops the workers of a broker that will not run (an actor failed to start).
    fn abandon(mut self) {
        let deadline = Instant::now();
        for mailbox in &self.worker_mailboxes {
            let _ = mailbox.try_send(WorkerMsg::Shutdown { deadline });
        }
        self.acceptor.stop();
        for worker in mem::take(&mut self.workers) {
            let _ = worker.join();
        }
    }

    /// Whether a graceful stop has begun.
    fn stopping_requested(&self) -> bool {
        self.stop_begun || self.stop_requested
    }

    /// The main thread's own counters, for the stats reporter.
    fn main_counters(&self) -> MainCounters {
        MainCounters {
            acceptor: self.acceptor.counters(),
            udp: self.udp.counters(),
            bridge: self.bridge.counters(),
            mcp_watch: self.mcp_watch.counters(),
            control: self.control,
            process: self.signals.counters(),
            admin: self.admin.as_ref().map(Admin::counters).unwrap_or_default(),
            main_lane: self.main_lane.counters(),
            response_lane_used_bytes: self.bridge.lane_used_bytes(),
            main_lane_used_bytes: self.main_lane.used_bytes(),
            lane_capacity_bytes: self.settings.queues.capacity.bytes(),
            response_lane_wait: self.bridge.response_lane_wait(),
            memory_held_bytes: self.memory.held(),
            max_memory_bytes: self.memory.max(),
        }
    }

    /// Runs the main thread's loop: accept, route MCP's replies, collect stats. Returns when a
    /// stop signal (SIGTERM, SIGINT) has been handled and every worker has closed its connections.
    ///
    /// # Errors
    /// The main poller failed, or a worker stopped on its own; the process should exit.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(NonZeroUsize::new(256).expect("nonzero"));
        let mut more_replies = false;
        let mut last_work = Instant::now();
        // Workers still to be told to stop (a full mailbox is retried next turn).
        let mut stop_pending: Vec<usize> = Vec::new();
        let mut stopping = false;
        self.notifier.notify(&format!(
            "READY=1\nSTATUS=serving: epoch {}, {} workers, {} listeners{}",
            self.epoch,
            self.workers.len(),
            self.local_addrs.len(),
            self.upgrade.ready_notice()
        ));
        loop {
            events.clear();
            let watchdog = self.notifier.watchdog_tick();
            let actor_timer = self.run_actor_timers();
            let spinning = last_work.elapsed() < self.idle_spin;
            let timeout = if more_replies || spinning || !stop_pending.is_empty() {
                Duration::ZERO
            } else if self.bridge.holding() {
                // Workers do not signal room for held replies: offer them again soon. The lane is
                // not announced as sleeping, so MCP does not write the FIFO meanwhile.
                HELD_RETRY
            } else if !self.bridge.prepare_sleep() {
                Duration::ZERO
            } else if stopping {
                // Workers do not wake this loop when their threads end: look again soon.
                self.stats.time_to_next().min(STOP_POLL)
            } else {
                let timeout = self.stats.time_to_next().min(self.mcp_watch.time_to_next());
                let admin_timer = self.admin.as_ref().and_then(Admin::time_to_next);
                let timeout = admin_timer.map_or(timeout, |t| timeout.min(t));
                let resume = self.acceptor.time_to_resume();
                let timeout = resume.map_or(timeout, |t| timeout.min(t));
                let timeout = actor_timer.map_or(timeout, |t| timeout.min(t));
                self.udp.next_expiry().map_or(timeout, |t| {
                    timeout.min(t.saturating_duration_since(Instant::now()))
                })
            };
            let timeout = if self.bridge.memory_recount_due() {
                timeout.min(HELD_RETRY)
            } else {
                timeout
            };
            let timeout = watchdog.map_or(timeout, |t| timeout.min(t));
            let timeout = self
                .upgrade
                .time_to_next()
                .map_or(timeout, |t| timeout.min(t));
            self.poller.wait(&mut events, Some(timeout))?;
            let mut fifo_fired = false;
            for ev in events.iter() {
                match self.keys.decode(ev.key) {
                    MainKey::ResponseLane => {
                        fifo_fired = true;
                        if let Err(e) = self.bridge.on_wake() {
                            error!("response lane wake-up FIFO failed: {e}");
                        }
                    }
                    MainKey::Signals => {
                        let received = self.signals.take();
                        self.signals.handle(received);
                        if received.hangup {
                            self.reload_on_hangup();
                        }
                        if received.user2 {
                            self.upgrade_on_signal();
                        }
                        if received.stop {
                            self.begin_stop(&mut stopping, &mut stop_pending);
                        }
                    }
                    MainKey::Handover => {
                        if self.on_takeover_request() {
                            self.upgrade_handed_over();
                            return Ok(());
                        }
                    }
                    MainKey::Admin(_) => {
                        self.with_admin(|admin, view| admin.on_event(&ev, view));
                    }
                    MainKey::Actor { actor, token } => {
                        self.on_actor_event(actor, token, ev.readable, ev.writable);
                    }
                    MainKey::Listener(i) if self.udp.owns(i) => {
                        let lane = &mut self.main_lane;
                        self.udp.on_ready(i, ev.readable, ev.writable, lane);
                    }
                    MainKey::Listener(i) => self.acceptor.on_readable(i, &mut self.main_lane),
                }
            }
            if !fifo_fired {
                self.bridge.cancel_sleep();
            }
            self.acceptor.resume_if_due();
            self.with_admin(|admin, view| admin.sweep(view));
            let udp = &mut self.udp;
            let replies = self
                .bridge
                .drain(&mut |header, payload| udp.on_reply(header, payload));
            self.udp.expire(Instant::now());
            more_replies = replies == RECORDS_PER_TURN;
            let customs = self.bridge.take_customs();
            if !customs.is_empty() {
                self.on_customs(customs);
            }
            self.send_port_commands();
            self.main_lane.publish();
            self.send_reconfigure();
            if mem::take(&mut self.stop_requested) {
                self.begin_stop(&mut stopping, &mut stop_pending);
            }
            if self.idle_spin > Duration::ZERO && (replies > 0 || !events.is_empty()) {
                last_work = Instant::now();
            }
            let deadline = self.stop_deadline;
            stop_pending.retain(|&w| {
                self.worker_mailboxes[w]
                    .try_send(WorkerMsg::Shutdown { deadline })
                    .is_err()
            });
            while let Ok(msg) = self.inbox.try_recv() {
                self.on_main_msg(msg);
            }
            self.mcp_watch.tick();
            self.check_upgrade();
            if self.stats.tick(&self.main_counters()) {
                self.notify_actors_of_stats();
                if !stopping {
                    self.rebalance(false);
                }
            }
            if stopping && stop_pending.is_empty() && self.workers.iter().all(|w| w.is_finished()) {
                // The workers' last counters may have arrived after the drain above.
                while let Ok(msg) = self.inbox.try_recv() {
                    self.on_main_msg(msg);
                }
                self.stats.report_now(&self.main_counters());
                info!("stopped: every connection closed");
                return Ok(());
            }
            if !stopping {
                if let Some(dead) = self.workers.iter().position(|w| w.is_finished()) {
                    return Err(io::Error::other(format!("worker {dead} stopped")));
                }
            }
        }
    }
}
