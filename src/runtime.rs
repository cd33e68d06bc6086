//! The runtime: builds the lanes, listeners and actors from the settings, starts the worker
//! threads, and runs the main thread's event loop.
//!
//! [`Broker::start`] does everything that can fail because of the environment (queue files,
//! ports, threads) and reports it as a [`StartError`]; [`Broker::run`] then serves forever.
//! [`Broker::builder`] does the same for a binary of one's own that adds custom main-thread
//! actors ([`crate::actor::MainActor`]) and framers.
//!
//! The main poller's keys: `0..L` the listeners (listener `i` under key `i`: the acceptor's when
//! TCP, the UDP actor's when UDP), `L` the response lane's FIFO, `L+1` the signal socket, `L+2..`
//! the admin port and its clients; custom actor `i` owns the keys from
//! `ACTOR_KEY_BASE + i * ACTOR_TOKENS`.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{error, info, warn};
use polling::{Event, Events, PollMode, Poller};

use crate::actor::{
    ACTOR_KEY_BASE, ACTOR_TOKENS, ActorContext, ActorRequest, MainActor, Registrations,
    StatsSnapshot,
};
use crate::actors::acceptor::{Acceptor, Listening, WorkerLink};
use crate::actors::admin::Admin;
use crate::actors::mcp_bridge::{BridgeLink, McpBridge, RECORDS_PER_TURN};
use crate::actors::mcp_watch::McpWatch;
use crate::actors::stats_reporter::{MainCounters, StatsReporter};
use crate::actors::udp::{UdpActor, UdpListening};
use crate::actors::worker::{ListenerInfo, Worker, WorkerSetup};
use crate::fd_limit;
use crate::framing::{self, FramerFactory};
use crate::instance::{InstanceError, InstanceLock};
use crate::lane::{Lane, LaneError};
use crate::listener::{self, ListenOptions};
use crate::logging::LogLimiter;
use crate::mailbox::{Mailbox, mailbox};
use crate::main_lane::MainLane;
use crate::message::{CustomMcp, Disconnect, MainMsg, PortCommand, WorkerMsg, WorkerSettings};
use crate::pid_file::{PidFile, PidFileError};
use crate::rate_limit::RateLimiter;
use crate::record::{CloseMode, CustomOp, Reason};
use crate::settings::{ByteSize, Proto, Settings, WhenDown};
use crate::signals::Signals;
use crate::stats::ControlCounters;

/// Capacity of the main thread's mailbox (`NotifyStat` from workers).
const MAIN_MAILBOX: usize = 1024;
/// While stopping, how often the main loop checks whether every worker has finished.
const STOP_POLL: Duration = Duration::from_millis(10);
/// Emptied reply buffers a worker may hold for the bridge to reuse.
const RECYCLED_BUFFERS: usize = 64;
/// Listen-port commands kept per worker while its mailbox is full.
const PENDING_PORT_COMMANDS: usize = 64;
/// The window of `listen[i].max_requests_per_second`.
const RATE_WINDOW: Duration = Duration::from_secs(1);

mod admin_requests;

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
    /// A poller or a thread could not be created.
    Runtime(io::Error),
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
            StartError::Runtime(e) => write!(f, "cannot start the runtime: {e}"),
            StartError::Actor { name, source } => write!(f, "actor {name}: {source}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A started ccsd: lanes attached, listeners bound, workers running.
pub struct Broker {
    poller: Arc<Poller>,
    acceptor: Acceptor,
    udp: UdpActor,
    bridge: McpBridge,
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
    admin: Option<Admin>,
    actors: Vec<ActorSlot>,
    actor_requests: Vec<ActorRequest>,
    /// Listen-port commands a full worker mailbox could not take yet, per worker.
    pending_port_commands: Vec<VecDeque<PortCommand>>,
    control: ControlCounters,
    control_log: LogLimiter,
    /// A custom actor or the admin asked for a graceful stop.
    stop_requested: bool,
    /// Declared before `_instance`: removed before the instance lock is released.
    _pid_file: Option<PidFile>,
    /// The settings in force (those read at start, with what reloads changed).
    settings: Settings,
    /// Where admin `reload` reads the settings: `None` when the binary did not say
    /// ([`BrokerBuilder::settings_file`]), `Some(None)` for the built-in defaults.
    reload_from: Option<Option<PathBuf>>,
    /// Settings a reload changed, per worker, until its mailbox takes them.
    pending_reconfigure: Vec<Option<WorkerSettings>>,
    _instance: InstanceLock,
}

/// A custom actor and the fds it registered.
struct ActorSlot {
    actor: Box<dyn MainActor>,
    registrations: Registrations,
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
        let mut broker = Broker::start_bare(settings)?;
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

    fn start_bare(settings: &Settings) -> Result<Broker, StartError> {
        let worker_count = settings.broker.worker_count();
        let max_connections = settings.broker.max_connections;
        let needed = fd_limit::fd_budget(max_connections, worker_count, settings.listen.len());
        fd_limit::raise_for(needed, max_connections);
        // Ports first: a start that fails on a busy port must not touch the lanes.
        // By listener index: TCP listeners go to the acceptor, UDP ones to the UDP actor.
        let mut listeners = Vec::with_capacity(settings.listen.len());
        let mut udp_listeners = Vec::with_capacity(settings.listen.len());
        let mut infos = Vec::with_capacity(settings.listen.len());
        let mut local_addrs = Vec::with_capacity(settings.listen.len());
        for (i, l) in settings.listen.iter().enumerate() {
            // Built for UDP listeners too (unused there): workers index listeners by position.
            let framer = framing::build(l).map_err(|source| StartError::Framing {
                listener: i,
                source,
            })?;
            let bind_err = |source| StartError::Bind {
                addr: l.addr,
                source,
            };
            let open = Arc::new(AtomicUsize::new(0));
            let rate = (l.max_requests_per_second > 0)
                .then(|| Arc::new(RateLimiter::new(l.max_requests_per_second, RATE_WINDOW)));
            let local = match l.proto {
                Proto::Tcp => {
                    let options = ListenOptions {
                        backlog: l.backlog,
                        reuse_port: l.reuse_port,
                    };
                    let listener = listener::bind(l.addr, options).map_err(bind_err)?;
                    let local = listener.local_addr().map_err(bind_err)?;
                    info!(
                        "listening on tcp://{local} (listener {i}, framing {})",
                        framer.name()
                    );
                    listeners.push(Some(Listening {
                        socket: listener,
                        port: local.port(),
                        open: Arc::clone(&open),
                        max_connections: l.max_connections,
                    }));
                    udp_listeners.push(None);
                    local
                }
                Proto::Udp => {
                    let socket = listener::bind_udp(l.addr, l.reuse_port).map_err(bind_err)?;
                    let udp = UdpListening::new(
                        socket,
                        l.packet_limit() as usize,
                        rate.clone(),
                        l.udp_send_queue.bytes() as usize,
                        l.udp_send_timeout,
                    )
                    .map_err(bind_err)?;
                    let local = udp.local_addr();
                    info!(
                        "listening on udp://{local} (listener {i}, max_packet {})",
                        ByteSize(l.packet_limit())
                    );
                    listeners.push(None);
                    udp_listeners.push(Some(udp));
                    local
                }
            };
            infos.push(ListenerInfo {
                framer,
                port: local.port(),
                rate,
                open,
            });
            local_addrs.push(local);
        }

        let admin = if settings.admin.enabled {
            let bind_err = |source| StartError::Bind {
                addr: settings.admin.addr,
                source,
            };
            let admin = Admin::bind(&settings.admin).map_err(bind_err)?;
            info!("admin on tcp://{}", admin.local_addr().map_err(bind_err)?);
            Some(admin)
        } else {
            None
        };

        // Before any lane is touched: a second ccsd on the same lanes would corrupt them.
        let instance =
            InstanceLock::acquire(&settings.lock_path()).map_err(StartError::Instance)?;
        let pid_file = match &settings.broker.pid_file {
            Some(path) => Some(PidFile::write(path).map_err(StartError::PidFile)?),
            None => None,
        };
        let capacity = settings.queues.capacity.bytes();
        let response = Lane::create_or_attach(&settings.response_lane_path(), capacity)
            .map_err(StartError::Queue)?;
        let epoch_count = response.epoch().wrapping_add(1);
        let epoch = epoch_count as u16;
        // One request lane per worker, then the main thread's (UDP, overload notices).
        let mut requests = Vec::with_capacity(worker_count + 1);
        for w in 0..settings.request_lane_count() {
            let lane = Lane::create_or_attach(&settings.request_lane_path(w), capacity)
                .map_err(StartError::Queue)?;
            lane.set_epoch(epoch_count);
            requests.push(lane.into_producer());
        }
        let main_lane = MainLane::new(
            requests.pop().expect("the main thread's lane"),
            worker_count as u8,
        );

        // Before the workers: they read its verdict (`mcp.when_down`).
        let mcp_watch = McpWatch::attach(settings).map_err(StartError::Queue)?;
        let poller = Arc::new(Poller::new().map_err(StartError::Runtime)?);
        let (main_mailbox, inbox) = mailbox(MAIN_MAILBOX, Arc::clone(&poller));
        let mut worker_links = Vec::with_capacity(worker_count);
        let mut bridge_links = Vec::with_capacity(worker_count);
        let mut workers = Vec::with_capacity(worker_count);
        let mut worker_mailboxes = Vec::with_capacity(worker_count);
        for (id, lane) in requests.into_iter().enumerate() {
            let (link, bridge_link, handle) =
                spawn_worker(id, epoch, lane, &infos, &main_mailbox, &mcp_watch, settings)
                    .map_err(StartError::Runtime)?;
            worker_mailboxes.push(link.mailbox.clone());
            worker_links.push(link);
            bridge_links.push(bridge_link);
            workers.push(handle);
        }

        // Publish the epoch and lane count only now, when the workers that own the request lanes
        // exist: an MCP that attaches sees a complete set.
        response.set_epoch(epoch_count);
        response.set_request_lanes(settings.request_lane_count() as u32);
        let bridge = McpBridge::new(
            response.into_consumer(),
            epoch,
            bridge_links,
            settings.mcp.reply_max_age,
        );
        let acceptor = Acceptor::new(
            listeners,
            worker_links,
            settings.broker.dispatch,
            settings.broker.max_connections,
            settings.mcp.overload_notices,
        );
        acceptor.register(&poller, 0).map_err(StartError::Runtime)?;
        let udp = UdpActor::new(
            Arc::clone(&poller),
            udp_listeners,
            epoch,
            main_lane.index(),
            (settings.mcp.when_down == WhenDown::Refuse).then(|| mcp_watch.down_flag()),
        );
        udp.register().map_err(StartError::Runtime)?;
        // SAFETY: the FIFO belongs to the bridge's lane, which lives in `Broker` next to the
        // poller for the rest of the process.
        unsafe {
            poller
                .add_with_mode(
                    bridge.wake_fd().as_raw_fd(),
                    Event::readable(acceptor.listener_count()),
                    PollMode::Level,
                )
                .map_err(StartError::Runtime)?;
        }
        let signals = Signals::install().map_err(StartError::Runtime)?;
        // SAFETY: the socket lives in `Broker` next to the poller for the rest of the process.
        unsafe {
            poller
                .add_with_mode(
                    signals.fd().as_raw_fd(),
                    Event::readable(acceptor.listener_count() + 1),
                    PollMode::Level,
                )
                .map_err(StartError::Runtime)?;
        }
        let mut admin = admin;
        if let Some(admin) = &mut admin {
            admin
                .register(&poller, acceptor.listener_count() + 2)
                .map_err(StartError::Runtime)?;
        }
        let stats = StatsReporter::new(
            settings.stats.file.clone(),
            settings.stats.interval,
            epoch,
            worker_count,
        );
        info!(
            "ccsd ready: epoch {epoch}, {worker_count} workers, queues {}",
            queue_glob(settings).display()
        );
        Ok(Broker {
            poller,
            acceptor,
            udp,
            bridge,
            main_lane,
            mcp_watch,
            stats,
            inbox,
            local_addrs,
            epoch,
            idle_spin: settings.broker.idle_spin,
            shutdown_grace: settings.broker.shutdown_grace,
            stop_deadline: Instant::now(),
            workers,
            worker_mailboxes,
            signals,
            admin,
            actors: Vec::new(),
            actor_requests: Vec::new(),
            pending_port_commands: vec![VecDeque::new(); worker_count],
            control: ControlCounters::default(),
            control_log: LogLimiter::default(),
            stop_requested: false,
            _pid_file: pid_file,
            settings: settings.clone(),
            reload_from: None,
            pending_reconfigure: vec![None; worker_count],
            _instance: instance,
        })
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
        self.acceptor.stop(&self.poller);
        self.udp.stop();
        if !*stopping {
            self.each_actor(|actor, ctx| actor.on_stop(ctx));
        }
        *stopping = true;
        *stop_pending = (0..self.worker_mailboxes.len()).collect();
        self.stop_deadline = Instant::now() + grace;
    }

    /// Runs `f` on custom actor `i` with a context, then carries out what it asked.
    fn with_actor<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut dyn MainActor, &mut ActorContext<'_>) -> R,
    ) -> R {
        let slot = &mut self.actors[i];
        let mut ctx = ActorContext {
            poller: &self.poller,
            key_base: ACTOR_KEY_BASE + i * ACTOR_TOKENS,
            registrations: &mut slot.registrations,
            requests: &mut self.actor_requests,
            local_addrs: &self.local_addrs,
        };
        let result = f(slot.actor.as_mut(), &mut ctx);
        self.carry_out_actor_requests();
        result
    }

    /// Runs `f` on every custom actor in turn.
    fn each_actor(&mut self, mut f: impl FnMut(&mut dyn MainActor, &mut ActorContext<'_>)) {
        for i in 0..self.actors.len() {
            self.with_actor(i, &mut f);
        }
    }

    fn carry_out_actor_requests(&mut self) {
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
    fn close_flow(&mut self, flow: crate::flow::FlowId) {
        let Some(mailbox) = self.worker_mailboxes.get(flow.worker()) else {
            return;
        };
        let msg = WorkerMsg::Disconnect(Disconnect {
            flows: vec![flow],
            reason: Reason::Local,
        });
        let _ = mailbox.try_send(msg);
    }

    /// Sends `command` to every worker, queueing it for the workers whose mailbox is full.
    fn port_command(&mut self, command: PortCommand) {
        for w in 0..self.worker_mailboxes.len() {
            let pending = &mut self.pending_port_commands[w];
            if pending.len() >= PENDING_PORT_COMMANDS {
                self.control.dropped_port_commands += 1;
                if let Some(n) = self.control_log.allow() {
                    warn!(
                        "worker {w} mailbox full: dropped a listen-port command ({n} similar suppressed)"
                    );
                }
                continue;
            }
            pending.push_back(command.clone());
        }
        self.send_port_commands();
    }

    /// Delivers the queued listen-port commands, in order, as far as each mailbox takes them.
    fn send_port_commands(&mut self) {
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
    fn on_customs(&mut self, customs: Vec<CustomMcp>) {
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
                Some(CustomOp::Application) if self.actors.is_empty() => {
                    self.control.custom_unhandled += 1;
                }
                Some(CustomOp::Application) => {}
                None => {
                    self.control.custom_unknown_op += 1;
                    if let Some(n) = self.control_log.allow() {
                        warn!(
                            "custom record with unknown code {} ({n} similar suppressed)",
                            msg.header.code
                        );
                    }
                }
            }
            self.each_actor(|actor, ctx| actor.on_custom(&msg, ctx));
        }
    }

    /// Hands readiness of an actor-owned key to its actor.
    fn on_actor_event(&mut self, ev: &Event) {
        let i = (ev.key - ACTOR_KEY_BASE) / ACTOR_TOKENS;
        let token = (ev.key - ACTOR_KEY_BASE) % ACTOR_TOKENS;
        if i < self.actors.len() {
            let (readable, writable) = (ev.readable, ev.writable);
            self.with_actor(i, |actor, ctx| {
                actor.on_ready(token, readable, writable, ctx)
            });
        }
    }

    /// Runs the timers of actors whose deadline has passed; returns the time to the next one.
    fn run_actor_timers(&mut self) -> Option<Duration> {
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
    fn notify_actors_of_stats(&mut self) {
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

    /// Stops the workers of a broker that will not run (an actor failed to start).
    fn abandon(mut self) {
        let deadline = Instant::now();
        for mailbox in &self.worker_mailboxes {
            let _ = mailbox.try_send(WorkerMsg::Shutdown { deadline });
        }
        self.acceptor.stop(&self.poller);
        for worker in mem::take(&mut self.workers) {
            let _ = worker.join();
        }
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
            main_lane: self.main_lane.counters(),
            response_lane_used_bytes: self.bridge.lane_used_bytes(),
            main_lane_used_bytes: self.main_lane.used_bytes(),
            response_lane_wait: self.bridge.response_lane_wait(),
        }
    }

    /// Runs the main thread's loop: accept, route MCP's replies, collect stats. Returns when a
    /// stop signal (SIGTERM, SIGINT) has been handled and every worker has closed its connections.
    ///
    /// # Errors
    /// The main poller failed, or a worker stopped on its own; the process should exit.
    pub fn run(mut self) -> io::Result<()> {
        let bridge_key = self.acceptor.listener_count();
        let signal_key = bridge_key + 1;
        let mut events = Events::with_capacity(NonZeroUsize::new(256).expect("nonzero"));
        let mut more_replies = false;
        let mut last_work = Instant::now();
        // Workers still to be told to stop (a full mailbox is retried next turn).
        let mut stop_pending: Vec<usize> = Vec::new();
        let mut stopping = false;
        loop {
            events.clear();
            let actor_timer = self.run_actor_timers();
            let spinning = last_work.elapsed() < self.idle_spin;
            let timeout = if more_replies
                || spinning
                || !stop_pending.is_empty()
                || !self.bridge.prepare_sleep()
            {
                Duration::ZERO
            } else if stopping {
                // Workers do not wake this loop when their threads end: look again soon.
                self.stats.time_to_next().min(STOP_POLL)
            } else {
                let timeout = self.stats.time_to_next().min(self.mcp_watch.time_to_next());
                let admin_timer = self.admin.as_ref().and_then(Admin::time_to_next);
                let timeout = admin_timer.map_or(timeout, |t| timeout.min(t));
                let timeout = actor_timer.map_or(timeout, |t| timeout.min(t));
                self.udp.next_expiry().map_or(timeout, |t| {
                    timeout.min(t.saturating_duration_since(Instant::now()))
                })
            };
            self.poller.wait(&mut events, Some(timeout))?;
            let mut fifo_fired = false;
            for ev in events.iter() {
                if ev.key == bridge_key {
                    fifo_fired = true;
                    if let Err(e) = self.bridge.on_wake() {
                        error!("response lane wake-up FIFO failed: {e}");
                    }
                } else if ev.key == signal_key {
                    let received = self.signals.take();
                    if received.hangup {
                        self.signals.reopen_log();
                    }
                    if received.stop {
                        self.begin_stop(&mut stopping, &mut stop_pending);
                    }
                } else if self.admin.as_ref().is_some_and(|a| a.owns(ev.key)) {
                    self.with_admin(|admin, poller, view| admin.on_event(poller, &ev, view));
                } else if ev.key >= ACTOR_KEY_BASE {
                    self.on_actor_event(&ev);
                } else if self.udp.owns(ev.key) {
                    let lane = &mut self.main_lane;
                    self.udp.on_ready(ev.key, ev.readable, ev.writable, lane);
                } else {
                    self.acceptor.on_readable(ev.key, &mut self.main_lane);
                }
            }
            if !fifo_fired {
                self.bridge.cancel_sleep();
            }
            self.with_admin(|admin, poller, view| admin.sweep(poller, view));
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
            if self.stats.tick(&self.main_counters()) {
                self.notify_actors_of_stats();
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

/// Starts worker `id` on its own thread; returns the acceptor's and the bridge's links to it.
fn spawn_worker(
    id: usize,
    epoch: u16,
    lane: crate::lane::Producer,
    listeners: &[ListenerInfo],
    main: &Mailbox<MainMsg>,
    mcp_watch: &McpWatch,
    settings: &Settings,
) -> io::Result<(WorkerLink, BridgeLink, JoinHandle<()>)> {
    let poller = Arc::new(Poller::new()?);
    let (mailbox, inbox) = mailbox(settings.broker.mailbox_capacity, Arc::clone(&poller));
    let (recycle_tx, recycle_rx) = crossbeam_channel::bounded(RECYCLED_BUFFERS);
    let open = Arc::new(AtomicUsize::new(0));
    let worker = Worker::new(WorkerSetup {
        id,
        epoch,
        poller,
        inbox,
        recycle: recycle_tx,
        main: main.clone(),
        lane,
        listeners: listeners.to_vec(),
        on_full: settings.queues.on_full,
        open_gauge: Arc::clone(&open),
        stats_interval: settings.stats.interval,
        idle_spin: settings.broker.idle_spin,
        limits: settings.limits.clone(),
        connect_events: settings.mcp.connect_events,
        mcp_down: (settings.mcp.when_down == WhenDown::Refuse).then(|| mcp_watch.down_flag()),
    });
    let handle = thread::Builder::new()
        .name(format!("ccsd-worker-{id}"))
        .spawn(move || worker.run())?;
    Ok((
        WorkerLink {
            mailbox: mailbox.clone(),
            open,
        },
        BridgeLink {
            mailbox,
            recycle: recycle_rx,
        },
        handle,
    ))
}

/// `{dir}/{name}.*`, for log lines.
fn queue_glob(settings: &Settings) -> PathBuf {
    settings
        .queues
        .dir
        .join(format!("{}.*", settings.queues.name))
}
