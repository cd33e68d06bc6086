//! `listen[i].max_requests_per_second`: the connections of one listener, on different workers,
//! share one budget per one-second window; the connection whose packet goes over it is closed
//! before that packet reaches MCP (reason overload), the others stay open, and the budget is back
//! in the next window.

use crate::common;

use std::io::Write;
use std::time::Duration;

use ccsd::flow::FlowId;
use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, Reason};
use common::{TestEnv, WAIT, assert_closed, assert_open_and_silent, connect, packet};

const LIMIT: usize = 20;

fn burst(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| packet(&[i as u8; 8])).collect()
}

/// Receives `n` DATA records and returns their flow (all the same).
fn data_from_one_flow(mcp: &mut McpEndpoint, msg: &mut Message, n: usize) -> FlowId {
    let mut flow = None;
    for _ in 0..n {
        assert!(mcp.recv(msg, Some(WAIT)).unwrap());
        assert_eq!(msg.header().kind, Kind::Data);
        assert_eq!(*flow.get_or_insert(msg.header().flow), msg.header().flow);
    }
    flow.expect("n > 0")
}

#[test]
fn connections_on_different_workers_share_the_listener_budget_and_the_one_going_over_is_closed() {
    let env = TestEnv::new(2, &format!("max_requests_per_second = {LIMIT}"), "");
    env.add_setting("broker", "dispatch = \"round_robin\"");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();

    let mut first = connect(ccsd.addr());
    let mut second = connect(ccsd.addr());
    first.write_all(&burst(12)).unwrap();
    let first_flow = data_from_one_flow(&mut mcp, &mut msg, 12);

    // 8 more fit the listener's 20; the 9th closes the connection that sent it.
    second.write_all(&burst(12)).unwrap();
    assert_closed(&mut second);
    let second_flow = data_from_one_flow(&mut mcp, &mut msg, LIMIT - 12);
    assert_ne!(
        first_flow.worker(),
        second_flow.worker(),
        "round_robin puts the two connections on different workers"
    );
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    assert_eq!(
        (msg.header().kind, msg.header().flow),
        (Kind::Disconnect, second_flow),
        "a packet over the listener's budget reached MCP"
    );
    assert_eq!(msg.header().code, Reason::Overload as u8);
    env.wait_stat("totals.closed_listener_rate_limited", |v| v == 1);
    assert_eq!(
        common::stat(&env.stats(), "totals.closed_rate_limited"),
        Some(0)
    );
    assert_open_and_silent(&mut first);

    // The listener's next window opens a second after its first packet.
    std::thread::sleep(Duration::from_millis(1100));
    first.write_all(&burst(LIMIT)).unwrap();
    assert_eq!(data_from_one_flow(&mut mcp, &mut msg, LIMIT), first_flow);
    assert_open_and_silent(&mut first);
    assert_eq!(
        common::stat(&env.stats(), "totals.closed_listener_rate_limited"),
        Some(1)
    );
}
