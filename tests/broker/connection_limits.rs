//! Connection limits through the real binary: a connection over `listen[i].max_connections` or
//! `broker.max_connections` is closed at once and counted, the others keep working, and a closed
//! connection makes room for a new one. With `mcp.overload_notices`, MCP hears of every refused
//! connection.

use crate::common;

use std::io::Write;
use std::net::TcpStream;

use ccsd::flow::FlowId;
use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, Reason, Transport};
use common::{TestEnv, WAIT, assert_closed, connect, packet, read_n, round_trip};

#[test]
fn connection_over_the_listener_limit_is_closed_and_a_closed_one_makes_room() {
    let env = TestEnv::new(2, "max_connections = 2", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut first = connect(ccsd.addr());
    let mut second = connect(ccsd.addr());
    assert_eq!(round_trip(&mut first, b"one"), common::packet(b"one"));
    assert_eq!(round_trip(&mut second, b"two"), common::packet(b"two"));

    let mut third = connect(ccsd.addr());
    assert_closed(&mut third);
    env.wait_stat("acceptor.refused_max_connections", |v| v == 1);
    assert_eq!(round_trip(&mut first, b"still"), common::packet(b"still"));
    assert_eq!(round_trip(&mut second, b"here"), common::packet(b"here"));

    drop(first);
    env.wait_stat("totals.closed_peer", |v| v == 1);
    let mut fourth = connect(ccsd.addr());
    assert_eq!(round_trip(&mut fourth, b"four"), common::packet(b"four"));
    assert_eq!(
        common::stat(&env.stats(), "acceptor.refused_max_connections"),
        Some(1)
    );
}

#[test]
fn connection_over_the_broker_limit_is_closed() {
    let env = TestEnv::new(2, "", "");
    env.add_setting("broker", "max_connections = 1");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut first = connect(ccsd.addr());
    assert_eq!(round_trip(&mut first, b"one"), common::packet(b"one"));

    let mut second = connect(ccsd.addr());
    assert_closed(&mut second);
    env.wait_stat("acceptor.refused_max_connections", |v| v == 1);
    assert_eq!(round_trip(&mut first, b"again"), common::packet(b"again"));
}

/// Sends `body` from `client`, answers it as the test's MCP, and checks the client reads it: the
/// connection is owned by a worker and counts as open.
fn answered(mcp: &mut McpEndpoint, msg: &mut Message, client: &mut TcpStream, body: &[u8]) {
    client.write_all(&packet(body)).unwrap();
    assert!(mcp.recv(msg, Some(WAIT)).unwrap());
    assert_eq!(msg.header().kind, Kind::Data);
    mcp.reply(msg.header(), &packet(body)).unwrap();
    mcp.flush().unwrap();
    assert_eq!(read_n(client, 4 + body.len()), packet(body));
}

#[test]
fn with_overload_notices_mcp_hears_of_each_refused_connection() {
    let env = TestEnv::new(1, "max_connections = 1", "[mcp]\noverload_notices = true\n");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let mut first = connect(ccsd.addr());
    answered(&mut mcp, &mut msg, &mut first, b"one");

    let mut refused = connect(ccsd.addr());
    assert_closed(&mut refused);
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    let notice = *msg.header();
    assert_eq!(notice.kind, Kind::Disconnect);
    assert_eq!(notice.code, Reason::Overload as u8);
    assert_eq!(notice.flow, FlowId(0), "the connection never had a flow");
    assert_eq!(notice.peer, refused.local_addr().unwrap());
    assert_eq!(notice.listen_port, ccsd.addr().port());
    assert_eq!(notice.transport, Transport::Tcp);
    env.wait_stat("acceptor.overload_notices", |v| v == 1);
    answered(&mut mcp, &mut msg, &mut first, b"still served");
}

#[test]
fn without_overload_notices_a_refused_connection_is_only_counted() {
    let env = TestEnv::new(1, "max_connections = 1", "");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let mut first = connect(ccsd.addr());
    answered(&mut mcp, &mut msg, &mut first, b"one");

    let mut refused = connect(ccsd.addr());
    assert_closed(&mut refused);
    // The stats are written after the turn's records are published: a notice would be visible.
    env.wait_stat("acceptor.refused_max_connections", |v| v == 1);
    assert!(!mcp.try_recv(&mut msg), "no record: {:?}", msg.header());
    assert_eq!(
        common::stat(&env.stats(), "acceptor.overload_notices"),
        Some(0)
    );
}
