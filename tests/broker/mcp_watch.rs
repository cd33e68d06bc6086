//! The MCP watch: ccsd notices when MCP is gone or stops reading, reports it in the status file
//! and the log, keeps its clients, and notices when MCP is back.

use crate::common;

use std::io::Write;

use ccsd::mcp::{McpEndpoint, Message};
use common::{TestEnv, WAIT, connect, packet, read_n, round_trip};

#[test]
fn a_killed_mcp_is_reported_down_and_up_again_and_queued_requests_are_answered() {
    let env = TestEnv::new(2, "", "");
    let mut ccsd = env.start_ccsd();
    let mut mcp = env.start_mcp("echo_mcp");
    env.wait_stat("mcp_watch.mcp_alive", |v| v == 1);
    ccsd.wait_for_line("MCP is up");
    let mut client = connect(ccsd.addr());
    assert_eq!(round_trip(&mut client, b"before"), packet(b"before"));

    mcp.kill();
    env.wait_stat("mcp_watch.mcp_alive", |v| v == 0);
    env.wait_stat("mcp_watch.mcp_down_events", |v| v == 1);
    let warning = ccsd.wait_for_line("MCP is down");
    assert!(
        warning.contains("WARN") && warning.contains("is gone"),
        "{warning}"
    );

    client.write_all(&packet(b"while down")).unwrap();
    env.wait_stat("totals.packets_in", |v| v == 2);
    let _mcp = env.start_mcp("echo_mcp");
    assert_eq!(read_n(&mut client, 14), packet(b"while down"));
    env.wait_stat("mcp_watch.mcp_alive", |v| v == 1);
    ccsd.wait_for_line("MCP is up");
    assert_eq!(env.wait_stat("mcp_watch.mcp_down_events", |v| v == 1), 1);
    // mcp.when_down = "queue" (the default) drops nothing.
    assert_eq!(
        common::stat(&env.stats(), "totals.dropped_mcp_down"),
        Some(0)
    );
}

#[test]
fn an_mcp_that_stops_reading_is_reported_down_after_the_stall_timeout() {
    let env = TestEnv::new(1, "", "[mcp]\nstall_timeout = \"300ms\"\n");
    let mut ccsd = env.start_ccsd();
    // The test is MCP: attached (its pid lives) but not reading until told to.
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    env.wait_stat("mcp_watch.mcp_alive", |v| v == 1);

    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"unread")).unwrap();
    env.wait_stat("mcp_watch.mcp_down_events", |v| v == 1);
    assert_eq!(env.wait_stat("mcp_watch.mcp_alive", |v| v == 0), 0);
    let warning = ccsd.wait_for_line("MCP is down");
    assert!(warning.contains("has not been read"), "{warning}");

    let mut msg = Message::new();
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    mcp.reply(msg.header(), msg.payload()).unwrap();
    mcp.flush().unwrap();
    assert_eq!(read_n(&mut client, 10), packet(b"unread"));
    env.wait_stat("mcp_watch.mcp_alive", |v| v == 1);
}
