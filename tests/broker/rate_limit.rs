//! `limits.max_requests_per_second`: a connection sending more packets than the limit within one
//! second is closed before the extra packets reach MCP, and MCP is told the reason (overload); a
//! connection keeping to the limit stays open across windows.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, Reason};
use common::{TestEnv, WAIT, assert_closed, connect, packet};

const LIMIT: usize = 20;

fn burst(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| packet(&[i as u8; 8])).collect()
}

#[test]
fn connection_over_the_request_rate_is_closed_before_its_extra_packets_reach_mcp() {
    let env = TestEnv::new(
        1,
        "",
        &format!("[limits]\nmax_requests_per_second = {LIMIT}\n"),
    );
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();

    let mut flood = connect(ccsd.addr());
    flood.write_all(&burst(LIMIT + 1)).unwrap();
    assert_closed(&mut flood);
    for _ in 0..LIMIT {
        assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
        assert_eq!(msg.header().kind, Kind::Data);
    }
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    assert_eq!(
        msg.header().kind,
        Kind::Disconnect,
        "packet {} reached MCP",
        LIMIT + 1
    );
    assert_eq!(msg.header().code, Reason::Overload as u8);
    env.wait_stat("totals.closed_rate_limited", |v| v == 1);

    let mut steady = connect(ccsd.addr());
    steady.write_all(&burst(LIMIT)).unwrap();
    for _ in 0..LIMIT {
        assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
        assert_eq!(msg.header().kind, Kind::Data);
    }
    // The next window opens a second after the first packet.
    std::thread::sleep(Duration::from_millis(1100));
    steady.write_all(&burst(LIMIT)).unwrap();
    for _ in 0..LIMIT {
        assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
        assert_eq!(msg.header().kind, Kind::Data);
    }
    steady
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    match steady.read(&mut [0u8; 1]) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the steady connection should be open, got {other:?}"),
    }
    assert_eq!(
        common::stat(&env.stats(), "totals.closed_rate_limited"),
        Some(1)
    );
}
