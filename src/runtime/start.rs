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

use super::{Broker, StartError};
use crate::actors::acceptor::{Acceptor, Listening, WorkerLink};
use crate::actors::admin::Admin;
use crate::actors::mcp_bridge::{BridgeLink, McpBridge};
use crate::actors::mcp_watch::McpWatch;
use crate::actors::stats_reporter::StatsReporter;
use crate::actors::udp::{UdpActor, UdpListening};
use crate::actors::worker::{ListenerInfo, Worker, WorkerSetup};
use crate::fd_limit;
use crate::framing;
use crate::instance::InstanceLock;
use crate::lane::Lane;
use crate::listener::{self, ListenOptions};
use crate::logging::LogLimiter;
use crate::mailbox::{Mailbox, mailbox};
use crate::main_lane::MainLane;
use crate::message::MainMsg;
use crate::pid_file::PidFile;
use crate::rate_limit::RateLimiter;
use crate::settings::{ByteSize, Proto, Settings, WhenDown};
use crate::signals::Signals;
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
        let mut lane_paths: Vec<PathBuf> = (0..settings.request_lane_count())
            .map(|w| settings.request_lane_path(w))
            .collect();
        lane_paths.push(settings.response_lane_path());
        Lane::check_space(&settings.queues.dir, &lane_paths, capacity)
            .map_err(StartError::Queue)?;
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
            _instance: instance,
        })
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
