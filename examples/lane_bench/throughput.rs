//! Throughput: a child process produces fixed-size records as fast as it can and this process
//! consumes them, through a lane (consumer sleeping on the FIFO when empty) and through a
//! socketpair.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ccsd::lane::{Consumer, Lane, PushError};

use crate::records::{MAX_SEQ_RECORD, seq_record};
use crate::{BoxResult, CAPACITY, ChildGuard, LaneFiles, check_fixed_record, fixed_record};

/// The producer publishes (and maybe wakes the consumer) once per this many records; the
/// socket producer flushes as often, so both make records visible at the same rate.
const PUBLISH_EVERY: u64 = 64;
/// A producer that finds the lane full for this long gives up: the consumer is gone.
const STALL_LIMIT: Duration = Duration::from_secs(10);

/// Produces `records` records into the lane at `path`: `size` bytes each, or the
/// `--seq-sizes` stream when `size` is None.
pub fn produce(path: &Path, records: u64, size: Option<usize>) -> BoxResult<()> {
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
pub fn socket_produce(records: u64, size: usize) -> BoxResult<()> {
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

/// Prints the throughput table: for each size, lane and socketpair, `records` records each.
pub fn run(records: u64, sizes: &[usize]) -> BoxResult<()> {
    println!(
        "throughput: {records} records per run; producer: child process, consumer: this process; \
         lane capacity {CAPACITY} bytes, publish every {PUBLISH_EVERY} records; \
         socketpair: the child's stdout, 4-byte length prefix, one write(2) per {PUBLISH_EVERY} records"
    );
    println!(
        "{:>6}  {:<11}{:>12}{:>11}{:>10}",
        "size", "transport", "records/s", "MB/s", "seconds"
    );
    for &size in sizes {
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
