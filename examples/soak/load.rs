//! One load client: a thread driving one connection at a time, as fast as replies come back.
//!
//! It keeps `--pipeline` requests in flight (one write per batch, replies read as they come),
//! checks every reply against what it sent ([`crate::payload::check`]), and now and then, by
//! `--close-probability` per request, writes only the first bytes of a request and closes the
//! connection, then connects again. Requests it sent in full on a connection it closed itself
//! before their replies came are *abandoned*, not lost; every other request sent in full must be
//! answered.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::payload::{self, MIN_BODY, PREFIX, Sent};
use crate::report::Counts;
use crate::rng::Rng;

/// How long a blocking read waits before the client looks at the clock again.
const READ_SLICE: Duration = Duration::from_millis(100);
/// Wait before connecting again after a connect failed.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Receive buffer size.
const RECV_BUF: usize = 64 << 10;

/// What every load client is told.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// ccsd's listener.
    pub addr: SocketAddr,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Largest request body.
    pub max_body: usize,
    /// A request is cut short and its connection closed when a random `u64` falls below this.
    pub close_below: u64,
    /// How long requests may wait for a reply.
    pub reply_timeout: Duration,
    /// No request is sent from then on; what is in flight is still awaited.
    pub until: Instant,
    /// Seed of payloads and close decisions.
    pub seed: u64,
}

impl Plan {
    /// The threshold for `close_probability`, a chance per request.
    pub fn close_below(close_probability: f64) -> u64 {
        // The cast saturates: a probability of 1 gives u64::MAX.
        (close_probability * 2f64.powi(64)) as u64
    }
}

/// Running totals every client adds to, for progress lines during the run.
#[derive(Debug, Default)]
pub struct Progress {
    /// Exact echoes received.
    pub answered: AtomicU64,
    /// Mid-packet closes made.
    pub mid_packet_closes: AtomicU64,
    /// Requests lost, misrouted or corrupted.
    pub bad: AtomicU64,
    /// The longest a connection with requests in flight went without reply bytes, in µs, since
    /// the watcher last took it (it closes a window with `swap(0)`).
    pub max_wait_us: AtomicU64,
}

/// Runs client `slot` until `plan.until` and its last replies; returns what it counted.
///
/// Connection ids are `slot << 32 | n` for its `n`-th connection, so a reply names the very
/// connection its request came from.
pub fn run(slot: usize, plan: &Plan, progress: &Progress) -> Counts {
    let mut counts = Counts::default();
    let mut rng = Rng::new(plan.seed, slot as u64);
    let mut session = Session::new(plan);
    for n in 0u64.. {
        if Instant::now() >= plan.until {
            break;
        }
        let stream = match connect(plan.addr, plan.reply_timeout) {
            Ok(s) => s,
            Err(e) => {
                counts.connect_failures += 1;
                counts.error(|| format!("load client {slot}: connect: {e}"));
                std::thread::sleep(RECONNECT_PAUSE);
                continue;
            }
        };
        counts.connections += 1;
        let conn = (slot as u64) << 32 | n;
        let end = session.drive(stream, conn, &mut rng, &mut counts, progress);
        if end == End::RunOver {
            break;
        }
    }
    counts
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed it in the middle of a request.
    ClosedMidPacket,
    /// The run is over and every reply came.
    RunOver,
    /// Something went wrong (counted): closed by ccsd, socket error, reply timeout, broken
    /// reply stream.
    Failed,
}

/// What one write sent.
#[derive(Debug, Clone, Copy)]
struct Batch {
    /// Requests sent in full.
    whole: u64,
    /// The batch ended with a request cut short: the connection is to be closed.
    cut: bool,
}

/// One connection's buffers, reused across the client's connections.
struct Session<'a> {
    plan: &'a Plan,
    in_flight: VecDeque<Sent>,
    send: Vec<u8>,
    recv: Vec<u8>,
}

impl<'a> Session<'a> {
    fn new(plan: &'a Plan) -> Session<'a> {
        Session {
            plan,
            in_flight: VecDeque::with_capacity(plan.pipeline),
            send: Vec::with_capacity(plan.pipeline * (PREFIX + plan.max_body)),
            // Room for a whole reply after any incomplete one.
            recv: vec![0; RECV_BUF.max(2 * (PREFIX + plan.max_body))],
        }
    }

    /// Drives connection `conn` until the client closes it, the run ends or it fails.
    fn drive(
        &mut self,
        mut stream: TcpStream,
        conn: u64,
        rng: &mut Rng,
        counts: &mut Counts,
        progress: &Progress,
    ) -> End {
        let frame_max = PREFIX + self.plan.max_body;
        self.in_flight.clear();
        let (mut start, mut end) = (0, 0);
        let mut seq = 0;
        // When the oldest request in flight was sent or the last reply bytes came.
        let mut waiting_since = Instant::now();
        loop {
            if Instant::now() < self.plan.until {
                let was_idle = self.in_flight.is_empty();
                match self.send_batch(&mut stream, conn, &mut seq, rng) {
                    Ok(Batch { whole, cut }) => {
                        counts.sent += whole;
                        if was_idle {
                            waiting_since = Instant::now();
                        }
                        if cut {
                            drop(stream);
                            counts.mid_packet_closes += 1;
                            counts.abandoned += self.in_flight.len() as u64;
                            progress.mid_packet_closes.fetch_add(1, Ordering::Relaxed);
                            return End::ClosedMidPacket;
                        }
                    }
                    Err(e) => return self.fail(counts, progress, format!("write: {e}")),
                }
            } else if self.in_flight.is_empty() {
                counts.closed_at_end += 1;
                return End::RunOver;
            }
            if self.recv.len() - end < frame_max {
                self.recv.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            match stream.read(&mut self.recv[end..]) {
                Ok(0) => return self.fail(counts, progress, "closed by ccsd".into()),
                Ok(n) => {
                    end += n;
                    let now = Instant::now();
                    let waited = now.duration_since(waiting_since).as_micros() as u64;
                    progress.max_wait_us.fetch_max(waited, Ordering::Relaxed);
                    waiting_since = now;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if !self.in_flight.is_empty()
                        && waiting_since.elapsed() > self.plan.reply_timeout
                    {
                        let msg = format!("no reply for {:?}", self.plan.reply_timeout);
                        return self.fail(counts, progress, msg);
                    }
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(counts, progress, format!("read: {e}")),
            }
            let (answered_before, bad_before) = (counts.answered, counts.bad());
            while end - start >= PREFIX {
                let prefix: [u8; PREFIX] = self.recv[start..start + PREFIX]
                    .try_into()
                    .expect("PREFIX bytes");
                let len = u32::from_be_bytes(prefix) as usize;
                if len > self.plan.max_body {
                    counts.corrupted += 1;
                    let msg = format!("a reply announces {len} bytes, more than any request");
                    return self.fail(counts, progress, msg);
                }
                if end - start < PREFIX + len {
                    break;
                }
                let body = &self.recv[start + PREFIX..start + PREFIX + len];
                counts.judge(conn, payload::check(&mut self.in_flight, conn, body));
                start += PREFIX + len;
            }
            if start == end {
                (start, end) = (0, 0);
            }
            let answered = counts.answered - answered_before;
            progress.answered.fetch_add(answered, Ordering::Relaxed);
            let bad = counts.bad() - bad_before;
            progress.bad.fetch_add(bad, Ordering::Relaxed);
        }
    }

    /// Tops the requests in flight up to the pipeline depth with one write. By
    /// `close_below`, the batch instead ends with the first bytes of one more request, cut
    /// short, and the caller closes the connection.
    fn send_batch(
        &mut self,
        stream: &mut TcpStream,
        conn: u64,
        seq: &mut u64,
        rng: &mut Rng,
    ) -> std::io::Result<Batch> {
        self.send.clear();
        let mut batch = Batch {
            whole: 0,
            cut: false,
        };
        while self.in_flight.len() < self.plan.pipeline {
            let spread = (self.plan.max_body - MIN_BODY + 1) as u64;
            let len = MIN_BODY + (rng.next() % spread) as usize;
            let sent = payload::encode(&mut self.send, conn, *seq, len, rng);
            *seq += 1;
            if rng.next() < self.plan.close_below {
                // Keep from 1 byte up to all but the last byte of this request's frame.
                let frame = (PREFIX + len) as u64;
                let keep = 1 + rng.next() % (frame - 1);
                self.send
                    .truncate(self.send.len() - (frame - keep) as usize);
                batch.cut = true;
                break;
            }
            self.in_flight.push_back(sent);
            batch.whole += 1;
        }
        if !self.send.is_empty()
            && let Err(e) = stream.write_all(&self.send)
        {
            // This batch was not sent in full: its requests do not count as sent.
            let keep = self.in_flight.len() - batch.whole as usize;
            self.in_flight.truncate(keep);
            return Err(e);
        }
        Ok(batch)
    }

    /// Gives the connection up: what it has in flight is lost.
    fn fail(&mut self, counts: &mut Counts, progress: &Progress, msg: String) -> End {
        let lost = self.in_flight.len() as u64;
        counts.failed += 1;
        counts.lost += lost;
        progress.bad.fetch_add(lost, Ordering::Relaxed);
        counts.error(|| format!("load connection: {msg} ({lost} requests lost)"));
        End::Failed
    }
}

/// A blocking connection with Nagle's algorithm off whose reads wake up every [`READ_SLICE`]
/// and whose writes give up after `write_timeout`.
fn connect(addr: SocketAddr, write_timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READ_SLICE))?;
    stream.set_write_timeout(Some(write_timeout))?;
    Ok(stream)
}
