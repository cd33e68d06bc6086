//! `mcp.when_down = "refuse"`: while MCP is down (not attached yet, or killed), new requests are
//! dropped and counted instead of queued, clients stay connected, and requests sent once MCP is
//! back are answered.

use crate::common;

use std::io::Write;

use common::{TestEnv, assert_open_and_silent, connect, packet, read_n, round_trip};

#[test]
fn requests_are_dropped_while_mcp_is_down_and_answered_once_it_is_back() {
    let env = TestEnv::new(2, "", "[mcp]\nwhen_down = \"refuse\"\n");
    let mut ccsd = env.start_ccsd();
    // The watch looks once before ccsd is ready, so no client is ever queued for an absent MCP.
    assert!(
        ccsd.lines
            .iter()
            .any(|l| l.contains("MCP is not serving yet")),
        "{:?}",
        ccsd.lines
    );

    // Never attached: refused.
    let mut client = connect(ccsd.addr());
    for body in [&b"one"[..], b"two", b"three"] {
        client.write_all(&packet(body)).unwrap();
    }
    env.wait_stat("totals.dropped_mcp_down", |v| v == 3);
    let warning = ccsd.wait_for_line("dropping packets");
    assert!(
        warning.contains("WARN") && warning.contains("refuse"),
        "{warning}"
    );
    assert_eq!(common::stat(&env.stats(), "totals.packets_in"), Some(0));
    assert_open_and_silent(&mut client);

    // Back: the same client is answered, and only for what it sends now.
    let mut mcp = env.start_mcp("echo_mcp");
    env.wait_stat("mcp_watch.mcp_alive", |v| v == 1);
    assert_eq!(round_trip(&mut client, b"answered"), packet(b"answered"));

    // Killed: refused again, the client still connected.
    mcp.kill();
    env.wait_stat("mcp_watch.mcp_alive", |v| v == 0);
    ccsd.wait_for_line("new requests are dropped");
    client.write_all(&packet(b"lost")).unwrap();
    env.wait_stat("totals.dropped_mcp_down", |v| v == 4);
    assert_open_and_silent(&mut client);

    let _mcp = env.start_mcp("echo_mcp");
    env.wait_stat("mcp_watch.mcp_alive", |v| v == 1);
    client.write_all(&packet(b"again")).unwrap();
    assert_eq!(read_n(&mut client, 9), packet(b"again"));
    env.wait_stat("totals.packets_in", |v| v == 2);
    let stats = env.stats();
    assert_eq!(common::stat(&stats, "totals.dropped_mcp_down"), Some(4));
    assert_eq!(common::stat(&stats, "totals.connections_open"), Some(1));
}
