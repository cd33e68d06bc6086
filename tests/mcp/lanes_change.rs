//! ccsd restarted with more workers creates request lanes and rewrites `request_lanes`: a running
//! MCP (the Rust endpoint and the C library alike) attaches to the new lanes by itself and
//! answers the clients of every new worker.

use crate::{c_common, common};

use std::process::Command;

use common::{Proc, TestEnv, connect, packet, round_trip};

/// Restarts ccsd (1 worker) with 3 workers under the running MCP and checks two clients of each
/// worker.
fn restart_with_more_workers(env: &TestEnv, mut first: Proc) {
    let mut client = connect(first.addr());
    assert_eq!(
        round_trip(&mut client, b"one worker"),
        packet(b"one worker")
    );
    first.kill();
    let toml = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, toml.replacen("workers = 1", "workers = 3", 1)).unwrap();
    let second = env.start_ccsd();
    // Round robin: six clients, two on each worker.
    let mut clients: Vec<_> = (0..6).map(|_| connect(second.addr())).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let body = format!("client {i}");
        assert_eq!(round_trip(c, body.as_bytes()), packet(body.as_bytes()));
    }
}

fn env() -> TestEnv {
    let env = TestEnv::new(1, "", "");
    env.add_setting("broker", "dispatch = \"round_robin\"");
    env
}

#[test]
fn the_rust_echo_mcp_follows_a_ccsd_restart_with_more_workers() {
    let env = env();
    let first = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    restart_with_more_workers(&env, first);
}

#[test]
fn the_c_echo_mcp_follows_a_ccsd_restart_with_more_workers() {
    let env = env();
    let first = env.start_ccsd();
    let exe = c_common::compile("examples/c/echo_mcp.c", "echo_mcp", false);
    let mut cmd = Command::new(exe);
    cmd.arg(&env.config);
    let mut mcp = Proc::spawn(cmd, "c echo_mcp");
    mcp.wait_for_line("c_echo_mcp attached");
    restart_with_more_workers(&env, first);
}
