//! One-way latency: this process sends a record, a child process sends it back, one record in
//! flight at a time; the one-way latency is the round trip / 2. Measured over two lanes (one
//! each way) with consumers that sleep on the FIFO or spin, and over a socketpair.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ccsd::lane::{Consumer, Lane, Producer};

use crate::{BoxResult, CAPACITY, ChildGuard, LaneFiles, check_fixed_record, fixed_record};

/// Round trips run before the measured ones (child start-up, page faults, caches).
const WARMUP_ROUNDS: u64 = 5_000;
/// A sleeping consumer blocks at most this long before it checks that its peer is still there.
const CHECK_PEER_EVERY: Duration = Duration::from_secs(1);
/// A spinning consumer checks its peer after this many polls (some tens of milliseconds).
const SPINS_PER_CHECK: u32 = 1 << 20;

/// How a lane consumer waits for the next record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Block in `Consumer::wait`: the FIFO wake-up path, what ccsd does when idle.
    Sleep,
    /// Poll `has_records` with `spin_loop` hints, never sleeping: the best case.
    Spin,
}

/// Prints the latency table: for each size, the lane with sleeping and with spinning consumers
/// and the socketpair, `rounds` measured round trips each.
pub fn run(rounds: u64, sizes: &[usize]) -> BoxResult<()> {
    let spin_note = match std::thread::available_parallelism() {
        Ok(cores) => format!("  both processes spin: 2 of this machine's {cores} cores busy"),
        Err(_) => "  both processes spin: 2 cores busy".to_string(),
    };
    println!(
        "latency: one record to a child process and back, {rounds} round trips per run after \
         {WARMUP_ROUNDS} unmeasured; one-way = round trip / 2; lanes: {CAPACITY} bytes, one each \
         way, published per record; socketpair: the child's stdin and stdout, blocking write(2) and \
         read(2) of a 4-byte length prefix and the record"
    );
    println!(
        "{:>6}  {:<15}{:>9}{:>9}{:>9}{:>9}  (one-way µs)",
        "size", "transport", "min", "p50", "p99", "p99.9"
    );
    for &size in sizes {
        let sleeping = RoundTrips::new(lane_round_trips(rounds, size, Waiting::Sleep)?);
        sleeping.report(size, "lane-sleeping", "");
        let spinning = RoundTrips::new(lane_round_trips(rounds, size, Waiting::Spin)?);
        spinning.report(size, "lane-spinning", &spin_note);
        let socket = RoundTrips::new(socket_round_trips(rounds, size)?);
        socket.report(size, "socketpair", "");
        println!(
            "{size:>6}  p50 / socketpair's p50 (below 1: the lane is faster): lane-sleeping {:.2}, \
             lane-spinning {:.2}",
            sleeping.p50 as f64 / socket.p50 as f64,
            spinning.p50 as f64 / socket.p50 as f64
        );
    }
    Ok(())
}

/// Percentiles of one run's round trips, in nanoseconds.
struct RoundTrips {
    min: u64,
    p50: u64,
    p99: u64,
    p999: u64,
}

impl RoundTrips {
    fn new(mut nanos: Vec<u64>) -> RoundTrips {
        nanos.sort_unstable();
        RoundTrips {
            min: nanos[0],
            p50: percentile(&nanos, 0.50),
            p99: percentile(&nanos, 0.99),
            p999: percentile(&nanos, 0.999),
        }
    }

    /// Prints one table row: the one-way latencies (round trip / 2) in µs.
    fn report(&self, size: usize, transport: &str, note: &str) {
        let one_way_us = |nanos: u64| nanos as f64 / 2000.0;
        println!(
            "{size:>6}  {transport:<15}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{note}",
            one_way_us(self.min),
            one_way_us(self.p50),
            one_way_us(self.p99),
            one_way_us(self.p999)
        );
    }
}

/// The nearest-rank percentile `q` (0 < q <= 1) of the sorted, non-empty `sorted`.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Ping-pong over two fresh lanes with a `lane-echo` child; returns the measured round trips
/// in nanoseconds.
fn lane_round_trips(rounds: u64, size: usize, waiting: Waiting) -> BoxResult<Vec<u64>> {
    let base = format!("/dev/shm/ccsd-lanebench-{}-{size}", std::process::id());
    // Declared before the child guard, so dropped after it: the child is dead (or reaped)
    // before its files go, whether it finished, failed or panicked.
    let ping = LaneFiles(PathBuf::from(format!("{base}-ping")));
    let pong = LaneFiles(PathBuf::from(format!("{base}-pong")));
    let mut producer = Lane::create_or_attach(&ping.0, CAPACITY)?.into_producer();
    let mut consumer = Lane::create_or_attach(&pong.0, CAPACITY)?.into_consumer();
    let total = WARMUP_ROUNDS + rounds;
    let mut child = ChildGuard(
        Command::new(std::env::current_exe()?)
            .arg("lane-echo")
            .arg("--path")
            .arg(&ping.0)
            .arg("--reply-path")
            .arg(&pong.0)
            .args(["--records", &total.to_string(), "--size", &size.to_string()])
            .args((waiting == Waiting::Spin).then_some("--spin"))
            .spawn()?,
    );
    let mut nanos = Vec::with_capacity(rounds as usize);
    let mut record = vec![0u8; size];
    let mut reply = Vec::with_capacity(size);
    let mut child_exited = || match child.0.try_wait()? {
        Some(status) => Err(format!("lane-echo child exited ({status})").into()),
        None => Ok(()),
    };
    for seq in 0..total {
        fixed_record(seq, &mut record);
        let start = Instant::now();
        send(&mut producer, &record)?;
        receive(&mut consumer, &mut reply, waiting, &mut child_exited)?;
        let round_trip = start.elapsed();
        check_fixed_record(seq, &reply, size)?;
        if seq >= WARMUP_ROUNDS {
            nanos.push(round_trip.as_nanos() as u64);
        }
    }
    let status = child.0.wait()?;
    if !status.success() {
        return Err(format!("lane-echo child failed: {status}").into());
    }
    Ok(nanos)
}

/// The child of [`lane_round_trips`]: sends each of `records` records from the lane at `path`
/// back into the lane at `reply_path`.
pub fn lane_echo(
    path: &Path,
    reply_path: &Path,
    records: u64,
    size: usize,
    waiting: Waiting,
) -> BoxResult<()> {
    let mut consumer = Lane::attach(path, None)?.into_consumer();
    let mut producer = Lane::attach(reply_path, None)?.into_producer();
    let parent = std::os::unix::process::parent_id();
    let mut parent_exited = || {
        if std::os::unix::process::parent_id() == parent {
            Ok(())
        } else {
            Err("the benchmark process exited".into())
        }
    };
    let mut record = Vec::with_capacity(size);
    for seq in 0..records {
        receive(&mut consumer, &mut record, waiting, &mut parent_exited)?;
        check_fixed_record(seq, &record, size)?;
        send(&mut producer, &record)?;
    }
    Ok(())
}

/// Pushes one record and publishes it (waking the peer if it sleeps).
fn send(producer: &mut Producer, record: &[u8]) -> BoxResult<()> {
    // With one record in flight the lane is empty here: Full means the peer broke the protocol.
    producer.try_push(&[record])?;
    producer.publish()?;
    Ok(())
}

/// Replaces `record` with the next record, waiting as `waiting` says; while none comes, calls
/// `peer_gone` now and then, which fails when the peer process is gone.
fn receive(
    consumer: &mut Consumer,
    record: &mut Vec<u8>,
    waiting: Waiting,
    peer_gone: &mut dyn FnMut() -> BoxResult<()>,
) -> BoxResult<()> {
    record.clear();
    while consumer.pop_into(record)?.is_none() {
        match waiting {
            Waiting::Sleep => consumer.wait(Some(CHECK_PEER_EVERY))?,
            Waiting::Spin => {
                let mut spins = 0;
                while !consumer.has_records() && spins < SPINS_PER_CHECK {
                    std::hint::spin_loop();
                    spins += 1;
                }
            }
        }
        if !consumer.has_records() {
            peer_gone()?;
        }
    }
    Ok(())
}

/// Ping-pong over a socketpair with a `socket-echo` child (the pair's other end is its stdin
/// and stdout); returns the measured round trips in nanoseconds.
fn socket_round_trips(rounds: u64, size: usize) -> BoxResult<Vec<u64>> {
    let (mut ours, theirs) = UnixStream::pair()?;
    let theirs_out = theirs.try_clone()?;
    let total = WARMUP_ROUNDS + rounds;
    let mut child = ChildGuard(
        Command::new(std::env::current_exe()?)
            .args(["socket-echo", "--records", &total.to_string()])
            .args(["--size", &size.to_string()])
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(OwnedFd::from(theirs_out)))
            .spawn()?,
    );
    let mut nanos = Vec::with_capacity(rounds as usize);
    let mut message = length_prefixed(size)?;
    let mut reply = vec![0u8; message.len()];
    for seq in 0..total {
        fixed_record(seq, &mut message[4..]);
        let start = Instant::now();
        ours.write_all(&message)?;
        ours.read_exact(&mut reply)?;
        let round_trip = start.elapsed();
        check_socket_record(seq, &reply, size)?;
        if seq >= WARMUP_ROUNDS {
            nanos.push(round_trip.as_nanos() as u64);
        }
    }
    let status = child.0.wait()?;
    if !status.success() {
        return Err(format!("socket-echo child failed: {status}").into());
    }
    Ok(nanos)
}

/// The child of [`socket_round_trips`]: reads each of `records` length-prefixed records from
/// stdin and writes it back to stdout, one write(2) each.
pub fn socket_echo(records: u64, size: usize) -> BoxResult<()> {
    // Plain Files over our stdin and stdout (the socket): no Stdin/Stdout buffering.
    let mut input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
    let mut output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let mut message = length_prefixed(size)?;
    for seq in 0..records {
        input.read_exact(&mut message)?;
        check_socket_record(seq, &message, size)?;
        output.write_all(&message)?;
    }
    Ok(())
}

/// A buffer for one socket message: the 4-byte little-endian length `size`, then `size` zeros.
fn length_prefixed(size: usize) -> BoxResult<Vec<u8>> {
    let mut message = vec![0u8; 4 + size];
    message[..4].copy_from_slice(&u32::try_from(size)?.to_le_bytes());
    Ok(message)
}

/// Checks a socket message: its length prefix, then what `fixed_record` wrote.
fn check_socket_record(seq: u64, message: &[u8], size: usize) -> BoxResult<()> {
    let (prefix, record) = message.split_at(4);
    if prefix != (size as u32).to_le_bytes() {
        return Err(format!("socket record {seq}: wrong length prefix").into());
    }
    check_fixed_record(seq, record, size)
}
