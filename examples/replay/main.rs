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

use play::Outcome;

const USAGE: &str = "usage:
  replay record --listen ADDR --target ADDR --out FILE [--connections N]
  replay play --target ADDR --in FILE [--framing length|bytes] [--timeout SECS]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("replay: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let (mode, rest) = args.split_first().ok_or("no mode")?;
    let opt = |name: &str| -> Option<&str> {
        rest.iter()
            .position(|a| a == name)
            .and_then(|i| rest.get(i + 1))
            .map(String::as_str)
    };
    let addr = |name: &str| -> Result<SocketAddr, String> {
        let v = opt(name).ok_or(format!("{name} is required"))?;
        v.parse().map_err(|_| format!("{name}: bad address {v:?}"))
    };
    match mode.as_str() {
        "record" => {
            let out = PathBuf::from(opt("--out").ok_or("--out is required")?);
            let file = File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let connections = opt("--connections")
                .map(|n| n.parse().map_err(|_| "--connections: not a number"))
                .transpose()?;
            record::record(addr("--listen")?, addr("--target")?, file, connections)
                .map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        "play" => {
            let path = PathBuf::from(opt("--in").ok_or("--in is required")?);
            let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let chunks = format::read_recording(BufReader::new(file))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let length_framing = match opt("--framing").unwrap_or("bytes") {
                "length" => true,
                "bytes" => false,
                other => return Err(format!("--framing: unknown {other:?}")),
            };
            let timeout = opt("--timeout")
                .map(|s| s.parse::<u64>().map_err(|_| "--timeout: not a number"))
                .transpose()?
                .unwrap_or(10);
            let outcomes = play::play(
                chunks,
                addr("--target")?,
                Duration::from_secs(timeout),
                length_framing,
            );
            Ok(report(&outcomes))
        }
        other => Err(format!("unknown mode {other:?}")),
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
