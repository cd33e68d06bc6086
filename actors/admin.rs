//! Admin: the operators' port on the main thread. One TCP port speaks a line protocol usable
//! with `nc` and answers `GET /metrics` over HTTP with Prometheus text; an optional Unix socket
//! (`admin.unix`, mode 0600) serves the same line commands to ccsd's own user without a token.
//!
//! Line commands: `help`, `health`, `stats`, `workers`, `conns [N]`, `close FLOW`,
//! `loglevel LEVEL`, `reload`, `drain`, `shutdown`, `quit`; with `admin.token` set, `auth TOKEN`
//! must come first on the TCP port (HTTP: `Authorization: Bearer TOKEN`), compared in constant
//! time, except for `health` and `GET /health`, which balancers and probes ask without one
//! ([`health`]). With `admin.unix` set and no token, the TCP port refuses the commands that
//! change something (`close`, `drain`, `loglevel`, `reload`, `shutdown`): on a shared host only
//! ccsd's user can give them.
//!
//! Malformed input gets an `ERROR` line, a line over 1 KiB closes the client. A client that has
//! not authenticated (or, without a token, sent a command) within `admin.login_timeout` is
//! closed, and one that then sends nothing for `admin.idle_timeout`. When every slot is taken, a
//! new client closes the oldest idle one (not logged in first); it is refused only when every
//! slot holds a client being answered. Commands that act on workers come back to the main loop
//! as [`AdminAction`]s. `conns` and `reload` are
//! answered later ([`Admin::conn_sample`], [`Admin::answer`]): until then the client is not read,
//! so its next commands are answered in order after them. Answers are buffered per client and
//! written as the socket takes them, so a large one never blocks the main loop.

mod conns;
mod health;
mod listen;
mod reports;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, info};
use polling::{Event, Poller};

use crate::actors::accept_pause::is_out_of_descriptors;
use crate::actors::stats_reporter::StatsReporter;
use crate::flow::FlowId;
use crate::logging::{LogLimiter, log_limited};
use crate::message::ConnSample;
use crate::settings::AdminSettings;
use crate::stats::AdminCounters;
use crate::stats::MainCounters;
use crate::watched::Watched;
use conns::PendingSample;
pub(crate) use listen::AdminBindError;
use listen::{AdminListeners, AdminStream, Origin};
use reports::{metrics_text, stats_text, workers_text};

/// Longest command line (or HTTP head) an admin client may send.
const MAX_LINE: usize = 1024;
/// Admin clients at once (over the TCP port and the Unix socket).
const MAX_CLIENTS: usize = 64;
/// Poller keys after the admin's first: the TCP listener, the Unix listener, then the clients.
const LISTENER_KEYS: usize = 2;
/// Most answer bytes waiting for one client; a client that reads slower is closed.
const MAX_OUTPUT: usize = 16 << 20;

/// What the main loop must do for an admin command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminAction {
    /// Close this flow (its worker is told).
    Close(FlowId),
    /// Stop gracefully, as on SIGTERM.
    Shutdown,
    /// Ask every worker for at most `max` of its connections; hand each answer (or a full
    /// mailbox) to [`Admin::conn_sample`].
    SampleConns {
        /// Identifies the request.
        token: u64,
        /// Connections per worker, at most.
        max: usize,
    },
    /// Re-read the settings file and apply what can change at run time; hand the answer text to
    /// [`Admin::answer`].
    Reload {
        /// Identifies the request.
        token: u64,
    },
    /// Move `flow` to worker `to` (even if pinned when `force`); hand the outcome to
    /// [`Admin::answer`].
    Migrate {
        /// Identifies the request.
        token: u64,
        /// The flow.
        flow: FlowId,
        /// Its new worker.
        to: usize,
        /// Move it even if it is pinned.
        force: bool,
    },
    /// Run one rebalancing round now; hand the outcome to [`Admin::answer`].
    Rebalance {
        /// Identifies the request.
        token: u64,
    },
    /// Pin or unpin `flow`; hand the outcome to [`Admin::answer`].
    Pin {
        /// Identifies the request.
        token: u64,
        /// The flow.
        flow: FlowId,
        /// Pin (`true`) or unpin.
        pinned: bool,
    },
    /// Drain the node: mark it draining ([`Admin::set_draining`]), log it, tell systemd.
    Drain,
}

/// What the admin reads from the rest of the main thread to answer.
#[derive(Debug)]
pub(crate) struct AdminView<'a> {
    /// Workers' latest counters.
    pub stats: &'a StatsReporter,
    /// The main thread's own counters.
    pub main: MainCounters,
    /// Number of workers (valid `close` targets).
    pub workers: usize,
}

/// A command answered later, by the main loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deferred {
    SampleConns {
        max: usize,
    },
    Reload,
    Migrate {
        flow: FlowId,
        to: usize,
        force: bool,
    },
    Pin {
        flow: FlowId,
        pinned: bool,
    },
    Rebalance,
}

struct Client {
    /// Watched by the main poller under the admin's key for its slot.
    stream: Watched<AdminStream>,
    input: Vec<u8>,
    /// Answer bytes not written yet.
    output: Vec<u8>,
    /// The poller interest set last: (readable, writable).
    interest: (bool, bool),
    /// Close once `output` is written (HTTP, `quit`, a bad token, a line too long).
    close_when_written: bool,
    /// The token of the deferred command it waits for; it is not read meanwhile.
    awaiting: Option<u64>,
    authed: bool,
    /// Authenticated (with a token) or sent a command (without): past the login deadline.
    logged_in: bool,
    /// May give the commands that change something (see the module header).
    may_control: bool,
    /// When it connected (the login deadline runs from here).
    connected: Instant,
    last_activity: Instant,
}

/// The admin port and its clients.
#[derive(Debug)]
pub(crate) struct Admin {
    listeners: AdminListeners,
    token: Option<String>,
    idle_timeout: Duration,
    login_timeout: Duration,
    /// The main poller, which watches the listeners and the clients.
    poller: Arc<Poller>,
    first_key: usize,
    clients: Vec<Option<Client>>,
    next_token: u64,
    /// `conns` requests waiting for the workers.
    samples: Vec<PendingSample>,
    counters: AdminCounters,
    auth_log: LogLimiter,
    slots_log: LogLimiter,
    pause_log: LogLimiter,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("origin", &self.stream.source().origin())
            .field("authed", &self.authed)
            .field("logged_in", &self.logged_in)
            .field("awaiting", &self.awaiting)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Queues `text` and writes what the socket takes now; `Err` when the client must go.
    fn send(&mut self, text: &str) -> io::Result<()> {
        if self.output.len() + text.len() > MAX_OUTPUT {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        self.output.extend_from_slice(text.as_bytes());
        self.flush()
    }

    /// Writes queued answer bytes until the socket would block.
    fn flush(&mut self) -> io::Result<()> {
        let mut written = 0;
        while written < self.output.len() {
            match self.stream.source().write(&self.output[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.output.drain(..written);
        Ok(())
    }

    /// Nothing in progress: no deferred answer awaited, no answer bytes unwritten.
    fn is_idle(&self) -> bool {
        self.awaiting.is_none() && self.output.is_empty()
    }

    /// Readable unless it waits for an answer or is closing; writable while output waits.
    fn wanted_interest(&self) -> (bool, bool) {
        (
            self.awaiting.is_none() && !self.close_when_written,
            !self.output.is_empty(),
        )
    }
}

impl Admin {
    /// Binds the admin port and, with `admin.unix`, the admin Unix socket, and has `poller`
    /// watch them under `first_key` and the next key; clients get the keys after them.
    ///
    /// # Errors
    /// The address cannot be bound, the Unix socket cannot be made, or the poller refused them.
    pub(crate) fn bind(
        settings: &AdminSettings,
        poller: &Arc<Poller>,
        first_key: usize,
        handed: Option<std::net::TcpListener>,
    ) -> Result<Admin, AdminBindError> {
        Ok(Admin {
            listeners: AdminListeners::bind(settings, poller, first_key, handed)?,
            token: settings.token.clone(),
            idle_timeout: settings.idle_timeout,
            login_timeout: settings.login_timeout,
            poller: Arc::clone(poller),
            first_key,
            clients: Vec::new(),
            next_token: 1,
            samples: Vec::new(),
            counters: AdminCounters::default(),
            auth_log: LogLimiter::default(),
            slots_log: LogLimiter::default(),
            pause_log: LogLimiter::default(),
        })
    }

    /// The bound address (useful with port 0).
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listeners.local_addr()
    }

    /// Closes the admin Unix socket (`admin.unix`) and removes its file: a hot restart lets go of
    /// it, and the new process binds its own.
    pub(crate) fn close_unix(&mut self) {
        self.listeners.close_unix();
    }

    /// Binds the admin Unix socket at `path` (a process that took over, once the old one let
    /// go of it).
    ///
    /// # Errors
    /// As for [`Admin::bind`]'s Unix socket.
    pub(crate) fn open_unix(&mut self, path: &Path) -> Result<(), AdminBindError> {
        let poller = Arc::clone(&self.poller);
        self.listeners.open_unix(path, &poller, self.first_key + 1)
    }

    /// The admin port's listening socket with its address, to hand to a process taking over
    /// (hot restart), which serves the admin port on from the same socket.
    pub(crate) fn tcp_listener_fd(&self) -> Option<(SocketAddr, std::os::fd::BorrowedFd<'_>)> {
        Some((self.local_addr().ok()?, self.listeners.tcp_fd()))
    }

    /// The Unix socket's path, when `admin.unix` is set.
    pub(crate) fn unix_path(&self) -> Option<&Path> {
        self.listeners.unix_path()
    }

    /// Applies a new `admin.idle_timeout` and `admin.login_timeout` (a reload).
    pub(crate) fn set_timeouts(&mut self, idle: Duration, login: Duration) {
        self.idle_timeout = idle;
        self.login_timeout = login;
    }

    /// The node drains (admin `drain`, or a graceful stop began): `health` answers
    /// `DOWN draining` from now on.
    pub(crate) fn set_draining(&mut self) {
        self.counters.draining = 1;
    }

    /// What the admin counted so far.
    pub(crate) fn counters(&self) -> AdminCounters {
        self.counters
    }

    /// Handles readiness `ev` of one of the admin's keys; returns what the main loop must do.
    pub(crate) fn on_event(&mut self, ev: &Event, view: &AdminView<'_>) -> Vec<AdminAction> {
        if ev.key < self.first_key + LISTENER_KEYS {
            let origin = if ev.key == self.first_key {
                Origin::Tcp
            } else {
                Origin::Unix
            };
            self.accept(origin);
            return Vec::new();
        }
        let slot = ev.key - self.first_key - LISTENER_KEYS;
        let mut actions = Vec::new();
        let Some(client) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return actions;
        };
        let mut ok = true;
        if ev.writable {
            ok = client.flush().is_ok();
        }
        if ev.readable && client.awaiting.is_some() {
            // Not asked for while it waits: the poller reports a hang-up or an error.
            ok = false;
        } else if ok && ev.readable {
            ok = self.serve(slot, view, &mut actions);
        }
        self.settle(slot, ok);
        actions
    }

    /// The answer to the deferred command `token` (`reload`): written to the client that asked,
    /// whose next commands are then answered. Nothing if that client has gone.
    pub(crate) fn answer(
        &mut self,
        token: u64,
        text: &str,
        view: &AdminView<'_>,
    ) -> Vec<AdminAction> {
        let mut actions = Vec::new();
        let Some(slot) = self
            .clients
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.awaiting == Some(token)))
        else {
            return actions;
        };
        let client = self.clients[slot].as_mut().expect("found above");
        client.awaiting = None;
        let ok = client.send(text).is_ok() && self.answer_lines(slot, view, &mut actions);
        self.settle(slot, ok);
        actions
    }

    /// Worker `worker`'s answer to the `conns` request `token` (`None`: its mailbox was full, so
    /// it was never asked); once every worker has answered, the client gets the whole answer.
    pub(crate) fn conn_sample(
        &mut self,
        token: u64,
        worker: usize,
        sample: Option<ConnSample>,
        view: &AdminView<'_>,
    ) -> Vec<AdminAction> {
        let Some(i) = self.samples.iter().position(|s| s.token == token) else {
            // Already answered after the timeout.
            return Vec::new();
        };
        self.samples[i].answer(worker, sample);
        if !self.samples[i].is_complete() {
            return Vec::new();
        }
        let done = self.samples.swap_remove(i);
        self.answer(token, &done.render(), view)
    }

    /// Closes clients past the login deadline or idle for longer than `admin.idle_timeout`,
    /// answers the `conns` requests some worker did not answer in time, and puts paused
    /// listeners back.
    pub(crate) fn sweep(&mut self, view: &AdminView<'_>) -> Vec<AdminAction> {
        let now = Instant::now();
        for slot in 0..self.clients.len() {
            let Some(c) = &self.clients[slot] else {
                continue;
            };
            if c.awaiting.is_some() {
                continue;
            }
            if !c.logged_in && now.duration_since(c.connected) >= self.login_timeout {
                self.counters.closed_login_timeout += 1;
                self.drop_client(slot);
            } else if now.duration_since(c.last_activity) >= self.idle_timeout {
                self.counters.closed_idle += 1;
                self.drop_client(slot);
            }
        }
        if self.listeners.tick(now).is_err() {
            self.pause_listeners("the poller refused the admin listeners");
        }
        let mut actions = Vec::new();
        while let Some(i) = self.samples.iter().position(|s| s.deadline() <= now) {
            let late = self.samples.swap_remove(i);
            actions.extend(self.answer(late.token, &late.render(), view));
        }
        actions
    }

    /// Time until the admin must look again: the earliest `conns` request timing out, client
    /// login or idle deadline, or end of a listener pause.
    pub(crate) fn time_to_next(&self) -> Option<Duration> {
        let now = Instant::now();
        let samples = self.samples.iter().map(|s| s.deadline());
        // A client waiting for a deferred answer is looked at again once it has it.
        let clients = self
            .clients
            .iter()
            .flatten()
            .filter(|c| c.awaiting.is_none());
        let clients = clients.map(|c| {
            if c.logged_in {
                c.last_activity + self.idle_timeout
            } else {
                (c.connected + self.login_timeout).min(c.last_activity + self.idle_timeout)
            }
        });
        let next = samples
            .chain(clients)
            .min()
            .map(|at| at.saturating_duration_since(now));
        match (next, self.listeners.time_to_resume(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn accept(&mut self, origin: Origin) {
        if self.listeners.is_paused() {
            // Readiness reported in the same turn as the pause began.
            return;
        }
        loop {
            let stream = match self.listeners.accept(origin) {
                Ok((stream, used_reserve)) => {
                    if used_reserve {
                        self.counters.reserve_used += 1;
                        log_limited!(
                            self.pause_log,
                            Level::Warn,
                            "admin: out of file descriptors; a client got in on the reserve descriptor"
                        );
                    }
                    stream
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_descriptors(&e) => {
                    return self.pause_listeners(&e.to_string());
                }
                // The client went away before it was accepted (ECONNABORTED) or the like.
                Err(_) => return,
            };
            self.counters.clients_accepted += 1;
            let Some(slot) = self.slot_for_new_client() else {
                // Dropped: the client sees the connection close.
                self.counters.refused_busy += 1;
                log_limited!(
                    self.slots_log,
                    Level::Warn,
                    "admin: refused a client: all {MAX_CLIENTS} slots hold clients being answered"
                );
                continue;
            };
            let unix = stream.origin() == Origin::Unix;
            let key = self.first_key + LISTENER_KEYS + slot;
            if let Ok(stream) = Watched::new(&self.poller, stream, Event::readable(key)) {
                let now = Instant::now();
                self.clients[slot] = Some(Client {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    interest: (true, false),
                    close_when_written: false,
                    awaiting: None,
                    // The Unix socket's file mode is its authentication.
                    authed: self.token.is_none() || unix,
                    logged_in: false,
                    may_control: unix
                        || self.token.is_some()
                        || self.listeners.unix_path().is_none(),
                    connected: now,
                    last_activity: now,
                });
            }
        }
    }

    /// Out of descriptors without a reserve: pauses the listeners (counted, logged).
    fn pause_listeners(&mut self, cause: &str) {
        let pause = self.listeners.pause();
        self.counters.accept_pauses += 1;
        log_limited!(
            self.pause_log,
            Level::Warn,
            "admin: cannot accept ({cause}): admin listeners paused for {pause:?}"
        );
    }

    /// A free slot, or else the slot of the idle client that closing hurts least (one not
    /// logged in, then the longest silent), which is closed; `None` when every client is being
    /// answered.
    fn slot_for_new_client(&mut self) -> Option<usize> {
        if let Some(i) = self.clients.iter().position(Option::is_none) {
            return Some(i);
        }
        if self.clients.len() < MAX_CLIENTS {
            self.clients.push(None);
            return Some(self.clients.len() - 1);
        }
        let (slot, _) = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().filter(|c| c.is_idle()).map(|c| (i, c)))
            .min_by_key(|(_, c)| (c.logged_in, c.last_activity))?;
        self.counters.evicted_idle += 1;
        log_limited!(
            self.slots_log,
            Level::Warn,
            "admin: all {MAX_CLIENTS} slots taken: closed the longest idle client for a new one"
        );
        self.drop_client(slot);
        Some(slot)
    }

    fn drop_client(&mut self, slot: usize) {
        if let Some(client) = self.clients.get_mut(slot).and_then(Option::take) {
            // Out of the poller before it is closed (`Watched`).
            drop(client);
            self.listeners.client_closed();
        }
    }

    /// After a client's turn: closes it if it failed (`ok` false) or has said its last word,
    /// else sets its poller interest to what it waits for.
    fn settle(&mut self, slot: usize, ok: bool) {
        let Some(client) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if !ok || (client.close_when_written && client.output.is_empty()) {
            return self.drop_client(slot);
        }
        let wanted = client.wanted_interest();
        if wanted == client.interest {
            return;
        }
        client.interest = wanted;
        if client.stream.set_interest(wanted.0, wanted.1).is_err() {
            self.drop_client(slot);
        }
    }

    /// Reads what the client sent and answers each complete line (or HTTP request); false when
    /// the client must be closed at once.
    fn serve(&mut self, slot: usize, view: &AdminView<'_>, actions: &mut Vec<AdminAction>) -> bool {
        let token = self.token.clone();
        let Some(client) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return false;
        };
        let mut buf = [0u8; 1024];
        match client.stream.source().read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => client.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
        client.last_activity = Instant::now();
        if client.input.starts_with(b"GET ") {
            return match serve_http(client, token.as_deref(), view) {
                Ok(true) => true,
                Ok(false) => {
                    self.counters.auth_failures += 1;
                    log_bad_token(&mut self.auth_log, client);
                    true
                }
                Err(_) => false,
            };
        }
        self.answer_lines(slot, view, actions)
    }

    /// Answers the client's complete lines until one is deferred; false when the client must be
    /// closed at once.
    fn answer_lines(
        &mut self,
        slot: usize,
        view: &AdminView<'_>,
        actions: &mut Vec<AdminAction>,
    ) -> bool {
        let token = self.token.clone();
        let Some(client) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return false;
        };
        while client.awaiting.is_none() && !client.close_when_written {
            let Some(end) = client.input.iter().position(|&b| b == b'\n') else {
                break;
            };
            let line: Vec<u8> = client.input.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim().to_owned();
            let mut deferred = None;
            let (reply, outcome) = command(
                &line,
                client,
                token.as_deref(),
                view,
                actions,
                &mut deferred,
            );
            match outcome {
                Outcome::Keep => {}
                Outcome::Close => client.close_when_written = true,
                Outcome::BadToken => {
                    client.close_when_written = true;
                    self.counters.auth_failures += 1;
                    log_bad_token(&mut self.auth_log, client);
                }
                Outcome::Denied => self.counters.denied_commands += 1,
            }
            if client.send(&reply).is_err() {
                return false;
            }
            if let Some(deferred) = deferred {
                let token = self.next_token;
                self.next_token += 1;
                client.awaiting = Some(token);
                actions.push(match deferred {
                    Deferred::SampleConns { max } => {
                        self.samples
                            .push(PendingSample::new(token, max, view.workers));
                        AdminAction::SampleConns { token, max }
                    }
                    Deferred::Reload => AdminAction::Reload { token },
                    Deferred::Migrate { flow, to, force } => AdminAction::Migrate {
                        token,
                        flow,
                        to,
                        force,
                    },
                    Deferred::Rebalance => AdminAction::Rebalance { token },
                    Deferred::Pin { flow, pinned } => AdminAction::Pin {
                        token,
                        flow,
                        pinned,
                    },
                });
            }
        }
        if client.input.len() > MAX_LINE && client.awaiting.is_none() {
            client.close_when_written = true;
            return client.send("ERROR line too long\r\n").is_ok();
        }
        true
    }
}

/// What a command line leads to besides its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The session goes on.
    Keep,
    /// The client is closed once the reply is written (`quit`).
    Close,
    /// A wrong or missing token: counted, logged, and the client is closed.
    BadToken,
    /// A command that changes something, refused on the TCP port (see the module header).
    Denied,
}

/// The commands that change something: with `admin.unix` set and no token, the Unix socket's.
const CONTROL_COMMANDS: [&str; 9] = [
    "close",
    "drain",
    "loglevel",
    "migrate",
    "pin",
    "rebalance",
    "reload",
    "shutdown",
    "unpin",
];

/// Answers one command line: the reply and what follows. A command answered later by the main
/// loop (`conns`, `reload`) sets `deferred` and replies nothing yet.
fn command(
    line: &str,
    client: &mut Client,
    token: Option<&str>,
    view: &AdminView<'_>,
    actions: &mut Vec<AdminAction>,
    deferred: &mut Option<Deferred>,
) -> (String, Outcome) {
    use Outcome::Keep;
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("");
    let arg = words.next();
    if verb == "auth" {
        return match (token, arg) {
            (Some(t), Some(given)) if tokens_match(t.as_bytes(), given.as_bytes()) => {
                client.authed = true;
                client.logged_in = true;
                ("OK\r\n".into(), Keep)
            }
            (None, _) => {
                client.logged_in = true;
                ("OK no token needed\r\n".into(), Keep)
            }
            _ if client.stream.source().origin() == Origin::Unix => {
                ("OK no token needed on the Unix socket\r\n".into(), Keep)
            }
            _ => ("ERROR bad token\r\n".into(), Outcome::BadToken),
        };
    }
    if verb == "health" {
        // No token needed: balancers and probes check it (see `health`).
        return (health::health_line(view, actions), Keep);
    }
    if !client.authed {
        return (
            "ERROR auth required: send auth TOKEN first\r\n".into(),
            Keep,
        );
    }
    if !verb.is_empty() {
        client.logged_in = true;
    }
    if CONTROL_COMMANDS.contains(&verb) && !client.may_control {
        return (
            format!(
                "ERROR {verb} is served on the admin Unix socket only (admin.unix is set and admin.token is not)\r\n"
            ),
            Outcome::Denied,
        );
    }
    match verb {
        "" => (String::new(), Keep),
        "help" => (
            "help | health | stats | workers | conns [N] | close FLOW | migrate FLOW WORKER [force] | pin FLOW | unpin FLOW | rebalance | loglevel off|error|warn|info|debug|trace | reload | drain | shutdown | quit\r\nGET /metrics over HTTP for Prometheus, GET /health for probes\r\nEND\r\n".into(),
            Keep,
        ),
        "stats" => (stats_text(view), Keep),
        "workers" => (workers_text(view), Keep),
        "conns" => match conns::parse_max(arg) {
            Some(max) if words.next().is_none() => {
                *deferred = Some(Deferred::SampleConns { max });
                (String::new(), Keep)
            }
            _ => (conns::USAGE.into(), Keep),
        },
        "reload" => {
            *deferred = Some(Deferred::Reload);
            (String::new(), Keep)
        }
        "close" => match arg.and_then(parse_flow) {
            Some(flow) if flow.worker() < view.workers => {
                actions.push(AdminAction::Close(flow));
                (format!("OK closing {flow}\r\n"), Keep)
            }
            Some(flow) => (format!("ERROR flow {flow} names no worker\r\n"), Keep),
            None => ("ERROR usage: close FLOW (hex 0x... or decimal)\r\n".into(), Keep),
        },
        "migrate" => {
            let to = words.next().and_then(|w| w.parse::<usize>().ok());
            let force = match words.next() {
                None => Some(false),
                Some("force") => Some(true),
                Some(_) => None,
            };
            match (arg.and_then(parse_flow), to, force, words.next()) {
                (Some(flow), Some(to), Some(force), None) => {
                    *deferred = Some(Deferred::Migrate { flow, to, force });
                    (String::new(), Keep)
                }
                _ => (
                    "ERROR usage: migrate FLOW WORKER [force] (FLOW hex 0x... or decimal)\r\n"
                        .into(),
                    Keep,
                ),
            }
        }
        "rebalance" => {
            *deferred = Some(Deferred::Rebalance);
            (String::new(), Keep)
        }
        "pin" | "unpin" => match (arg.and_then(parse_flow), words.next()) {
            (Some(flow), None) => {
                let pinned = verb == "pin";
                *deferred = Some(Deferred::Pin { flow, pinned });
                (String::new(), Keep)
            }
            _ => (
                format!("ERROR usage: {verb} FLOW (hex 0x... or decimal)\r\n"),
                Keep,
            ),
        },
        "loglevel" => match arg.and_then(|a| a.parse::<LevelFilter>().ok()) {
            Some(level) => {
                log::set_max_level(level);
                info!("admin: log level set to {level}");
                (format!("OK log level {level}\r\n"), Keep)
            }
            None => ("ERROR usage: loglevel off|error|warn|info|debug|trace\r\n".into(), Keep),
        },
        "drain" => (health::drain(view, actions), Keep),
        "shutdown" => {
            actions.push(AdminAction::Shutdown);
            ("OK stopping\r\n".into(), Keep)
        }
        "quit" => (String::new(), Outcome::Close),
        other => (format!("ERROR unknown command '{other}' (try help)\r\n"), Keep),
    }
}

/// Whether `given` equals `expected`, in a time that depends on the lengths only: every byte
/// is compared whatever the first difference, so the answer time tells nothing about how much
/// of a guess was right.
fn tokens_match(expected: &[u8], given: &[u8]) -> bool {
    let mut differ = u8::from(expected.len() != given.len());
    for (i, &e) in expected.iter().enumerate() {
        differ |= e ^ given.get(i).copied().unwrap_or(!e);
    }
    // Keeps the compiler from turning the loop back into an early exit.
    std::hint::black_box(differ) == 0
}

fn parse_flow(text: &str) -> Option<FlowId> {
    let value = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => text.parse().ok()?,
    };
    Some(FlowId(value))
}

/// Answers one HTTP request once its head is complete, then closes the client once the response
/// is written; `Ok(false)` when it was refused for a wrong or missing token, `Err` when the client
/// must be closed at once.
fn serve_http(client: &mut Client, token: Option<&str>, view: &AdminView<'_>) -> io::Result<bool> {
    let Some(end) = client.input.windows(4).position(|w| w == b"\r\n\r\n") else {
        if client.input.len() > MAX_LINE * 8 {
            client.close_when_written = true;
            client.send("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")?;
        }
        return Ok(true);
    };
    let head = String::from_utf8_lossy(&client.input[..end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let authorized = client.stream.source().origin() == Origin::Unix
        || token.is_none_or(|t| {
            head.lines().any(|l| {
                l.split_once(':').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("authorization")
                        && value.trim().strip_prefix("Bearer ").is_some_and(|given| {
                            tokens_match(t.as_bytes(), given.trim().as_bytes())
                        })
                })
            })
        });
    let (status, body) = if path == "/health" {
        // No token needed, as the `health` line command.
        health::health_http(view)
    } else if !authorized {
        ("401 Unauthorized", String::new())
    } else if path == "/metrics" {
        ("200 OK", metrics_text(view))
    } else {
        ("404 Not Found", String::new())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.close_when_written = true;
    client.logged_in = true;
    client.send(&response)?;
    Ok(authorized || path == "/health")
}

/// Logs (rate-limited) a wrong or missing token, naming the client's address.
fn log_bad_token(limiter: &mut LogLimiter, client: &Client) {
    log_limited!(
        limiter,
        Level::Warn,
        "admin: wrong or missing token from {peer}",
        peer = match client.stream.source() {
            AdminStream::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| "an unknown address".to_owned(), |a| a.to_string()),
            AdminStream::Unix(_) => "the Unix socket".to_owned(),
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal_in_length_and_every_byte() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        assert!(!tokens_match(b"s3cret", b"s3creT"));
        assert!(!tokens_match(b"s3cret", b"s3cre"));
        assert!(!tokens_match(b"s3cret", b"s3crett"));
        assert!(!tokens_match(b"s3cret", b""));
        assert!(!tokens_match(b"\xff", b""));
        assert!(tokens_match(b"", b""));
    }
}
