//! One MCP per set of lanes: a second echo_mcp exits naming the first one's pid and the first
//! keeps answering every request; an MCP restart and a consumer that ignores the MCP lock are
//! both noticed, logged and counted by ccsd.

use crate::common;

use std::io::Write;
use std::process::Command;

use ccsd::lane::Lane;
use common::{Proc, TestEnv, connect, example_bin, packet, read_n};

/// Sends `count` packets on one connection and checks each echo.
fn echo_round_trips(ccsd: &Proc, count: usize) {
    let mut client = connect(ccsd.addr());
    for i in 0..count {
        let body = format!("request {i}");
        client.write_all(&packet(body.as_bytes())).unwrap();
        assert_eq!(read_n(&mut client, body.len() + 4), packet(body.as_bytes()));
    }
}

#[test]
fn a_second_mcp_exits_naming_the_first_and_the_first_keeps_answering() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let first = env.start_mcp("echo_mcp");

    let mut cmd = Command::new(example_bin("echo_mcp"));
    cmd.arg("--config").arg(&env.config);
    let mut second = Proc::spawn(cmd, "second echo_mcp");
    let line = second.wait_for_line("cannot attach");
    assert!(
        line.contains(&format!("another MCP (pid {})", first.child.id())),
        "the refusal names the holder: {line}"
    );
    assert!(line.contains(".mcp.lock"), "and the lock file: {line}");
    assert_eq!(second.exit_code(), Some(2));

    for _ in 0..4 {
        echo_round_trips(&ccsd, 50);
    }
    env.wait_stat("mcp_watch.mcp_consumer_contention", |v| v == 0);
    env.wait_stat("mcp_watch.mcp_consumer_changes", |v| v == 0);
}

#[test]
fn an_mcp_started_after_the_first_exits_takes_over_and_is_counted_as_a_change() {
    let env = TestEnv::new(1, "", "");
    let mut ccsd = env.start_ccsd();
    let mut first = env.start_mcp("echo_mcp");
    echo_round_trips(&ccsd, 5);
    // ccsd has seen the first MCP on its lanes.
    ccsd.wait_for_line("MCP is up");
    let first_pid = first.child.id();
    first.kill();

    let second = env.start_mcp("echo_mcp");
    echo_round_trips(&ccsd, 5);
    env.wait_stat("mcp_watch.mcp_consumer_changes", |v| v == 1);
    let line = ccsd.wait_for_line("MCP changed");
    assert!(
        line.contains(&format!("process {}", second.child.id()))
            && line.contains(&format!("after process {first_pid}")),
        "{line}"
    );
    assert_eq!(
        common::stat(&env.stats(), "mcp_watch.mcp_consumer_contention"),
        Some(0)
    );
}

#[test]
fn a_consumer_that_ignores_the_mcp_lock_is_reported_as_contention() {
    let env = TestEnv::new(1, "", "");
    let mut ccsd = env.start_ccsd();
    let first = env.start_mcp("echo_mcp");
    echo_round_trips(&ccsd, 5);

    // A second consumer attaches to request lane 0 without the lock, as a careless MCP would.
    let intruder = Lane::attach(&env.settings().request_lane_path(0), None)
        .unwrap()
        .into_consumer();
    env.wait_stat("mcp_watch.mcp_consumer_contention", |v| v == 1);
    let line = ccsd.wait_for_line("two MCPs on these lanes");
    assert!(
        line.contains(&format!(
            "process {} attached to request lane 0",
            std::process::id()
        )) && line.contains(&format!("while process {} still runs", first.child.id())),
        "{line}"
    );
    drop(intruder);
}
