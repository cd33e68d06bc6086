//! Moving live connections between workers (admin `migrate`, `pin`, `unpin`): replies and
//! requests keep their order and none is lost or doubled while connections move back and forth,
//! a connection moves in each of its special states, and refusals are clear.

use crate::common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use common::{AdminClient, TestEnv, WAIT, connect, packet, read_n, round_trip};

/// One admin `conns` line: the flow and the worker holding it.
fn conns(admin: &mut AdminClient) -> Vec<(String, usize, bool)> {
    admin
        .ask_until_end("conns 1000")
        .iter()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words.first() == Some(&"conn")).then(|| {
                let worker = words[3].parse().unwrap();
                (words[1].to_owned(), worker, line.ends_with("pinned 1"))
            })
        })
        .collect()
}

/// A client that keeps `window` sequence-numbered requests in flight and checks that every reply
/// comes back exactly once, in order; returns how many it got.
fn pipelined_client(addr: SocketAddr, id: usize, window: u64, stop: Arc<AtomicBool>) -> u64 {
    let mut s = connect(addr);
    let body = |seq: u64| format!("client {id:02} request {seq:08}").into_bytes();
    let reply_len = packet(&body(0)).len();
    let (mut sent, mut received) = (0u64, 0u64);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        while !stopping && sent - received < window {
            s.write_all(&packet(&body(sent))).unwrap();
            sent += 1;
        }
        if received == sent {
            return received;
        }
        let reply = read_n(&mut s, reply_len);
        assert_eq!(
            reply,
            packet(&body(received)),
            "client {id}: reply {received} out of order or lost"
        );
        received += 1;
    }
}

#[test]
fn pipelined_clients_get_every_reply_once_and_in_order_while_their_connections_move_1000_times() {
    let env = TestEnv::new(3, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let addr = ccsd.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|id| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || pipelined_client(addr, id, 16, stop))
        })
        .collect();
    let mut admin = AdminClient::connect(ccsd.admin.expect("admin port"));
    let deadline = Instant::now() + WAIT;
    while conns(&mut admin).len() < 6 {
        assert!(Instant::now() < deadline, "the clients did not connect");
    }
    let mut moved = 0;
    let mut round = 0;
    while moved < 1000 {
        assert!(Instant::now() < deadline, "only {moved} migrations in time");
        round += 1;
        for (flow, worker, _) in conns(&mut admin) {
            let to = (worker + 1 + round % 2) % 3;
            let answer = admin.ask(&format!("migrate {flow} {to}"));
            assert!(
                answer == format!("OK migrated {flow} from worker {worker} to worker {to}"),
                "{answer}"
            );
            moved += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let replies: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(
        replies > 1000,
        "the clients kept talking: {replies} replies"
    );
    env.wait_stat("control.migrations_done", |n| n == moved);
    env.wait_stat("totals.migrations_in", |n| n == moved);
    let stats = env.stats();
    assert_eq!(common::stat(&stats, "control.migrations_failed"), Some(0));
    assert_eq!(common::stat(&stats, "totals.migrations_out"), Some(moved));
    assert_eq!(common::stat(&stats, "totals.dropped_stale_flow"), Some(0));
}

#[test]
fn a_pinned_flow_moves_only_when_forced_and_refusals_name_their_reason() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    assert_eq!(round_trip(&mut client, b"hello"), packet(b"hello"));
    let mut admin = AdminClient::connect(ccsd.admin.expect("admin port"));
    let (flow, worker, pinned) = conns(&mut admin).remove(0);
    assert!(!pinned);
    let other = 1 - worker;
    assert_eq!(
        admin.ask(&format!("pin {flow}")),
        format!("OK pinned {flow}")
    );
    assert!(conns(&mut admin)[0].2, "conns shows it pinned");
    assert_eq!(
        admin.ask(&format!("migrate {flow} {other}")),
        "ERROR the flow is pinned (add force)"
    );
    assert_eq!(
        admin.ask(&format!("migrate {flow} {other} force")),
        format!("OK migrated {flow} from worker {worker} to worker {other}")
    );
    assert_eq!(round_trip(&mut client, b"after"), packet(b"after"));
    assert_eq!(
        conns(&mut admin)[0],
        (flow.clone(), other, true),
        "still pinned"
    );
    assert_eq!(
        admin.ask(&format!("unpin {flow}")),
        format!("OK unpinned {flow}")
    );
    assert_eq!(
        admin.ask(&format!("migrate {flow} {other}")),
        "ERROR the flow is on that worker already"
    );
    assert_eq!(
        admin.ask(&format!("migrate {flow} 2")),
        "ERROR worker 2 does not exist (workers 0 to 1)"
    );
    assert!(
        admin
            .ask("migrate 12 x")
            .starts_with("ERROR usage: migrate FLOW WORKER")
    );
    drop(client);
    // Once it has closed, its flow is gone for both commands.
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = admin.ask(&format!("migrate {flow} {worker}"));
        if answer == "ERROR no such flow (closed)" {
            break;
        }
        assert!(Instant::now() < deadline, "{answer}");
    }
    assert_eq!(
        admin.ask(&format!("pin {flow}")),
        "ERROR no such flow (closed)"
    );
}

#[test]
fn a_packet_half_received_before_the_move_completes_after_it() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    assert_eq!(round_trip(&mut client, b"first"), packet(b"first"));
    let whole = packet(b"split across the move");
    client.write_all(&whole[..7]).unwrap();
    let mut admin = AdminClient::connect(ccsd.admin.expect("admin port"));
    // The worker has read the half packet once its buffer shows it.
    let deadline = Instant::now() + WAIT;
    let (flow, worker) = loop {
        let line = admin.ask_until_end("conns");
        if let Some(l) = line.iter().find(|l| l.contains("buffered_in 7 ")) {
            let w: Vec<&str> = l.split_whitespace().collect();
            break (w[1].to_owned(), w[3].parse::<usize>().unwrap());
        }
        assert!(Instant::now() < deadline, "{line:?}");
    };
    assert!(
        admin
            .ask(&format!("migrate {flow} {}", 1 - worker))
            .starts_with("OK migrated")
    );
    client.write_all(&whole[7..]).unwrap();
    assert_eq!(read_n(&mut client, whole.len()), whole);
    assert_eq!(round_trip(&mut client, b"next"), packet(b"next"));
}

/// A client that sends `body` and reads its echo as fast as it can, until `stop`.
fn busy_client(mut s: std::net::TcpStream, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        assert_eq!(
            round_trip(&mut s, b"heavy request"),
            packet(b"heavy request")
        );
    }
}

#[test]
fn the_rebalancer_evens_out_heavy_clients_on_one_worker_and_leaves_a_pinned_one() {
    let env = TestEnv::new(2, "", "");
    env.add_setting("broker", "rebalance = true\nrebalance_after = \"100ms\"");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut admin = AdminClient::connect(ccsd.admin.expect("admin port"));
    // Three connections, all moved to worker 0 before they get busy; the first is pinned there.
    let streams: Vec<_> = (0..3).map(|_| connect(ccsd.addr())).collect();
    let deadline = Instant::now() + WAIT;
    let mut flows = conns(&mut admin);
    while flows.len() < 3 {
        assert!(Instant::now() < deadline, "the clients did not connect");
        flows = conns(&mut admin);
    }
    for (flow, worker, _) in &flows {
        if *worker != 0 {
            assert!(
                admin
                    .ask(&format!("migrate {flow} 0"))
                    .starts_with("OK migrated")
            );
        }
    }
    let pinned = flows[0].0.clone();
    assert_eq!(
        admin.ask(&format!("pin {pinned}")),
        format!("OK pinned {pinned}")
    );
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = streams
        .into_iter()
        .map(|s| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || busy_client(s, stop))
        })
        .collect();
    // The rebalancer moves one unpinned connection to worker 1; the pinned one stays.
    let moved = loop {
        let now = conns(&mut admin);
        if let Some((flow, _, _)) = now.iter().find(|(_, w, _)| *w == 1) {
            break flow.clone();
        }
        assert!(Instant::now() < deadline, "nothing moved: {now:?}");
    };
    assert_ne!(moved, pinned);
    let after = conns(&mut admin);
    let on_one: Vec<_> = after.iter().filter(|(_, w, _)| *w == 1).collect();
    assert_eq!(on_one.len(), 1, "one move evens two against one: {after:?}");
    assert!(after.iter().any(|(f, w, p)| *f == pinned && *w == 0 && *p));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    env.wait_stat("control.rebalance_rounds", |n| n >= 1);
    env.wait_stat("control.rebalance_migrations", |n| n >= 1);
}
