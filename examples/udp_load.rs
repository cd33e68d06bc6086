//! UDP load for a ccsd UDP listener answered by an echo MCP: several sockets, each keeping a
//! fixed number of datagrams in flight, until a total number of replies came; reports throughput
//! and round-trip percentiles (HDR histogram), and datagrams that got no reply in time.
//!
//! ```text
//! cargo run --release --example udp_load -- --addr 127.0.0.1:7300 --sockets 16 --requests 200000
//! ```
//!
//! Each datagram carries its socket's sequence number and its send time; a reply is matched by
//! them, so a reply that is not the echo of a datagram this socket sent counts as wrong.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use flags::{positive, positive_seconds};
use hdrhistogram::Histogram;

#[path = "common/flags.rs"]
mod flags;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "udp_load",
    about = "UDP load for a ccsd UDP listener answered by an echo MCP."
)]
struct Args {
    /// The UDP listener.
    #[arg(long, value_name = "HOST:PORT")]
    addr: SocketAddr,
    /// Client sockets, one thread each.
    #[arg(long, value_name = "N", default_value = "16", value_parser = positive::<usize>)]
    sockets: usize,
    /// Datagrams each socket keeps unanswered.
    #[arg(long, value_name = "K", default_value = "1", value_parser = positive::<usize>)]
    in_flight: usize,
    /// Replies to wait for, over all sockets.
    #[arg(long, value_name = "N", default_value = "100000", value_parser = positive::<u64>)]
    requests: u64,
    /// Datagram size (at least 16: smaller sizes are raised to it).
    #[arg(long, value_name = "BYTES", default_value = "64", value_parser = positive::<usize>)]
    size: usize,
    /// A datagram with no reply by then is lost and replaced.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = positive_seconds)]
    timeout: Duration,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// What one socket saw.
struct Outcome {
    latency: Histogram<u64>,
    answered: u64,
    lost: u64,
    wrong: u64,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            answered: 0,
            lost: 0,
            wrong: 0,
        }
    }
}

/// Drives one socket until `target` replies came.
fn run_socket(args: &Args, target: u64, epoch: Instant) -> io::Result<Outcome> {
    let local = if args.addr.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(args.addr)?;
    socket.set_read_timeout(Some(args.timeout))?;
    let mut out = Outcome::new();
    let mut datagram = vec![0u8; args.size];
    let mut reply = vec![0u8; args.size + 1];
    // Sequence numbers of the datagrams in flight, oldest first.
    let mut in_flight = std::collections::VecDeque::with_capacity(args.in_flight);
    let mut next_seq = 0u64;
    let mut send = |in_flight: &mut std::collections::VecDeque<u64>| -> io::Result<()> {
        let sent_us = epoch.elapsed().as_micros() as u64;
        datagram[..8].copy_from_slice(&next_seq.to_le_bytes());
        datagram[8..16].copy_from_slice(&sent_us.to_le_bytes());
        socket.send(&datagram)?;
        in_flight.push_back(next_seq);
        next_seq += 1;
        Ok(())
    };
    while out.answered < target {
        while in_flight.len() < args.in_flight {
            send(&mut in_flight)?;
        }
        let n = match socket.recv(&mut reply) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // Nothing for a whole timeout: every datagram in flight is lost.
                out.lost += in_flight.len() as u64;
                in_flight.clear();
                continue;
            }
            Err(e) => return Err(e),
        };
        let seq = u64::from_le_bytes(reply[..8].try_into().expect("8 bytes"));
        let Some(pos) = in_flight
            .iter()
            .position(|&s| s == seq)
            .filter(|_| n == args.size)
        else {
            out.wrong += 1;
            continue;
        };
        // Datagrams sent before it and still unanswered were overtaken: lost on the way.
        out.lost += pos as u64;
        in_flight.drain(..=pos);
        let sent_us = u64::from_le_bytes(reply[8..16].try_into().expect("8 bytes"));
        let rtt_us = (epoch.elapsed().as_micros() as u64).saturating_sub(sent_us);
        out.latency.saturating_record(rtt_us.max(1));
        out.answered += 1;
    }
    Ok(out)
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    args.size = args.size.max(16);
    let per_socket = args.requests.div_ceil(args.sockets as u64);
    let epoch = Instant::now();
    let outcomes: Vec<io::Result<Outcome>> = thread::scope(|s| {
        let handles: Vec<_> = (0..args.sockets)
            .map(|_| s.spawn(|| run_socket(&args, per_socket, epoch)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("socket thread"))
            .collect()
    });
    let seconds = epoch.elapsed().as_secs_f64();
    let mut total = Outcome::new();
    for outcome in outcomes {
        match outcome {
            Ok(o) => {
                total.latency.add(&o.latency).expect("same bounds");
                total.answered += o.answered;
                total.lost += o.lost;
                total.wrong += o.wrong;
            }
            Err(e) => {
                eprintln!("udp_load: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let throughput = total.answered as f64 / seconds;
    let q = |p: f64| total.latency.value_at_quantile(p);
    let (p50, p99, p999, max) = (q(0.5), q(0.99), q(0.999), total.latency.max());
    let (answered, lost, wrong) = (total.answered, total.lost, total.wrong);
    if args.json {
        println!(
            "{{\"sockets\":{},\"in_flight\":{},\"size\":{},\"answered\":{answered},\"lost\":{lost},\"wrong\":{wrong},\"seconds\":{seconds:.3},\"throughput\":{throughput:.0},\"latency_us\":{{\"p50\":{p50},\"p99\":{p99},\"p999\":{p999},\"max\":{max}}}}}",
            args.sockets, args.in_flight, args.size
        );
    } else {
        println!(
            "{answered} replies in {seconds:.2} s: {throughput:.0}/s; {lost} lost, {wrong} wrong\nround trip: p50 {p50} us, p99 {p99} us, p99.9 {p999} us, max {max} us"
        );
    }
    if total.wrong > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
