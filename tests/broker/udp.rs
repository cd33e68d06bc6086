//! UDP listeners through the real binary: every datagram is one record in the main thread's
//! request lane, and MCP's reply goes back to the datagram's source from the listener's socket.
//! Oversized datagrams and a full lane drop and count; TCP and UDP listeners serve side by side.
//!
//! The send queue (a reply the socket cannot take at once) is not exercised here: `sendto` on
//! loopback never reports "would block" (the kernel hands the datagram to the receiver's queue, or
//! drops it, within the call), so its bound and expiry are tested on `DatagramQueue` itself.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};

use ccsd::flow::FlowId;
use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{CloseMode, Kind, RecordHeader, Transport};
use common::{TestEnv, WAIT, connect, packet, round_trip};

const UDP: &str = "proto = \"udp\"";

/// A client socket on `local` ("127.0.0.1:0", "[::1]:0") that fails the test instead of hanging.
fn client(local: &str) -> UdpSocket {
    let s = UdpSocket::bind(local).expect("bind a client socket");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// The next datagram `s` receives, checking that it comes from `from`.
fn recv_from(s: &UdpSocket, from: SocketAddr) -> Vec<u8> {
    let mut buf = vec![0; 70_000];
    let (n, source) = s.recv_from(&mut buf).expect("a reply datagram");
    assert_eq!(source, from, "the reply comes from the listener's socket");
    buf.truncate(n);
    buf
}

/// Sends `payload` and expects it back (the echo MCP).
fn echo(s: &UdpSocket, server: SocketAddr, payload: &[u8]) {
    s.send_to(payload, server).unwrap();
    assert_eq!(recv_from(s, server), payload);
}

/// Everything an admin command (or HTTP request) gets back before the admin closes.
fn admin(addr: SocketAddr, request: &str) -> String {
    let mut s = connect(addr);
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn every_datagram_from_many_sockets_is_answered_to_its_own_source() {
    let env = TestEnv::new(2, UDP, "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let server = ccsd.addr();
    let clients: Vec<UdpSocket> = (0..8).map(|_| client("127.0.0.1:0")).collect();
    for round in 0..50 {
        // Every socket has one datagram in flight at a time, so none is lost to a full buffer.
        for (i, c) in clients.iter().enumerate() {
            c.send_to(format!("client {i} round {round}").as_bytes(), server)
                .unwrap();
        }
        for (i, c) in clients.iter().enumerate() {
            let expected = format!("client {i} round {round}");
            assert_eq!(recv_from(c, server), expected.as_bytes());
        }
    }
    env.wait_stat("udp.datagrams_in", |v| v == 400);
    env.wait_stat("udp.datagrams_out", |v| v == 400);
    env.wait_stat("bridge.records_udp", |v| v == 400);
    let bytes = env.wait_stat("udp.bytes_out", |v| v > 0);
    assert_eq!(
        common::stat(&env.stats(), "udp.bytes_in"),
        Some(bytes),
        "echoed"
    );

    let admin_addr = ccsd.admin.expect("admin port");
    let stats = admin(admin_addr, "stats\r\nquit\r\n");
    assert!(stats.contains("STAT udp_datagrams_in 400\r\n"), "{stats}");
    let metrics = admin(admin_addr, "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(
        metrics.contains("\nccsd_udp_datagrams_out_total 400\n"),
        "{metrics}"
    );
}

#[test]
fn a_datagram_reaches_mcp_as_one_record_naming_its_source_and_the_main_threads_lane() {
    let env = TestEnv::new(2, UDP, "");
    let ccsd = env.start_ccsd();
    let server = ccsd.addr();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let c = client("127.0.0.1:0");

    c.send_to(b"\x00\x00\x00\x09not framed", server).unwrap();
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    let request = *msg.header();
    assert_eq!(
        msg.payload(),
        b"\x00\x00\x00\x09not framed",
        "the datagram, whole"
    );
    assert_eq!(request.kind, Kind::Data);
    assert_eq!(request.transport, Transport::Udp);
    assert_eq!(request.peer, c.local_addr().unwrap());
    assert_eq!(request.listen_port, server.port());
    assert_eq!(
        request.flow,
        FlowId::new(mcp.epoch() as u16, 2, 0, 0),
        "worker field: the main thread's lane (after workers 0 and 1); slot: listener 0"
    );

    mcp.reply(&request, b"first answer").unwrap();
    mcp.reply(&request, b"second answer").unwrap();
    mcp.flush().unwrap();
    assert_eq!(recv_from(&c, server), b"first answer");
    assert_eq!(recv_from(&c, server), b"second answer");

    // Replies that name no UDP listener, and a CLOSE (a UDP peer has no connection), are dropped.
    let mut wrong_port = RecordHeader::reply_to(&request, Kind::Data, 4);
    wrong_port.listen_port = server.port().wrapping_add(1);
    mcp.send(&wrong_port, b"lost").unwrap();
    let mut no_listener = wrong_port;
    no_listener.listen_port = server.port();
    no_listener.flow = FlowId::new(mcp.epoch() as u16, 2, 0, 7);
    mcp.send(&no_listener, b"lost").unwrap();
    mcp.close(request.flow, CloseMode::Force).unwrap();
    mcp.reply(&request, b"still answered").unwrap();
    mcp.flush().unwrap();
    assert_eq!(recv_from(&c, server), b"still answered");
    env.wait_stat("udp.dropped_bad_listener", |v| v == 2);
    env.wait_stat("udp.dropped_close", |v| v == 1);
    env.wait_stat("udp.datagrams_out", |v| v == 3);
}

#[test]
fn an_oversized_datagram_is_dropped_and_counted_and_the_next_one_is_answered() {
    let env = TestEnv::new(1, &format!("{UDP}\nmax_packet = 1000"), "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let server = ccsd.addr();
    let c = client("127.0.0.1:0");

    c.send_to(&[b'x'; 1001], server).unwrap();
    env.wait_stat("udp.dropped_truncated", |v| v == 1);
    // The first reply is this one's: the oversized datagram never reached MCP.
    echo(&c, server, &[b'y'; 1000]);
    env.wait_stat("udp.datagrams_in", |v| v == 1);
}

#[test]
fn a_large_datagram_is_echoed_as_one_datagram() {
    let env = TestEnv::new(1, UDP, "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let c = client("127.0.0.1:0");
    let big: Vec<u8> = (0..60_000u32).map(|i| i as u8).collect();
    echo(&c, ccsd.addr(), &big);
    env.wait_stat("udp.datagrams_out", |v| v == 1);
}

#[test]
fn datagrams_beyond_a_full_main_lane_are_dropped_and_counted_then_served_when_mcp_reads() {
    let env = TestEnv::new(1, &format!("{UDP}\nmax_packet = 1000"), "");
    env.add_setting("queues", "capacity = \"64KiB\"");
    let ccsd = env.start_ccsd();
    let server = ccsd.addr();
    let c = client("127.0.0.1:0");

    // Nobody reads the lane: 64KiB holds 61 records of 1000 + 72 bytes. Send in bursts small
    // enough for the socket's receive buffer, until the lane has refused some.
    let mut sent = 0;
    while common::stat(&env.stats(), "udp.dropped_queue_full").unwrap_or(0) == 0 {
        assert!(sent < 200, "the lane never filled up");
        for _ in 0..10 {
            c.send_to(&[b'q'; 1000], server).unwrap();
        }
        sent += 10;
        let seen = |doc: &serde_json::Value| {
            common::stat(doc, "udp.datagrams_in").unwrap_or(0)
                + common::stat(doc, "udp.dropped_queue_full").unwrap_or(0)
        };
        let deadline = std::time::Instant::now() + WAIT;
        while seen(&env.stats()) < sent {
            assert!(std::time::Instant::now() < deadline, "ccsd lost datagrams");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let queued = common::stat(&env.stats(), "udp.datagrams_in").unwrap();
    assert_eq!(queued, 61, "the lane held what fits");

    let _mcp = env.start_echo_mcp();
    for _ in 0..queued {
        assert_eq!(recv_from(&c, server), [b'q'; 1000]);
    }
    echo(&c, server, b"after the flood");
}

#[test]
fn tcp_and_udp_listeners_serve_side_by_side() {
    let env = TestEnv::new(
        2,
        "",
        &format!("[[listen]]\naddr = \"127.0.0.1:0\"\n{UDP}\n"),
    );
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let (tcp_addr, udp_addr) = (ccsd.addrs[0], ccsd.addrs[1]);
    let mut tcp: TcpStream = connect(tcp_addr);
    let udp = client("127.0.0.1:0");
    for i in 0..20 {
        let body = format!("request {i}");
        assert_eq!(
            round_trip(&mut tcp, body.as_bytes()),
            packet(body.as_bytes())
        );
        echo(&udp, udp_addr, body.as_bytes());
    }
    env.wait_stat("totals.packets_in", |v| v == 20);
    env.wait_stat("udp.datagrams_in", |v| v == 20);
}

/// Whether this machine has an IPv6 loopback to test with.
fn has_ipv6_loopback() -> bool {
    UdpSocket::bind("[::1]:0").is_ok()
}

#[test]
fn ipv6_datagrams_are_answered_to_their_source() {
    if !has_ipv6_loopback() {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let env = TestEnv::new(1, UDP, "");
    env.set_listen_addr("[::1]:0");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let server = ccsd.addr();
    assert!(server.is_ipv6());
    let clients: Vec<UdpSocket> = (0..3).map(|_| client("[::1]:0")).collect();
    for round in 0..10 {
        for (i, c) in clients.iter().enumerate() {
            echo(c, server, format!("v6 client {i} round {round}").as_bytes());
        }
    }
    env.wait_stat("udp.datagrams_out", |v| v == 30);
}

#[test]
fn an_ipv6_wildcard_listener_answers_ipv4_clients_at_their_ipv4_address() {
    if !has_ipv6_loopback() {
        eprintln!("skipped: no IPv6");
        return;
    }
    // Dual stack is asked for explicitly (IPv6 listeners default to v6only = true).
    let env = TestEnv::new(1, &format!("{UDP}\nv6only = false"), "");
    env.set_listen_addr("[::]:0");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let server = SocketAddr::from(([127, 0, 0, 1], ccsd.addr().port()));
    let c = client("127.0.0.1:0");

    c.send_to(b"from ipv4", server).unwrap();
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    assert_eq!(msg.header().peer, c.local_addr().unwrap(), "MCP sees IPv4");
    mcp.reply(msg.header(), b"to ipv4").unwrap();
    mcp.flush().unwrap();
    assert_eq!(recv_from(&c, server), b"to ipv4");
}

#[test]
fn datagrams_over_the_listeners_rate_are_dropped_and_counted() {
    // A one-second window of 5: the first 5 of a burst of 20 reach MCP, the rest are dropped.
    let env = TestEnv::new(1, "proto = \"udp\"\nmax_requests_per_second = 5", "");
    let ccsd = env.start_ccsd();
    let server = ccsd.addr();
    let c = client("127.0.0.1:0");
    for i in 0..20 {
        c.send_to(format!("burst {i}").as_bytes(), server).unwrap();
    }
    env.wait_stat("udp.dropped_rate_limited", |v| v + 5 == 20);
    assert_eq!(common::stat(&env.stats(), "udp.datagrams_in"), Some(5));
}

#[test]
fn datagrams_are_dropped_while_mcp_is_down_with_when_down_refuse_and_answered_after() {
    let env = TestEnv::new(1, UDP, "[mcp]\nwhen_down = \"refuse\"\n");
    let ccsd = env.start_ccsd();
    let server = ccsd.addr();
    let c = client("127.0.0.1:0");
    c.send_to(b"nobody reads this", server).unwrap();
    env.wait_stat("udp.dropped_mcp_down", |v| v == 1);
    assert_eq!(common::stat(&env.stats(), "udp.datagrams_in"), Some(0));

    let _mcp = env.start_echo_mcp();
    env.wait_stat("mcp_watch.mcp_alive", |v| v == 1);
    echo(&c, server, b"now answered");
}

#[test]
fn the_udp_load_example_gets_every_reply_matched_to_its_datagram() {
    let env = TestEnv::new(1, UDP, "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let out = std::process::Command::new(common::example_bin("udp_load"))
        .args(["--addr", &ccsd.addr().to_string(), "--sockets", "2"])
        .args(["--in-flight", "4", "--requests", "200", "--json"])
        .output()
        .expect("run udp_load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(report["answered"], 200, "{report}");
    assert_eq!(report["wrong"], 0, "{report}");
    env.wait_stat("udp.datagrams_out", |v| v >= 200);
}
