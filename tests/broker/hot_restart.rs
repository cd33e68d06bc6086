//! Hot restart (`ccsd --takeover`): a new process takes over the listening sockets, the lock and
//! every live connection of the running one; clients notice nothing, the old process exits 0,
//! and a takeover that cannot happen leaves the old one serving.

use crate::common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Proc, TestEnv, connect, packet, pipelined_client, round_trip};

/// Starts `ccsd --takeover` on the test's config and waits until it serves.
fn take_over(env: &TestEnv) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.arg("--takeover");
    env.start_broker(cmd, "ccsd --takeover")
}

#[test]
fn pipelined_clients_lose_nothing_across_five_takeovers_in_a_row() {
    let env = TestEnv::new(2, "", "");
    let mut old = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let addr = old.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|id| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || pipelined_client(addr, id, 16, stop))
        })
        .collect();
    env.wait_stat("totals.connections_open", |n| n == 6);
    for round in 0..5 {
        let new = take_over(&env);
        assert_eq!(new.addr(), addr, "round {round}: the same listening socket");
        assert_eq!(
            old.exit_code(),
            Some(0),
            "round {round}: the old process exits 0"
        );
        assert!(
            new.lines
                .iter()
                .any(|l| l.contains("took over") && l.contains("6 connections")),
            "round {round}: {:?}",
            new.lines
        );
        old = new;
    }
    stop.store(true, Ordering::Relaxed);
    let replies: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(replies > 0);
    // A new connection is served by the last process.
    let mut client = connect(addr);
    assert_eq!(round_trip(&mut client, b"after"), packet(b"after"));
}

#[test]
fn with_nothing_to_take_over_the_new_process_exits_2_and_says_why() {
    let env = TestEnv::new(1, "", "");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.arg("--takeover").arg("--config").arg(&env.config);
    let out = cmd.output().expect("run ccsd --takeover");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no running ccsd to take over"), "{stderr}");
}

#[test]
fn a_refused_takeover_leaves_the_old_process_serving() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    assert_eq!(round_trip(&mut client, b"before"), packet(b"before"));
    // Another lane capacity: the lanes cannot change size across a takeover.
    let other = env.dir.join("other.toml");
    let toml = std::fs::read_to_string(&env.config).unwrap();
    let toml = toml.replacen("[queues]\n", "[queues]\ncapacity = \"64MiB\"\n", 1);
    std::fs::write(&other, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--takeover")
        .arg("--config")
        .arg(&other)
        .output()
        .expect("run ccsd --takeover");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("queues.capacity differs"), "{stderr}");
    assert_eq!(round_trip(&mut client, b"after"), packet(b"after"));
}
