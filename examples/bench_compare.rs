//! Side-by-side benchmark: ccsd + `kv_mcp` (memcache framing) against memcached, same load, same
//! run, alternating, so that the machine's drift hits both alike. Run it through
//! `benches/compare.sh`, which installs memcached and builds everything in release mode.
//!
//! Each round runs `loadgen` (32 connections, GET:SET 10:1, 512-byte values, preloaded keys)
//! against ccsd and then memcached, then one connection against each (hop latency). It samples
//! the CPU time of every server process from `/proc/<pid>/stat` around each run, and prints the
//! medians over the rounds, the ccsd/memcached ratios, and CPU microseconds per request.

#[path = "common/servers.rs"]
mod servers;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use clap::Parser;

use servers::{Scratch, Server, built_bin, logged_addr, start_ccsd_and_mcp};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "bench_compare",
    about = "ccsd + kv_mcp against memcached, same load, alternating, in rounds; prints the medians and the ratios (run it through benches/compare.sh)."
)]
struct Args {
    /// Seconds each load generator run measures.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    duration: u64,
    /// Rounds (each server once per round); the report takes the medians.
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: usize,
    /// The memcached binary.
    #[arg(long, value_name = "PATH", default_value = "memcached")]
    memcached: String,
}

/// Waits until something accepts connections on `port` (memcached logs nothing unless verbose,
/// and verbose logging would slow it down).
fn wait_listening(port: u16) -> Result<(), String> {
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(format!("nothing listens on port {port} after 5 s"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One loadgen run's figures.
#[derive(Debug, Clone, Copy)]
struct Run {
    throughput: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    cpu_us_per_request: f64,
}

fn loadgen(
    bin: &Path,
    port: u16,
    connections: usize,
    seconds: u64,
    servers: &[&Server],
) -> Result<Run, String> {
    let cpu_before: f64 = servers.iter().map(|s| s.cpu_seconds()).sum();
    let out = Command::new(bin)
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--protocol",
            "memcache",
        ])
        .args(["--connections", &connections.to_string(), "--pipeline", "1"])
        .args([
            "--ratio",
            "10:1",
            "--value-size",
            "512",
            "--keys",
            "10000",
            "--preload",
        ])
        .args(["--duration", &seconds.to_string(), "--json"])
        .output()
        .map_err(|e| format!("loadgen: {e}"))?;
    let cpu_after: f64 = servers.iter().map(|s| s.cpu_seconds()).sum();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "loadgen output: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if json["errors"].as_u64() != Some(0) {
        return Err(format!("loadgen reported errors: {json}"));
    }
    let requests = json["requests"].as_f64().unwrap_or(0.0);
    let lat = |k: &str| json["latency_us"][k].as_f64().unwrap_or(f64::NAN);
    Ok(Run {
        throughput: json["throughput"].as_f64().unwrap_or(0.0),
        p50: lat("p50"),
        p99: lat("p99"),
        p999: lat("p999"),
        // Preloading is included in the CPU time; it is 10,000 SETs against about a million requests.
        cpu_us_per_request: (cpu_after - cpu_before) * 1e6 / requests.max(1.0),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn summarize(runs: &[Run]) -> Run {
    let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    Run {
        throughput: m(|r| r.throughput),
        p50: m(|r| r.p50),
        p99: m(|r| r.p99),
        p999: m(|r| r.p999),
        cpu_us_per_request: m(|r| r.cpu_us_per_request),
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("bench_compare: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let scratch = Scratch::new("ccsd-bench", |name| {
        format!(
            "[queues]\nname = \"{name}\"\n\n[admin]\nenabled = false\n\n[[listen]]\naddr = \"127.0.0.1:0\"\nframing = \"memcache\"\n"
        )
    })?;
    compare(args, &scratch.config, &built_bin("loadgen")?)
}

fn compare(args: &Args, config: &Path, loadgen_bin: &Path) -> Result<(), String> {
    let (ccsd_proc, lines, mcp_proc) = start_ccsd_and_mcp(config, "kv_mcp")?;
    let ccsd_port = logged_addr(&lines, "listening on tcp://")?.port();
    let mc_port = free_port();
    let mut cmd = Command::new(&args.memcached);
    cmd.args([
        "-p",
        &mc_port.to_string(),
        "-U",
        "0",
        "-t",
        "2",
        "-l",
        "127.0.0.1",
    ]);
    if rustix::process::getuid().is_root() {
        cmd.args(["-u", "root"]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mc_proc = Server {
        child: cmd
            .spawn()
            .map_err(|e| format!("{}: {e}", args.memcached))?,
    };
    wait_listening(mc_port)?;

    let (mut ccsd32, mut mc32, mut ccsd1, mut mc1) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        eprintln!("round {round}/{}", args.rounds);
        ccsd32.push(loadgen(
            loadgen_bin,
            ccsd_port,
            32,
            args.duration,
            &[&ccsd_proc, &mcp_proc],
        )?);
        mc32.push(loadgen(
            loadgen_bin,
            mc_port,
            32,
            args.duration,
            &[&mc_proc],
        )?);
        ccsd1.push(loadgen(
            loadgen_bin,
            ccsd_port,
            1,
            args.duration / 2,
            &[&ccsd_proc, &mcp_proc],
        )?);
        mc1.push(loadgen(
            loadgen_bin,
            mc_port,
            1,
            args.duration / 2,
            &[&mc_proc],
        )?);
    }
    let (c32, m32, c1, m1) = (
        summarize(&ccsd32),
        summarize(&mc32),
        summarize(&ccsd1),
        summarize(&mc1),
    );
    println!(
        "medians of {} rounds, {} s per 32-connection run, {} s per 1-connection run",
        args.rounds,
        args.duration,
        args.duration / 2
    );
    println!();
    println!("| load | server | req/s | p50 µs | p99 µs | p99.9 µs | CPU µs/req |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (load, server, r) in [
        ("32 conns", "ccsd + kv_mcp", c32),
        ("32 conns", "memcached", m32),
        ("1 conn", "ccsd + kv_mcp", c1),
        ("1 conn", "memcached", m1),
    ] {
        println!(
            "| {load} | {server} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} |",
            r.throughput, r.p50, r.p99, r.p999, r.cpu_us_per_request
        );
    }
    println!();
    println!("| ratio ccsd / memcached | throughput | p50 | p99 | p99.9 |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| 32 conns | {:.2} | {:.2} | {:.2} | {:.2} |",
        c32.throughput / m32.throughput,
        c32.p50 / m32.p50,
        c32.p99 / m32.p99,
        c32.p999 / m32.p999
    );
    println!(
        "| 1 conn | {:.2} | {:.2} (+{:.1} µs) | {:.2} | {:.2} |",
        c1.throughput / m1.throughput,
        c1.p50 / m1.p50,
        c1.p50 - m1.p50,
        c1.p99 / m1.p99,
        c1.p999 / m1.p999
    );
    Ok(())
}
