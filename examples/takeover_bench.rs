//! Hot restart's stall, measured from the clients' side (docs/benchmarks.md, "Hot restart: the
//! stall"). Run it through `benches/takeover.sh`, which builds everything in release mode.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/takeover_bench [--sizes 1000,10000,25000] [--rounds 3] [--active 200]
//! ```
//!
//! One run, for N connections: the release `ccsd` (a `length` listener and the admin port on
//! port 0, a queue name of its own, removed from /dev/shm afterwards, an idle timeout longer than
//! the run) and `echo_mcp`; N client connections, each proven with one round trip. The first
//! `--active` of them keep doing round trips, one request in flight each, driven by one client
//! thread; the others stay open and idle. Then `ccsd --takeover` starts on the same settings, and:
//!
//! - as soon as the old process logs that the new one asks to take over (it freezes right after),
//!   every idle connection sends one request (a *probe*): each waits across the handover;
//! - **stall**: the longest round trip of an active connection that ended after the start of
//!   `ccsd --takeover` and began before the old process's exit, and the longest wait of a probe
//!   (its reply's arrival minus its request's sending); beside them, the longest active round
//!   trip that ended in the second before the takeover started (the *baseline*: the machine's
//!   own noise);
//! - **all answered**: from the start of `ccsd --takeover` until every idle connection has its
//!   probe's reply;
//! - the old process's own figure, "handed N connections over to the new process in X" (from
//!   the freeze to the commit), its exit status, and the new process's time to "ccsd ready";
//! - **zero lost**: after the old process exited, every one of the N connections answers one
//!   more round trip; a reply that is not the echo of its request (lost, doubled, misrouted), an
//!   end of stream or a reset on any connection is a failure, reported, and the exit status is 1.
//!
//! Runs alternate over the sizes, `--rounds` times; the report gives every run, then the median
//! and the maximum per size. Both ccsd processes hold a copy of every connection's descriptor
//! during the handover, so the driver raises its open-file limit (which the servers inherit) to
//! twice the largest size plus room, raising the hard limit too when it is allowed to
//! (`CAP_SYS_RESOURCE`), and refuses a size that does not fit.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/servers.rs"]
mod servers;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use polling::{Event, Events, Poller};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use servers::{Logged, Scratch, built_bin, ccsd_command, logged_addr, parse_handed};

/// Bytes of a request body: the connection's index and the request's sequence number (8 bytes
/// each, little-endian), then filler.
const BODY_LEN: usize = 32;
/// A request on the wire: the `length` framing's 4-byte big-endian length, then the body. The
/// echo MCP sends it back unchanged.
const PACKET_LEN: usize = 4 + BODY_LEN;
/// How long any one wait (a reply, a log line, a process's exit) may take.
const PATIENCE: Duration = Duration::from_secs(60);
/// The window before the takeover whose longest active round trip is reported as the baseline.
const BASELINE: Duration = Duration::from_secs(1);
/// How long the active connections keep going after the old process exited.
const AFTER: Duration = Duration::from_millis(500);
/// Descriptors beyond two per connection: the servers' listeners, pollers, lanes, files.
const FD_ROOM: u64 = 100;
/// Local ports left to other programs when `max` is the port range's.
const PORT_ROOM: usize = 1000;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "takeover_bench",
    about = "The longest time any client waits across one hot restart (ccsd --takeover), at several numbers of connections (run it through benches/takeover.sh)."
)]
struct Args {
    /// Numbers of connections, comma-separated; runs alternate over them. `max`: as many as the
    /// open-file limit allows (two descriptors per connection in the old ccsd during the
    /// handover) and the local port range (one port per connection), whichever is fewer.
    #[arg(long, value_name = "N,...", value_delimiter = ',', default_value = "1000,5000,max", value_parser = size)]
    sizes: Vec<Size>,
    /// Runs per size.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = flags::positive::<usize>)]
    rounds: usize,
    /// Connections doing round trips throughout (one request in flight each); the rest are idle
    /// until their probe.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = flags::positive::<usize>)]
    active: usize,
    /// Print both ccsd processes' log lines from the start of the takeover to the end of each
    /// run (to stderr), each with the ms since the takeover started when this driver read it.
    #[arg(long)]
    logs: bool,
    /// ccsd's `broker.workers`.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = flags::positive::<usize>)]
    workers: usize,
}

/// A number of connections on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    Count(usize),
    /// As many as this machine allows (see [`machine_max`]).
    Max,
}

fn size(s: &str) -> Result<Size, String> {
    if s == "max" {
        Ok(Size::Max)
    } else {
        flags::positive(s).map(Size::Count)
    }
}

/// The most connections this machine allows one run: the old ccsd holds two descriptors per
/// connection during the handover, under the hard open-file limit (when this process may not
/// raise it); every connection takes a local port from `ip_local_port_range` (to one listener
/// address), less room for the ports other programs use.
fn machine_max() -> (usize, String) {
    let hard = getrlimit(Resource::Nofile).maximum;
    let by_fds = hard.map_or(usize::MAX, |h| (h.saturating_sub(FD_ROOM) / 2) as usize);
    let ports = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            let mut it = r.split_whitespace().map(|p| p.parse::<usize>().ok());
            Some(it.next()??.abs_diff(it.next()??) + 1)
        })
        .unwrap_or(usize::MAX);
    let by_ports = ports.saturating_sub(PORT_ROOM);
    if by_fds <= by_ports {
        (
            by_fds,
            format!(
                "the hard open-file limit, {}: 2 per connection in the old ccsd plus {FD_ROOM}",
                hard.unwrap_or(u64::MAX)
            ),
        )
    } else {
        (
            by_ports,
            format!("the local port range ({ports} ports) less {PORT_ROOM}"),
        )
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("takeover_bench: connections were lost or answered wrongly (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("takeover_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every run; `Ok(false)` when a connection was lost or answered wrongly in one of them.
fn run(args: &Args) -> Result<bool, String> {
    let (max, limited_by) = machine_max();
    let sizes: Vec<usize> = args
        .sizes
        .iter()
        .map(|s| match s {
            Size::Count(n) => *n,
            Size::Max => max,
        })
        .collect();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let limit = raise_fd_limit(2 * largest as u64 + FD_ROOM)?;
    println!(
        "open-file limit {limit} (this driver and both ccsd processes), {} workers, {} active connections; the most connections here: {max}, limited by {limited_by}\n",
        args.workers, args.active
    );
    println!(
        "| N | round | stall µs (active) | probe wait max µs | all answered ms | baseline max µs | handed over in (old log) ms | new ready ms | old exit | lost |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    let mut runs: Vec<(usize, Run)> = Vec::new();
    for round in 1..=args.rounds {
        for &n in &sizes {
            eprintln!("takeover_bench: {n} connections, round {round}");
            let r = one_run(args, n)?;
            println!(
                "| {n} | {round} | {:.0} | {:.0} | {:.1} | {:.0} | {:.1} | {:.1} | {} | {} |",
                r.stall_us,
                r.probe_max_us,
                r.all_answered_ms,
                r.baseline_us,
                r.handed_ms,
                r.ready_ms,
                r.old_exit,
                r.failures.len(),
            );
            for f in r.failures.iter().take(10) {
                println!("  failure: {f}");
            }
            runs.push((n, r));
        }
    }
    println!(
        "\n| N | runs | stall µs median / max | probe wait µs median / max | all answered ms median / max | baseline µs median / max | handed over in ms median / max | new ready ms median / max | lost |"
    );
    println!("|---:|---:|---|---|---|---|---|---|---:|");
    for &n in &sizes {
        let of_n: Vec<&Run> = runs
            .iter()
            .filter(|(m, _)| *m == n)
            .map(|(_, r)| r)
            .collect();
        let pair = |pick: fn(&Run) -> f64, digits: usize| {
            let values = sorted(of_n.iter().map(|r| pick(r)).collect());
            format!(
                "{:.digits$} / {:.digits$}",
                quantile(&values, 0.5),
                quantile(&values, 1.0)
            )
        };
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
            of_n.len(),
            pair(|r| r.stall_us, 0),
            pair(|r| r.probe_max_us, 0),
            pair(|r| r.all_answered_ms, 1),
            pair(|r| r.baseline_us, 0),
            pair(|r| r.handed_ms, 1),
            pair(|r| r.ready_ms, 1),
            of_n.iter().map(|r| r.failures.len()).sum::<usize>(),
        );
    }
    Ok(runs
        .iter()
        .all(|(_, r)| r.failures.is_empty() && r.old_exit == "0"))
}

/// Raises this process's open-file limit (inherited by the servers it starts) to `needed`: the
/// soft limit up to the hard one, and the hard one too when this process may. Returns the soft
/// limit; fails when it stays below `needed`.
fn raise_fd_limit(needed: u64) -> Result<u64, String> {
    let current = getrlimit(Resource::Nofile);
    if current.current.is_none_or(|soft| soft >= needed) {
        return Ok(current.current.unwrap_or(u64::MAX));
    }
    let hard = current.maximum.map(|h| h.max(needed));
    let raised = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(needed),
            maximum: hard,
        },
    );
    if raised.is_ok() {
        return Ok(needed);
    }
    let hard = current.maximum.unwrap_or(needed);
    Err(format!(
        "the sizes need {needed} open files per process (both ccsd processes hold every connection during the handover), but the hard limit is {hard} and cannot be raised here: ask for sizes up to {}",
        hard.saturating_sub(FD_ROOM) / 2
    ))
}

// ---------------------------------------------------------------------------------------------
// The servers and their logs

/// ccsd's settings for a run with `n` connections.
fn config(args: &Args, name: &str, n: usize) -> String {
    format!(
        "[broker]\nworkers = {}\nmax_connections = {}\n\n[queues]\ndir = \"/dev/shm\"\nname = \"{name}\"\n\n\
         [admin]\naddr = \"127.0.0.1:0\"\n\n[limits]\nidle_timeout = \"1h\"\n\n\
         [[listen]]\naddr = \"127.0.0.1:0\"\nframing = \"length\"\nbacklog = 4096\n",
        args.workers,
        n + 64,
    )
}

// ---------------------------------------------------------------------------------------------
// The client connections

/// One client connection, non-blocking, with at most one request in flight.
struct Client {
    stream: TcpStream,
    index: u64,
    /// The sequence number of the next request.
    next_seq: u64,
    /// When the request in flight went out.
    sent_at: Instant,
    /// The reply read so far.
    reply: [u8; PACKET_LEN],
    got: usize,
}

impl Client {
    fn connect(addr: SocketAddr, index: usize) -> Result<Client, String> {
        let stream =
            TcpStream::connect(addr).map_err(|e| format!("connection {index}: connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Client {
            stream,
            index: index as u64,
            next_seq: 0,
            sent_at: Instant::now(),
            reply: [0; PACKET_LEN],
            got: 0,
        })
    }

    /// The request `seq` of this connection.
    fn request(&self, seq: u64) -> [u8; PACKET_LEN] {
        let mut packet = [b'x'; PACKET_LEN];
        packet[..4].copy_from_slice(&(BODY_LEN as u32).to_be_bytes());
        packet[4..12].copy_from_slice(&self.index.to_le_bytes());
        packet[12..20].copy_from_slice(&seq.to_le_bytes());
        packet
    }

    /// Sends the next request (36 bytes always fit in an empty socket buffer).
    fn send(&mut self) -> Result<(), String> {
        let packet = self.request(self.next_seq);
        self.sent_at = Instant::now();
        match self.stream.write(&packet) {
            Ok(PACKET_LEN) => Ok(()),
            Ok(k) => Err(format!(
                "connection {}: sent {k} of {PACKET_LEN} bytes",
                self.index
            )),
            Err(e) => Err(format!("connection {}: send: {e}", self.index)),
        }
    }

    /// Reads what there is of the reply; `Some(when it completed)` once it is whole and is the
    /// echo of the request in flight.
    fn receive(&mut self) -> Result<Option<Instant>, String> {
        loop {
            match self.stream.read(&mut self.reply[self.got..]) {
                Ok(0) => {
                    return Err(format!(
                        "connection {}: end of stream (request {} in flight)",
                        self.index, self.next_seq
                    ));
                }
                Ok(k) => {
                    self.got += k;
                    if self.got == PACKET_LEN {
                        let at = Instant::now();
                        if self.reply != self.request(self.next_seq) {
                            return Err(format!(
                                "connection {}: the reply is not the echo of request {}",
                                self.index, self.next_seq
                            ));
                        }
                        self.got = 0;
                        self.next_seq += 1;
                        return Ok(Some(at));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("connection {}: {e}", self.index)),
            }
        }
    }
}

/// The clients of a set registered in a poller (key: position in the set); they are removed
/// from it on drop, before any of them can be closed.
struct Polled<'a> {
    poller: Poller,
    clients: &'a mut [Client],
}

impl<'a> Polled<'a> {
    fn new(clients: &'a mut [Client]) -> Result<Polled<'a>, String> {
        let poller = Poller::new().map_err(|e| format!("poller: {e}"))?;
        for (key, c) in clients.iter().enumerate() {
            // SAFETY: every client outlives this registration: `Polled` borrows the clients
            // mutably for its whole life and deletes each from the poller in `drop`.
            unsafe { poller.add(&c.stream, Event::readable(key)) }
                .map_err(|e| format!("poller add: {e}"))?;
        }
        Ok(Polled { poller, clients })
    }

    /// Waits up to `timeout` for replies; calls `each(key, client, outcome)` for every client
    /// that had something to read, and re-arms it (the poller is oneshot).
    fn poll(
        &mut self,
        events: &mut Events,
        timeout: Duration,
        mut each: impl FnMut(usize, &mut Client, Result<Option<Instant>, String>),
    ) -> Result<(), String> {
        events.clear();
        self.poller
            .wait(events, Some(timeout))
            .map_err(|e| format!("poll: {e}"))?;
        for ev in events.iter() {
            let client = &mut self.clients[ev.key];
            let outcome = client.receive();
            let failed = outcome.is_err();
            each(ev.key, client, outcome);
            if !failed {
                self.poller
                    .modify(&client.stream, Event::readable(ev.key))
                    .map_err(|e| format!("poller modify: {e}"))?;
            }
        }
        Ok(())
    }
}

impl Drop for Polled<'_> {
    fn drop(&mut self) {
        for c in self.clients.iter() {
            let _ = self.poller.delete(&c.stream);
        }
    }
}

fn events() -> Events {
    Events::with_capacity(NonZeroUsize::new(1024).expect("above 0"))
}

/// One round trip on each of `clients` at once (a probe): when each request went out and its
/// reply came back (`None`: it failed; its reason is in the failures).
struct Probe {
    sent: Vec<Instant>,
    received: Vec<Option<Instant>>,
    failures: Vec<String>,
}

fn probe(clients: &mut [Client]) -> Result<Probe, String> {
    let mut result = Probe {
        sent: Vec::with_capacity(clients.len()),
        received: vec![None; clients.len()],
        failures: Vec::new(),
    };
    let mut waiting = 0;
    for c in clients.iter_mut() {
        if let Err(e) = c.send() {
            result.failures.push(e);
        } else {
            waiting += 1;
        }
        result.sent.push(c.sent_at);
    }
    let mut polled = Polled::new(clients)?;
    let mut events = events();
    let deadline = Instant::now() + PATIENCE;
    while waiting > 0 {
        if Instant::now() > deadline {
            result.failures.push(format!(
                "{waiting} probes without a reply after {PATIENCE:?}"
            ));
            break;
        }
        polled.poll(
            &mut events,
            Duration::from_millis(100),
            |key, _, outcome| match outcome {
                Ok(None) => {}
                Ok(Some(at)) => {
                    result.received[key] = Some(at);
                    waiting -= 1;
                }
                Err(e) => {
                    result.failures.push(e);
                    waiting -= 1;
                }
            },
        )?;
    }
    Ok(result)
}

/// What the active connections did: every round trip (sent, received) and the failures.
struct Driven {
    trips: Vec<(Instant, Instant)>,
    failures: Vec<String>,
}

/// Keeps one request in flight on each of `clients` until `stop`, then waits for the replies
/// due.
fn drive(clients: &mut [Client], stop: &AtomicBool) -> Result<Driven, String> {
    let mut trips = Vec::new();
    let mut failures = Vec::new();
    let mut in_flight = 0;
    for c in clients.iter_mut() {
        match c.send() {
            Ok(()) => in_flight += 1,
            Err(e) => failures.push(e),
        }
    }
    let mut polled = Polled::new(clients)?;
    let mut events = events();
    let mut deadline = None;
    while in_flight > 0 {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping {
            let d = *deadline.get_or_insert_with(|| Instant::now() + PATIENCE);
            if Instant::now() > d {
                failures.push(format!(
                    "{in_flight} active requests without a reply after {PATIENCE:?}"
                ));
                break;
            }
        }
        polled.poll(
            &mut events,
            Duration::from_millis(10),
            |_, client, outcome| match outcome {
                Ok(None) => {}
                Ok(Some(at)) => {
                    trips.push((client.sent_at, at));
                    if stopping {
                        in_flight -= 1;
                    } else if let Err(e) = client.send() {
                        failures.push(e);
                        in_flight -= 1;
                    }
                }
                Err(e) => {
                    failures.push(e);
                    in_flight -= 1;
                }
            },
        )?;
    }
    Ok(Driven { trips, failures })
}

// ---------------------------------------------------------------------------------------------
// One run

/// What one run measured.
struct Run {
    /// The longest round trip of an active connection that ended after the takeover started and
    /// began before the old process exited.
    stall_us: f64,
    /// The longest wait of a probe sent to an idle connection at the freeze.
    probe_max_us: f64,
    /// From the start of `ccsd --takeover` until every probe had its reply.
    all_answered_ms: f64,
    /// The longest active round trip that ended in the second before the takeover started.
    baseline_us: f64,
    /// The old process's own "handed ... over ... in X".
    handed_ms: f64,
    /// From the start of `ccsd --takeover` to its "ccsd ready".
    ready_ms: f64,
    /// The old process's exit code (or how it ended).
    old_exit: String,
    failures: Vec<String>,
}

fn one_run(args: &Args, n: usize) -> Result<Run, String> {
    let scratch = Scratch::new(&format!("ccsd-tobench-{n}"), |name| config(args, name, n))?;
    let mut old = Logged::start(ccsd_command(&scratch.config, false)?, PATIENCE)?;
    old.wait_for("ccsd ready")?;
    let addr = logged_addr(&old.seen, "listening on tcp://")?;
    let mut cmd = Command::new(built_bin("echo_mcp")?);
    cmd.arg("--config").arg(&scratch.config);
    let (_mcp, _) = servers::start(cmd, "attached")?;

    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        clients.push(Client::connect(addr, i)?);
    }
    let proof = probe(&mut clients)?;
    if let Some(f) = proof.failures.first() {
        return Err(format!("before the takeover: {f}"));
    }
    let active_count = args.active.min(n);
    let idle = clients.split_off(active_count);
    let mut active = clients;

    let stop = Arc::new(AtomicBool::new(false));
    let driver = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let outcome = drive(&mut active, &stop);
            (active, outcome)
        })
    };
    let mut idle = idle;
    // The baseline window: the active load alone.
    thread::sleep(BASELINE);

    let started = Instant::now();
    let mut new = Logged::start(ccsd_command(&scratch.config, true)?, PATIENCE)?;
    let asked = old.wait_for("asks to take over");
    // The old process freezes right after that line: the probes wait across the handover.
    let during = match &asked {
        Ok(_) => Some(probe(&mut idle)?),
        Err(_) => None,
    };
    let handed = asked.and_then(|_| old.wait_for("connections over to the new process in "));
    let ready = handed.and_then(|h| Ok((h, new.wait_for("ccsd ready")?)));
    let old_exit = old.wait_exit();
    let ended = Instant::now();
    let ((_, handed_line), (ready_at, _)) = match ready {
        Ok(r) => r,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            let _ = driver.join();
            return Err(format!(
                "the takeover did not complete: {e}\nthe new process's log:\n{}",
                new.lines_since(started)
                    .into_iter()
                    .map(|(_, l)| l)
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    };
    thread::sleep(AFTER);
    stop.store(true, Ordering::Relaxed);
    if args.logs {
        let mut lines: Vec<(f64, String)> = old
            .lines_since(started)
            .into_iter()
            .map(|(ms, l)| (ms, format!("old: {l}")))
            .chain(
                new.lines_since(started)
                    .into_iter()
                    .map(|(ms, l)| (ms, format!("new: {l}"))),
            )
            .collect();
        lines.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (ms, line) in lines {
            eprintln!("{ms:>9.1} ms  {line}");
        }
    }
    let (active, driven) = driver.join().map_err(|_| "the client thread panicked")?;
    let Driven {
        trips,
        mut failures,
    } = driven?;
    let during = during.expect("the takeover completed");
    failures.extend(during.failures.iter().cloned());

    // Every connection, once more, after the old process is gone.
    let mut all = active;
    all.append(&mut idle);
    let after = probe(&mut all)?;
    failures.extend(
        after
            .failures
            .iter()
            .map(|f| format!("after the takeover: {f}")),
    );

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let stall_us = trips
        .iter()
        .filter(|(s, r)| *s <= ended && *r >= started)
        .map(|(s, r)| us(*r - *s))
        .fold(0.0, f64::max);
    let baseline_us = trips
        .iter()
        .filter(|(_, r)| *r < started && *r >= started - BASELINE)
        .map(|(s, r)| us(*r - *s))
        .fold(0.0, f64::max);
    let answered: Vec<Instant> = during.received.iter().flatten().copied().collect();
    let probe_max_us = during
        .sent
        .iter()
        .zip(&during.received)
        .filter_map(|(s, r)| Some(us(r.as_ref()?.duration_since(*s))))
        .fold(0.0, f64::max);
    let all_answered_ms = answered.iter().max().map_or(f64::NAN, |last| {
        last.duration_since(started).as_secs_f64() * 1e3
    });
    Ok(Run {
        stall_us,
        probe_max_us,
        all_answered_ms,
        baseline_us,
        handed_ms: parse_handed_ms(&handed_line, n, &mut failures),
        ready_ms: ready_at.duration_since(started).as_secs_f64() * 1e3,
        old_exit,
        failures,
    })
}

/// The duration in the old process's "handed N connections over to the new process in X;
/// exiting", in ms; a count other than `n` is a failure.
fn parse_handed_ms(line: &str, n: usize, failures: &mut Vec<String>) -> f64 {
    let (count, ms) = parse_handed(line);
    if count != Some(n as u64) {
        failures.push(format!(
            "the old process handed over {count:?} connections, not {n}: {line}"
        ));
    }
    ms.unwrap_or(f64::NAN)
}

/// The value at quantile `q` of sorted `values` (nearest rank); NaN when empty.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servers::parse_debug_duration;

    #[test]
    fn durations_read_as_debug_prints_them() {
        for d in [
            Duration::from_nanos(40),
            Duration::from_micros(830),
            Duration::from_micros(12_345),
            Duration::from_millis(1_234),
        ] {
            let back = parse_debug_duration(&format!("{d:?}")).unwrap();
            assert!((back.as_secs_f64() - d.as_secs_f64()).abs() < 1e-9, "{d:?}");
        }
        assert_eq!(parse_debug_duration("soon"), None);
    }

    #[test]
    fn the_handed_over_line_gives_its_duration_and_checks_its_count() {
        let line =
            "INFO hot restart: handed 1000 connections over to the new process in 12.5ms; exiting";
        let mut failures = Vec::new();
        assert_eq!(parse_handed_ms(line, 1000, &mut failures), 12.5);
        assert!(failures.is_empty());
        parse_handed_ms(line, 999, &mut failures);
        assert_eq!(failures.len(), 1);
    }
}
