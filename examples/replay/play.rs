//! `replay play`: replays each recorded connection against a server and compares what comes back
//! with what was recorded.
//!
//! Each connection runs on its own thread. Before sending a client chunk, the player waits until
//! it has received as many server bytes as had been recorded before that chunk, so requests and
//! replies keep their recorded order; after the last chunk it waits for the rest.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use ccsd::framing::{FrameCheck, Framer, LengthFramer};
use ccsd::settings::{Endian, LengthIncludes};

use crate::format::{Chunk, Direction};

/// How one connection's replay went.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every recorded server byte came back, and nothing more.
    Matched { bytes: usize },
    /// The bytes differ from offset `at` (in packet `packet` when the framing tells packets).
    Differs { at: usize, packet: Option<usize> },
    /// The server sent `got` bytes of the `expected` before the timeout or end of stream.
    Short { got: usize, expected: usize },
    /// Extra bytes came after the recorded ones.
    Extra { expected: usize },
    /// The connection could not be made or broke.
    Failed(String),
}

/// Replays every connection of `chunks` against `target`; returns outcomes by connection number.
pub fn play(
    chunks: Vec<Chunk>,
    target: SocketAddr,
    timeout: Duration,
    length_framing: bool,
) -> BTreeMap<usize, Outcome> {
    let mut by_conn: BTreeMap<usize, Vec<Chunk>> = BTreeMap::new();
    for c in chunks {
        by_conn.entry(c.connection).or_default().push(c);
    }
    let handles: Vec<_> = by_conn
        .into_iter()
        .map(|(id, chunks)| {
            (
                id,
                thread::spawn(move || play_connection(&chunks, target, timeout, length_framing)),
            )
        })
        .collect();
    handles
        .into_iter()
        .map(|(id, h)| {
            (
                id,
                h.join()
                    .unwrap_or_else(|_| Outcome::Failed("player panicked".into())),
            )
        })
        .collect()
}

fn play_connection(
    chunks: &[Chunk],
    target: SocketAddr,
    timeout: Duration,
    length_framing: bool,
) -> Outcome {
    let expected: Vec<u8> = chunks
        .iter()
        .filter(|c| c.direction == Direction::Server)
        .flat_map(|c| c.bytes.iter().copied())
        .collect();
    let run = || -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(target)?;
        stream.set_nodelay(true)?;
        let deadline = Instant::now() + timeout;
        let mut received = Vec::with_capacity(expected.len());
        let mut server_before = 0;
        for c in chunks {
            match c.direction {
                Direction::Server => server_before += c.bytes.len(),
                Direction::Client => {
                    read_until(&mut stream, &mut received, server_before, deadline)?;
                    stream.write_all(&c.bytes)?;
                }
            }
        }
        read_until(&mut stream, &mut received, expected.len(), deadline)?;
        // Anything more than recorded arrives now or not at all: a short grace period.
        stream.set_read_timeout(Some(Duration::from_millis(50)))?;
        let mut extra = [0u8; 1];
        if let Ok(n) = stream.read(&mut extra) {
            received.extend_from_slice(&extra[..n]);
        }
        Ok(received)
    };
    match run() {
        Err(e) => Outcome::Failed(e.to_string()),
        Ok(got) => compare(&expected, &got, length_framing),
    }
}

/// Reads from `stream` into `received` until it holds `want` bytes, the stream ends or the
/// deadline passes (the comparison then reports what is missing).
fn read_until(
    stream: &mut TcpStream,
    received: &mut Vec<u8>,
    want: usize,
    deadline: Instant,
) -> io::Result<()> {
    let mut buf = [0u8; 64 * 1024];
    while received.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn compare(expected: &[u8], got: &[u8], length_framing: bool) -> Outcome {
    if let Some(at) = expected.iter().zip(got).position(|(a, b)| a != b) {
        let packet = length_framing.then(|| packet_index(expected, at)).flatten();
        return Outcome::Differs { at, packet };
    }
    match got.len().cmp(&expected.len()) {
        std::cmp::Ordering::Less => Outcome::Short {
            got: got.len(),
            expected: expected.len(),
        },
        std::cmp::Ordering::Greater => Outcome::Extra {
            expected: expected.len(),
        },
        std::cmp::Ordering::Equal => Outcome::Matched { bytes: got.len() },
    }
}

/// Which length-framed packet of `stream` holds byte `at`.
fn packet_index(stream: &[u8], at: usize) -> Option<usize> {
    let framer =
        LengthFramer::new(0, 4, Endian::Big, LengthIncludes::Body, 0, usize::MAX >> 1).ok()?;
    let mut start = 0;
    for index in 0.. {
        let FrameCheck::Complete(n) = framer.check(&stream[start..]) else {
            return None;
        };
        if at < start + n {
            return Some(index);
        }
        start += n;
    }
    None
}
