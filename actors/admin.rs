//! Admin: the operators' port on the main thread. One TCP port speaks a line protocol usable
//! with `nc` and answers `GET /metrics` over HTTP with Prometheus text.
//!
//! Line commands: `help`, `stats`, `workers`, `conns [N]`, `close FLOW`, `loglevel LEVEL`,
//! `reload`, `shutdown`, `quit`; with `admin.token` set, `auth TOKEN` must come first (HTTP:
//! `Authorization: Bearer TOKEN`). Malformed input gets an `ERROR` line, a line over 1 KiB closes
//! the client, and a client that sends nothing for `admin.idle_timeout` is closed. Commands that
//! act on workers come back to the main loop as [`AdminAction`]s. `conns` and `reload` are
//! answered later ([`Admin::conn_sample`], [`Admin::answer`]): until then the client is not read,
//! so its next commands are answered in order after them. Answers are buffered per client and
//! written as the socket takes them, so a large one never blocks the main loop.

mod reports;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use log::{LevelFilter, info};
use polling::{Event, PollMode, Poller};

use crate::actors::admin_conns::{self, PendingSample};
use crate::actors::stats_reporter::{MainCounters, StatsReporter};
use crate::flow::FlowId;
use crate::message::ConnSample;
use crate::settings::AdminSettings;
use reports::{metrics_text, stats_text, workers_text};

/// Longest command line (or HTTP head) an admin client may send.
const MAX_LINE: usize = 1024;
/// Admin clients at once; more are refused.
const MAX_CLIENTS: usize = 64;
/// Most answer bytes waiting for one client; a client that reads slower is closed.
const MAX_OUTPUT: usize = 16 << 20;

/// What the main loop must do for an admin command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
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
}

/// What the admin reads from the rest of the main thread to answer.
#[derive(Debug)]
pub struct AdminView<'a> {
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
    SampleConns { max: usize },
    Reload,
}

struct Client {
    stream: TcpStream,
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
    last_activity: Instant,
}

/// The admin port and its clients.
#[derive(Debug)]
pub struct Admin {
    listener: TcpListener,
    token: Option<String>,
    idle_timeout: Duration,
    first_key: usize,
    clients: Vec<Option<Client>>,
    next_token: u64,
    /// `conns` requests waiting for the workers.
    samples: Vec<PendingSample>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("authed", &self.authed)
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
            match self.stream.write(&self.output[written..]) {
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

    /// Readable unless it waits for an answer or is closing; writable while output waits.
    fn wanted_interest(&self) -> (bool, bool) {
        (
            self.awaiting.is_none() && !self.close_when_written,
            !self.output.is_empty(),
        )
    }
}

impl Admin {
    /// Binds the admin port.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn bind(settings: &AdminSettings) -> io::Result<Admin> {
        let listener = TcpListener::bind(settings.addr)?;
        listener.set_nonblocking(true)?;
        Ok(Admin {
            listener,
            token: settings.token.clone(),
            idle_timeout: settings.idle_timeout,
            first_key: 0,
            clients: Vec::new(),
            next_token: 1,
            samples: Vec::new(),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Applies a new `admin.idle_timeout` (a reload).
    pub fn set_idle_timeout(&mut self, timeout: Duration) {
        self.idle_timeout = timeout;
    }

    /// Registers the listener under `first_key`; clients get the keys after it.
    ///
    /// # Errors
    /// The poller refused the listener.
    pub fn register(&mut self, poller: &Poller, first_key: usize) -> io::Result<()> {
        self.first_key = first_key;
        // SAFETY: the listener lives in `self` for as long as the main poller is used.
        unsafe { poller.add_with_mode(&self.listener, Event::readable(first_key), PollMode::Level) }
    }

    /// Whether poller key `key` belongs to the admin.
    pub fn owns(&self, key: usize) -> bool {
        (self.first_key..=self.first_key + MAX_CLIENTS).contains(&key)
    }

    /// Handles readiness `ev` of one of the admin's keys; returns what the main loop must do.
    pub fn on_event(
        &mut self,
        poller: &Poller,
        ev: &Event,
        view: &AdminView<'_>,
    ) -> Vec<AdminAction> {
        if ev.key == self.first_key {
            self.accept(poller);
            return Vec::new();
        }
        let slot = ev.key - self.first_key - 1;
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
        self.settle(poller, slot, ok);
        actions
    }

    /// The answer to the deferred command `token` (`reload`): written to the client that asked,
    /// whose next commands are then answered. Nothing if that client has gone.
    pub fn answer(
        &mut self,
        poller: &Poller,
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
        self.settle(poller, slot, ok);
        actions
    }

    /// Worker `worker`'s answer to the `conns` request `token` (`None`: its mailbox was full, so
    /// it was never asked); once every worker has answered, the client gets the whole answer.
    pub fn conn_sample(
        &mut self,
        poller: &Poller,
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
        self.answer(poller, token, &done.render(), view)
    }

    /// Closes clients idle for longer than `admin.idle_timeout` and answers the `conns`
    /// requests some worker did not answer in time.
    pub fn sweep(&mut self, poller: &Poller, view: &AdminView<'_>) -> Vec<AdminAction> {
        let now = Instant::now();
        for slot in 0..self.clients.len() {
            let idle = self.clients[slot].as_ref().is_some_and(|c| {
                c.awaiting.is_none() && now.duration_since(c.last_activity) >= self.idle_timeout
            });
            if idle {
                self.drop_client(poller, slot);
            }
        }
        let mut actions = Vec::new();
        while let Some(i) = self.samples.iter().position(|s| s.deadline() <= now) {
            let late = self.samples.swap_remove(i);
            actions.extend(self.answer(poller, late.token, &late.render(), view));
        }
        actions
    }

    /// Time until the earliest `conns` request times out, if one waits.
    pub fn time_to_next(&self) -> Option<Duration> {
        let now = Instant::now();
        self.samples
            .iter()
            .map(|s| s.deadline().saturating_duration_since(now))
            .min()
    }

    fn accept(&mut self, poller: &Poller) {
        while let Ok((stream, _)) = self.listener.accept() {
            let Some(slot) = self.free_slot() else {
                // Dropped: the client sees the connection close.
                continue;
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            // SAFETY: the stream is deleted from the poller in `drop_client` before it is dropped.
            let added = unsafe {
                poller.add_with_mode(
                    &stream,
                    Event::readable(self.first_key + 1 + slot),
                    PollMode::Level,
                )
            };
            if added.is_ok() {
                self.clients[slot] = Some(Client {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                    interest: (true, false),
                    close_when_written: false,
                    awaiting: None,
                    authed: self.token.is_none(),
                    last_activity: Instant::now(),
                });
            }
        }
    }

    fn free_slot(&mut self) -> Option<usize> {
        if let Some(i) = self.clients.iter().position(Option::is_none) {
            return Some(i);
        }
        (self.clients.len() < MAX_CLIENTS).then(|| {
            self.clients.push(None);
            self.clients.len() - 1
        })
    }

    fn drop_client(&mut self, poller: &Poller, slot: usize) {
        if let Some(client) = self.clients.get_mut(slot).and_then(Option::take) {
            // Out of the poller before it is closed.
            let _ = poller.delete(&client.stream);
        }
    }

    /// After a client's turn: closes it if it failed (`ok` false) or has said its last word,
    /// else sets its poller interest to what it waits for.
    fn settle(&mut self, poller: &Poller, slot: usize, ok: bool) {
        let key = self.first_key + 1 + slot;
        let Some(client) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if !ok || (client.close_when_written && client.output.is_empty()) {
            return self.drop_client(poller, slot);
        }
        let wanted = client.wanted_interest();
        if wanted == client.interest {
            return;
        }
        client.interest = wanted;
        let interest = match wanted {
            (true, false) => Event::readable(key),
            (true, true) => Event::all(key),
            (false, true) => Event::writable(key),
            (false, false) => Event::none(key),
        };
        if poller
            .modify_with_mode(&client.stream, interest, PollMode::Level)
            .is_err()
        {
            self.drop_client(poller, slot);
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
        match client.stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => client.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
        client.last_activity = Instant::now();
        if client.input.starts_with(b"GET ") {
            return serve_http(client, token.as_deref(), view).is_ok();
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
            let (reply, keep) = command(
                &line,
                client,
                token.as_deref(),
                view,
                actions,
                &mut deferred,
            );
            client.close_when_written = !keep;
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

/// Answers one command line: the reply and whether to keep the client. A command answered later
/// by the main loop (`conns`, `reload`) sets `deferred` and replies nothing yet.
fn command(
    line: &str,
    client: &mut Client,
    token: Option<&str>,
    view: &AdminView<'_>,
    actions: &mut Vec<AdminAction>,
    deferred: &mut Option<Deferred>,
) -> (String, bool) {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("");
    let arg = words.next();
    if verb == "auth" {
        return match (token, arg) {
            (Some(t), Some(given)) if t == given => {
                client.authed = true;
                ("OK\r\n".into(), true)
            }
            (None, _) => ("OK no token needed\r\n".into(), true),
            _ => ("ERROR bad token\r\n".into(), false),
        };
    }
    if !client.authed {
        return (
            "ERROR auth required: send auth TOKEN first\r\n".into(),
            true,
        );
    }
    match verb {
        "" => (String::new(), true),
        "help" => (
            "help | stats | workers | conns [N] | close FLOW | loglevel off|error|warn|info|debug|trace | reload | shutdown | quit\r\nGET /metrics over HTTP for Prometheus\r\nEND\r\n".into(),
            true,
        ),
        "stats" => (stats_text(view), true),
        "workers" => (workers_text(view), true),
        "conns" => match admin_conns::parse_max(arg) {
            Some(max) if words.next().is_none() => {
                *deferred = Some(Deferred::SampleConns { max });
                (String::new(), true)
            }
            _ => (admin_conns::USAGE.into(), true),
        },
        "reload" => {
            *deferred = Some(Deferred::Reload);
            (String::new(), true)
        }
        "close" => match arg.and_then(parse_flow) {
            Some(flow) if flow.worker() < view.workers => {
                actions.push(AdminAction::Close(flow));
                (format!("OK closing {flow}\r\n"), true)
            }
            Some(flow) => (format!("ERROR flow {flow} names no worker\r\n"), true),
            None => ("ERROR usage: close FLOW (hex 0x... or decimal)\r\n".into(), true),
        },
        "loglevel" => match arg.and_then(|a| a.parse::<LevelFilter>().ok()) {
            Some(level) => {
                log::set_max_level(level);
                info!("admin: log level set to {level}");
                (format!("OK log level {level}\r\n"), true)
            }
            None => ("ERROR usage: loglevel off|error|warn|info|debug|trace\r\n".into(), true),
        },
        "shutdown" => {
            actions.push(AdminAction::Shutdown);
            ("OK stopping\r\n".into(), true)
        }
        "quit" => (String::new(), false),
        other => (format!("ERROR unknown command '{other}' (try help)\r\n"), true),
    }
}

fn parse_flow(text: &str) -> Option<FlowId> {
    let value = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => text.parse().ok()?,
    };
    Some(FlowId(value))
}

/// Answers one HTTP request once its head is complete, then closes the client once the response
/// is written; `Err` when the client must be closed at once.
fn serve_http(client: &mut Client, token: Option<&str>, view: &AdminView<'_>) -> io::Result<()> {
    let Some(end) = client.input.windows(4).position(|w| w == b"\r\n\r\n") else {
        if client.input.len() > MAX_LINE * 8 {
            client.close_when_written = true;
            return client.send("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        }
        return Ok(());
    };
    let head = String::from_utf8_lossy(&client.input[..end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let authorized = token.is_none_or(|t| {
        head.lines().any(|l| {
            l.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("authorization")
                    && value.trim() == format!("Bearer {t}")
            })
        })
    });
    let (status, body) = if !authorized {
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
    client.send(&response)
}
