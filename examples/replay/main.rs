//! Record client traffic through ccsd, and replay a recording against a running ccsd.
//!
//! ```text
//! replay record --listen 127.0.0.1:7400 --target 127.0.0.1:7300 --out session.replay [--connections N]
//! replay play   --target 127.0.0.1:7300 --in session.replay [--framing length] [--timeout SECS]
//! ```
//!
//! `record` is a proxy: point clients at `--listen`; it forwards to `--target` and writes every
//! chunk in either direction to the recording (format: `format.rs`). It stops after
//! `--connections` connections have closed, or runs until killed (each chunk is flushed).
//!
//! `play` opens one connection per recorded connection, sends the recorded client bytes in order
//! (waiting, before each chunk, for the server bytes recorded before it), and compares the reply
//! stream with the recorded one: byte-exact, and with `--framing length` it also names the first
//! packet that differs. It prints one line per connection and exits 1 if any differs.

mod format;
mod play;
mod record;

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use play::Outcome;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "replay",
    about = "Record client traffic through ccsd, and replay a recording against a running ccsd."
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// A proxy that records: point clients at --listen; every chunk in either direction is
    /// written to --out (flushed as it comes).
    Record {
        /// Where clients connect.
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// The ccsd to forward to.
        #[arg(long, value_name = "ADDR")]
        target: SocketAddr,
        /// The recording to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Stop after N connections have closed (default: run until killed).
        #[arg(long, value_name = "N")]
        connections: Option<usize>,
    },
    /// Replays a recording against a running ccsd and compares the replies; exits 1 if any
    /// connection got different bytes back.
    Play {
        /// The ccsd to replay against.
        #[arg(long, value_name = "ADDR")]
        target: SocketAddr,
        /// The recording to read.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// How replies are compared: byte-exact, or also naming the first packet that differs.
        #[arg(long, value_enum, default_value_t = Framing::Bytes)]
        framing: Framing,
        /// Seconds to wait for the server's bytes before a connection fails.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        timeout: u64,
    },
}

/// How `play` compares the reply stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Framing {
    /// Byte-exact.
    Bytes,
    /// Byte-exact, and the first length-framed packet that differs is named.
    Length,
}

fn main() -> ExitCode {
    match run(Cli::parse().mode) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("replay: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(mode: Mode) -> Result<ExitCode, String> {
    match mode {
        Mode::Record {
            listen,
            target,
            out,
            connections,
        } => {
            let file = File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            record::record(listen, target, file, connections).map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Mode::Play {
            target,
            input,
            framing,
            timeout,
        } => {
            let file = File::open(&input).map_err(|e| format!("{}: {e}", input.display()))?;
            let chunks = format::read_recording(BufReader::new(file))
                .map_err(|e| format!("{}: {e}", input.display()))?;
            let outcomes = play::play(
                chunks,
                target,
                Duration::from_secs(timeout),
                framing == Framing::Length,
            );
            Ok(report(&outcomes))
        }
    }
}

fn report(outcomes: &std::collections::BTreeMap<usize, Outcome>) -> ExitCode {
    let mut mismatched = 0;
    for (id, outcome) in outcomes {
        let line = match outcome {
            Outcome::Matched { bytes } => format!("ok ({bytes} bytes)"),
            Outcome::Differs {
                at,
                packet: Some(p),
            } => format!("DIFFERS at byte {at} (packet {p})"),
            Outcome::Differs { at, packet: None } => format!("DIFFERS at byte {at}"),
            Outcome::Short { got, expected } => format!("SHORT: {got} of {expected} bytes"),
            Outcome::Extra { expected } => format!("EXTRA bytes after the recorded {expected}"),
            Outcome::Failed(e) => format!("FAILED: {e}"),
        };
        if !matches!(outcome, Outcome::Matched { .. }) {
            mismatched += 1;
        }
        println!("connection {id}: {line}");
    }
    println!(
        "{} connections, {} matched, {mismatched} mismatched",
        outcomes.len(),
        outcomes.len() - mismatched
    );
    if mismatched == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
