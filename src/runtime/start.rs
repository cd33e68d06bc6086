//! Starting a broker: ports first, then the instance lock and pid file, the lanes, the workers,
//! the main thread's actors and their poller keys; everything that can fail because of the
//! environment becomes a [`StartError`], and nothing is left running when it does.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::info;
use polling::{Event, PollMode, Poller};

use super::fd_limit;
use super::instance::InstanceLock;
use super::listener::{self, ListenOptions};
use super::pid_file::PidFile;
use super::signals::Signals;
use super::{Broker, StartError};
use crate::actors::acceptor::{Acceptor, Listening, WorkerLink};
use crate::actors::admin::{Admin, AdminBindError};
use crate::actors::mcp_bridge::{BridgeLink, McpBridge};
use crate::actors::mcp_watch::McpWatch;
use crate::actors::stats_reporter::StatsReporter;
use crate::actors::udp::{UdpActor, UdpListening};
use crate::actors::worker::{ListenerInfo, Worker, WorkerSetup};
use crate::flow::next_epoch;
use crate::framing;
use crate::lane::Lane;
use crate::logging::LogLimiter;
use crate::mailbox::{Mailbox, mailbox};
use crate::main_lane::MainLane;
use crate::memory::{MemoryBudget, MemoryShare};
use crate::message::MainMsg;
use crate::rate_limit::RateLimiter;
use crate::settings::{ByteSize, Proto, Settings, WhenDown};
use crate::stats::ControlCounters;

/// Capacity of the main thread's mailbox (`NotifyStat` from workers).
const MAIN_MAILBOX: usize = 1024;
/// Emptied reply buffers a worker may hold for the bridge to reuse.
const RECYCLED_BUFFERS: usize = 64;
/// The window of `listen[i].max_requests_per_second`.
const RATE_WINDOW: Duration = Duration::from_secs(1);

impl Broker {
    pub(super) fn start_bare(settings: &Settings) -> Result<Broker, StartError> {
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
            let options = ListenOptions {
                backlog: l.backlog,
                reuse_port: l.reuse_port,
                v6only: l.v6only,
            };
            let open = Arc::new(AtomicUsize::new(0));
            let rate = (l.max_requests_per_second > 0)
                .then(|| Arc::new(RateLimiter::new(l.max_requests_per_second, RATE_WINDOW)));
            let local = match l.proto {
                Proto::Tcp => {
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
                    let socket = listener::bind_udp(l.addr, options).map_err(bind_err)?;
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
            let admin = Admin::bind(&settings.admin).map_err(|e| match e {
                AdminBindError::Tcp(source) => bind_err(source),
                unix => StartError::AdminUnix(unix),
            })?;
            info!("admin on tcp://{}", admin.local_addr().map_err(bind_err)?);
            if let Some(path) = admin.unix_path() {
                info!("admin on unix://{}", path.display());
            }
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
        let mut lane_paths: Vec<PathBuf> = (0..settings.request_lane_count())
            .map(|w| settings.request_lane_path(w))
            .collect();
        lane_paths.push(settings.response_lane_path());
        Lane::check_space(&settings.queues.dir, &lane_paths, capacity)
            .map_err(StartError::Queue)?;
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
        let epoch_count = u64::from(epoch);
        let mut requests: Vec<_> = request_lanes
            .into_iter()
            .map(|lane| {
                lane.set_epoch(epoch_count);
                lane.into_producer()
            })
            .collect();
        let main_lane = MainLane::new(
            requests.pop().expect("the main thread's lane"),
            worker_count as u8,
        );

        // Before the workers: they read its verdict (`mcp.when_down`).
        let mcp_watch = McpWatch::attach(settings).map_err(StartError::Queue)?;
        let poller = Arc::new(Poller::new().map_err(StartError::Runtime)?);
        let (main_mailbox, inbox) = mailbox(MAIN_MAILBOX, Arc::clone(&poller));
        let memory = MemoryBudget::new(settings.limits.max_memory.bytes());
        let mut worker_links = Vec::with_capacity(worker_count);
        let mut bridge_links = Vec::with_capacity(worker_count);
        let mut workers = Vec::with_capacity(worker_count);
        let mut worker_mailboxes = Vec::with_capacity(worker_count);
        for (id, lane) in requests.into_iter().enumerate() {
            let links = WorkerLinks {
                main: &main_mailbox,
                mcp_watch: &mcp_watch,
                memory: &memory,
            };
            let (link, bridge_link, handle) =
                spawn_worker(id, epoch, lane, &infos, links, settings)
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
        )
        .with_memory_share(MemoryShare::new(&memory));
        let mut acceptor = Acceptor::new(
            listeners,
            worker_links,
            settings.broker.dispatch,
            settings.broker.max_connections,
            settings.mcp.overload_notices,
        )
        .with_memory_budget(Arc::clone(&memory));
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
        let stats = StatsReporter::new(&settings.stats, epoch, worker_count);
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
            memory,
            _instance: instance,
        })
    }
}

/// What every worker shares with the main thread.
struct WorkerLinks<'a> {
    main: &'a Mailbox<MainMsg>,
    mcp_watch: &'a McpWatch,
    memory: &'a Arc<MemoryBudget>,
}

/// Starts worker `id` on its own thread; returns the acceptor's and the bridge's links to it.
fn spawn_worker(
    id: usize,
    epoch: u16,
    lane: crate::lane::Producer,
    listeners: &[ListenerInfo],
    links: WorkerLinks<'_>,
    settings: &Settings,
) -> io::Result<(WorkerLink, BridgeLink, JoinHandle<()>)> {
    let WorkerLinks {
        main,
        mcp_watch,
        memory,
    } = links;
    let poller = Arc::new(Poller::new()?);
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
