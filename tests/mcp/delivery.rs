//! Delivery guarantees of the MCP endpoint, through the real ccsd: at most once (the default), a
//! request MCP took is gone when MCP dies; at least once, the next MCP receives every request
//! whose replies the dead one had not published, and a C echo MCP killed under load and
//! restarted leaves no request unanswered.

use crate::{c_common, common};

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ccsd::mcp::{Delivery, McpEndpoint, McpError, Message};
use ccsd::record::Kind;
use common::{Proc, Rng, TestEnv, WAIT, connect, packet, read_n};
use rustix::process::{Pid, Signal, kill_process};

/// Attaches as MCP after an endpoint of this process was dropped. Its lock is released with its
/// descriptor, but a child that a test running in parallel forks in that moment holds a copy of
/// the descriptor (and so the lock) until it execs: wait for that.
fn attach_after_drop(env: &TestEnv) -> McpEndpoint {
    let deadline = Instant::now() + WAIT;
    loop {
        match McpEndpoint::attach(&env.settings()) {
            Err(McpError::Busy { pid, .. })
                if pid == Some(std::process::id()) && Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(1));
            }
            other => return other.unwrap(),
        }
    }
}

/// The next data record's payload.
fn next_data(mcp: &mut McpEndpoint, msg: &mut Message) -> Vec<u8> {
    loop {
        assert!(mcp.recv(msg, Some(WAIT)).unwrap(), "no request came");
        if msg.header().kind == Kind::Data {
            return msg.payload().to_vec();
        }
    }
}

/// ccsd, one client that sent `bodies`, all of them in the request lane.
fn sent(env: &TestEnv, bodies: &[&[u8]]) -> (Proc, TcpStream) {
    let ccsd = env.start_ccsd();
    let mut client = connect(ccsd.addr());
    for b in bodies {
        client.write_all(&packet(b)).unwrap();
    }
    env.wait_stat("totals.packets_in", |v| v == bodies.len() as u64);
    (ccsd, client)
}

#[test]
fn at_least_once_the_next_mcp_receives_every_request_the_dead_one_had_not_answered() {
    let env = TestEnv::new(1, "", "");
    let (_ccsd, mut client) = sent(&env, &[b"one", b"two", b"three"]);
    let mut msg = Message::new();
    {
        let mut dying = McpEndpoint::attach(&env.settings()).unwrap();
        dying.set_delivery(Delivery::AtLeastOnce);
        let first = next_data(&mut dying, &mut msg);
        dying.reply(msg.header(), b"lost reply").unwrap();
        assert_eq!(first, packet(b"one"));
        assert_eq!(next_data(&mut dying, &mut msg), packet(b"two"));
        assert_eq!(next_data(&mut dying, &mut msg), packet(b"three"));
        // Dies here: its reply was never published, nothing was released.
    }
    let mut next = attach_after_drop(&env);
    for body in [&b"one"[..], b"two", b"three"] {
        assert_eq!(next_data(&mut next, &mut msg), packet(body));
        next.reply(msg.header(), body).unwrap();
    }
    next.flush().unwrap();
    assert_eq!(read_n(&mut client, 11), b"onetwothree");
}

#[test]
fn at_most_once_requests_the_dead_mcp_took_are_not_delivered_again() {
    let env = TestEnv::new(1, "", "");
    let (_ccsd, mut client) = sent(&env, &[b"one", b"two"]);
    let mut msg = Message::new();
    {
        let mut dying = McpEndpoint::attach(&env.settings()).unwrap();
        assert_eq!(dying.delivery(), Delivery::AtMostOnce);
        assert_eq!(next_data(&mut dying, &mut msg), packet(b"one"));
    }
    let mut next = attach_after_drop(&env);
    assert_eq!(next_data(&mut next, &mut msg), packet(b"two"));
    next.reply(msg.header(), b"two").unwrap();
    next.flush().unwrap();
    assert_eq!(
        read_n(&mut client, 3),
        b"two",
        "only the request not taken is answered"
    );
}

#[test]
fn at_least_once_a_request_whose_reply_was_published_but_not_committed_is_delivered_twice() {
    let env = TestEnv::new(1, "", "");
    let (_ccsd, mut client) = sent(&env, &[b"once", b"again"]);
    let mut msg = Message::new();
    {
        let mut dying = McpEndpoint::attach(&env.settings()).unwrap();
        dying.set_delivery(Delivery::AtLeastOnce);
        assert_eq!(next_data(&mut dying, &mut msg), packet(b"once"));
        dying.reply(msg.header(), b"once").unwrap();
        dying.commit().unwrap(); // "once" is answered and released
        assert_eq!(next_data(&mut dying, &mut msg), packet(b"again"));
        dying.reply(msg.header(), b"again").unwrap();
        dying.flush().unwrap(); // published, but "again" is still being answered: not released
    }
    assert_eq!(read_n(&mut client, 9), b"onceagain");
    let mut next = attach_after_drop(&env);
    assert_eq!(
        next_data(&mut next, &mut msg),
        packet(b"again"),
        "the duplicate window"
    );
    next.reply(msg.header(), b"AGAIN").unwrap();
    next.flush().unwrap();
    assert_eq!(read_n(&mut client, 5), b"AGAIN");
}

const CLIENTS: u32 = 4;
/// Requests a client may have unanswered before it waits: enough that MCP is killed while it
/// holds many of them.
const WINDOW: u64 = 256;

/// What a client's writer and reader share with the test.
struct Progress {
    sent: AtomicU64,
    /// Distinct requests answered.
    answered: AtomicU64,
    target: AtomicU64,
    /// When not 0, the pid of the MCP to SIGKILL as soon as a reply arrives: MCP is then in the
    /// middle of a batch.
    kill_on_reply: Arc<AtomicI32>,
}

/// Client `client`'s request `seq`: both numbers, 0..256 bytes derived from them.
fn body(client: u32, seq: u64) -> Vec<u8> {
    let mut rng = Rng(u64::from(client) << 40 | seq | 1);
    let mut b = client.to_be_bytes().to_vec();
    b.extend_from_slice(&seq.to_be_bytes());
    let len = rng.below(256) as usize;
    b.extend((0..len).map(|_| rng.next() as u8));
    b
}

fn write_until_target(mut stream: TcpStream, client: u32, progress: &Progress) {
    let mut seq = 0;
    let mut stalled_since = Instant::now();
    while seq < progress.target.load(Ordering::Relaxed) {
        if seq.saturating_sub(progress.answered.load(Ordering::Relaxed)) >= WINDOW {
            // A request never answered stops the window forever: fail instead of hanging.
            assert!(
                stalled_since.elapsed() < WAIT,
                "client {client}: request {} never answered",
                progress.answered.load(Ordering::Relaxed)
            );
            thread::sleep(Duration::from_micros(200));
            continue;
        }
        stalled_since = Instant::now();
        progress.sent.store(seq + 1, Ordering::Relaxed);
        stream.write_all(&packet(&body(client, seq))).unwrap();
        seq += 1;
    }
}

/// Reads replies until every request below the target is answered; each must be this client's
/// and intact. Returns how many replies were duplicates.
fn read_until_target(mut stream: TcpStream, client: u32, progress: &Progress) -> u64 {
    let mut seen = BTreeSet::new();
    let mut duplicates = 0;
    loop {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).expect("a reply");
        let mut b = vec![0; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut b).expect("a reply body");
        assert!(
            b.len() >= 12,
            "client {client}: a reply of {} bytes",
            b.len()
        );
        let owner = u32::from_be_bytes(b[..4].try_into().unwrap());
        let seq = u64::from_be_bytes(b[4..12].try_into().unwrap());
        assert_eq!(owner, client, "client {client} got client {owner}'s reply");
        assert_eq!(
            b,
            body(client, seq),
            "client {client}: reply {seq} is not what it sent"
        );
        assert!(
            seq < progress.sent.load(Ordering::Relaxed),
            "{seq} never sent"
        );
        let pid = progress.kill_on_reply.swap(0, Ordering::Relaxed);
        if let Some(pid) = Pid::from_raw(pid) {
            kill_process(pid, Signal::KILL).expect("SIGKILL the MCP");
        }
        if !seen.insert(seq) {
            duplicates += 1;
        }
        // Requests are answered in order, except that a restarted MCP answers again from the
        // oldest one not released: the distinct answers are always a prefix.
        let prefix = seen.len() as u64;
        assert_eq!(
            seen.last(),
            Some(&(prefix - 1)),
            "client {client}: a gap before {seq}"
        );
        progress.answered.store(prefix, Ordering::Relaxed);
        if prefix >= progress.target.load(Ordering::Relaxed) {
            return duplicates;
        }
    }
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

fn start_c_echo(env: &TestEnv) -> Proc {
    let exe = c_common::compile("examples/c/echo_mcp.c", "echo_mcp", false);
    let mut cmd = Command::new(exe);
    cmd.arg(&env.config).arg("at-least-once");
    let mut p = Proc::spawn(cmd, "echo_mcp at-least-once");
    p.wait_for_line("c_echo_mcp attached");
    p
}

#[test]
fn a_c_echo_mcp_at_least_once_killed_under_load_leaves_no_request_unanswered() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = start_c_echo(&env);
    let kill_on_reply = Arc::new(AtomicI32::new(0));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let progress = Arc::new(Progress {
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            kill_on_reply: Arc::clone(&kill_on_reply),
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
    let sent = |c: &(Arc<Progress>, _, _)| c.0.sent.load(Ordering::Relaxed);
    let answered = |c: &(Arc<Progress>, _, _)| c.0.answered.load(Ordering::Relaxed);
    for _ in 0..3 {
        wait_until("load before the kill", || {
            clients.iter().all(|c| answered(c) >= 100)
        });
        // Stop MCP, let every client fill its window into the lanes, then let MCP run and kill
        // it at the first reply it sends: it dies holding most of the batch.
        let pid = Pid::from_child(&mcp.child);
        kill_process(pid, Signal::STOP).unwrap();
        wait_until("full windows", || {
            clients.iter().all(|c| sent(c) - answered(c) >= WINDOW)
        });
        let queued: u64 = clients.iter().map(sent).sum();
        env.wait_stat("totals.packets_in", |v| v >= queued);
        kill_on_reply.store(pid.as_raw_nonzero().get(), Ordering::Relaxed);
        kill_process(pid, Signal::CONT).unwrap();
        wait_until("the kill", || kill_on_reply.load(Ordering::Relaxed) == 0);
        mcp.kill();
        mcp = start_c_echo(&env);
    }
    for c in &clients {
        c.0.target
            .store(c.0.sent.load(Ordering::Relaxed) + 300, Ordering::Relaxed);
    }
    for (progress, writer, reader) in clients {
        writer.join().expect("writer");
        let duplicates = reader
            .join()
            .expect("reader: every reply its own and intact, and every request answered");
        assert!(
            progress.answered.load(Ordering::Relaxed) >= progress.target.load(Ordering::Relaxed)
        );
        eprintln!("duplicates after 3 kills: {duplicates}");
    }
}
