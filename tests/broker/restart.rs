//! Restarts: MCP restarting under live clients, and ccsd restarting with replies still in the
//! response lane.

use crate::common;

use std::io::Write;

use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::Kind;
use common::{TestEnv, WAIT, connect, packet, read_n, round_trip};

#[test]
fn requests_queued_while_mcp_is_down_are_answered_when_it_returns() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = env.start_mcp("echo_mcp");
    let mut client = connect(ccsd.addr());
    assert_eq!(round_trip(&mut client, b"first"), packet(b"first"));

    mcp.kill();
    let bodies: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("queued {i}").into_bytes())
        .collect();
    for b in &bodies {
        client.write_all(&packet(b)).unwrap();
    }
    // ccsd has taken all ten into the request lane while no MCP runs.
    env.wait_stat("totals.packets_in", |v| v == 11);

    let _mcp = env.start_mcp("echo_mcp");
    for b in &bodies {
        assert_eq!(read_n(&mut client, 4 + b.len()), packet(b));
    }
    assert_eq!(round_trip(&mut client, b"last"), packet(b"last"));
}

#[test]
fn replies_left_in_the_response_lane_across_a_ccsd_restart_are_not_misdelivered() {
    let env = TestEnv::new(1, "", "");
    let mut first = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();

    let mut old_client = connect(first.addr());
    old_client.write_all(&packet(b"old")).unwrap();
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    let old_req = *msg.header();
    first.kill();

    // MCP answers the old connection while ccsd is down: the reply waits in the response lane.
    mcp.reply(&old_req, b"STALE").unwrap();
    mcp.flush().unwrap();

    let second = env.start_ccsd();
    let mut client = connect(second.addr());
    client.write_all(&packet(b"new")).unwrap();
    let new_req = loop {
        assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
        if msg.header().kind == Kind::Data {
            break *msg.header();
        }
    };
    assert_eq!(msg.payload(), packet(b"new"));
    assert_eq!(
        new_req.flow.slot(),
        old_req.flow.slot(),
        "same worker, same slot"
    );
    assert_eq!(new_req.flow.generation(), old_req.flow.generation());
    assert_ne!(
        new_req.flow.epoch(),
        old_req.flow.epoch(),
        "only the epoch tells them apart"
    );

    mcp.reply(&new_req, b"fresh").unwrap();
    mcp.flush().unwrap();
    assert_eq!(read_n(&mut client, 5), b"fresh");
    env.wait_stat("bridge.dropped_stale_epoch", |v| v == 1);
}
