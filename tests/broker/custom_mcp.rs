//! Custom records from MCP that ccsd acts on itself (close or broadcast to every connection of a
//! listen port), the optional connect event, and custom records nobody can take. The test process
//! is the MCP: it attaches to the real ccsd's lanes with `McpEndpoint`.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;

use ccsd::flow::FlowId;
use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{CustomOp, Kind, Reason, RecordHeader, Transport};
use common::{TestEnv, WAIT, assert_closed, connect, next_of_kind, packet, read_n};

/// A second listener on port 0 (the first comes with `TestEnv`).
const SECOND_LISTENER: &str = "[[listen]]\naddr = \"127.0.0.1:0\"\n";

fn custom(op: CustomOp, port: u16, payload: &[u8]) -> RecordHeader {
    let mut h = RecordHeader::new(Kind::Custom, FlowId(0));
    h.code = op.code();
    h.listen_port = port;
    h.payload_len = payload.len() as u32;
    h
}

fn send(mcp: &mut McpEndpoint, header: &RecordHeader, payload: &[u8]) {
    mcp.send(header, payload).unwrap();
    mcp.flush().unwrap();
}

/// Sends `body`, answers it as the test's MCP, and checks the client reads the answer.
fn round_trip(mcp: &mut McpEndpoint, msg: &mut Message, client: &mut TcpStream, body: &[u8]) {
    client.write_all(&packet(body)).unwrap();
    let request = next_of_kind(mcp, msg, Kind::Data);
    assert_eq!(msg.payload(), packet(body), "a packet is passed whole");
    mcp.reply(&request, &packet(body)).unwrap();
    mcp.flush().unwrap();
    assert_eq!(read_n(client, 4 + body.len()), packet(body));
}

#[test]
fn a_close_port_record_closes_every_connection_of_that_port_and_no_other() {
    let env = TestEnv::new(2, "", SECOND_LISTENER);
    let ccsd = env.start_ccsd();
    let (port_a, port_b) = (ccsd.addrs[0], ccsd.addrs[1]);
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let mut on_a: Vec<TcpStream> = (0..4).map(|_| connect(port_a)).collect();
    let mut on_b = connect(port_b);
    for c in &mut on_a {
        round_trip(&mut mcp, &mut msg, c, b"hello a");
    }
    round_trip(&mut mcp, &mut msg, &mut on_b, b"hello b");

    send(
        &mut mcp,
        &custom(CustomOp::ClosePort, port_a.port(), b""),
        b"",
    );

    for c in &mut on_a {
        assert_closed(c);
    }
    for _ in 0..on_a.len() {
        let notice = next_of_kind(&mut mcp, &mut msg, Kind::Disconnect);
        assert_eq!(notice.listen_port, port_a.port());
        assert_eq!(notice.code, Reason::Local as u8);
    }
    round_trip(&mut mcp, &mut msg, &mut on_b, b"still here");
    env.wait_stat("control.port_commands", |v| v == 2);
    env.wait_stat("bridge.custom_records", |v| v == 1);
    env.wait_stat("totals.closed_by_mcp", |v| v == 4);
}

#[test]
fn a_broadcast_record_reaches_every_connection_of_that_port_only() {
    let env = TestEnv::new(2, "", SECOND_LISTENER);
    let ccsd = env.start_ccsd();
    let (port_a, port_b) = (ccsd.addrs[0], ccsd.addrs[1]);
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let mut on_a: Vec<TcpStream> = (0..5).map(|_| connect(port_a)).collect();
    let mut on_b = connect(port_b);
    // A round trip on each proves its worker owns it before the broadcast goes out.
    for c in &mut on_a {
        round_trip(&mut mcp, &mut msg, c, b"ready");
    }
    round_trip(&mut mcp, &mut msg, &mut on_b, b"ready");

    let news = packet(b"news for port a");
    send(
        &mut mcp,
        &custom(CustomOp::Broadcast, port_a.port(), &news),
        &news,
    );

    for c in &mut on_a {
        assert_eq!(read_n(c, news.len()), news);
    }
    // The first bytes port b's client sees after the broadcast are its own reply.
    round_trip(&mut mcp, &mut msg, &mut on_b, b"mine");
    env.wait_stat("totals.broadcast_writes", |v| v == 5);
}

#[test]
fn connect_events_announce_each_new_connection_to_mcp() {
    let env = TestEnv::new(1, "", "[mcp]\nconnect_events = true\n");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let mut client = connect(ccsd.addr());

    let event = next_of_kind(&mut mcp, &mut msg, Kind::Connect);
    assert_eq!(event.peer, client.local_addr().unwrap());
    assert_eq!(event.listen_port, ccsd.addr().port());
    assert_eq!(event.transport, Transport::Tcp);
    assert_eq!(event.payload_len, 0);

    client.write_all(&packet(b"after connect")).unwrap();
    let request = next_of_kind(&mut mcp, &mut msg, Kind::Data);
    assert_eq!(
        request.flow, event.flow,
        "the packet comes from the announced flow"
    );
}

#[test]
fn without_connect_events_the_first_record_of_a_connection_is_its_packet() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"first")).unwrap();
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    assert_eq!(msg.header().kind, Kind::Data);
}

#[test]
fn custom_records_with_no_receiver_or_an_unknown_code_are_counted_and_ccsd_keeps_serving() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();

    let mut unknown = custom(CustomOp::Application, 0, b"?");
    unknown.code = 77;
    send(&mut mcp, &unknown, b"?");
    send(&mut mcp, &custom(CustomOp::Application, 0, b"app"), b"app");
    env.wait_stat("control.custom_unknown_op", |v| v == 1);
    env.wait_stat("control.custom_unhandled", |v| v == 1);

    let mut client = connect(ccsd.addr());
    round_trip(&mut mcp, &mut msg, &mut client, b"still serving");
    let mut rest = [0u8; 1];
    client.set_nonblocking(true).unwrap();
    assert!(
        client.read(&mut rest).is_err(),
        "nothing but the reply was written"
    );
}
