//! A ccsd of your own with a main-thread actor of your own: an audit feed.
//!
//! The `AuditFeed` actor listens on its own TCP port (its own fds on ccsd's main poller). Every
//! tool connected there receives one text line per custom record MCP sends (`CustomMcp`), and
//! a heartbeat line with the latest counters (`NotifyStat`) at a fixed period (its own timer).
//! A subscriber that stops reading is dropped once 64 KiB of lines wait for it, so the actor's
//! memory stays bounded.
//!
//! ```text
//! cargo run --example custom_actor -- --config my.toml --audit 127.0.0.1:7302 --heartbeat 5s
//! nc 127.0.0.1 7302          # then run your MCP; the echo MCP sends no custom records
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccsd::actor::{ActorContext, CustomMcp, MainActor, StatsSnapshot};
use ccsd::record::CustomOp;
use ccsd::runtime::Broker;
use ccsd::settings::Settings;
use clap::Parser;
use log::{info, warn};

/// The listener's token; subscribers get the tokens after it.
const LISTENER: usize = 0;
/// Most subscribers at once; more are accepted and closed at once.
const MAX_SUBSCRIBERS: usize = 64;
/// Lines waiting for one subscriber before it is dropped.
const MAX_BACKLOG: usize = 64 * 1024;
/// Payload bytes shown in a custom record's line.
const PAYLOAD_SHOWN: usize = 64;

/// One connected tool and the lines it has not read yet.
struct Subscriber {
    stream: Arc<TcpStream>,
    pending: Vec<u8>,
    write_armed: bool,
}

/// Sends audit lines to every subscriber of its port.
struct AuditFeed {
    addr: SocketAddr,
    /// Bound in `start`, so a busy port fails the broker's start with the actor's name.
    listener: Option<Arc<TcpListener>>,
    subscribers: HashMap<usize, Subscriber>,
    free_tokens: Vec<usize>,
    next_token: usize,
    heartbeat: Duration,
    next_heartbeat: Instant,
    summary: String,
    dropped_subscribers: u64,
}

impl AuditFeed {
    fn new(addr: SocketAddr, heartbeat: Duration) -> AuditFeed {
        AuditFeed {
            addr,
            listener: None,
            subscribers: HashMap::new(),
            free_tokens: Vec::new(),
            next_token: LISTENER + 1,
            heartbeat,
            next_heartbeat: Instant::now() + heartbeat,
            summary: "no stats yet".to_owned(),
            dropped_subscribers: 0,
        }
    }

    fn accept(&mut self, ctx: &mut ActorContext<'_>) {
        let Some(listener) = self.listener.clone() else {
            return;
        };
        loop {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!("audit: accept failed: {e}");
                    return;
                }
            };
            if self.subscribers.len() >= MAX_SUBSCRIBERS || stream.set_nonblocking(true).is_err() {
                continue;
            }
            let token = self.free_tokens.pop().unwrap_or_else(|| {
                self.next_token += 1;
                self.next_token - 1
            });
            let stream = Arc::new(stream);
            if let Err(e) = ctx.register(token, stream.clone(), true, false) {
                warn!("audit: cannot watch a subscriber: {e}");
                self.free_tokens.push(token);
                continue;
            }
            let subscriber = Subscriber {
                stream,
                pending: b"audit v1\n".to_vec(),
                write_armed: false,
            };
            self.subscribers.insert(token, subscriber);
            self.flush(token, ctx);
        }
    }

    /// Queues `line` for every subscriber and writes what each socket takes now.
    fn publish(&mut self, line: &str, ctx: &mut ActorContext<'_>) {
        let tokens: Vec<usize> = self.subscribers.keys().copied().collect();
        for token in tokens {
            let Some(s) = self.subscribers.get_mut(&token) else {
                continue;
            };
            if s.pending.len() + line.len() + 1 > MAX_BACKLOG {
                self.dropped_subscribers += 1;
                warn!(
                    "audit: dropping a subscriber that stopped reading ({} so far)",
                    self.dropped_subscribers
                );
                self.drop_subscriber(token, ctx);
                continue;
            }
            s.pending.extend_from_slice(line.as_bytes());
            s.pending.push(b'\n');
            self.flush(token, ctx);
        }
    }

    fn flush(&mut self, token: usize, ctx: &mut ActorContext<'_>) {
        let Some(s) = self.subscribers.get_mut(&token) else {
            return;
        };
        while !s.pending.is_empty() {
            match (&*s.stream).write(&s.pending) {
                Ok(0) => return self.drop_subscriber(token, ctx),
                Ok(n) => {
                    s.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return self.drop_subscriber(token, ctx),
            }
        }
        let want_write = !s.pending.is_empty();
        if want_write != s.write_armed {
            s.write_armed = want_write;
            if ctx.set_interest(token, true, want_write).is_err() {
                self.drop_subscriber(token, ctx);
            }
        }
    }

    /// Reads (and ignores) what a subscriber sends; its end of stream drops it.
    fn read(&mut self, token: usize, ctx: &mut ActorContext<'_>) {
        let Some(s) = self.subscribers.get_mut(&token) else {
            return;
        };
        let mut buf = [0u8; 512];
        loop {
            match (&*s.stream).read(&mut buf) {
                Ok(0) => return self.drop_subscriber(token, ctx),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.drop_subscriber(token, ctx),
            }
        }
    }

    fn drop_subscriber(&mut self, token: usize, ctx: &mut ActorContext<'_>) {
        if self.subscribers.remove(&token).is_some() {
            let _ = ctx.deregister(token);
            self.free_tokens.push(token);
        }
    }
}

impl MainActor for AuditFeed {
    fn name(&self) -> &str {
        "audit"
    }

    fn start(&mut self, ctx: &mut ActorContext<'_>) -> io::Result<()> {
        let listener = TcpListener::bind(self.addr)?;
        listener.set_nonblocking(true)?;
        let listener = Arc::new(listener);
        ctx.register(LISTENER, listener.clone(), true, false)?;
        info!("audit on tcp://{}", listener.local_addr()?);
        self.listener = Some(listener);
        Ok(())
    }

    fn on_ready(
        &mut self,
        token: usize,
        readable: bool,
        writable: bool,
        ctx: &mut ActorContext<'_>,
    ) {
        if token == LISTENER {
            return self.accept(ctx);
        }
        if readable {
            self.read(token, ctx);
        }
        if writable {
            self.flush(token, ctx);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        Some(self.next_heartbeat)
    }

    fn on_timer(&mut self, now: Instant, ctx: &mut ActorContext<'_>) {
        self.next_heartbeat = now + self.heartbeat;
        let line = format!("heartbeat {}", self.summary);
        self.publish(&line, ctx);
    }

    fn on_custom(&mut self, msg: &CustomMcp, ctx: &mut ActorContext<'_>) {
        let h = &msg.header;
        let shown = &msg.payload[..msg.payload.len().min(PAYLOAD_SHOWN)];
        let line = format!(
            "custom code={} op={:?} port={} flow={:#x} len={} payload={:?}",
            h.code,
            CustomOp::from_code(h.code),
            h.listen_port,
            h.flow.0,
            msg.payload.len(),
            String::from_utf8_lossy(shown)
        );
        self.publish(&line, ctx);
    }

    fn on_stats(&mut self, stats: &StatsSnapshot<'_>, _ctx: &mut ActorContext<'_>) {
        let t = &stats.totals;
        self.summary = format!(
            "uptime_s={} open={} packets_in={} replies_out={} custom_records={}",
            stats.uptime.as_secs(),
            t.connections_open,
            t.packets_in,
            t.replies_out,
            stats.main.bridge.custom_records
        );
    }
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "custom_actor",
    about = "ccsd with a custom main-thread actor: an audit feed of connections and stats."
)]
struct Args {
    /// The settings file (default: the file CCSD_CONFIG names, else the built-in defaults).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the audit feed listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7302")]
    audit: SocketAddr,
    /// How often the feed sends a heartbeat line (a duration: 5s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = ccsd::settings::parse_duration)]
    heartbeat: Duration,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = ccsd::settings::config_path(args.config.clone());
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("custom_actor: invalid settings:\n{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = ccsd::logging::init(
        settings.log.level,
        settings.log.file.as_deref(),
        settings.log.to_stderr(),
    ) {
        eprintln!("custom_actor: {e}");
        return ExitCode::from(2);
    }
    let audit = AuditFeed::new(args.audit, args.heartbeat);
    let broker = match Broker::builder()
        .actor(audit)
        .settings_file(args.config.as_deref())
        .start(&settings)
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("custom_actor: {e}");
            return ExitCode::from(2);
        }
    };
    match broker.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_actor: {e}");
            ExitCode::FAILURE
        }
    }
}
