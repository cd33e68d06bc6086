//! Acceptor: accepts TCP connections on the main thread and gives each to a worker.
//!
//! Listeners sit in the main poller in level-triggered mode. On readiness the acceptor accepts
//! until the kernel says "would block" (or a per-turn bound, for fairness with the MCP bridge),
//! picks a worker by the configured policy and sends it a `Connect`. The worker registers and owns
//! the socket from then on; the acceptor never touches it again.
//!
//! Connection limits are checked right after `accept`: a connection that would exceed
//! `broker.max_connections` (the sum of the workers' open gauges) or its listener's
//! `max_connections` (the listener's open gauge, lowered by the worker on close) is closed at once.
//!
//! Out of file descriptors (EMFILE, ENFILE), `accept` fails while the listener stays readable: the
//! acceptor then takes every listener out of the poller for a short, growing pause
//! ([`AcceptPause`]) instead of spinning, and puts them back when it is over
//! ([`Acceptor::resume_if_due`]); clients wait in the kernel's backlog meanwhile.
//!
//! With `mcp.overload_notices`, every connection closed at once (a limit, or a full worker
//! mailbox) is reported to MCP: a DISCONNECT record with reason overload, flow 0 (the connection
//! never had a flow), its peer and listen port, written into the main thread's request lane.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use log::Level;

use crate::actors::accept_pause::{AcceptPause, is_out_of_descriptors};
use crate::clock::monotonic_ns;
use crate::flow::FlowId;
use crate::load::WorkerSet;
use crate::logging::{LogLimiter, log_limited};
use crate::mailbox::Mailbox;
use crate::main_lane::MainLane;
use crate::memory::MemoryBudget;
use crate::message::{Connect, WorkerMsg};
use crate::record::{Kind, Reason, RecordHeader, Transport};
use crate::settings::Dispatch;
use crate::stats::AcceptorCounters;
use crate::watched::Watched;

/// Connections accepted per listener per readiness, before the main loop looks elsewhere.
const ACCEPTS_PER_TURN: usize = 256;

/// The acceptor's view of one worker.
#[derive(Debug, Clone)]
pub(crate) struct WorkerLink {
    /// The worker's mailbox.
    pub mailbox: Mailbox<WorkerMsg>,
    /// The worker's open connections (raised here on hand-over, lowered by the worker on close).
    pub open: Arc<AtomicUsize>,
}

/// One listening socket as the acceptor sees it.
#[derive(Debug)]
pub(crate) struct Listening {
    /// The bound, non-blocking socket, watched by the main poller (readable).
    pub(crate) socket: Watched<TcpListener>,
    /// Its local port (for overload notices).
    pub port: u16,
    /// Open connections accepted here (raised here on hand-over, lowered by the worker on close;
    /// shared with the workers through `ListenerInfo::open`).
    pub open: Arc<AtomicUsize>,
    /// Most connections open at once on this listener; 0 means no limit of its own.
    pub max_connections: usize,
    /// The workers its connections may be given to (`listen[i].workers`).
    pub workers: WorkerSet,
}

/// A connection limit that was reached (for the warning).
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// `listen[i].max_connections`, and its value.
    Listener(usize, usize),
    /// `broker.max_connections`.
    Broker(usize),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Listener(i, max) => write!(f, "listen[{i}].max_connections ({max}) reached"),
            Limit::Broker(max) => write!(f, "broker.max_connections ({max}) reached"),
        }
    }
}

/// Accepts connections and spreads them over the workers.
#[derive(Debug)]
pub(crate) struct Acceptor {
    /// By listener index (`Settings::listen`); `None` for UDP listeners.
    listeners: Vec<Option<Listening>>,
    workers: Vec<WorkerLink>,
    dispatch: Dispatch,
    max_connections: usize,
    overload_notices: bool,
    next_worker: usize,
    /// Each worker's measured load (load units per second), for `least_loaded`.
    loads: Vec<u64>,
    counters: AcceptorCounters,
    /// Accepting paused for lack of file descriptors.
    pause: AcceptPause,
    error_log: LogLimiter,
    refused_log: LogLimiter,
    limit_log: LogLimiter,
    pause_log: LogLimiter,
    /// `limits.max_memory`: while ccsd holds more, new connections are refused.
    memory: Option<Arc<MemoryBudget>>,
}

impl Acceptor {
    /// An acceptor for `listeners` (indexed like `Settings::listen`, `None` where a listener is
    /// not TCP) that keeps at most `max_connections` connections open over all of them, and
    /// tells MCP about each connection it refuses when `overload_notices` is set.
    pub(crate) fn new(
        listeners: Vec<Option<Listening>>,
        workers: Vec<WorkerLink>,
        dispatch: Dispatch,
        max_connections: usize,
        overload_notices: bool,
    ) -> Acceptor {
        Acceptor {
            listeners,
            workers,
            dispatch,
            max_connections,
            overload_notices,
            next_worker: 0,
            loads: Vec::new(),
            counters: AcceptorCounters::default(),
            pause: AcceptPause::default(),
            error_log: LogLimiter::default(),
            refused_log: LogLimiter::default(),
            limit_log: LogLimiter::default(),
            pause_log: LogLimiter::default(),
            memory: None,
        }
    }

    /// Refuses new connections while `budget` is over its ceiling (`limits.max_memory`).
    pub(crate) fn with_memory_budget(mut self, budget: Arc<MemoryBudget>) -> Acceptor {
        self.memory = Some(budget);
        self
    }

    /// Applies new connection limits (a reload): `broker.max_connections` and each listener's
    /// `max_connections`, by listener index. Open connections are never closed for it; new ones
    /// are refused until the count is below the limit.
    pub(crate) fn set_max_connections(&mut self, max_connections: usize, per_listener: &[usize]) {
        self.max_connections = max_connections;
        for (l, &max) in self.listeners.iter_mut().zip(per_listener) {
            if let Some(l) = l {
                l.max_connections = max;
            }
        }
    }

    /// Takes in each worker's measured load (`least_loaded`), by worker index.
    pub(crate) fn set_worker_loads(&mut self, loads: &[u64]) {
        self.loads.clear();
        self.loads.extend_from_slice(loads);
    }

    /// Puts every listener (back) into the poller; stops at the first the poller refuses.
    fn resume_listeners(&mut self) -> io::Result<()> {
        for l in self.listeners.iter_mut().flatten() {
            l.socket.resume()?;
        }
        Ok(())
    }

    /// Stops accepting while a new process takes over (hot restart): the listeners leave the
    /// poller but stay open, so new clients wait in their backlog; [`thaw`](Acceptor::thaw) if
    /// the takeover fails.
    pub(crate) fn freeze(&mut self) {
        for l in self.listeners.iter_mut().flatten() {
            let _ = l.socket.pause();
        }
    }

    /// Accepts again after [`freeze`](Acceptor::freeze).
    pub(crate) fn thaw(&mut self) {
        if let Err(e) = self.resume_listeners() {
            log::error!("cannot watch the listeners again after a failed takeover: {e}");
        }
    }

    /// Each TCP listener's socket with its listener index, to hand to a process taking over.
    pub(crate) fn listener_fds(&self) -> Vec<(usize, BorrowedFd<'_>)> {
        self.listeners
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((i, l.as_ref()?.socket.source().as_fd())))
            .collect()
    }

    /// Stops accepting: takes the listeners out of the poller and closes them, so new clients are
    /// refused by the kernel.
    pub(crate) fn stop(&mut self) {
        // Each leaves the poller before it is closed (`Watched`).
        self.listeners.clear();
        self.pause.end();
    }

    /// Out of descriptors (`cause` says where it showed): takes every listener out of the poller
    /// until a pause, twice as long as the last one, is over; counted and logged.
    fn pause_accepting(&mut self, cause: fmt::Arguments<'_>) {
        let pause = self.pause.start(Instant::now());
        self.counters.accept_pauses += 1;
        for l in self.listeners.iter_mut().flatten() {
            // Stays out of the poller even if the poller complained.
            let _ = l.socket.pause();
        }
        log_limited!(
            self.pause_log,
            Level::Warn,
            "out of file descriptors ({cause}) with {open} connections open: accepting paused for {pause:?}, new clients wait in the backlog; raise the open-file limit (RLIMIT_NOFILE, e.g. LimitNOFILE=) or lower broker.max_connections",
            open = self.open_connections()
        );
    }

    /// Connections open over every worker now, for a log line or a descriptor budget.
    pub(crate) fn open_connections(&self) -> usize {
        // SYNC POINT: Relaxed, as the gauges' updates in `on_readable`: a figure, not a guard.
        self.workers
            .iter()
            .map(|w| w.open.load(Ordering::Relaxed))
            .sum()
    }

    /// Puts the listeners back into the poller once a pause is over.
    pub(crate) fn resume_if_due(&mut self) {
        if !self.pause.is_paused() || !self.pause.is_over(Instant::now()) {
            return;
        }
        self.pause.end();
        if let Err(e) = self.resume_listeners() {
            // Some listeners may be in already: take them out and try again after a pause.
            self.pause_accepting(format_args!(
                "cannot put the listeners back into the poller: {e}"
            ));
        }
    }

    /// Time until a pause is over, if accepting is paused (the main loop wakes up then).
    pub(crate) fn time_to_resume(&self) -> Option<Duration> {
        self.pause.time_left(Instant::now())
    }

    /// What the acceptor counted so far.
    pub(crate) fn counters(&self) -> AcceptorCounters {
        self.counters
    }

    /// Accepts what is pending on listener `i` and hands each connection to a worker; overload
    /// notices go into `lane`. Readiness of a listener that [`stop`](Acceptor::stop) closed in
    /// the same turn is ignored.
    pub(crate) fn on_readable(&mut self, i: usize, lane: &mut MainLane) {
        if self.pause.is_paused() {
            // Readiness reported in the same turn as the pause began.
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listening) = self.listeners.get(i).and_then(Option::as_ref) else {
                return;
            };
            let (stream, peer) = match listening.socket.source().accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_descriptors(&e) => {
                    return self.pause_accepting(format_args!("accept on listener {i}: {e}"));
                }
                Err(e) => {
                    self.counters.accept_errors += 1;
                    log_limited!(
                        self.error_log,
                        Level::Warn,
                        "accept failed on listener {i}: {e}"
                    );
                    return;
                }
            };
            self.counters.accepted += 1;
            self.pause.accepted();
            let port = listening.port;
            if let Some(limit) = self.limit_reached(listening, i) {
                // Dropping the stream closes it: the client sees end of stream (or a reset).
                drop(stream);
                self.counters.refused_max_connections += 1;
                log_limited!(
                    self.limit_log,
                    Level::Warn,
                    "refusing a connection: {limit}"
                );
                self.notify_overload(peer, port, lane);
                continue;
            }
            if let Some(budget) = self.memory.as_ref().filter(|b| b.over()) {
                drop(stream);
                self.counters.refused_max_memory += 1;
                log_limited!(
                    self.limit_log,
                    Level::Warn,
                    "refusing a connection: ccsd holds {} bytes, over limits.max_memory ({})",
                    budget.held(),
                    budget.max()
                );
                self.notify_overload(peer, port, lane);
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                self.counters.accept_errors += 1;
                continue;
            }
            let allowed = listening.workers;
            let w = self.pick_worker(stream.as_raw_fd(), allowed);
            let link = &self.workers[w];
            let Some(listening) = self.listeners[i].as_ref() else {
                return;
            };
            let listener_open = &listening.open;
            // SYNC POINT: the open gauges are Relaxed everywhere: they are counts for a limit
            // decision and no memory is read through them (the connection itself travels through
            // the mailbox, which synchronizes). Each change is one read-modify-write, so none is
            // lost; a read may miss a close a worker is doing at that moment, which refuses at
            // most that many connections early.
            link.open.fetch_add(1, Ordering::Relaxed);
            listener_open.fetch_add(1, Ordering::Relaxed);
            let msg = WorkerMsg::Connect(Connect {
                stream,
                peer,
                listener: i,
            });
            if let Err(e) = link.mailbox.try_send(msg) {
                // Dropping the message closes the socket: the client sees a reset, not a hang.
                link.open.fetch_sub(1, Ordering::Relaxed);
                listener_open.fetch_sub(1, Ordering::Relaxed);
                self.counters.refused_mailbox_full += 1;
                let why = match e {
                    TrySendError::Full(_) => "mailbox full",
                    TrySendError::Disconnected(_) => "worker stopped",
                };
                log_limited!(
                    self.refused_log,
                    Level::Warn,
                    "refusing a connection: worker {w} {why}"
                );
                self.notify_overload(peer, port, lane);
            }
        }
    }

    /// Tells MCP (with `mcp.overload_notices`) that the connection from `peer` to `port` was
    /// closed at once: a DISCONNECT, reason overload, flow 0.
    fn notify_overload(&mut self, peer: SocketAddr, port: u16, lane: &mut MainLane) {
        if !self.overload_notices {
            return;
        }
        let mut notice = RecordHeader::new(Kind::Disconnect, FlowId(0));
        notice.code = Reason::Overload as u8;
        notice.peer = peer;
        notice.listen_port = port;
        notice.transport = Transport::Tcp;
        notice.timestamp_ns = monotonic_ns();
        if lane.try_push(&[&notice.encode()]) {
            self.counters.overload_notices += 1;
        } else {
            self.counters.dropped_overload_notices += 1;
        }
    }

    /// Which limit a new connection on listener `i` would exceed, if any.
    fn limit_reached(&self, listener: &Listening, i: usize) -> Option<Limit> {
        let max = listener.max_connections;
        // SYNC POINT: Relaxed, as the gauges' updates in `on_readable`.
        if max != 0 && listener.open.load(Ordering::Relaxed) >= max {
            return Some(Limit::Listener(i, max));
        }
        let open: usize = self
            .workers
            .iter()
            .map(|w| w.open.load(Ordering::Relaxed))
            .sum();
        (open >= self.max_connections).then_some(Limit::Broker(self.max_connections))
    }

    /// The worker for a new connection with descriptor `fd`, among `allowed` (its listener's
    /// workers; all of them if the set names none that runs).
    fn pick_worker(&mut self, fd: i32, allowed: WorkerSet) -> usize {
        let n = self.workers.len();
        // Validation keeps every listener's set non-empty and within the workers.
        let set = if allowed.len() == 0 {
            WorkerSet::all(n)
        } else {
            allowed
        };
        // SYNC POINT: Relaxed, as the gauges' updates in `on_readable`.
        let open = |w: usize| self.workers[w].open.load(Ordering::Relaxed);
        let picked = match self.dispatch {
            Dispatch::FdModulo => set.nth(fd.unsigned_abs() as usize % set.len()),
            Dispatch::RoundRobin => {
                let next = set.next_after(self.next_worker);
                self.next_worker = next.unwrap_or(0);
                next
            }
            Dispatch::LeastConnections => set.iter().filter(|&w| w < n).min_by_key(|&w| open(w)),
            Dispatch::LeastLoaded => set
                .iter()
                .filter(|&w| w < n)
                .min_by_key(|&w| (self.loads.get(w).copied().unwrap_or(0), open(w))),
        };
        picked.filter(|&w| w < n).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use polling::{Event, Poller};

    use super::*;
    use crate::lane::Lane;

    /// A main lane in `/dev/shm`, removed when dropped (also when the test panics).
    struct TestLane {
        path: PathBuf,
        lane: MainLane,
    }

    impl TestLane {
        fn new(tag: &str) -> TestLane {
            let path = PathBuf::from(format!(
                "/dev/shm/ccsd-acceptortest-{tag}-{}.req",
                std::process::id()
            ));
            let producer = Lane::create_or_attach(&path, 1 << 16)
                .unwrap()
                .into_producer();
            TestLane {
                path,
                lane: MainLane::new(producer, 1),
            }
        }
    }

    impl Drop for TestLane {
        fn drop(&mut self) {
            let _ = Lane::remove_files(&self.path);
        }
    }

    fn listening(max_connections: usize) -> (Listening, SocketAddr) {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let poller = Arc::new(Poller::new().unwrap());
        let listening = Listening {
            socket: Watched::new(&poller, socket, Event::readable(0)).unwrap(),
            port: addr.port(),
            open: Arc::new(AtomicUsize::new(0)),
            max_connections,
            workers: WorkerSet::all(1),
        };
        (listening, addr)
    }

    /// An acceptor with one listener, no workers and overload notices on.
    fn acceptor(listening: Listening, max_connections: usize) -> Acceptor {
        Acceptor::new(
            vec![Some(listening)],
            Vec::new(),
            Dispatch::RoundRobin,
            max_connections,
            true,
        )
    }

    /// An acceptor over `workers` workers (their mailboxes unused) with `dispatch`.
    fn acceptor_over(workers: usize, dispatch: Dispatch) -> Acceptor {
        let poller = Arc::new(Poller::new().unwrap());
        let links = (0..workers)
            .map(|_| WorkerLink {
                mailbox: crate::mailbox::mailbox(1, Arc::clone(&poller)).0,
                open: Arc::new(AtomicUsize::new(0)),
            })
            .collect();
        Acceptor::new(Vec::new(), links, dispatch, 100, false)
    }

    #[test]
    fn every_dispatch_picks_only_among_the_listeners_workers() {
        let set = WorkerSet::of([1, 3]);
        let mut fd_modulo = acceptor_over(5, Dispatch::FdModulo);
        let picks: Vec<usize> = (10..14).map(|fd| fd_modulo.pick_worker(fd, set)).collect();
        assert_eq!(picks, [1, 3, 1, 3]);

        let mut round_robin = acceptor_over(5, Dispatch::RoundRobin);
        let picks: Vec<usize> = (0..5).map(|_| round_robin.pick_worker(0, set)).collect();
        assert_eq!(picks, [1, 3, 1, 3, 1]);
        assert_eq!(round_robin.pick_worker(0, WorkerSet::all(5)), 2);

        let mut least = acceptor_over(5, Dispatch::LeastConnections);
        least.workers[1].open.store(4, Ordering::Relaxed);
        least.workers[3].open.store(2, Ordering::Relaxed);
        assert_eq!(
            least.pick_worker(0, set),
            3,
            "worker 0 is emptier but not allowed"
        );

        let mut loaded = acceptor_over(5, Dispatch::LeastLoaded);
        loaded.set_worker_loads(&[0, 900, 0, 100, 0]);
        assert_eq!(loaded.pick_worker(0, set), 3);
        loaded.set_worker_loads(&[0, 100, 0, 100, 0]);
        loaded.workers[1].open.store(1, Ordering::Relaxed);
        assert_eq!(
            loaded.pick_worker(0, set),
            3,
            "equal loads: fewer connections"
        );
    }

    #[test]
    fn readiness_of_a_listener_stopped_in_the_same_turn_is_ignored() {
        let mut lane = TestLane::new("stopped");
        let (listening, addr) = listening(0);
        let mut acceptor = acceptor(listening, 1);
        // A client is waiting, so the listener was readable when the stop signal came.
        let _client = std::net::TcpStream::connect(addr).unwrap();
        acceptor.stop();
        acceptor.on_readable(0, &mut lane.lane);
        assert_eq!(acceptor.counters().accepted, 0);
    }

    #[test]
    fn a_refused_connection_is_announced_as_an_overload_disconnect_with_flow_0() {
        let mut lane = TestLane::new("notice");
        let (listening, addr) = listening(0);
        // max_connections 0 over all workers: every connection is refused.
        let mut acceptor = acceptor(listening, 0);
        let client = std::net::TcpStream::connect(addr).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while acceptor.counters().accepted == 0 {
            assert!(std::time::Instant::now() < deadline, "never accepted");
            acceptor.on_readable(0, &mut lane.lane);
        }
        lane.lane.publish();
        let counters = acceptor.counters();
        assert_eq!(
            (counters.refused_max_connections, counters.overload_notices),
            (1, 1)
        );

        let mut consumer = Lane::attach(&lane.path, None).unwrap().into_consumer();
        let mut record = Vec::new();
        assert!(consumer.pop_into(&mut record).unwrap().is_some());
        let notice = RecordHeader::decode(&record).unwrap();
        assert_eq!(notice.kind, Kind::Disconnect);
        assert_eq!(notice.code, Reason::Overload as u8);
        assert_eq!(notice.flow, FlowId(0));
        assert_eq!(notice.peer, client.local_addr().unwrap());
        assert_eq!(notice.listen_port, addr.port());
        assert_eq!(notice.transport, Transport::Tcp);
        assert_eq!(notice.payload_len, 0);
    }

    #[test]
    fn a_connection_arriving_while_ccsd_is_over_max_memory_is_refused_and_counted() {
        let mut lane = TestLane::new("memory");
        let (listening, addr) = listening(0);
        let budget = MemoryBudget::new(100);
        let mut holder = crate::memory::MemoryShare::new(&budget);
        holder.publish(101);
        let mut acceptor = acceptor(listening, 10).with_memory_budget(Arc::clone(&budget));
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while acceptor.counters().accepted == 0 {
            assert!(std::time::Instant::now() < deadline, "never accepted");
            acceptor.on_readable(0, &mut lane.lane);
        }
        let counters = acceptor.counters();
        assert_eq!(
            (
                counters.refused_max_memory,
                counters.refused_max_connections,
                counters.overload_notices
            ),
            (1, 0, 1)
        );
    }
}
