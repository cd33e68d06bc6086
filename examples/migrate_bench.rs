//! Moving connections between workers, measured from the client's side (docs/benchmarks.md,
//! "Moving connections between workers"). Run it through `benches/migrate.sh`, which builds
//! everything in release mode.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/migrate_bench [--migrations 300] [--heavy 4] [--seconds 5] [--rounds 3]
//! ```
//!
//! Each measurement starts the release `ccsd` (2 workers, admin port on port 0, one `length`
//! listener on port 0, a queue name of its own, removed from /dev/shm afterwards) and `echo_mcp`:
//!
//! - **gap**: one client doing request/reply round trips (one in flight, then `--pipeline` in
//!   flight) while an admin client sends a `migrate` every `--interval-ms`. Phases of
//!   `--phase-commands` commands alternate: in a *moving* phase each command moves the connection
//!   to the other worker; in a *still* phase it names the worker the connection is on, which ccsd
//!   refuses (`ERROR the flow is on that worker already`) without touching the connection, so both
//!   phases carry the same admin traffic and differ only by the moves. Reports the round trips,
//!   the longest silence between two replies around each command (the client-side gap) and the
//!   admin round trip of `migrate`.
//! - **skew**: `--heavy` pipelining clients all moved onto worker 0 before the load starts, for
//!   `--seconds`, once with `broker.rebalance = false` and once with `rebalance = true`,
//!   `rebalance_after = "500ms"` (a ccsd start each), alternating over `--rounds`. Reports
//!   throughput, latency, each worker's CPU, the rebalancer's moves and where the clients ended.

#[path = "common/flags.rs"]
mod flags;
#[path = "common/servers.rs"]
mod servers;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use servers::{Scratch, Server, logged_addr, start_ccsd_and_mcp};

/// Bytes of a request body: its sequence number (8 bytes, little-endian), then filler.
const BODY_LEN: usize = 32;
/// A request on the wire: the `length` framing's 4-byte big-endian length, then the body. The
/// echo MCP sends it back unchanged.
const PACKET_LEN: usize = 4 + BODY_LEN;
/// How long any one wait (a reply, an admin answer, a connection showing up) may take.
const PATIENCE: Duration = Duration::from_secs(30);
/// Round trips before the gap measurement's first phase, not counted.
const WARM_UP: Duration = Duration::from_millis(300);
/// How often the skewed load looks at the rebalancer's moves.
const MOVE_WATCH: Duration = Duration::from_millis(100);

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "migrate_bench",
    about = "The client-side gap of moving a connection between ccsd's workers, and a skewed load with rebalancing off and on (run it through benches/migrate.sh)."
)]
struct Args {
    /// Moves per client in the gap measurement (and as many refused commands in the still phases).
    #[arg(long, value_name = "N", default_value_t = 300, value_parser = flags::positive::<usize>)]
    migrations: usize,
    /// Milliseconds between two admin commands in the gap measurement.
    #[arg(long = "interval-ms", value_name = "MS", default_value_t = 20, value_parser = flags::positive::<u64>)]
    interval_ms: u64,
    /// Admin commands per phase of the gap measurement (phases alternate: still, moving).
    #[arg(long = "phase-commands", value_name = "N", default_value_t = 50, value_parser = flags::positive::<usize>)]
    phase_commands: usize,
    /// Requests in flight of the gap measurement's pipelining client.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = flags::positive::<usize>)]
    pipeline: usize,
    /// Heavy clients in the skewed load.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = flags::positive::<usize>)]
    heavy: usize,
    /// Requests in flight per heavy client.
    #[arg(long = "heavy-pipeline", value_name = "N", default_value_t = 16, value_parser = flags::positive::<usize>)]
    heavy_pipeline: usize,
    /// Seconds of skewed load per run.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = flags::positive_seconds)]
    seconds: Duration,
    /// Rounds of the skewed load, each one run with rebalancing off, then one with it on.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = flags::positive::<usize>)]
    rounds: usize,
    /// Which measurements to make.
    #[arg(long, value_enum, default_value_t = Only::All)]
    only: Only,
}

/// The measurements `--only` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    All,
    Gap,
    Skew,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = (|| {
        if args.only != Only::Skew {
            gap_measurement(&args)?;
        }
        if args.only != Only::Gap {
            skew_measurement(&args)?;
        }
        Ok::<(), String>(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("migrate_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ccsd, its admin port and the clients

/// A running ccsd and echo MCP on a configuration of their own; dropping it stops both and then
/// removes the configuration and the lanes (fields drop in order).
struct Bench {
    ccsd: Server,
    mcp: Server,
    _scratch: Scratch,
    addr: SocketAddr,
    admin_addr: SocketAddr,
}

impl Bench {
    /// Starts ccsd with 2 workers, a `length` listener and the admin port, both on port 0, and
    /// `broker_extra` added to `[broker]`; then the echo MCP.
    fn start(label: &str, broker_extra: &str) -> Result<Bench, String> {
        let scratch = Scratch::new(&format!("ccsd-migbench-{label}"), |name| {
            format!(
                "[broker]\nworkers = 2\n{broker_extra}\n[queues]\ndir = \"/dev/shm\"\nname = \"{name}\"\n\
                 [stats]\ninterval = \"250ms\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
                 [[listen]]\naddr = \"127.0.0.1:0\"\nframing = \"length\"\n"
            )
        })?;
        let (ccsd, lines, mcp) = start_ccsd_and_mcp(&scratch.config, "echo_mcp")?;
        Ok(Bench {
            addr: logged_addr(&lines, "listening on tcp://")?,
            admin_addr: logged_addr(&lines, "admin on tcp://")?,
            ccsd,
            mcp,
            _scratch: scratch,
        })
    }

    /// A client connection, proven with one round trip, and its flow as admin `conns` names it.
    fn client(&self, admin: &mut Admin) -> Result<(TcpStream, String), String> {
        let mut stream = TcpStream::connect(self.addr).map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(PATIENCE))
            .map_err(|e| e.to_string())?;
        let mut probe = Vec::new();
        push_request(&mut probe, u64::MAX);
        stream.write_all(&probe).map_err(|e| e.to_string())?;
        let mut reply = [0; PACKET_LEN];
        stream
            .read_exact(&mut reply)
            .map_err(|e| format!("first reply: {e}"))?;
        if reply[..] != probe[..] {
            return Err("the first reply is not the echo of the request".into());
        }
        let me = stream.local_addr().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(conn) = admin.conns()?.into_iter().find(|c| c.peer == me) {
                return Ok((stream, conn.flow));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "admin conns does not show the connection from {me}"
                ));
            }
        }
    }

    /// CPU seconds used so far by each worker thread (`ccsd-worker-N`), ccsd's other threads
    /// (the main thread), the MCP and this driver (the clients).
    fn cpu(&self) -> CpuSample {
        let mut sample = CpuSample {
            mcp: self.mcp.cpu_seconds(),
            clients: cpu_seconds(Path::new("/proc/self/stat")),
            ..CpuSample::default()
        };
        let tasks = format!("/proc/{}/task", self.ccsd.child.id());
        for task in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let seconds = cpu_seconds(&task.path().join("stat"));
            match comm
                .trim()
                .strip_prefix("ccsd-worker-")
                .and_then(|i| i.parse::<usize>().ok())
            {
                Some(index) => {
                    if sample.workers.len() <= index {
                        sample.workers.resize(index + 1, 0.0);
                    }
                    sample.workers[index] = seconds;
                }
                None => sample.main += seconds,
            }
        }
        sample
    }
}

/// User + system CPU seconds from a `/proc/.../stat` file; 0 when it cannot be read.
fn cpu_seconds(stat: &Path) -> f64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the parenthesised name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
}

/// CPU seconds used so far (user + system), from `/proc`.
#[derive(Debug, Default, Clone)]
struct CpuSample {
    /// By worker index.
    workers: Vec<f64>,
    /// ccsd's other threads: the main thread (acceptor, MCP bridge, admin).
    main: f64,
    mcp: f64,
    /// This driver: the clients' threads and the admin client.
    clients: f64,
}

impl CpuSample {
    /// The CPU used from `earlier` to this sample, in % of one core over `seconds`: each worker,
    /// then the main thread, the MCP and the clients.
    fn percent_since(&self, earlier: &CpuSample, seconds: f64) -> Vec<f64> {
        let mut used: Vec<f64> = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, s)| s - earlier.workers.get(i).copied().unwrap_or(0.0))
            .collect();
        used.push(self.main - earlier.main);
        used.push(self.mcp - earlier.mcp);
        used.push(self.clients - earlier.clients);
        used.iter().map(|s| 100.0 * s / seconds).collect()
    }
}

/// One line of admin `conns`.
struct Conn {
    flow: String,
    worker: usize,
    peer: SocketAddr,
}

/// An admin session.
struct Admin {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Admin {
    fn connect(addr: SocketAddr) -> Result<Admin, String> {
        let writer = TcpStream::connect(addr).map_err(|e| format!("admin connect: {e}"))?;
        writer.set_nodelay(true).map_err(|e| e.to_string())?;
        writer
            .set_read_timeout(Some(PATIENCE))
            .map_err(|e| e.to_string())?;
        let reader = BufReader::new(writer.try_clone().map_err(|e| e.to_string())?);
        Ok(Admin { writer, reader })
    }

    /// Sends `command` and returns the first line of the answer.
    fn ask(&mut self, command: &str) -> Result<String, String> {
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| format!("admin {command}: {e}"))?;
        self.line(command)
    }

    fn line(&mut self, command: &str) -> Result<String, String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(format!("admin closed during {command}")),
            Ok(_) => Ok(line.trim_end().to_owned()),
            Err(e) => Err(format!("admin {command}: {e}")),
        }
    }

    /// Sends `command` and returns the lines of the answer up to `END`.
    fn ask_until_end(&mut self, command: &str) -> Result<Vec<String>, String> {
        let mut lines = vec![self.ask(command)?];
        while lines.last().map(String::as_str) != Some("END") {
            lines.push(self.line(command)?);
        }
        Ok(lines)
    }

    /// Every connection `conns` shows.
    fn conns(&mut self) -> Result<Vec<Conn>, String> {
        let mut conns = Vec::new();
        for line in self.ask_until_end("conns 1000")? {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["conn", flow, "worker", worker, "peer", peer, ..] = words[..] {
                conns.push(Conn {
                    flow: flow.to_owned(),
                    worker: worker.parse().map_err(|_| format!("conns: {line}"))?,
                    peer: peer.parse().map_err(|_| format!("conns: {line}"))?,
                });
            }
        }
        Ok(conns)
    }

    /// Counters from `stats` (`STAT name value`), in the order of `names`.
    fn stats<const N: usize>(&mut self, names: [&str; N]) -> Result<[u64; N], String> {
        let lines = self.ask_until_end("stats")?;
        let mut values = [0; N];
        for (value, name) in values.iter_mut().zip(names) {
            *value = lines
                .iter()
                .find_map(|l| {
                    l.strip_prefix("STAT ")?
                        .strip_prefix(name)?
                        .strip_prefix(' ')
                })
                .and_then(|v| v.trim().parse().ok())
                .ok_or(format!("no STAT {name} in admin stats"))?;
        }
        Ok(values)
    }

    /// The workers' `migrations_in` and `migration_fence_waits` once `migrations_in` is
    /// `moves` (the workers report every `stats.interval`).
    fn moves_reported(&mut self, moves: u64) -> Result<[u64; 2], String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let counters = self.stats(["migrations_in", "migration_fence_waits"])?;
            if counters[0] == moves {
                return Ok(counters);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the workers report {} moves in, not {moves}",
                    counters[0]
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Appends request `seq` to `out`.
fn push_request(out: &mut Vec<u8>, seq: u64) {
    out.extend_from_slice(&(BODY_LEN as u32).to_be_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[b'x'; BODY_LEN - 8]);
}

/// What a client saw: when request `i` went out and when its reply came back.
#[derive(Default)]
struct ClientLog {
    sent: Vec<Instant>,
    received: Vec<Instant>,
}

impl ClientLog {
    /// Round-trip times of the requests sent in `[from, to)`, in µs.
    fn round_trips_us(&self, from: Instant, to: Instant) -> Vec<f64> {
        self.sent
            .iter()
            .zip(&self.received)
            .filter(|(s, _)| **s >= from && **s < to)
            .map(|(s, r)| (*r - *s).as_secs_f64() * 1e6)
            .collect()
    }

    /// The longest time without a reply, in µs, from the last reply at or before `from` to the
    /// first reply at or after `to`.
    fn longest_silence_us(&self, from: Instant, to: Instant) -> f64 {
        let r = &self.received;
        if r.len() < 2 {
            return f64::NAN;
        }
        let first = r.partition_point(|t| *t <= from).max(1);
        let last = r.partition_point(|t| *t < to).min(r.len() - 1);
        (first..=last)
            .map(|k| (r[k] - r[k - 1]).as_secs_f64() * 1e6)
            .fold(0.0, f64::max)
    }
}

/// Keeps `window` requests in flight on `stream` until `stop`, then reads the replies still due;
/// the requests freed by the replies of one read go out in one write. Fails on a reply that is not the echo of the next request due (lost, doubled or reordered).
fn run_client(stream: TcpStream, window: usize, stop: &AtomicBool) -> Result<ClientLog, String> {
    let mut reader =
        BufReader::with_capacity(64 * 1024, stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    let mut log = ClientLog::default();
    let mut out = Vec::with_capacity(window * PACKET_LEN);
    let mut expected = Vec::with_capacity(PACKET_LEN);
    let mut reply = [0; PACKET_LEN];
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        out.clear();
        let now = Instant::now();
        while !stopping && log.sent.len() - log.received.len() < window {
            push_request(&mut out, log.sent.len() as u64);
            log.sent.push(now);
        }
        if !out.is_empty() {
            writer.write_all(&out).map_err(|e| format!("send: {e}"))?;
        }
        if log.received.len() == log.sent.len() {
            return Ok(log);
        }
        // Every reply already read from the socket, at least one: the requests they free go out
        // together in the next write.
        loop {
            reader.read_exact(&mut reply).map_err(|e| {
                format!(
                    "reply {} of {} sent: {e}",
                    log.received.len(),
                    log.sent.len()
                )
            })?;
            let now = Instant::now();
            expected.clear();
            push_request(&mut expected, log.received.len() as u64);
            if reply[..] != expected[..] {
                return Err(format!(
                    "reply {} is not the echo of request {0}",
                    log.received.len()
                ));
            }
            log.received.push(now);
            if reader.buffer().len() < PACKET_LEN {
                break;
            }
        }
    }
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

fn median(values: Vec<f64>) -> f64 {
    quantile(&sorted(values), 0.5)
}

// ---------------------------------------------------------------------------------------------
// The client-side gap of a move

/// One admin command of the gap measurement: when it went out and when its answer came back.
struct AdminCommand {
    moving: bool,
    sent: Instant,
    answered: Instant,
}

/// A phase of the gap measurement.
struct Phase {
    moving: bool,
    start: Instant,
    end: Instant,
}

fn gap_measurement(args: &Args) -> Result<(), String> {
    let bench = Bench::start("gap", "")?;
    println!(
        "## The client-side gap of a move\n\n{} moves per client, a `migrate` every {} ms, phases of {} commands alternating still / moving\n",
        args.migrations, args.interval_ms, args.phase_commands
    );
    println!(
        "| client | phase | round trips | RTT p50 µs | p99 | p99.9 | max | longest silence µs | silence around a command p50 µs | p99 | max | `migrate` answer p50 µs | p99 | max | moves that waited for the fence |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, window) in [1, args.pipeline].into_iter().enumerate() {
        eprintln!("gap: {window} in flight");
        gap_with_client(args, &bench, window, (i * args.migrations) as u64)?;
    }
    println!();
    Ok(())
}

/// One client with `window` requests in flight, phases of still and moving commands; the
/// connections before it made `moves_before` moves.
fn gap_with_client(
    args: &Args,
    bench: &Bench,
    window: usize,
    moves_before: u64,
) -> Result<(), String> {
    let mut admin = Admin::connect(bench.admin_addr)?;
    let [_, fence_waits_before] = admin.moves_reported(moves_before)?;
    let (stream, flow) = bench.client(&mut admin)?;
    let mut worker = admin
        .conns()?
        .into_iter()
        .find(|c| c.flow == flow)
        .ok_or("the client's connection is gone")?
        .worker;
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || run_client(stream, window, &stop))
    };
    thread::sleep(WARM_UP);

    let interval = Duration::from_millis(args.interval_ms);
    let phases_of_each = args.migrations.div_ceil(args.phase_commands);
    let mut commands = Vec::new();
    let mut phases = Vec::new();
    let mut next = Instant::now();
    let mut moves = 0;
    let outcome = (|| {
        for phase in 0..2 * phases_of_each {
            let moving = phase % 2 == 1;
            let count = if moving {
                args.phase_commands.min(args.migrations - moves)
            } else {
                args.phase_commands
            };
            let start = Instant::now();
            for _ in 0..count {
                // Pacing, not synchronisation: one command per interval.
                next += interval;
                thread::sleep(next.saturating_duration_since(Instant::now()));
                let to = if moving { 1 - worker } else { worker };
                let sent = Instant::now();
                let answer = admin.ask(&format!("migrate {flow} {to}"))?;
                let answered = Instant::now();
                let expected = if moving {
                    format!("OK migrated {flow} from worker {worker} to worker {to}")
                } else {
                    "ERROR the flow is on that worker already".to_owned()
                };
                if answer != expected {
                    return Err(format!(
                        "migrate answered {answer:?}, expected {expected:?}"
                    ));
                }
                worker = to;
                moves += usize::from(moving);
                commands.push(AdminCommand {
                    moving,
                    sent,
                    answered,
                });
            }
            phases.push(Phase {
                moving,
                start,
                end: Instant::now(),
            });
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let log = client.join().map_err(|_| "the client thread panicked")??;
    outcome?;
    let [_, fence_waits] = admin.moves_reported(moves_before + moves as u64)?;
    let fence_waits = fence_waits - fence_waits_before;

    let label = if window == 1 {
        "1 in flight".to_owned()
    } else {
        format!("{window} in flight")
    };
    for moving in [false, true] {
        let mut rtt = Vec::new();
        let mut longest = 0.0f64;
        for p in phases.iter().filter(|p| p.moving == moving) {
            rtt.extend(log.round_trips_us(p.start, p.end));
            longest = longest.max(log.longest_silence_us(p.start, p.end));
        }
        let mine: Vec<&AdminCommand> = commands.iter().filter(|c| c.moving == moving).collect();
        let silence = sorted(
            mine.iter()
                .map(|c| log.longest_silence_us(c.sent, c.answered))
                .collect(),
        );
        let answer = sorted(
            mine.iter()
                .map(|c| (c.answered - c.sent).as_secs_f64() * 1e6)
                .collect(),
        );
        let rtt = sorted(rtt);
        println!(
            "| {label} | {} ({} commands) | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            if moving { "moving" } else { "still" },
            mine.len(),
            rtt.len(),
            quantile(&rtt, 0.5),
            quantile(&rtt, 0.99),
            quantile(&rtt, 0.999),
            quantile(&rtt, 1.0),
            longest,
            quantile(&silence, 0.5),
            quantile(&silence, 0.99),
            quantile(&silence, 1.0),
            quantile(&answer, 0.5),
            quantile(&answer, 0.99),
            quantile(&answer, 1.0),
            if moving {
                fence_waits.to_string()
            } else {
                "–".to_owned()
            },
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A skewed load with rebalancing off and on

/// One run of the skewed load.
struct SkewRun {
    requests_per_s: f64,
    /// Over the run's second half, when the rebalancer has had time to act.
    second_half_requests_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    /// CPU over the run, in % of one core: each worker, ccsd's main thread, the MCP, the clients.
    cpu_percent: Vec<f64>,
    rebalance_migrations: u64,
    /// Seconds into the load by which each of the rebalancer's moves was seen started.
    moves_at: Vec<f64>,
    /// How many of the heavy clients each worker held at the end.
    clients_per_worker: Vec<usize>,
}

fn skew_measurement(args: &Args) -> Result<(), String> {
    let modes = [
        ("off", "rebalance = false\n"),
        ("on", "rebalance = true\nrebalance_after = \"500ms\"\n"),
    ];
    let mut runs: [Vec<SkewRun>; 2] = [Vec::new(), Vec::new()];
    println!(
        "## A skewed load: {} clients, {} in flight each, all on worker 0, {:?} per run\n",
        args.heavy, args.heavy_pipeline, args.seconds
    );
    println!(
        "| round | rebalance | req/s | req/s, second half | p50 µs | p99 µs | CPU %: worker 0 / 1 / main / MCP / clients | rebalancer moves (seen by s) | clients per worker at the end |"
    );
    println!("|---:|---|---:|---:|---:|---:|---|---:|---|");
    for round in 1..=args.rounds {
        for (i, (mode, broker)) in modes.iter().enumerate() {
            eprintln!("skew: round {round}, rebalance {mode}");
            let run = skew_run(args, &format!("skew-{mode}"), broker)?;
            println!(
                "| {round} | {mode} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
                run.requests_per_s,
                run.second_half_requests_per_s,
                run.p50_us,
                run.p99_us,
                run.cpu_percent
                    .iter()
                    .map(|c| format!("{c:.0}"))
                    .collect::<Vec<_>>()
                    .join(" / "),
                if run.moves_at.is_empty() {
                    run.rebalance_migrations.to_string()
                } else {
                    format!(
                        "{} ({})",
                        run.rebalance_migrations,
                        run.moves_at
                            .iter()
                            .map(|t| format!("{t:.1}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                run.clients_per_worker
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(" / "),
            );
            runs[i].push(run);
        }
    }
    println!(
        "\n| median of {} rounds | off | on | on / off |",
        args.rounds
    );
    println!("|---|---:|---:|---:|");
    type Pick = fn(&SkewRun) -> f64;
    let rows: [(&str, Pick); 4] = [
        ("req/s", |r| r.requests_per_s),
        ("req/s, second half", |r| r.second_half_requests_per_s),
        ("p50 µs", |r| r.p50_us),
        ("p99 µs", |r| r.p99_us),
    ];
    for (name, pick) in rows {
        let [off, on] = [0, 1].map(|i| median(runs[i].iter().map(pick).collect()));
        println!("| {name} | {off:.0} | {on:.0} | {:.2} |", on / off);
    }
    Ok(())
}

/// One ccsd start with `broker` in `[broker]`: the heavy clients moved onto worker 0, then the
/// load.
fn skew_run(args: &Args, label: &str, broker: &str) -> Result<SkewRun, String> {
    let bench = Bench::start(label, broker)?;
    let mut admin = Admin::connect(bench.admin_addr)?;
    let mut streams = Vec::new();
    for _ in 0..args.heavy {
        let (stream, flow) = bench.client(&mut admin)?;
        let answer = admin.ask(&format!("migrate {flow} 0"))?;
        if !answer.starts_with("OK migrated")
            && answer != "ERROR the flow is on that worker already"
        {
            return Err(format!("migrate {flow} 0 answered {answer:?}"));
        }
        streams.push(stream);
    }
    if admin.conns()?.iter().any(|c| c.worker != 0) {
        return Err("a heavy client is not on worker 0 before the load".into());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(args.heavy + 1));
    let clients: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let (stop, ready) = (Arc::clone(&stop), Arc::clone(&ready));
            let window = args.heavy_pipeline;
            thread::spawn(move || {
                ready.wait();
                run_client(stream, window, &stop)
            })
        })
        .collect();
    let cpu_before = bench.cpu();
    ready.wait();
    let start = Instant::now();
    let until = start + args.seconds;
    // The load runs for the set time; meanwhile, every 100 ms, when the rebalancer's moves were
    // started (the same admin traffic with rebalancing off).
    let mut moves_at = Vec::new();
    while Instant::now() < until {
        thread::sleep(MOVE_WATCH.min(until.saturating_duration_since(Instant::now())));
        let [moves] = admin.stats(["control_rebalance_migrations"])?;
        let at = start.elapsed().as_secs_f64();
        while (moves_at.len() as u64) < moves {
            moves_at.push(at);
        }
    }
    let end = Instant::now();
    let cpu_after = bench.cpu();
    // Where the clients are, while they are still connected.
    let ended_on = admin.conns();
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for client in clients {
        logs.push(client.join().map_err(|_| "a client thread panicked")??);
    }
    let [rebalance_migrations] = admin.stats(["control_rebalance_migrations"])?;
    let mut clients_per_worker = vec![0; cpu_after.workers.len()];
    for conn in ended_on? {
        if let Some(n) = clients_per_worker.get_mut(conn.worker) {
            *n += 1;
        }
    }

    let elapsed = (end - start).as_secs_f64();
    let half = start + (end - start) / 2;
    let replies_between = |from: Instant| -> usize {
        logs.iter()
            .map(|l| {
                l.received
                    .iter()
                    .filter(|t| **t >= from && **t <= end)
                    .count()
            })
            .sum()
    };
    let rtt = sorted(
        logs.iter()
            .flat_map(|l| l.round_trips_us(start, end))
            .collect(),
    );
    Ok(SkewRun {
        requests_per_s: replies_between(start) as f64 / elapsed,
        second_half_requests_per_s: replies_between(half) as f64 / (end - half).as_secs_f64(),
        p50_us: quantile(&rtt, 0.5),
        p99_us: quantile(&rtt, 0.99),
        cpu_percent: cpu_after.percent_since(&cpu_before, elapsed),
        rebalance_migrations,
        moves_at,
        clients_per_worker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log whose replies came at `received_ms` after one instant, each sent 1 ms before.
    fn log_at(received_ms: &[u64]) -> (Instant, ClientLog) {
        let t0 = Instant::now() + Duration::from_millis(1);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let log = ClientLog {
            sent: received_ms
                .iter()
                .map(|&ms| at(ms) - Duration::from_millis(1))
                .collect(),
            received: received_ms.iter().map(|&ms| at(ms)).collect(),
        };
        (t0, log)
    }

    #[test]
    fn silence_spans_from_the_last_reply_before_the_window_to_the_first_after_it() {
        let (t0, log) = log_at(&[0, 10, 20, 100, 110]);
        let ms = |m: u64| t0 + Duration::from_millis(m);
        // Replies at 10 and 20 ms, then none until 100: the 80 ms hole touches [15, 25].
        assert_eq!(log.longest_silence_us(ms(15), ms(25)), 80_000.0);
        // Inside the first interval only.
        assert_eq!(log.longest_silence_us(ms(1), ms(5)), 10_000.0);
        // A window ending exactly on a reply stops there.
        assert_eq!(log.longest_silence_us(ms(1), ms(10)), 10_000.0);
        // Nothing to measure with fewer than two replies.
        assert!(log_at(&[0]).1.longest_silence_us(ms(0), ms(1)).is_nan());
    }

    #[test]
    fn round_trips_count_the_requests_sent_in_the_window() {
        let (t0, log) = log_at(&[0, 10, 20, 100]);
        let ms = |m: u64| t0 + Duration::from_millis(m);
        // Sent at 9 and 19 ms (1 ms before their replies).
        assert_eq!(log.round_trips_us(ms(5), ms(20)), vec![1_000.0, 1_000.0]);
        assert!(log.round_trips_us(ms(21), ms(98)).is_empty());
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.99), 99.0);
        assert_eq!(quantile(&values, 0.999), 100.0);
        assert_eq!(quantile(&values, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.01), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
