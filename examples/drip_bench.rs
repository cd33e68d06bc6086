//! The drip attack against two ccsd builds side by side: a few clients upload most of a large
//! chunked HTTP request and then send one more byte per millisecond, while a healthy client does
//! request/reply round trips on the same ccsd; reports the healthy client's latency and ccsd's
//! CPU for each build, and the ratios (docs/benchmarks.md, "The drip attack").
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/drip_bench --old /tmp/ccsd-before [--attackers 4] [--upload-mib 8]
//!     [--seconds 4] [--rounds 2]
//! ```
//!
//! `--old` is another build's `ccsd` binary; the new one is the `ccsd` built beside this driver.
//! Both use this build's `echo_mcp` (the lanes are the same). The builds alternate (old, new, old,
//! new, ...) so that the shared machine's drift hits both alike. Each run: ccsd with 2 workers and
//! the `http` framing; the healthy client alone for one second (the quiet baseline); the attackers
//! upload, then drip for `--seconds` while the healthy client keeps going.

#[path = "common/servers.rs"]
mod servers;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

use servers::{Scratch, Server, built_bin, logged_addr, start};

/// The healthy client's request; the echo MCP sends it back.
const HEALTHY: &[u8] = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n";
/// The attackers' request head.
const UPLOAD_HEAD: &[u8] =
    b"POST /upload HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n\r\n";
/// One chunk of the upload: 16 bytes of data.
const CHUNK: &[u8] = b"10\r\n0123456789abcdef\r\n";
/// How long the healthy client runs alone before the attack.
const QUIET: Duration = Duration::from_secs(1);

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "drip_bench",
    about = "A healthy HTTP client's latency and ccsd's CPU while attackers drip chunked uploads, for this build and an older one, side by side."
)]
struct Args {
    /// The older ccsd binary to compare with.
    #[arg(long, value_name = "PATH")]
    old: PathBuf,
    /// Attacking connections.
    #[arg(long, value_name = "N", default_value_t = 4)]
    attackers: usize,
    /// MiB each attacker uploads, 16 bytes a chunk.
    #[arg(long = "upload-mib", value_name = "N", default_value_t = 8)]
    upload_mib: usize,
    /// Seconds of attack per run.
    #[arg(long, value_name = "N", default_value_t = 4)]
    seconds: u64,
    /// Runs of each build (at least 1).
    #[arg(long, value_name = "N", default_value_t = 2)]
    rounds: usize,
}

/// The healthy client's latencies in one phase, and ccsd's CPU over it.
#[derive(Debug, Clone, Copy, Default)]
struct Phase {
    p50_us: f64,
    p99_us: f64,
    round_trips_per_s: f64,
    ccsd_cpu_percent: f64,
}

/// One run of one build: the quiet baseline and the attack.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    quiet: Phase,
    attack: Phase,
}

/// Round trips on `healthy` for `length`; the phase's figures, ccsd's CPU taken from `ccsd`.
fn healthy_phase(healthy: &mut TcpStream, ccsd: &Server, length: Duration) -> Phase {
    let mut latencies = Vec::new();
    let mut reply = vec![0; HEALTHY.len()];
    let cpu_before = ccsd.cpu_seconds();
    let start = Instant::now();
    while start.elapsed() < length {
        let sent = Instant::now();
        healthy.write_all(HEALTHY).expect("healthy write");
        healthy.read_exact(&mut reply).expect("healthy reply");
        latencies.push(sent.elapsed().as_secs_f64() * 1e6);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = ccsd.cpu_seconds() - cpu_before;
    latencies.sort_by(f64::total_cmp);
    // A phase too short for even one round trip has no percentiles.
    let at = |q: f64| {
        let last = latencies.len().saturating_sub(1);
        latencies
            .get((last as f64 * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Phase {
        p50_us: at(0.50),
        p99_us: at(0.99),
        round_trips_per_s: latencies.len() as f64 / elapsed,
        ccsd_cpu_percent: 100.0 * cpu / elapsed,
    }
}

/// An attacker: uploads `upload` bytes of a chunked request, then sends one more byte of it per
/// millisecond until `stop`. Returns once the upload is written.
fn attacker(addr: SocketAddr, upload: usize, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    let mut conn = TcpStream::connect(addr).expect("attacker connect");
    conn.set_nodelay(true).expect("nodelay");
    let mut bytes = UPLOAD_HEAD.to_vec();
    while bytes.len() < upload {
        bytes.extend_from_slice(CHUNK);
    }
    conn.write_all(&bytes).expect("upload");
    thread::spawn(move || {
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            if conn.write_all(&CHUNK[i % CHUNK.len()..][..1]).is_err() {
                return;
            }
            i += 1;
            thread::sleep(Duration::from_millis(1));
        }
    })
}

/// One run of the build whose ccsd is `ccsd_bin`.
fn run(ccsd_bin: &Path, label: &str, args: &Args) -> Result<Run, String> {
    let scratch = Scratch::new(&format!("ccsd-drip-{label}"), |name| {
        format!(
            "[broker]\nworkers = 2\n[queues]\ndir = \"/dev/shm\"\nname = \"{name}\"\n\
             [admin]\nenabled = false\n[[listen]]\naddr = \"127.0.0.1:0\"\nframing = \"http\"\n"
        )
    })?;
    let mut cmd = Command::new(ccsd_bin);
    cmd.arg("--config").arg(&scratch.config);
    let (ccsd, lines) = start(cmd, "ccsd ready")?;
    let addr = logged_addr(&lines, "listening on tcp://")?;
    let mut cmd = Command::new(built_bin("echo_mcp")?);
    cmd.arg("--config").arg(&scratch.config);
    let (_mcp, _) = start(cmd, "attached")?;

    let mut healthy = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    healthy.set_nodelay(true).map_err(|e| e.to_string())?;
    let quiet = healthy_phase(&mut healthy, &ccsd, QUIET);
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..args.attackers)
        .map(|_| attacker(addr, args.upload_mib << 20, Arc::clone(&stop)))
        .collect();
    let attack = healthy_phase(&mut healthy, &ccsd, Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().map_err(|_| "attacker thread panicked")?;
    }
    Ok(Run { quiet, attack })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    args.rounds = args.rounds.max(1);
    let new = match built_bin("ccsd") {
        Ok(path) => path,
        Err(e) => {
            eprintln!("drip_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let builds = [("old", args.old.clone()), ("new", new)];
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.rounds {
        for (i, (label, bin)) in builds.iter().enumerate() {
            match run(bin, label, &args) {
                Ok(r) => {
                    eprintln!(
                        "round {round} {label}: quiet p50 {:.0} µs, attack p50 {:.0} µs p99 {:.0} µs, ccsd CPU {:.0}%",
                        r.quiet.p50_us, r.attack.p50_us, r.attack.p99_us, r.attack.ccsd_cpu_percent
                    );
                    runs[i].push(r);
                }
                Err(e) => {
                    eprintln!("drip_bench: {label} build: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    println!(
        "{} attackers, {} MiB uploaded each then 1 byte/ms, {} s; medians of {} rounds",
        args.attackers, args.upload_mib, args.seconds, args.rounds
    );
    println!("| healthy client | old | new | old/new |\n|---|---:|---:|---:|");
    type Pick = fn(&Run) -> f64;
    let rows: [(&str, Pick); 8] = [
        ("quiet p50 µs", |r| r.quiet.p50_us),
        ("quiet p99 µs", |r| r.quiet.p99_us),
        ("quiet round trips/s", |r| r.quiet.round_trips_per_s),
        ("attack p50 µs", |r| r.attack.p50_us),
        ("attack p99 µs", |r| r.attack.p99_us),
        ("attack round trips/s", |r| r.attack.round_trips_per_s),
        ("quiet ccsd CPU %", |r| r.quiet.ccsd_cpu_percent),
        ("attack ccsd CPU %", |r| r.attack.ccsd_cpu_percent),
    ];
    for (name, pick) in rows {
        let [old, new] = [0, 1].map(|i| median(runs[i].iter().map(pick).collect()));
        println!("| {name} | {old:.0} | {new:.0} | {:.3} |", old / new);
    }
    ExitCode::SUCCESS
}
