//! The idle connections: opened before the load, proven accepted by one round trip each, left
//! silent for the whole run, then checked: nothing arrived on them unasked, they are still open,
//! and a second round trip on each comes back exact.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::payload::{self, MIN_BODY, PREFIX, Verdict};
use crate::rng::Rng;

/// Idle connection `i` has id `IDLE_IDS | i`; load connections have the top bit clear.
const IDLE_IDS: u64 = 1 << 63;

/// What a check of the idle connections found.
#[derive(Debug, Default, Clone)]
pub struct IdleCheck {
    /// Connections that answered their round trip exactly.
    pub alive: u64,
    /// Connections closed, failed or not answering.
    pub dead: u64,
    /// Connections that had received bytes nobody asked for, or got another connection's reply.
    pub misrouted: u64,
    /// Connections whose reply was damaged.
    pub corrupted: u64,
    /// The first problems, described.
    pub errors: Vec<String>,
}

impl IdleCheck {
    fn problem(&mut self, i: usize, what: String) {
        if self.errors.len() < 5 {
            self.errors.push(format!("idle connection {i}: {what}"));
        }
    }
}

/// Opens `n` connections to `addr`.
pub fn open(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>, String> {
    (0..n)
        .map(|i| {
            let s = TcpStream::connect(addr)
                .map_err(|e| format!("idle connection {i} of {n}: connect: {e}"))?;
            s.set_nodelay(true)
                .map_err(|e| format!("idle connection {i}: {e}"))?;
            Ok(s)
        })
        .collect()
}

/// Checks every connection: nothing waiting to be read (first, without blocking), then request
/// number `round` written to all of them and every reply read and judged, all replies within
/// `timeout`.
pub fn check(streams: &mut [TcpStream], round: u64, rng: &mut Rng, timeout: Duration) -> IdleCheck {
    let mut result = IdleCheck::default();
    let mut ok = vec![true; streams.len()];
    for (i, s) in streams.iter_mut().enumerate() {
        match waiting(s) {
            Waiting::Nothing => {}
            Waiting::Bytes => {
                ok[i] = false;
                result.misrouted += 1;
                result.problem(i, "received bytes nobody asked for".into());
            }
            Waiting::Gone(what) => {
                ok[i] = false;
                result.dead += 1;
                result.problem(i, what);
            }
        }
    }
    let mut sent = Vec::with_capacity(streams.len());
    let mut frame = Vec::new();
    for (i, s) in streams.iter_mut().enumerate() {
        frame.clear();
        sent.push(payload::encode(
            &mut frame,
            IDLE_IDS | i as u64,
            round,
            MIN_BODY + 8,
            rng,
        ));
        if ok[i]
            && let Err(e) = s.write_all(&frame)
        {
            ok[i] = false;
            result.dead += 1;
            result.problem(i, format!("write: {e}"));
        }
    }
    let mut reply = vec![0; PREFIX + MIN_BODY + 8];
    let deadline = Instant::now() + timeout;
    for (i, s) in streams.iter_mut().enumerate() {
        if !ok[i] {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let read = s
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .and_then(|()| s.read_exact(&mut reply));
        if let Err(e) = read {
            result.dead += 1;
            result.problem(i, format!("no reply: {e}"));
            continue;
        }
        let mut in_flight = VecDeque::from([sent[i]]);
        match payload::check(&mut in_flight, IDLE_IDS | i as u64, &reply[PREFIX..]) {
            Verdict::Echo => result.alive += 1,
            Verdict::Misrouted { conn } => {
                result.misrouted += 1;
                result.problem(i, format!("got connection {conn:#x}'s request"));
            }
            other => {
                result.corrupted += 1;
                result.problem(i, format!("reply {other:?}"));
            }
        }
    }
    result
}

/// What a connection that should have received nothing has waiting.
enum Waiting {
    /// Nothing, and it is open.
    Nothing,
    /// Bytes.
    Bytes,
    /// The end of the stream or an error, described.
    Gone(String),
}

/// Looks, without blocking, at what `s` has waiting.
fn waiting(s: &mut TcpStream) -> Waiting {
    let mut byte = [0u8; 1];
    if let Err(e) = s.set_nonblocking(true) {
        return Waiting::Gone(format!("set non-blocking: {e}"));
    }
    let found = match s.read(&mut byte) {
        Ok(0) => Waiting::Gone("closed by ccsd".into()),
        Ok(_) => Waiting::Bytes,
        Err(e) if e.kind() == ErrorKind::WouldBlock => Waiting::Nothing,
        Err(e) => Waiting::Gone(format!("read: {e}")),
    };
    match s.set_nonblocking(false) {
        Ok(()) => found,
        Err(e) => Waiting::Gone(format!("set blocking: {e}")),
    }
}
