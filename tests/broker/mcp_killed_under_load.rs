//! SIGKILL of MCP mid-load: several clients send checksummed, client-tagged packets without
//! pause through ccsd to the echo MCP; the MCP is killed and restarted under them. No client may
//! ever receive a byte that is not its own, and every request sent after the restart is answered.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Rng, TestEnv, WAIT, connect, packet};

const CLIENTS: u32 = 4;
/// Requests a client may have unanswered (counting from its last reply) before it waits.
const WINDOW: u64 = 32;

/// What a client's writer and reader share with the test.
struct Progress {
    /// Packets written (sequence numbers 0..sent).
    sent: AtomicU64,
    /// One past the sequence number of the last reply read.
    answered: AtomicU64,
    /// The writer stops before this sequence number and the reader after the reply before it.
    target: AtomicU64,
}

/// FNV-1a over the bytes.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Client `client`'s packet `seq`: client, seq, a payload of 0..256 bytes from both, and the
/// checksum of everything before it.
fn body(client: u32, seq: u64) -> Vec<u8> {
    let mut rng = Rng(u64::from(client) << 40 | seq | 1);
    let mut b = client.to_be_bytes().to_vec();
    b.extend_from_slice(&seq.to_be_bytes());
    let len = rng.below(256) as usize;
    b.extend((0..len).map(|_| rng.next() as u8));
    let sum = checksum(&b);
    b.extend_from_slice(&sum.to_be_bytes());
    b
}

fn write_until_target(mut stream: TcpStream, client: u32, progress: &Progress) {
    let mut seq = 0;
    while seq < progress.target.load(Ordering::Relaxed) {
        if seq - progress.answered.load(Ordering::Relaxed) >= WINDOW {
            // Polling the reader's progress; MCP may be down for a while.
            thread::sleep(Duration::from_micros(200));
            continue;
        }
        progress.sent.store(seq + 1, Ordering::Relaxed);
        stream.write_all(&packet(&body(client, seq))).unwrap();
        seq += 1;
    }
}

/// Reads replies until the one before the target; checks each is this client's, intact, later
/// than the one before and actually sent. Returns the sequence numbers received.
fn read_until_target(mut stream: TcpStream, client: u32, progress: &Progress) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).expect("a reply");
        let mut b = vec![0; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut b).expect("a reply body");
        assert!(
            b.len() >= 20,
            "client {client}: a reply of {} bytes",
            b.len()
        );
        let owner = u32::from_be_bytes(b[..4].try_into().unwrap());
        let seq = u64::from_be_bytes(b[4..12].try_into().unwrap());
        assert_eq!(
            owner, client,
            "client {client} got client {owner}'s reply {seq}"
        );
        assert_eq!(
            b,
            body(client, seq),
            "client {client}: reply {seq} is not what it sent"
        );
        assert!(
            seen.last().is_none_or(|&prev| prev < seq),
            "client {client}: reply {seq} out of order"
        );
        assert!(
            seq < progress.sent.load(Ordering::Relaxed),
            "client {client}: {seq} never sent"
        );
        seen.push(seq);
        progress.answered.store(seq + 1, Ordering::Relaxed);
        if seq + 1 >= progress.target.load(Ordering::Relaxed) {
            return seen;
        }
    }
}

/// Polls `done` until it holds, failing the test after [`WAIT`].
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killing_mcp_mid_load_never_misdelivers_and_requests_after_its_restart_are_answered() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = env.start_mcp("echo_mcp");

    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let progress = Arc::new(Progress {
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
        });
        let stream = connect(ccsd.addr());
        let writer = {
            let (stream, progress) = (stream.try_clone().unwrap(), Arc::clone(&progress));
            thread::spawn(move || write_until_target(stream, client, &progress))
        };
        let reader = {
            let progress = Arc::clone(&progress);
            thread::spawn(move || read_until_target(stream, client, &progress))
        };
        clients.push((progress, writer, reader));
    }
    let answered = |c: &(Arc<Progress>, _, _)| c.0.answered.load(Ordering::Relaxed);
    wait_until("load before the kill", || {
        clients.iter().all(|c| answered(c) >= 200)
    });

    mcp.kill();
    let _mcp = env.start_mcp("echo_mcp");
    // Everything from here on is sent to the new MCP and must be answered.
    let restart: Vec<u64> = clients
        .iter()
        .map(|c| {
            let mark = c.0.sent.load(Ordering::Relaxed);
            c.0.target.store(mark + 500, Ordering::Relaxed);
            mark
        })
        .collect();

    for ((progress, writer, reader), mark) in clients.into_iter().zip(restart) {
        writer.join().expect("writer");
        let seen = reader
            .join()
            .expect("reader: every reply was its own, intact, in order and sent");
        let target = progress.target.load(Ordering::Relaxed);
        let missing: Vec<u64> = (mark..target)
            .filter(|s| seen.binary_search(s).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "sent after the restart, never answered: {missing:?}"
        );
    }
}
