//! Lane throughput between two processes, compared with a Unix socketpair.
//!
//! ```text
//! lane_bench [--records N] [--size S]
//!     Benchmark: for S-byte records (default: 64, then 512) a child process (this program
//!     re-executed) produces N records (default 40,000,000) and this process consumes them,
//!     once through a lane in /dev/shm (published every 64 records) and once through a
//!     socketpair (the child's stdout, length-prefixed, one write(2) per 64 records).
//!     Prints records/s, MB/s of record bytes, seconds and the ratio.
//! lane_bench produce --path P --records N [--size S | --seq-sizes]
//!     Attach to the existing lane P and produce N records: S bytes each starting with the
//!     sequence number (little-endian u64), or with --seq-sizes the deterministic stream of
//!     tests/lane_common/records.rs (1..=200 bytes, content derived from the sequence number).
//! lane_bench socket-produce --records N --size S
//!     Write N length-prefixed S-byte records to stdout, flushing every 64 (used by the
//!     benchmark).
//! ```

#[path = "../tests/lane_common/records.rs"]
mod records;

use std::error::Error;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use ccsd::lane::{Consumer, Lane, PushError};
use records::{MAX_SEQ_RECORD, seq_record};

const DEFAULT_RECORDS: u64 = 40_000_000;
const DEFAULT_SIZES: [usize; 2] = [64, 512];
const CAPACITY: u64 = 1 << 20;
/// The producer publishes (and maybe wakes the consumer) once per this many records; the
/// socket producer flushes as often, so both make records visible at the same rate.
const PUBLISH_EVERY: u64 = 64;
/// A producer that finds the lane full for this long gives up: the consumer is gone.
const STALL_LIMIT: Duration = Duration::from_secs(10);

type BoxResult<T> = Result<T, Box<dyn Error>>;

const USAGE: &str = "usage:
  lane_bench [--records N] [--size S]
  lane_bench produce --path P --records N [--size S | --seq-sizes]
  lane_bench socket-produce --records N --size S";

enum Mode {
    Bench,
    Produce,
    SocketProduce,
}

struct Args {
    mode: Mode,
    path: Option<PathBuf>,
    records: Option<u64>,
    size: Option<usize>,
    seq_sizes: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        mode: Mode::Bench,
        path: None,
        records: None,
        size: None,
        seq_sizes: false,
    };
    let mut next = args.next();
    match next.as_deref() {
        Some("produce") => parsed.mode = Mode::Produce,
        Some("socket-produce") => parsed.mode = Mode::SocketProduce,
        _ => {}
    }
    if !matches!(parsed.mode, Mode::Bench) {
        next = args.next();
    }
    while let Some(arg) = next {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--path" => parsed.path = Some(PathBuf::from(value("--path")?)),
            "--records" => {
                let v = value("--records")?;
                parsed.records = Some(v.parse().map_err(|_| format!("bad --records {v}"))?);
            }
            "--size" => {
                let v = value("--size")?;
                parsed.size = Some(v.parse().map_err(|_| format!("bad --size {v}"))?);
            }
            "--seq-sizes" => parsed.seq_sizes = true,
            other => return Err(format!("unknown argument {other}")),
        }
        next = args.next();
    }
    if parsed.seq_sizes && parsed.size.is_some() {
        return Err("--size and --seq-sizes exclude each other".into());
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("lane_bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.mode {
        Mode::Bench => bench(&args),
        Mode::Produce => match (&args.path, args.records, args.seq_sizes, args.size) {
            (Some(path), Some(records), true, None) => produce(path, records, None),
            (Some(path), Some(records), false, Some(size)) => produce(path, records, Some(size)),
            _ => Err(
                format!("produce needs --path, --records and --size or --seq-sizes\n{USAGE}")
                    .into(),
            ),
        },
        Mode::SocketProduce => match (args.records, args.size) {
            (Some(records), Some(size)) => socket_produce(records, size),
            _ => Err(format!("socket-produce needs --records and --size\n{USAGE}").into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lane_bench: {e}");
            ExitCode::FAILURE
        }
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

/// Produces `records` records into the lane at `path`: `size` bytes each, or the
/// `--seq-sizes` stream when `size` is None.
fn produce(path: &Path, records: u64, size: Option<usize>) -> BoxResult<()> {
    let mut producer = Lane::attach(path, None)?.into_producer();
    let mut buf = vec![0u8; size.unwrap_or(0).max(MAX_SEQ_RECORD)];
    let mut stalled_since = None;
    for seq in 0..records {
        let len = match size {
            Some(size) => {
                fixed_record(seq, &mut buf[..size]);
                size
            }
            None => seq_record(seq, &mut buf),
        };
        loop {
            match producer.try_push(&[&buf[..len]]) {
                Ok(()) => break,
                Err(PushError::Full) => {
                    producer.publish()?;
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > STALL_LIMIT {
                        return Err(format!("lane full for {STALL_LIMIT:?}: consumer gone?").into());
                    }
                    std::thread::yield_now();
                }
                Err(e) => return Err(e.into()),
            }
        }
        stalled_since = None;
        if seq % PUBLISH_EVERY == PUBLISH_EVERY - 1 {
            producer.publish()?;
        }
    }
    producer.publish()?;
    Ok(())
}

/// Writes `records` length-prefixed `size`-byte records to stdout.
fn socket_produce(records: u64, size: usize) -> BoxResult<()> {
    // Our stdout is a socket: write it through a plain File, not the line-buffered Stdout.
    let stdout = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let mut out = BufWriter::with_capacity(256 * 1024, stdout);
    let mut buf = vec![0u8; size];
    let prefix = u32::try_from(size)?.to_le_bytes();
    for seq in 0..records {
        fixed_record(seq, &mut buf);
        out.write_all(&prefix)?;
        out.write_all(&buf)?;
        if seq % PUBLISH_EVERY == PUBLISH_EVERY - 1 {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Kills the child on early return so no producer outlives the benchmark.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Removes the benchmark's lane file and FIFO, also on early return.
struct LaneFiles(PathBuf);

impl Drop for LaneFiles {
    fn drop(&mut self) {
        if let Err(e) = Lane::remove_files(&self.0) {
            eprintln!("lane_bench: could not remove {}: {e}", self.0.display());
        }
    }
}

fn bench(args: &Args) -> BoxResult<()> {
    let records = args.records.unwrap_or(DEFAULT_RECORDS);
    let sizes = match args.size {
        Some(size) => vec![size],
        None => DEFAULT_SIZES.to_vec(),
    };
    println!(
        "lane_bench: {records} records per run; producer: child process, consumer: this process; \
         lane capacity {CAPACITY} bytes, publish every {PUBLISH_EVERY} records; \
         socketpair: the child's stdout, 4-byte length prefix, one write(2) per {PUBLISH_EVERY} records"
    );
    println!(
        "{:>6}  {:<11}{:>12}{:>11}{:>10}",
        "size", "transport", "records/s", "MB/s", "seconds"
    );
    for size in sizes {
        let lane = time_lane(records, size)?;
        report(size, "lane", records, lane);
        let socket = time_socketpair(records, size)?;
        report(size, "socketpair", records, socket);
        println!(
            "{size:>6}  lane is {:.1}x the socketpair's throughput",
            socket.as_secs_f64() / lane.as_secs_f64()
        );
    }
    Ok(())
}

fn report(size: usize, transport: &str, records: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{size:>6}  {transport:<11}{:>10.2} M{:>11.1}{:>10.3}",
        records as f64 / secs / 1e6,
        (records * size as u64) as f64 / secs / 1e6,
        secs
    );
}

/// Runs a producer child into a fresh lane and consumes everything; returns the time from
/// spawning the child to the last record.
fn time_lane(records: u64, size: usize) -> BoxResult<Duration> {
    let files = LaneFiles(PathBuf::from(format!(
        "/dev/shm/ccsd-lanebench-{}-{size}",
        std::process::id()
    )));
    let mut consumer = Lane::create_or_attach(&files.0, CAPACITY)?.into_consumer();
    let start = Instant::now();
    let mut child = ChildGuard(
        Command::new(std::env::current_exe()?)
            .arg("produce")
            .arg("--path")
            .arg(&files.0)
            .args([
                "--records",
                &records.to_string(),
                "--size",
                &size.to_string(),
            ])
            .spawn()?,
    );
    consume_lane(&mut consumer, &mut child.0, records, size)?;
    let elapsed = start.elapsed();
    let status = child.0.wait()?;
    if !status.success() {
        return Err(format!("lane producer failed: {status}").into());
    }
    Ok(elapsed)
}

fn consume_lane(
    consumer: &mut Consumer,
    child: &mut Child,
    records: u64,
    size: usize,
) -> BoxResult<()> {
    let mut record = Vec::with_capacity(size);
    let mut seq = 0;
    while seq < records {
        record.clear();
        if consumer.pop_into(&mut record)?.is_some() {
            check_fixed_record(seq, &record, size)?;
            seq += 1;
            continue;
        }
        consumer.wait(Some(Duration::from_secs(1)))?;
        if let Some(status) = child.try_wait()?
            && !consumer.has_records()
        {
            return Err(
                format!("producer exited ({status}) after {seq} of {records} records").into(),
            );
        }
    }
    Ok(())
}

/// The same run through a socketpair: the child writes to its stdout, one end of the pair.
fn time_socketpair(records: u64, size: usize) -> BoxResult<Duration> {
    let (ours, theirs) = UnixStream::pair()?;
    let start = Instant::now();
    let mut child = ChildGuard(
        Command::new(std::env::current_exe()?)
            .args([
                "socket-produce",
                "--records",
                &records.to_string(),
                "--size",
                &size.to_string(),
            ])
            .stdout(Stdio::from(OwnedFd::from(theirs)))
            .spawn()?,
    );
    let mut input = BufReader::with_capacity(256 * 1024, ours);
    let mut record = vec![0u8; size];
    for seq in 0..records {
        let mut prefix = [0u8; 4];
        input.read_exact(&mut prefix)?;
        let len = u32::from_le_bytes(prefix) as usize;
        if len != size {
            return Err(format!("socket record {seq}: length {len}, expected {size}").into());
        }
        input.read_exact(&mut record)?;
        check_fixed_record(seq, &record, size)?;
    }
    let elapsed = start.elapsed();
    let status = child.0.wait()?;
    if !status.success() {
        return Err(format!("socket producer failed: {status}").into());
    }
    Ok(elapsed)
}
