//! Lane throughput and latency between two processes, compared with a Unix socketpair.
//!
//! ```text
//! lane_bench [--records N] [--rounds R] [--size S]
//!     Benchmark, for S-byte records (default: 64, then 512), with this program re-executed as
//!     the child process:
//!     throughput: the child produces N records (default 40,000,000) and this process consumes
//!     them, once through a lane in /dev/shm (published every 64 records) and once through a
//!     socketpair (the child's stdout, length-prefixed, one write(2) per 64 records). Prints
//!     records/s, MB/s of record bytes, seconds and the ratio.
//!     latency: this process sends a record, the child sends it back, R times (default
//!     50,000, after 5,000 unmeasured), over two lanes with consumers sleeping in
//!     Consumer::wait, over two lanes with consumers spinning on has_records, and over a
//!     socketpair (blocking read and write). Prints min, p50, p99 and p99.9 of the round trip
//!     / 2 (the one-way latency) and the p50 ratios.
//! lane_bench produce --path P --records N [--size S | --seq-sizes]
//!     Attach to the existing lane P and produce N records: S bytes each starting with the
//!     sequence number (little-endian u64), or with --seq-sizes the deterministic stream of
//!     tests/lane/records.rs (1..=200 bytes, content derived from the sequence number).
//! lane_bench socket-produce --records N --size S
//!     Write N length-prefixed S-byte records to stdout, flushing every 64 (used by the
//!     throughput benchmark).
//! lane_bench lane-echo --path P --reply-path Q --records N --size S [--spin]
//!     Attach to the existing lanes P (consume) and Q (produce) and send each of N S-byte
//!     records back into Q as it arrives, waiting in Consumer::wait or, with --spin, by
//!     polling (used by the latency benchmark).
//! lane_bench socket-echo --records N --size S
//!     Read N length-prefixed S-byte records from stdin and write each back to stdout (used by
//!     the latency benchmark).
//! ```

mod args;
mod latency;
#[path = "../../tests/lane/records.rs"]
mod records;
mod throughput;

use std::error::Error;
use std::path::PathBuf;
use std::process::{Child, ExitCode};

use args::{Args, Mode};
use ccsd::lane::Lane;
use latency::Waiting;

type BoxResult<T> = Result<T, Box<dyn Error>>;

const DEFAULT_RECORDS: u64 = 40_000_000;
const DEFAULT_ROUNDS: u64 = 50_000;
const DEFAULT_SIZES: [usize; 2] = [64, 512];
/// Data bytes of every lane the benchmark creates.
const CAPACITY: u64 = 1 << 20;

fn main() -> ExitCode {
    let args = args::from_command_line();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lane_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> BoxResult<()> {
    match args.mode {
        Mode::Bench => {
            let sizes = match args.size {
                Some(size) => vec![size],
                None => DEFAULT_SIZES.to_vec(),
            };
            throughput::run(args.records.unwrap_or(DEFAULT_RECORDS), &sizes)?;
            println!();
            latency::run(args.rounds.unwrap_or(DEFAULT_ROUNDS), &sizes)
        }
        Mode::Produce => match (&args.path, args.records, args.seq_sizes, args.size) {
            (Some(path), Some(records), true, None) => throughput::produce(path, records, None),
            (Some(path), Some(records), false, Some(size)) => {
                throughput::produce(path, records, Some(size))
            }
            _ => Err(
                "produce needs --path, --records and --size or --seq-sizes (lane_bench --help lists the modes)"
                    .into(),
            ),
        },
        Mode::SocketProduce => match (args.records, args.size) {
            (Some(records), Some(size)) => throughput::socket_produce(records, size),
            _ => Err("socket-produce needs --records and --size (lane_bench --help lists the modes)".into()),
        },
        Mode::LaneEcho => match (&args.path, &args.reply_path, args.records, args.size) {
            (Some(path), Some(reply_path), Some(records), Some(size)) => {
                let waiting = if args.spin {
                    Waiting::Spin
                } else {
                    Waiting::Sleep
                };
                latency::lane_echo(path, reply_path, records, size, waiting)
            }
            _ => Err(
                "lane-echo needs --path, --reply-path, --records and --size (lane_bench --help lists the modes)"
                    .into(),
            ),
        },
        Mode::SocketEcho => match (args.records, args.size) {
            (Some(records), Some(size)) => latency::socket_echo(records, size),
            _ => Err("socket-echo needs --records and --size (lane_bench --help lists the modes)".into()),
        },
    }
}

/// Writes record `seq` of a fixed-size run: the sequence number, then zeros.
fn fixed_record(seq: u64, buf: &mut [u8]) {
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
}

/// Checks what `fixed_record` wrote.
fn check_fixed_record(seq: u64, record: &[u8], size: usize) -> BoxResult<()> {
    let n = size.min(8);
    if record.len() != size || record[..n] != seq.to_le_bytes()[..n] {
        return Err(format!("record {seq}: wrong length or sequence number").into());
    }
    Ok(())
}

/// Kills the child on early return so no child outlives the benchmark.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Removes a lane file and its FIFO when dropped: also on early return, on a panic here, and
/// after the child failed or panicked.
struct LaneFiles(PathBuf);

impl Drop for LaneFiles {
    fn drop(&mut self) {
        if let Err(e) = Lane::remove_files(&self.0) {
            eprintln!("lane_bench: could not remove {}: {e}", self.0.display());
        }
    }
}
