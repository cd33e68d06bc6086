//! The new process's side of a hot restart (`ccsd --takeover`): it connects to the running
//! ccsd's handover socket, says who it is, receives the listening sockets, the instance lock and
//! every connection, builds itself around them without touching a socket or a lane, says it is
//! ready, and serves once the old process has let go (`docs/hot-restart.md`, "Phases").

use std::fmt;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use log::{info, warn};

use super::channel::{ChannelError, HandoverConn};
use super::fault::{self, Fault, step_timeout};
use super::wire::{ConnOffer, Handover, LaneRole, ListenerOffer, Proto, decode_conns};
use crate::clock::monotonic_ns;
use crate::conn_state::ConnState;
use crate::settings::Settings;

/// Why this process could not take over; the running one serves on.
#[derive(Debug)]
pub enum TakeoverError {
    /// No ccsd to take over: nothing listens on the handover socket.
    NothingToTakeOver {
        /// The handover socket's path.
        path: PathBuf,
        /// What connecting said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The running ccsd refused (incompatible settings, stopping, …).
    Refused(String),
    /// The handover broke off (a message did not come or did not decode, a descriptor or a
    /// connection's state was refused).
    Failed(String),
}

impl fmt::Display for TakeoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TakeoverError::NothingToTakeOver { path, source } => write!(
                f,
                "no running ccsd to take over at {}: {source}",
                path.display()
            ),
            TakeoverError::Refused(why) => write!(f, "the running ccsd refused: {why}"),
            TakeoverError::Failed(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for TakeoverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TakeoverError::NothingToTakeOver { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

fn failed<T>(why: impl fmt::Display) -> Result<T, TakeoverError> {
    Err(TakeoverError::Failed(why.to_string()))
}

/// A connection handed over, with the request lane it pushed into last.
#[derive(Debug)]
pub(crate) struct HandedConn {
    pub(crate) socket: TcpStream,
    pub(crate) state: ConnState,
    pub(crate) lane: usize,
}

/// What the running process handed over, for the start to build on.
#[derive(Debug)]
pub(crate) struct Handed {
    /// The connection to the old process, to say ready and hear it let go.
    pub(crate) conn: HandoverConn,
    /// The old process's pid.
    pub(crate) pid: u32,
    /// Its epoch: its connections' flow ids carry it.
    pub(crate) epoch: u16,
    /// The instance lock, held all along (taken by the start).
    pub(crate) lock: Option<File>,
    /// The old process's pid file, locked all along, if it had one (taken by the start).
    pub(crate) pid_file: Option<File>,
    /// The listening sockets in the old process's listener order, then named ones (the admin's).
    pub(crate) listeners: Vec<(ListenerOffer, OwnedFd)>,
    /// Every connection.
    pub(crate) conns: Vec<HandedConn>,
    /// The old process's UDP listeners: their index there and address.
    pub(crate) udp_listeners: Vec<(usize, SocketAddr)>,
    /// The old process's main-thread lane index (its UDP flows carry it as their worker).
    pub(crate) old_main_lane: u8,
}

/// Connects to the running ccsd of `settings`' queues and receives everything it hands over.
///
/// # Errors
/// [`TakeoverError`]: nothing runs there, it refused, or the handover broke off.
pub(crate) fn receive(settings: &Settings) -> Result<Handed, TakeoverError> {
    let path = settings.handover_path();
    let conn = HandoverConn::connect(&path, step_timeout()).map_err(|source| {
        TakeoverError::NothingToTakeOver {
            path,
            source: Box::new(source),
        }
    })?;
    let hello = Handover::Hello {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        queue_dir: settings.queues.dir.clone(),
        queue_name: settings.queues.name.clone(),
        lane_capacity: settings.queues.capacity.bytes(),
    };
    conn.send(&hello.encode(), &[])
        .or_else(|e| failed(format!("saying hello: {e}")))?;
    let offer = conn
        .recv(Some(step_timeout()))
        .or_else(|e| failed(format!("waiting for the offer: {e}")))?;
    let (pid, epoch, listeners, lanes, connections) = match Handover::decode(&offer.bytes) {
        Ok(Handover::Offer {
            pid,
            epoch,
            listeners,
            lanes,
            connections,
        }) => (pid, epoch, listeners, lanes, connections),
        Ok(Handover::Refused { reason }) => return Err(TakeoverError::Refused(reason)),
        Ok(other) => return failed(format!("expected an offer, got {}", other.kind_name())),
        Err(e) => return failed(format!("an offer that does not decode: {e}")),
    };
    // The instance lock, one descriptor per listener, then the pid file if there is one.
    let mut fds = offer.fds.into_iter();
    let Some(lock) = fds.next() else {
        return failed("the offer came without the instance lock");
    };
    if fds.len() != listeners.len() && fds.len() != listeners.len() + 1 {
        return failed(format!(
            "the offer names {} listening sockets but {} descriptors came",
            listeners.len(),
            fds.len()
        ));
    }
    // Its UDP flows name its listener index (the position among the unnamed listeners, which it
    // sends in its listener order) and its main lane (the last request lane).
    let udp_listeners: Vec<(usize, SocketAddr)> = listeners
        .iter()
        .filter(|l| l.name.is_none())
        .enumerate()
        .filter(|(_, l)| l.proto == Proto::Udp)
        .map(|(i, l)| (i, l.local))
        .collect();
    let request_lanes = lanes
        .iter()
        .filter(|l| matches!(l.role, LaneRole::Request { .. }))
        .count();
    let old_main_lane = u8::try_from(request_lanes.saturating_sub(1)).unwrap_or(u8::MAX);
    let sockets: Vec<OwnedFd> = fds.by_ref().take(listeners.len()).collect();
    let pid_file = fds.next().map(File::from);
    let listeners: Vec<(ListenerOffer, OwnedFd)> = listeners.into_iter().zip(sockets).collect();
    let bulk = conn
        .recv_bulk(Some(step_timeout()))
        .or_else(|e| failed(format!("receiving the connections: {e}")))?;
    let offers = decode_conns(&bulk.bytes, connections as usize)
        .or_else(|e| failed(format!("the connections do not decode: {e}")))?;
    if offers.len() != bulk.fds.len() || offers.len() != connections as usize {
        return failed(format!(
            "{} connections announced, {} states and {} sockets came",
            connections,
            offers.len(),
            bulk.fds.len()
        ));
    }
    let states = decode_states(&offers)?;
    let mut conns = Vec::with_capacity(offers.len());
    for ((offer, state), fd) in offers.into_iter().zip(states).zip(bulk.fds) {
        let socket = TcpStream::from(fd);
        socket
            .set_nonblocking(true)
            .or_else(|e| failed(format!("a handed-over socket: {e}")))?;
        conns.push(HandedConn {
            socket,
            state,
            lane: offer.lane as usize,
        });
    }
    info!(
        "hot restart: process {pid} handed over {} connections and {} listening sockets",
        conns.len(),
        listeners.len()
    );
    Ok(Handed {
        conn,
        pid,
        epoch,
        lock: Some(File::from(lock)),
        pid_file,
        listeners,
        conns,
        udp_listeners,
        old_main_lane,
    })
}

/// Decodes every connection's state, on as many threads as there are cores (a takeover of many
/// connections is the stall clients see).
fn decode_states(offers: &[ConnOffer]) -> Result<Vec<ConnState>, TakeoverError> {
    let now_ns = monotonic_ns();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = offers.len().div_ceil(threads).max(1);
    let decoded: Vec<Result<Vec<ConnState>, String>> = std::thread::scope(|scope| {
        let parts: Vec<_> = offers
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|offer| ConnState::decode(&offer.state, now_ns))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        parts
            .into_iter()
            .map(|part| {
                part.join()
                    .unwrap_or_else(|_| Err("a decoding thread panicked".into()))
            })
            .collect()
    });
    let mut states = Vec::with_capacity(offers.len());
    for part in decoded {
        states.extend(part.or_else(|e| failed(format!("a connection's state was refused: {e}")))?);
    }
    Ok(states)
}

/// Tells the old process this one is ready and waits for it to let go. `Ok` when it did, or
/// when it died after handing everything over (nothing else touches the sockets then).
///
/// # Errors
/// The old process gave up (it serves on).
pub(crate) fn commit(conn: &HandoverConn, old: u32, adopted: usize) -> Result<(), TakeoverError> {
    fault::inject(Fault::HangBeforeReady);
    fault::inject(Fault::PauseBeforeReady);
    fault::inject(Fault::ExitBeforeReady);
    let ready = Handover::Ready {
        adopted: adopted as u32,
    };
    match conn.send(&ready.encode(), &[]) {
        Ok(()) => {}
        // The old process closed the channel: it either gave up (its abort, sent before it
        // closed, is still to be read) or ended; the receive below tells which.
        Err(ChannelError::Closed) => {}
        Err(e) => return failed(format!("saying ready: {e}")),
    }
    match conn.recv(Some(step_timeout())) {
        Ok(msg) => match Handover::decode(&msg.bytes) {
            Ok(Handover::Commit) => Ok(()),
            Ok(Handover::Abort { reason }) => failed(format!("the old process gave up: {reason}")),
            Ok(other) => failed(format!("expected commit, got {}", other.kind_name())),
            Err(e) => failed(format!("a commit that does not decode: {e}")),
        },
        Err(ChannelError::Closed) if gone(old) => {
            warn!("hot restart: the old process ended without a word after handing over; serving");
            Ok(())
        }
        // Alive but silent: it may serve on, so this one must not.
        Err(ChannelError::Closed) => failed(format!(
            "the old process {old} closed the channel without a commit and is still running"
        )),
        Err(e) => failed(format!("waiting for the old process to let go: {e}")),
    }
}

/// Whether process `pid` has ended (gone, or a zombie its parent has not reaped yet), waiting for
/// it a little: a process that closed its end of the channel is usually on its way out.
fn gone(pid: u32) -> bool {
    let ended = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold anything.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => true,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        if ended() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
