//! Admin: the operators' port on the main thread. One TCP port speaks a line protocol usable
//! with `nc` and answers `GET /metrics` over HTTP with Prometheus text.
//!
//! Line commands: `help`, `stats`, `workers`, `close FLOW`, `loglevel LEVEL`, `shutdown`,
//! `quit`; with `admin.token` set, `auth TOKEN` must come first (HTTP: `Authorization: Bearer
//! TOKEN`). Malformed input gets an `ERROR` line, a line over 1 KiB closes the client, and a
//! client that sends nothing for `admin.idle_timeout` is closed. Commands that act on workers
//! come back to the main loop as [`AdminAction`]s.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use log::{LevelFilter, info};
use polling::{Event, PollMode, Poller};

use crate::actors::stats_reporter::{MainCounters, StatsReporter};
use crate::flow::FlowId;
use crate::settings::AdminSettings;

/// Longest command line (or HTTP head) an admin client may send.
const MAX_LINE: usize = 1024;
/// Admin clients at once; more are refused.
const MAX_CLIENTS: usize = 64;

/// What the main loop must do for an admin command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// Close this flow (its worker is told).
    Close(FlowId),
    /// Stop gracefully, as on SIGTERM.
    Shutdown,
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

struct Client {
    stream: TcpStream,
    input: Vec<u8>,
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
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("authed", &self.authed)
            .finish_non_exhaustive()
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
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
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

    /// Handles readiness of `key`; returns what the main loop must do.
    pub fn on_event(
        &mut self,
        poller: &Poller,
        key: usize,
        view: &AdminView<'_>,
    ) -> Vec<AdminAction> {
        if key == self.first_key {
            self.accept(poller);
            return Vec::new();
        }
        let slot = key - self.first_key - 1;
        let mut actions = Vec::new();
        if let Some(keep) = self.serve(slot, view, &mut actions) {
            if !keep {
                self.drop_client(poller, slot);
            }
        }
        actions
    }

    /// Closes clients idle for longer than `admin.idle_timeout`.
    pub fn sweep(&mut self, poller: &Poller) {
        let now = Instant::now();
        for slot in 0..self.clients.len() {
            let idle = self.clients[slot]
                .as_ref()
                .is_some_and(|c| now.duration_since(c.last_activity) >= self.idle_timeout);
            if idle {
                self.drop_client(poller, slot);
            }
        }
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

    /// Reads what the client sent and answers each complete line (or HTTP request). `None` when
    /// the slot is empty; `Some(false)` when the client must be closed.
    fn serve(
        &mut self,
        slot: usize,
        view: &AdminView<'_>,
        actions: &mut Vec<AdminAction>,
    ) -> Option<bool> {
        let token = self.token.clone();
        let client = self.clients.get_mut(slot)?.as_mut()?;
        let mut buf = [0u8; 1024];
        match client.stream.read(&mut buf) {
            Ok(0) => return Some(false),
            Ok(n) => client.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(true),
            Err(_) => return Some(false),
        }
        client.last_activity = Instant::now();
        if client.input.starts_with(b"GET ") {
            return Some(serve_http(client, token.as_deref(), view));
        }
        while let Some(end) = client.input.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = client.input.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim().to_owned();
            let (reply, keep) = command(&line, client, token.as_deref(), view, actions);
            if client.stream.write_all(reply.as_bytes()).is_err() || !keep {
                return Some(false);
            }
        }
        if client.input.len() > MAX_LINE {
            let _ = client.stream.write_all(b"ERROR line too long\r\n");
            return Some(false);
        }
        Some(true)
    }
}

/// Answers one command line: the reply and whether to keep the client.
fn command(
    line: &str,
    client: &mut Client,
    token: Option<&str>,
    view: &AdminView<'_>,
    actions: &mut Vec<AdminAction>,
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
            "help | stats | workers | close FLOW | loglevel off|error|warn|info|debug|trace | shutdown | quit\r\nGET /metrics over HTTP for Prometheus\r\nEND\r\n".into(),
            true,
        ),
        "stats" => (stats_text(view), true),
        "workers" => (workers_text(view), true),
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

/// Every counter as `STAT name value` lines, then `END`, like memcached's `stats`.
fn stats_text(view: &AdminView<'_>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "STAT uptime_ms {}\r\nSTAT epoch {}\r\nSTAT response_lane_used_bytes {}\r\n",
        view.stats.uptime().as_millis(),
        view.stats.epoch(),
        view.main.response_lane_used_bytes
    );
    view.stats.totals().for_each(|k, v| {
        let _ = write!(out, "STAT {k} {v}\r\n");
    });
    view.main.acceptor.for_each(|k, v| {
        let _ = write!(out, "STAT acceptor_{k} {v}\r\n");
    });
    view.main.bridge.for_each(|k, v| {
        let _ = write!(out, "STAT bridge_{k} {v}\r\n");
    });
    view.main.control.for_each(|k, v| {
        let _ = write!(out, "STAT control_{k} {v}\r\n");
    });
    view.stats
        .latency_totals()
        .write_stat_lines(&mut out, "latency");
    view.main
        .response_lane_wait
        .write_stat_lines(&mut out, "response_lane_wait");
    out.push_str("END\r\n");
    out
}

/// One line per worker: its main figures.
fn workers_text(view: &AdminView<'_>) -> String {
    let mut out = String::new();
    for (i, w) in view.stats.workers().iter().enumerate() {
        match w {
            Some(s) => {
                let c = &s.counters;
                let _ = write!(
                    out,
                    "worker {i} connections {} packets_in {} bytes_in {} replies_out {} bytes_out {} mailbox_depth {} lane_used_bytes {}\r\n",
                    c.connections_open,
                    c.packets_in,
                    c.bytes_in,
                    c.replies_out,
                    c.bytes_out,
                    s.mailbox_depth,
                    s.lane_used_bytes
                );
            }
            None => {
                let _ = write!(out, "worker {i} no report yet\r\n");
            }
        }
    }
    out.push_str("END\r\n");
    out
}

/// Answers one HTTP request (once its head is complete) and closes; `true` while the head is
/// still incomplete.
fn serve_http(client: &mut Client, token: Option<&str>, view: &AdminView<'_>) -> bool {
    let Some(end) = client.input.windows(4).position(|w| w == b"\r\n\r\n") else {
        if client.input.len() > MAX_LINE * 8 {
            let _ = client.stream.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
            return false;
        }
        return true;
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
    let _ = client.stream.write_all(response.as_bytes());
    false
}

/// Gauges among the worker counters (everything else only grows).
const GAUGES: [&str; 1] = ["connections_open"];

/// Prometheus text exposition: worker counters per `worker` label, then the acceptor's and the
/// bridge's, then per-worker mailbox depth and request-lane fill.
fn metrics_text(view: &AdminView<'_>) -> String {
    let mut out = String::new();
    let mut names = Vec::new();
    view.stats.totals().for_each(|k, _| names.push(k));
    for name in names {
        let kind = if GAUGES.contains(&name) {
            "gauge"
        } else {
            "counter"
        };
        let _ = writeln!(out, "# TYPE ccsd_{name} {kind}");
        for (i, w) in view.stats.workers().iter().enumerate() {
            let mut value = 0;
            if let Some(s) = w {
                s.counters.for_each(|k, v| {
                    if k == name {
                        value = v;
                    }
                });
            }
            let _ = writeln!(out, "ccsd_{name}{{worker=\"{i}\"}} {value}");
        }
    }
    view.main.acceptor.for_each(|k, v| {
        let _ = writeln!(
            out,
            "# TYPE ccsd_acceptor_{k} counter\nccsd_acceptor_{k} {v}"
        );
    });
    view.main.bridge.for_each(|k, v| {
        let _ = writeln!(out, "# TYPE ccsd_bridge_{k} counter\nccsd_bridge_{k} {v}");
    });
    view.main.control.for_each(|k, v| {
        let _ = writeln!(out, "# TYPE ccsd_control_{k} counter\nccsd_control_{k} {v}");
    });
    let _ = writeln!(out, "# TYPE ccsd_mailbox_depth gauge");
    for (i, w) in view.stats.workers().iter().enumerate() {
        let depth = w.map_or(0, |s| s.mailbox_depth);
        let _ = writeln!(out, "ccsd_mailbox_depth{{worker=\"{i}\"}} {depth}");
    }
    let _ = writeln!(out, "# TYPE ccsd_request_lane_used_bytes gauge");
    for (i, w) in view.stats.workers().iter().enumerate() {
        let used = w.map_or(0, |s| s.lane_used_bytes);
        let _ = writeln!(out, "ccsd_request_lane_used_bytes{{worker=\"{i}\"}} {used}");
    }
    let _ = writeln!(
        out,
        "# TYPE ccsd_response_lane_used_bytes gauge\nccsd_response_lane_used_bytes {}",
        view.main.response_lane_used_bytes
    );
    let _ = writeln!(out, "# TYPE ccsd_request_latency_seconds histogram");
    for (i, w) in view.stats.workers().iter().enumerate() {
        let latency = w.map(|s| s.latency).unwrap_or_default();
        let labels = format!("worker=\"{i}\"");
        latency.write_prometheus(&mut out, "ccsd_request_latency_seconds", &labels);
    }
    let _ = writeln!(out, "# TYPE ccsd_response_lane_wait_seconds histogram");
    view.main
        .response_lane_wait
        .write_prometheus(&mut out, "ccsd_response_lane_wait_seconds", "");
    let _ = writeln!(
        out,
        "# TYPE ccsd_uptime_seconds gauge\nccsd_uptime_seconds {}",
        view.stats.uptime().as_secs()
    );
    out
}
