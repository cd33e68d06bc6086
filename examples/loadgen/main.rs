//! Load generator for ccsd and for the servers it is compared with (memcached, redis).
//!
//! ```text
//! cargo run --release --example loadgen -- --addr 127.0.0.1:7300 --duration 5
//! cargo run --release --example loadgen -- --addr 127.0.0.1:11211 --protocol memcache --preload
//! ```
//!
//! Opens `--connections` TCP connections, spreads them over `--threads` client threads (each
//! drives its connections on its own poller, with non-blocking sockets and reused buffers),
//! keeps up to `--pipeline` requests in flight per connection (closed loop) or sends them on a
//! fixed schedule (`--rate`, open loop), checks every reply, and reports throughput and latency
//! percentiles from an HDR histogram. `--help` lists every option.

#[path = "../common/flags.rs"]
mod flags;

mod args;
mod conn;
mod driver;
mod protocol;
mod report;
mod rng;

use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::{Barrier, OnceLock};
use std::thread;

use args::Args;
use driver::{Assigned, Shared};
use protocol::Codec;
use report::Totals;

fn main() -> ExitCode {
    let args = args::from_command_line();
    let (totals, seconds) = run(&args);
    if args.json {
        println!("{}", report::json(&args, &totals, seconds));
    } else {
        print!("{}", report::text(&args, &totals, seconds));
    }
    if totals.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Connects, runs every client thread, and returns the merged totals and the measured seconds.
fn run(args: &Args) -> (Totals, f64) {
    let mut totals = Totals::new();
    let streams: Vec<TcpStream> = (0..args.connections)
        .filter_map(|i| match connect(args) {
            Ok(s) => Some(s),
            Err(e) => {
                totals.error(|| format!("connection {i}: cannot connect to {}: {e}", args.addr));
                None
            }
        })
        .collect();
    let codec = Codec::new(args.protocol, args.value_size, args.keys);
    let shared = Shared {
        args,
        codec: &codec,
        live: streams.len(),
        ready: Barrier::new(args.threads),
        start: OnceLock::new(),
    };
    let mut per_thread: Vec<Vec<Assigned>> = (0..args.threads).map(|_| Vec::new()).collect();
    for (slot, stream) in streams.into_iter().enumerate() {
        per_thread[slot % args.threads].push(Assigned { slot, stream });
    }
    let outcomes: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = per_thread
            .into_iter()
            .map(|assigned| scope.spawn(|| driver::run_thread(&shared, assigned)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread panicked"))
            .collect()
    });
    let start = *shared.start.get().expect("every thread passed the start");
    let measure_from = start + args.warmup;
    let finished = outcomes
        .iter()
        .map(|o| o.finished)
        .max()
        .unwrap_or(measure_from);
    for o in outcomes {
        totals.merge(o.totals);
    }
    let seconds = finished
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    (totals, seconds)
}

/// One connection, non-blocking and with Nagle's algorithm off.
fn connect(args: &Args) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&args.addr, args.timeout)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}
