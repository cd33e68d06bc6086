//! Starting a broker, in named steps: raise the open-file limit, create the main poller, bind
//! the listeners and the admin port (each watched by the main poller as soon as it is bound; ports
//! first: a start that fails on a busy port must not touch the lanes), take the instance lock and
//! the pid file, attach the lanes, spawn the workers, then build the main thread's actors and
//! watch the response lane's FIFO and the signal socket. Everything that can fail because of the
//! environment becomes a [`StartError`] naming its step; every source in the poller is held in a
//! `Watched` guard, so a failed start leaves nothing registered.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::info;
use polling::{Event, Poller};

use super::fd_limit;
use super::instance::InstanceError;
use super::instance::InstanceLock;
use super::keys::MainKeys;
use super::listener::{self, ListenOptions};
use super::pid_file::PidFile;
use super::sd_notify::Notifier;
use super::signals::Signals;
use super::socket_activation::Inherited;
use super::takeover::channel::HandoverListener;
use super::takeover::hand_over::ADMIN_LISTENER;
use super::takeover::take_over::{self, HandedConn};
use super::takeover::wire::ListenerOffer;
use super::upgrade::Upgrade;
use super::{Broker, StartError, StartStep};
use crate::actors::acceptor::{Acceptor, Listening, WorkerLink};
use crate::actors::admin::{Admin, AdminBindError};
use crate::actors::mcp_bridge::{BridgeLink, McpBridge};
use crate::actors::mcp_watch::McpWatch;
use crate::actors::stats_reporter::StatsReporter;
use crate::actors::udp::{UdpActor, UdpListening};
use crate::actors::worker::{Adoption, Fence, ListenerInfo, ProxyRule, Worker, WorkerSetup};
use crate::flow::FlowId;
use crate::flow::next_epoch;
use crate::framing;
use crate::lane::{Lane, Producer};
use crate::load::WorkerSet;
use crate::load::rebalance::Rebalancer;
use crate::logging::LogLimiter;
use crate::mailbox::{Mailbox, mailbox};
use crate::main_lane::MainLane;
use crate::memory::{MemoryBudget, MemoryShare};
use crate::message::{MainMsg, WorkerMsg};
use crate::proxy_protocol::Accepted;
use crate::rate_limit::RateLimiter;
use crate::settings::{ByteSize, ListenSettings, Proto, ProxyProtocol, Settings, WhenDown};
use crate::stats::ControlCounters;
use crate::watched::Watched;

/// Capacity of the main thread's mailbox (`NotifyStat` from workers).
const MAIN_MAILBOX: usize = 1024;
/// Emptied reply buffers a worker may hold for the bridge to reuse.
const RECYCLED_BUFFERS: usize = 64;
/// The window of `listen[i].max_requests_per_second`.
const RATE_WINDOW: Duration = Duration::from_secs(1);

impl Broker {
    /// Runs the start steps in order (see the module header); the builder adds custom actors.
    pub(super) fn start_bare(settings: &Settings, takeover: bool) -> Result<Broker, StartError> {
        // A takeover receives the running ccsd's sockets and connections first: nothing here
        // binds what it had, and nothing touches a socket or a lane before it lets go.
        let mut handed = match takeover {
            true => Some(take_over::receive(settings).map_err(StartError::Takeover)?),
            false => None,
        };
        let worker_count = settings.broker.worker_count();
        let max_connections = settings.broker.max_connections;
        let needed = fd_limit::fd_budget(max_connections, worker_count, settings.listen.len());
        fd_limit::raise_for(needed, max_connections);
        let poller = Arc::new(Poller::new().map_err(StartError::at(StartStep::MainPoller))?);
        let keys = MainKeys::new(settings.listen.len());
        let (mut inherited, handed_admin) = match handed.as_mut() {
            Some(h) => {
                let (admin, listeners) = split_admin(std::mem::take(&mut h.listeners), settings);
                let inherited =
                    Inherited::from_handover(listeners).map_err(StartError::SocketActivation)?;
                (inherited, admin)
            }
            None => (
                Inherited::from_env().map_err(StartError::SocketActivation)?,
                None,
            ),
        };
        let ports = bind_listeners(settings, &poller, keys, &mut inherited)?;
        if handed.is_some() {
            for addr in inherited.close_untaken() {
                info!("hot restart: {addr} is in no [[listen]] table any more: closed");
            }
        } else {
            inherited
                .all_taken()
                .map_err(StartError::SocketActivation)?;
        }
        // A takeover binds the admin Unix socket once the old process let go of it.
        let admin_settings = match handed {
            Some(_) => {
                let mut deferred = settings.clone();
                deferred.admin.unix = None;
                deferred
            }
            None => settings.clone(),
        };
        let admin = bind_admin(&admin_settings, &poller, keys, handed_admin)?;
        // Before any lane is touched: a second ccsd on the same lanes would corrupt them. A
        // takeover holds the running ccsd's lock, handed over open.
        let instance = match handed.as_mut() {
            Some(h) => {
                let lock_err = |source| {
                    StartError::Instance(InstanceError::Io {
                        path: settings.lock_path(),
                        source,
                    })
                };
                let lock = h.lock.take().ok_or_else(|| {
                    lock_err(io::Error::other("the instance lock was not handed over"))
                })?;
                InstanceLock::adopt(lock)
            }
            None => InstanceLock::acquire(&settings.lock_path()).map_err(StartError::Instance)?,
        };
        // A takeover adopts the old pid file when it names the same file (locked all along).
        let handed_pid = handed.as_mut().and_then(|h| h.pid_file.take());
        let pid_file = match (&settings.broker.pid_file, handed_pid) {
            (Some(path), Some(old)) => match PidFile::adopt(old, path) {
                Some(adopted) => Some(adopted),
                None => Some(PidFile::write(path).map_err(StartError::PidFile)?),
            },
            (Some(path), None) => Some(PidFile::write(path).map_err(StartError::PidFile)?),
            (None, _) => None,
        };
        let lanes = attach_lanes(settings)?;
        let epoch = lanes.epoch;
        // Before the workers: they read its verdict (`mcp.when_down`).
        let mcp_watch = McpWatch::attach(settings).map_err(StartError::Queue)?;
        let (main_mailbox, inbox) = mailbox(MAIN_MAILBOX, Arc::clone(&poller));
        let memory = MemoryBudget::new(settings.limits.max_memory.bytes());
        let links = WorkerLinks {
            main: &main_mailbox,
            mcp_watch: &mcp_watch,
            memory: &memory,
        };
        let adoptions = match handed.as_mut() {
            Some(h) => distribute(settings, &lanes, &ports.infos, std::mem::take(&mut h.conns))?,
            None => Vec::new(),
        };
        let adopted_flows: Vec<(FlowId, usize)> = adoptions
            .iter()
            .enumerate()
            .flat_map(|(w, list)| list.iter().map(move |a| (a.state.flow, w)))
            .collect();
        let gated = handed.is_some();
        let workers = spawn_workers(
            settings,
            epoch,
            lanes.requests,
            &ports.infos,
            links,
            adoptions,
            gated,
        )?;

        // Publish the epoch and lane count only now, when the workers that own the request lanes
        // exist: an MCP that attaches sees a complete set.
        let response = lanes.response;
        response.set_epoch(u64::from(epoch));
        response.set_request_lanes(settings.request_lane_count() as u32);
        let response_path = response.path().to_path_buf();
        let bridge = McpBridge::new(
            response.into_consumer(),
            epoch,
            workers.bridge_links,
            settings.mcp.reply_max_age,
        )
        .with_memory_share(MemoryShare::new(&memory));
        let mut bridge = bridge;
        if let Some(h) = &handed {
            bridge.adopt_flows(adopted_flows.iter().copied());
            // Replies to datagrams the old process received go out of the same sockets here.
            let main_lane = lanes.main_lane.index();
            for (old_index, local) in &h.udp_listeners {
                if let Some(j) = ports.local_addrs.iter().position(|a| a == local) {
                    if settings.listen[j].proto == Proto::Udp {
                        let old = FlowId::new(h.epoch, h.old_main_lane, 0, *old_index as u32);
                        let new = FlowId::new(epoch, main_lane, 0, j as u32);
                        bridge.alias_udp_flow(old, new);
                    }
                }
            }
        }
        let acceptor = Acceptor::new(
            ports.tcp,
            workers.acceptor_links,
            settings.broker.dispatch,
            settings.broker.max_connections,
            settings.mcp.overload_notices,
        )
        .with_memory_budget(Arc::clone(&memory));
        let udp = UdpActor::new(
            ports.udp,
            epoch,
            lanes.main_lane.index(),
            (settings.mcp.when_down == WhenDown::Refuse).then(|| mcp_watch.down_flag()),
        );
        let response_fifo = watch_response_lane(&bridge, &poller, keys, response_path)?;
        let signals = Signals::install(&poller, keys.signals())?;
        let stats = StatsReporter::new(&settings.stats, epoch, worker_count);
        let mut broker = Broker {
            poller,
            keys,
            acceptor,
            udp,
            bridge,
            _response_fifo: response_fifo,
            main_lane: lanes.main_lane,
            mcp_watch,
            stats,
            inbox,
            local_addrs: ports.local_addrs,
            epoch,
            idle_spin: settings.broker.idle_spin,
            shutdown_grace: settings.broker.shutdown_grace,
            stop_deadline: Instant::now(),
            workers: workers.handles,
            worker_mailboxes: workers.mailboxes,
            signals,
            notifier: Notifier::from_env(),
            admin,
            actors: Vec::new(),
            actor_requests: Vec::new(),
            pending_port_commands: vec![VecDeque::new(); worker_count],
            control: ControlCounters::default(),
            control_log: LogLimiter::default(),
            stop_requested: false,
            stop_begun: false,
            rebalancer: Rebalancer::from_settings(settings),
            pid_file,
            settings: settings.clone(),
            reload_from: None,
            pending_reconfigure: vec![None; worker_count],
            memory,
            instance,
            handover: None,
            frozen_workers: Vec::new(),
            takeover_frozen: false,
            upgrade: Upgrade::record(),
        };
        if let Some(h) = handed {
            let adopted = adopted_flows.len();
            let committed = take_over::commit(&h.conn, h.pid, adopted);
            for gate in &workers.gates {
                let _ = gate.send(committed.is_ok());
            }
            committed.map_err(StartError::Takeover)?;
            if let (Some(admin), Some(path)) = (broker.admin.as_mut(), &settings.admin.unix) {
                match admin.open_unix(path) {
                    Ok(()) => info!("admin on unix://{}", path.display()),
                    Err(e) => log::warn!("hot restart: {e}; the admin port still serves"),
                }
            }
            broker.upgrade.took_over();
            // The old process let go: the lock and the pid file name this one now.
            if let Err(e) = broker.instance.claim() {
                log::warn!("hot restart: cannot write this pid into the lock file: {e}");
            }
            if let Some(Err(e)) = broker.pid_file.as_mut().map(PidFile::claim) {
                log::warn!("hot restart: {e}");
            }
            info!(
                "hot restart: took over from process {} (epoch {}) with {adopted} connections",
                h.pid, h.epoch
            );
        }
        broker.handover = watch_handover(settings, &broker.poller, keys);
        info!(
            "ccsd ready: epoch {epoch}, {worker_count} workers, queues {}",
            queue_glob(settings).display()
        );
        Ok(broker)
    }
}

/// Binds the handover socket a later `ccsd --takeover` connects to and has the main poller
/// watch it; without it (a warning says why) this process serves on but cannot be taken over.
pub(in crate::runtime) fn watch_handover(
    settings: &Settings,
    poller: &Arc<Poller>,
    keys: MainKeys,
) -> Option<Watched<HandoverListener>> {
    let path = settings.handover_path();
    let bound = HandoverListener::bind(&path).map_err(|e| e.to_string());
    let watched = bound.and_then(|listener| {
        Watched::new(poller, listener, Event::readable(keys.handover())).map_err(|e| e.to_string())
    });
    match watched {
        Ok(watched) => Some(watched),
        Err(e) => {
            log::warn!(
                "no hot restart for this process: handover socket {}: {e}",
                path.display()
            );
            None
        }
    }
}

/// The bound listeners, by listener index (`Settings::listen`).
struct Ports {
    /// The acceptor's: `None` where a listener is UDP.
    tcp: Vec<Option<Listening>>,
    /// The UDP actor's: `None` where a listener is TCP.
    udp: Vec<Option<UdpListening>>,
    /// What the workers know of every listener.
    infos: Vec<ListenerInfo>,
    local_addrs: Vec<SocketAddr>,
}

/// Binds every listener and has the main poller watch it under its key.
fn bind_listeners(
    settings: &Settings,
    poller: &Arc<Poller>,
    keys: MainKeys,
    inherited: &mut Inherited,
) -> Result<Ports, StartError> {
    let n = settings.listen.len();
    let mut ports = Ports {
        tcp: Vec::with_capacity(n),
        udp: Vec::with_capacity(n),
        infos: Vec::with_capacity(n),
        local_addrs: Vec::with_capacity(n),
    };
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
        let options = ListenOptions {
            backlog: l.backlog,
            reuse_port: l.reuse_port,
            v6only: l.v6only,
        };
        let open = Arc::new(AtomicUsize::new(0));
        let rate = (l.max_requests_per_second > 0)
            .then(|| Arc::new(RateLimiter::new(l.max_requests_per_second, RATE_WINDOW)));
        let interest = Event::readable(keys.listener(i));
        let local = match l.proto {
            Proto::Tcp => {
                let received = inherited
                    .take_tcp(i, l)
                    .map_err(StartError::SocketActivation)?
                    .map(|socket| (socket, inherited.origin()));
                let (socket, local, origin) = watch_listener(
                    poller,
                    (i, interest),
                    received,
                    || listener::bind(l.addr, options),
                    TcpListener::local_addr,
                    bind_err,
                )?;
                info!(
                    "listening on tcp://{local} (listener {i}, framing {}{}{origin})",
                    framer.name(),
                    proxy_description(l)
                );
                ports.tcp.push(Some(Listening {
                    socket,
                    port: local.port(),
                    open: Arc::clone(&open),
                    max_connections: l.max_connections,
                    workers: WorkerSet::for_listener(l, settings.broker.worker_count()),
                }));
                ports.udp.push(None);
                local
            }
            Proto::Udp => {
                let received = inherited
                    .take_udp(i, l)
                    .map_err(StartError::SocketActivation)?
                    .map(|socket| (socket, inherited.origin()));
                let (socket, local, origin) = watch_listener(
                    poller,
                    (i, interest),
                    received,
                    || listener::bind_udp(l.addr, options),
                    UdpSocket::local_addr,
                    bind_err,
                )?;
                let udp = UdpListening::new(
                    socket,
                    l.packet_limit() as usize,
                    rate.clone(),
                    l.udp_send_queue.bytes() as usize,
                    l.udp_send_timeout,
                )
                .map_err(bind_err)?;
                info!(
                    "listening on udp://{local} (listener {i}, max_packet {}{origin})",
                    ByteSize(l.packet_limit())
                );
                ports.tcp.push(None);
                ports.udp.push(Some(udp));
                local
            }
        };
        ports.infos.push(ListenerInfo {
            framer,
            local,
            port: local.port(),
            rate,
            open,
            proxy: ProxyRule::of(l),
            workers: WorkerSet::for_listener(l, settings.broker.worker_count()),
        });
        ports.local_addrs.push(local);
    }
    Ok(ports)
}

/// The listening socket systemd or the process this one took over from passed (`received`, with
/// how the log names where it came from), or one `bind` opens now, watched by the main poller as
/// listener `i` with `interest`; with its local address and where it came from.
fn watch_listener<S: AsFd>(
    poller: &Arc<Poller>,
    (i, interest): (usize, Event),
    received: Option<(S, &'static str)>,
    bind: impl FnOnce() -> io::Result<S>,
    local_addr: impl Fn(&S) -> io::Result<SocketAddr>,
    bind_err: impl Fn(io::Error) -> StartError,
) -> Result<(Watched<S>, SocketAddr, &'static str), StartError> {
    let (socket, origin) = match received {
        Some(received) => received,
        None => (bind().map_err(&bind_err)?, ""),
    };
    let local = local_addr(&socket).map_err(&bind_err)?;
    let watch = StartError::at(StartStep::WatchListener {
        listener: i,
        addr: local,
    });
    let socket = Watched::new(poller, socket, interest).map_err(watch)?;
    Ok((socket, local, origin))
}

/// How the start's log line names a TCP listener's PROXY protocol setting ("" when off).
fn proxy_description(l: &ListenSettings) -> String {
    match l.proxy_protocol {
        ProxyProtocol::Off => String::new(),
        ProxyProtocol::On(accepted) => format!(
            ", PROXY protocol {} from {}",
            match accepted {
                Accepted::V1 => "v1",
                Accepted::V2 => "v2",
                Accepted::Any => "v1 or v2",
            },
            l.proxy_from
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Binds the admin port (and the admin Unix socket), watched by the main poller, if enabled.
fn bind_admin(
    settings: &Settings,
    poller: &Arc<Poller>,
    keys: MainKeys,
    handed: Option<TcpListener>,
) -> Result<Option<Admin>, StartError> {
    if !settings.admin.enabled {
        return Ok(None);
    }
    let addr = settings.admin.addr;
    let bind_err = |source| StartError::Bind { addr, source };
    let admin =
        Admin::bind(&settings.admin, poller, keys.admin(), handed).map_err(|e| match e {
            AdminBindError::Tcp(source) => bind_err(source),
            AdminBindError::Watch(source) => StartError::System {
                step: StartStep::WatchAdmin(addr),
                source,
            },
            unix => StartError::AdminUnix(unix),
        })?;
    info!("admin on tcp://{}", admin.local_addr().map_err(bind_err)?);
    if let Some(path) = admin.unix_path() {
        info!("admin on unix://{}", path.display());
    }
    Ok(Some(admin))
}

/// The lanes, attached (created if missing), with this start's epoch.
struct Lanes {
    epoch: u16,
    /// The workers' request lanes, in worker order.
    requests: Vec<Producer>,
    /// The main thread's request lane.
    main_lane: MainLane,
    /// The response lane; its epoch is published once the workers run.
    response: Lane,
}

/// Checks the room for every lane, then creates or attaches them and picks the next epoch.
fn attach_lanes(settings: &Settings) -> Result<Lanes, StartError> {
    let capacity = settings.queues.capacity.bytes();
    let mut lane_paths: Vec<PathBuf> = (0..settings.request_lane_count())
        .map(|w| settings.request_lane_path(w))
        .collect();
    lane_paths.push(settings.response_lane_path());
    Lane::check_space(&settings.queues.dir, &lane_paths, capacity).map_err(StartError::Queue)?;
    let response = Lane::create_or_attach(&settings.response_lane_path(), capacity)
        .map_err(StartError::Queue)?;
    // One request lane per worker, then the main thread's (UDP, overload notices).
    let request_lanes = (0..settings.request_lane_count())
        .map(|w| Lane::create_or_attach(&settings.request_lane_path(w), capacity))
        .collect::<Result<Vec<_>, _>>()
        .map_err(StartError::Queue)?;
    // Never an epoch of an earlier start on these lane files (any of them may have been
    // recreated alone): see `flow`.
    let previous = request_lanes
        .iter()
        .map(Lane::epoch)
        .fold(response.epoch(), u64::max);
    let epoch = next_epoch(previous, response.path()).map_err(StartError::Queue)?;
    let mut requests: Vec<_> = request_lanes
        .into_iter()
        .map(|lane| {
            lane.set_epoch(u64::from(epoch));
            lane.into_producer()
        })
        .collect();
    let main_lane = MainLane::new(
        requests.pop().expect("the main thread's lane"),
        settings.broker.worker_count() as u8,
    );
    Ok(Lanes {
        epoch,
        requests,
        main_lane,
        response,
    })
}

/// The running workers and the links to them.
struct Workers {
    handles: Vec<JoinHandle<()>>,
    mailboxes: Vec<Mailbox<WorkerMsg>>,
    acceptor_links: Vec<WorkerLink>,
    bridge_links: Vec<BridgeLink>,
    /// After a takeover: what opens each worker once the old process has let go.
    gates: Vec<crossbeam_channel::Sender<bool>>,
}

/// What a worker adopts, and waits for, before it serves (a takeover).
struct WorkerStart {
    adopt: Vec<Adoption>,
    gate: Option<crossbeam_channel::Receiver<bool>>,
}

/// Starts one worker per request lane.
fn spawn_workers(
    settings: &Settings,
    epoch: u16,
    lanes: Vec<Producer>,
    listeners: &[ListenerInfo],
    links: WorkerLinks<'_>,
    mut adoptions: Vec<Vec<Adoption>>,
    gated: bool,
) -> Result<Workers, StartError> {
    let n = lanes.len();
    let mut workers = Workers {
        handles: Vec::with_capacity(n),
        mailboxes: Vec::with_capacity(n),
        acceptor_links: Vec::with_capacity(n),
        bridge_links: Vec::with_capacity(n),
        gates: Vec::new(),
    };
    adoptions.resize_with(n, Vec::new);
    for ((id, lane), adopt) in lanes.into_iter().enumerate().zip(adoptions) {
        let gate = gated.then(|| {
            let (open, gate) = crossbeam_channel::bounded(1);
            workers.gates.push(open);
            gate
        });
        let start = WorkerStart { adopt, gate };
        let (link, bridge_link, handle) =
            spawn_worker(id, epoch, lane, listeners, &links, settings, start)?;
        workers.mailboxes.push(link.mailbox.clone());
        workers.acceptor_links.push(link);
        workers.bridge_links.push(bridge_link);
        workers.handles.push(handle);
    }
    Ok(workers)
}

/// Has the main poller watch the response lane's wake-up FIFO, through a duplicate of the
/// bridge's descriptor (the same FIFO): the guard owns what it registers.
fn watch_response_lane(
    bridge: &McpBridge,
    poller: &Arc<Poller>,
    keys: MainKeys,
    lane: PathBuf,
) -> Result<Watched<OwnedFd>, StartError> {
    let step = StartStep::WatchResponseLane(lane);
    let fifo = bridge
        .wake_fd()
        .try_clone_to_owned()
        .map_err(StartError::at(step.clone()))?;
    Watched::new(poller, fifo, Event::readable(keys.response_lane())).map_err(StartError::at(step))
}

/// What every worker shares with the main thread.
#[derive(Clone, Copy)]
struct WorkerLinks<'a> {
    main: &'a Mailbox<MainMsg>,
    mcp_watch: &'a McpWatch,
    memory: &'a Arc<MemoryBudget>,
}

/// Starts worker `id` on its own thread; returns the acceptor's and the bridge's links to it.
fn spawn_worker(
    id: usize,
    epoch: u16,
    lane: Producer,
    listeners: &[ListenerInfo],
    links: &WorkerLinks<'_>,
    settings: &Settings,
    start: WorkerStart,
) -> Result<(WorkerLink, BridgeLink, JoinHandle<()>), StartError> {
    let WorkerLinks {
        main,
        mcp_watch,
        memory,
    } = *links;
    let poller = Arc::new(Poller::new().map_err(StartError::at(StartStep::WorkerPoller(id)))?);
    let (mailbox, inbox) = mailbox(settings.broker.mailbox_capacity, Arc::clone(&poller));
    let (recycle_tx, recycle_rx) = crossbeam_channel::bounded(RECYCLED_BUFFERS);
    let open = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let worker = Worker::new(WorkerSetup {
        id,
        epoch,
        poller,
        inbox,
        recycle: recycle_tx,
        in_flight: Arc::clone(&in_flight),
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
        memory: Arc::clone(memory),
        adoptions: start.adopt,
        gate: start.gate,
    });
    let handle = thread::Builder::new()
        .name(format!("ccsd-worker-{id}"))
        .spawn(move || worker.run())
        .map_err(StartError::at(StartStep::WorkerThread(id)))?;
    Ok((
        WorkerLink {
            mailbox: mailbox.clone(),
            open,
        },
        BridgeLink {
            mailbox,
            recycle: recycle_rx,
            in_flight,
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

/// Splits the sockets a takeover handed over into the admin port's listener (if this process's
/// `admin.addr` is that socket's address, or port 0 on the same address) and the listeners'.
fn split_admin(
    handed: Vec<(ListenerOffer, OwnedFd)>,
    settings: &Settings,
) -> (Option<TcpListener>, Vec<OwnedFd>) {
    let mut admin = None;
    let mut listeners = Vec::new();
    for (offer, fd) in handed {
        if offer.name.as_deref() == Some(ADMIN_LISTENER) {
            let wanted = settings.admin.addr;
            let same =
                wanted == offer.local || (wanted.port() == 0 && wanted.ip() == offer.local.ip());
            if settings.admin.enabled && same {
                let tcp = TcpListener::from(fd);
                if tcp.set_nonblocking(true).is_ok() {
                    admin = Some(tcp);
                }
            }
            // Otherwise dropped: the old process's admin port closes with it.
        } else {
            listeners.push(fd);
        }
    }
    (admin, listeners)
}

/// Which worker adopts each handed-over connection: the one of the lane it pushed into last,
/// when this process has it (the lane continues where it was, so no fence); otherwise one in
/// turn, waiting until MCP has read that lane up to where it is now. A connection of a listener
/// this process does not have (by address and framing) is closed.
fn distribute(
    settings: &Settings,
    lanes: &Lanes,
    listeners: &[ListenerInfo],
    conns: Vec<HandedConn>,
) -> Result<Vec<Vec<Adoption>>, StartError> {
    let workers = lanes.requests.len();
    let mut out: Vec<Vec<Adoption>> = (0..workers).map(|_| Vec::new()).collect();
    let mut watched: Vec<Option<Fence>> = Vec::new();
    let mut next = 0;
    let mut dropped = 0;
    for HandedConn {
        socket,
        mut state,
        lane,
    } in conns
    {
        let listener = listeners.iter().position(|info| {
            info.local == state.listener.local && info.framer.name() == state.listener.framing
        });
        let Some(listener) = listener else {
            dropped += 1;
            continue;
        };
        state.listener.index = listener;
        let (worker, fence) = if lane < workers {
            (lane, None)
        } else {
            let w = next % workers;
            next += 1;
            if watched.len() <= lane {
                watched.resize(lane + 1, None);
            }
            if watched[lane].is_none() {
                let path = settings.request_lane_path(lane);
                let seen = Lane::attach(&path, Some(settings.queues.capacity.bytes()))
                    .map_err(StartError::Queue)?;
                watched[lane] = Some(Fence::new(lane, seen.head_watch(), seen.tail_position()));
            }
            (w, watched[lane].clone())
        };
        out[worker].push(Adoption {
            socket,
            state,
            fence,
            from: lane,
        });
    }
    if dropped > 0 {
        log::warn!(
            "hot restart: closed {dropped} connections of listeners this configuration does not have"
        );
    }
    Ok(out)
}
