//! The running process's side of a hot restart: a new process connected to the handover socket;
//! this one checks it, freezes (stops accepting, stops reading the response lane, the workers
//! send copies of their connections), hands everything over, and lets go once the new process
//! says it is ready — or thaws and serves on, having given nothing up, if anything fails
//! (`docs/hot-restart.md`, "Phases").

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::channel::{ChannelError, HandoverConn};
use super::fault::{self, Fault, step_timeout};
use super::wire::{ConnOffer, Handover, LaneOffer, LaneRole, ListenerOffer, Proto, encode_conns};
use crate::actors::worker::FrozenWorker;
use crate::message::WorkerMsg;
use crate::runtime::start::watch_handover;
use crate::runtime::{Broker, fd_limit};

/// How long a process that connected to the handover socket has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(1);
/// The name of the admin port's listener among the listeners handed over.
pub(crate) const ADMIN_LISTENER: &str = "admin";
/// How long the workers have to freeze.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a takeover did not happen; the old process serves on.
#[derive(Debug)]
pub(crate) struct NotHandedOver(pub(crate) String);

impl fmt::Display for NotHandedOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail<T>(why: impl fmt::Display) -> Result<T, NotHandedOver> {
    Err(NotHandedOver(why.to_string()))
}

impl Broker {
    /// A process connected to the handover socket: runs the handover. `true` when the new
    /// process took over (this one must end now, quietly); `false` when it serves on.
    pub(in crate::runtime) fn on_takeover_request(&mut self) -> bool {
        let Some(listener) = &self.handover else {
            return false;
        };
        let conn = match listener.source().accept() {
            Ok(Some(conn)) => conn,
            Ok(None) => return false,
            Err(e) => {
                warn!("handover socket: {e}");
                return false;
            }
        };
        let began = Instant::now();
        // Nothing is frozen yet: a refusal changes nothing here.
        let pid = match self.check_hello(&conn) {
            Ok(pid) => pid,
            // A process checking whether this socket is alive (a stale-file probe).
            Err(why) if why.0.is_empty() => return false,
            Err(why) => {
                self.control.takeovers_refused += 1;
                warn!("hot restart refused, serving on: {why}");
                let refused = Handover::Refused { reason: why.0 };
                let _ = conn.send(&refused.encode(), &[]);
                return false;
            }
        };
        match self.hand_over(&conn, pid) {
            Ok(count) => {
                info!(
                    "hot restart: handed {count} connections over to the new process in {:?}; exiting",
                    began.elapsed()
                );
                true
            }
            Err(why) => {
                self.control.takeovers_rolled_back += 1;
                warn!(
                    "hot restart by process {pid} failed after {:?}, rolled back, serving on: {why}",
                    began.elapsed()
                );
                let abort = Handover::Abort {
                    reason: why.0.clone(),
                };
                let _ = conn.send(&abort.encode(), &[]);
                self.thaw();
                self.rebind_sockets();
                false
            }
        }
    }

    /// Reads the new process's hello and checks that it may take over; its pid if so, else why
    /// not (an empty reason: a probe that closed without a word).
    fn check_hello(&mut self, conn: &HandoverConn) -> Result<u32, NotHandedOver> {
        // A new process sends its hello as soon as it connects; the main thread serves nothing
        // while it waits, so a silent peer gets little time.
        let hello = match conn.recv(Some(step_timeout().min(HELLO_TIMEOUT))) {
            // A process checking whether this socket is alive (a stale-file probe): nothing to do.
            Err(ChannelError::Closed) => return Err(NotHandedOver(String::new())),
            received => Handover::decode(
                &received
                    .or_else(|e| fail(format!("waiting for the new process: {e}")))?
                    .bytes,
            )
            .or_else(|e| fail(format!("a message that does not decode: {e}")))?,
        };
        let Handover::Hello {
            pid,
            version,
            queue_dir,
            queue_name,
            lane_capacity,
        } = hello
        else {
            return fail(format!("expected a hello, got {}", hello.kind_name()));
        };
        info!("hot restart: process {pid} (ccsd {version}) asks to take over");
        let queues = &self.settings.queues;
        if queue_dir != queues.dir || queue_name != queues.name {
            fail(format!("process {pid} names other queues"))
        } else if lane_capacity != queues.capacity.bytes() {
            fail(format!(
                "queues.capacity differs ({lane_capacity} against {}): the lanes cannot change size across a takeover",
                queues.capacity.bytes()
            ))
        } else if self.stopping_requested() {
            fail("this ccsd is stopping")
        } else if self.bridge.moving() {
            fail("connections are moving between workers; try again")
        } else {
            Ok(pid)
        }
    }

    /// The handover itself (see the module header) to process `pid`, whose hello passed;
    /// returns how many connections went.
    fn hand_over(&mut self, conn: &HandoverConn, pid: u32) -> Result<usize, NotHandedOver> {
        let mut frozen = self.freeze()?;
        let mut offers = Vec::new();
        let mut sockets = Vec::new();
        for worker in &mut frozen {
            for c in &mut worker.conns {
                offers.push(ConnOffer {
                    lane: c.lane as u32,
                    state: std::mem::take(&mut c.state),
                });
            }
        }
        for worker in &frozen {
            sockets.extend(worker.conns.iter().map(|c| c.socket.as_fd()));
        }
        let count = offers.len();
        let (listeners, mut fds) = self.listener_offers();
        // The instance lock first, the listeners, then the pid file if there is one.
        fds.insert(0, self.instance.file().as_fd());
        if let Some(pid_file) = &self.pid_file {
            fds.push(pid_file.file().as_fd());
        }
        let offer = Handover::Offer {
            pid: std::process::id(),
            epoch: self.epoch,
            listeners,
            lanes: self.lane_offers(),
            connections: count as u32,
        };
        conn.send(&offer.encode(), &fds)
            .or_else(|e| fail(format!("sending the offer: {e}")))?;
        conn.send_bulk(&encode_conns(&offers), &sockets)
            .or_else(|e| fail(format!("sending the connections: {e}")))?;
        fault::inject(Fault::ExitAfterOffer);
        match recv(conn, step_timeout())? {
            Handover::Ready { adopted } => {
                info!("hot restart: process {pid} adopted {adopted} connections");
            }
            Handover::Abort { reason } => return fail(format!("process {pid} gave up: {reason}")),
            other => return fail(format!("expected ready, got {}", other.kind_name())),
        }
        // The socket files go first (the handover's, the admin's Unix socket): the new process
        // binds its own as soon as it has the commit, and must not find this one's still
        // listening (it would run without them, and could not be taken over in turn). If the
        // commit cannot be sent, this one binds them again (`rebind_sockets`).
        self.handover = None;
        if let Some(admin) = &mut self.admin {
            admin.close_unix();
        }
        // The commit is the point of no return: once the new process has it, it serves, and this
        // one must never touch a socket again. If it cannot be sent, the new process is gone
        // (or gave up waiting) and will not serve: this one serves on, and can be taken over
        // again.
        if let Err(e) = conn.send(&Handover::Commit.encode(), &[]) {
            return fail(format!("process {pid} did not take the commit: {e}"));
        }
        fault::inject(Fault::PauseAfterCommit);
        // Let go of everything, leaving the files the new process took over in place.
        self.let_go();
        self.upgrade.handed_to(pid);
        for worker in &frozen {
            let _ = self.worker_mailboxes[worker.worker].try_send(WorkerMsg::Release);
        }
        Ok(count)
    }

    /// Stops accepting, reading the response lane and reading datagrams, and has every worker
    /// freeze; returns each worker's copy of its connections.
    fn freeze(&mut self) -> Result<Vec<FrozenWorker>, NotHandedOver> {
        // Each worker duplicates every socket it hands over: room for a second copy of each.
        let settings = &self.settings;
        let max = settings.broker.max_connections;
        let needed = fd_limit::fd_budget(
            max + self.acceptor.open_connections(),
            settings.broker.worker_count(),
            settings.listen.len(),
        );
        fd_limit::raise_for(needed, max);
        self.takeover_frozen = true;
        self.acceptor.freeze();
        self.udp.freeze();
        self.bridge.freeze();
        self.main_lane.publish();
        let workers = self.worker_mailboxes.len();
        let (reply, frozen) = crossbeam_channel::bounded(workers);
        for w in 0..workers {
            // Behind every reply already routed to it: each is in a connection's state.
            self.bridge.send_control(
                w,
                WorkerMsg::Freeze {
                    reply: reply.clone(),
                },
            );
        }
        drop(reply);
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        let mut done = Vec::with_capacity(workers);
        let why = loop {
            if done.len() == workers {
                self.frozen_workers = (0..workers).collect();
                return Ok(done);
            }
            self.bridge.offer_held_now();
            match frozen.recv_timeout(Duration::from_millis(1)) {
                Ok(worker) if worker.failed > 0 => {
                    let why = format!(
                        "worker {} could not copy {} of its connections (out of descriptors?)",
                        worker.worker, worker.failed
                    );
                    done.push(worker);
                    break why;
                }
                Ok(worker) => done.push(worker),
                Err(_) if Instant::now() >= deadline => {
                    break format!(
                        "only {} of {workers} workers froze within {FREEZE_TIMEOUT:?}",
                        done.len()
                    );
                }
                Err(_) => {}
            }
        };
        // Giving up: every worker gets a thaw, behind its freeze. Not only those whose copy was
        // received: a copy may wait unread in the channel, its worker frozen. One that replies
        // once the channel is gone thaws by itself, and the thaw after it changes nothing.
        self.frozen_workers = (0..workers).collect();
        fail(why)
    }

    /// Serves on after a failed takeover: every frozen worker thaws, accepting and reading
    /// resume, and the lane headers name this process as ccsd's end again.
    fn thaw(&mut self) {
        if !std::mem::take(&mut self.takeover_frozen) {
            return;
        }
        for w in std::mem::take(&mut self.frozen_workers) {
            self.bridge.send_control(w, WorkerMsg::Thaw);
        }
        self.bridge.thaw();
        self.main_lane.claim();
        self.udp.thaw();
        self.acceptor.thaw();
    }

    /// The listening sockets to hand over, in this process's listener order (then the admin's
    /// and the handover socket itself), and their descriptors in the same order.
    fn listener_offers(&self) -> (Vec<ListenerOffer>, Vec<BorrowedFd<'_>>) {
        let mut by_index: Vec<(usize, Proto, BorrowedFd<'_>)> = self
            .acceptor
            .listener_fds()
            .into_iter()
            .map(|(i, fd)| (i, Proto::Tcp, fd))
            .chain(
                self.udp
                    .socket_fds()
                    .into_iter()
                    .map(|(i, fd)| (i, Proto::Udp, fd)),
            )
            .collect();
        by_index.sort_by_key(|(i, _, _)| *i);
        let mut offers = Vec::new();
        let mut fds = Vec::new();
        for (i, proto, fd) in by_index {
            offers.push(ListenerOffer {
                proto,
                local: self.local_addrs[i],
                name: None,
            });
            fds.push(fd);
        }
        if let Some((local, fd)) = self.admin.as_ref().and_then(|a| a.tcp_listener_fd()) {
            offers.push(ListenerOffer {
                proto: Proto::Tcp,
                local,
                name: Some(ADMIN_LISTENER.to_owned()),
            });
            fds.push(fd);
        }
        (offers, fds)
    }

    /// The lanes, with the positions they were left at (informational: the new process
    /// continues at the positions in the lane headers).
    fn lane_offers(&self) -> Vec<LaneOffer> {
        let settings = &self.settings;
        let mut lanes: Vec<LaneOffer> = (0..settings.request_lane_count())
            .map(|i| LaneOffer {
                role: LaneRole::Request { index: i as u32 },
                path: settings.request_lane_path(i),
                position: 0,
            })
            .collect();
        lanes.push(LaneOffer {
            role: LaneRole::Response,
            path: settings.response_lane_path(),
            position: self.bridge.lane_head(),
        });
        lanes
    }

    /// The new process serves now: the files it took over stay where they are when this one
    /// ends (the pid file; the admin's and the handover's sockets went before the commit).
    fn let_go(&mut self) {
        if let Some(pid_file) = &mut self.pid_file {
            pid_file.handed_over();
        }
    }

    /// Serving on after the socket files went for a commit that could not be sent: binds the
    /// handover socket and the admin Unix socket again (a warning says why if one cannot be).
    fn rebind_sockets(&mut self) {
        if self.handover.is_none() {
            self.handover = watch_handover(&self.settings, &self.poller, self.keys);
        }
        if let (Some(admin), Some(path)) = (&mut self.admin, &self.settings.admin.unix) {
            if admin.unix_path().is_none() {
                if let Err(e) = admin.open_unix(path) {
                    warn!("hot restart rolled back: {e}; the admin port still serves");
                }
            }
        }
    }
}

/// The next message from the peer, decoded.
fn recv(conn: &HandoverConn, timeout: Duration) -> Result<Handover, NotHandedOver> {
    let received = conn
        .recv(Some(timeout))
        .or_else(|e| fail(format!("waiting for the new process: {e}")))?;
    Handover::decode(&received.bytes)
        .or_else(|e| fail(format!("a message that does not decode: {e}")))
}
