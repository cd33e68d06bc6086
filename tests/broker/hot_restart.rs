//! Hot restart (`ccsd --takeover`): a new process takes over the listening sockets, the lock and
//! every live connection of the running one; clients notice nothing, the old process exits 0,
//! and a takeover that cannot happen leaves the old one serving.

use crate::common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::process::Command;

use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{CloseMode, RecordHeader};
use common::{
    PipelinedClients, Proc, TestEnv, WAIT, connect, next_data, packet, read_n, reply_when_room,
    round_trip,
};

#[test]
fn pipelined_clients_lose_nothing_across_five_takeovers_in_a_row() {
    let env = TestEnv::new(2, "", "");
    let mut old = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let addr = old.addr();
    let clients = PipelinedClients::start(addr, 6, 16);
    env.wait_stat("totals.connections_open", |n| n == 6);
    for round in 0..5 {
        let new = env.take_over();
        assert_eq!(new.addr(), addr, "round {round}: the same listening socket");
        assert_eq!(
            old.exit_code(),
            Some(0),
            "round {round}: the old process exits 0"
        );
        assert!(
            new.lines
                .iter()
                .any(|l| l.contains("took over") && l.contains("6 connections")),
            "round {round}: {:?}",
            new.lines
        );
        old = new;
    }
    let replies = clients.finish();
    assert!(replies > 0);
    // A new connection is served by the last process.
    let mut client = connect(addr);
    assert_eq!(round_trip(&mut client, b"after"), packet(b"after"));
}

#[test]
fn with_nothing_to_take_over_the_new_process_exits_2_and_says_why() {
    let env = TestEnv::new(1, "", "");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.arg("--takeover").arg("--config").arg(&env.config);
    let out = cmd.output().expect("run ccsd --takeover");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no running ccsd to take over"), "{stderr}");
}

#[test]
fn a_refused_takeover_leaves_the_old_process_serving() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    assert_eq!(round_trip(&mut client, b"before"), packet(b"before"));
    // Another lane capacity: the lanes cannot change size across a takeover.
    let other = env.dir.join("other.toml");
    let toml = std::fs::read_to_string(&env.config).unwrap();
    let toml = toml.replacen("[queues]\n", "[queues]\ncapacity = \"64MiB\"\n", 1);
    std::fs::write(&other, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--takeover")
        .arg("--config")
        .arg(&other)
        .output()
        .expect("run ccsd --takeover");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("queues.capacity differs"), "{stderr}");
    assert_eq!(round_trip(&mut client, b"after"), packet(b"after"));
}

/// Writes a copy of the test's config with `edit` applied, for the process taking over.
fn config_with(env: &TestEnv, name: &str, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let path = env.dir.join(name);
    let toml = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&path, edit(toml)).unwrap();
    path
}

/// Starts `ccsd --takeover` on `config` and waits until it serves.
fn take_over_with(config: &std::path::Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.arg("--takeover").arg("--config").arg(config);
    let mut p = Proc::spawn(cmd, "ccsd --takeover");
    p.wait_for_line("ccsd ready");
    p
}

#[test]
fn a_takeover_to_more_and_then_fewer_workers_redistributes_the_connections_and_loses_nothing() {
    let env = TestEnv::new(2, "", "");
    let old = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let addr = old.addr();
    let clients = PipelinedClients::start(addr, 6, 16);
    env.wait_stat("totals.connections_open", |n| n == 6);
    let more = config_with(&env, "three.toml", |t| {
        t.replacen("workers = 2", "workers = 3", 1)
    });
    let mut old = old;
    let three = take_over_with(&more);
    assert_eq!(old.exit_code(), Some(0));
    let fewer = config_with(&env, "one.toml", |t| {
        t.replacen("workers = 2", "workers = 1", 1)
    });
    let mut three = three;
    let _one = take_over_with(&fewer);
    assert_eq!(three.exit_code(), Some(0));
    clients.finish();
    let mut client = connect(addr);
    assert_eq!(
        round_trip(&mut client, b"one worker"),
        packet(b"one worker")
    );
}

#[test]
fn a_listener_only_the_new_configuration_has_is_bound_and_one_it_dropped_is_closed() {
    let env = TestEnv::new(1, "", "[[listen]]\naddr = \"127.0.0.1:0\"\n");
    let mut old = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let (kept, dropped) = (old.addrs[0], old.addrs[1]);
    let mut client = connect(kept);
    assert_eq!(round_trip(&mut client, b"before"), packet(b"before"));
    // The second listener is gone; one on another address is new.
    let next = config_with(&env, "next.toml", |t| {
        let second = t.rfind("addr = \"127.0.0.1:0\"").unwrap();
        format!(
            "{}addr = \"127.0.0.2:0\"{}",
            &t[..second],
            &t[second + 22..]
        )
    });
    let new = take_over_with(&next);
    assert_eq!(old.exit_code(), Some(0));
    let listening: Vec<String> = new
        .lines
        .iter()
        .filter(|l| l.contains("listening on tcp://"))
        .cloned()
        .collect();
    assert!(listening[0].contains(&kept.to_string()), "{listening:?}");
    assert!(listening[1].contains("127.0.0.2:"), "{listening:?}");
    assert_eq!(round_trip(&mut client, b"after"), packet(b"after"));
    let added: std::net::SocketAddr = listening[1]
        .split("tcp://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let mut fresh = connect(added);
    assert_eq!(round_trip(&mut fresh, b"new port"), packet(b"new port"));
    assert!(
        std::net::TcpStream::connect(dropped).is_err(),
        "the dropped listener's port is closed"
    );
}

#[test]
fn connections_in_every_special_state_come_through_a_takeover() {
    let env = TestEnv::new(2, "", "[limits]\nmax_send_buffer = \"32MiB\"");
    let mut old = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).expect("attach");
    let mut msg = Message::new();
    let addr = old.addr();
    // Half a packet read before the takeover, the rest after.
    let mut half = connect(addr);
    let whole = packet(b"split across the takeover");
    half.write_all(&whole[..9]).unwrap();
    // Megabytes of replies a slow reader has not read yet.
    let mut slow = connect(addr);
    slow.write_all(&packet(b"a lot")).unwrap();
    let (big, _) = next_data(&mut mcp, &mut msg);
    let chunk = |i: u8| vec![b'a' + i; 512 * 1024];
    for i in 0..16 {
        reply_when_room(&mut mcp, &big, &chunk(i));
    }
    // Half-closed with three requests MCP answers only after the takeover.
    let mut closing = connect(addr);
    for body in [&b"x"[..], b"y", b"z"] {
        closing.write_all(&packet(body)).unwrap();
    }
    closing.shutdown(Shutdown::Write).unwrap();
    let held: Vec<RecordHeader> = (0..3).map(|_| next_data(&mut mcp, &mut msg).0).collect();
    env.wait_stat("totals.half_closes", |n| n == 1);
    // A close requested after replies not written yet.
    let mut leaving = connect(addr);
    leaving.write_all(&packet(b"bye")).unwrap();
    let (bye, _) = next_data(&mut mcp, &mut msg);
    for _ in 0..16 {
        reply_when_room(&mut mcp, &bye, &chunk(25));
    }
    mcp.close(bye.flow, CloseMode::AfterFlush).unwrap();
    mcp.flush().unwrap();
    env.wait_stat("totals.buffered_bytes", |n| n >= 4 << 20);

    let _new = env.take_over();
    assert_eq!(old.exit_code(), Some(0));

    half.write_all(&whole[9..]).unwrap();
    let (request, payload) = next_data(&mut mcp, &mut msg);
    assert_eq!(
        payload, whole,
        "the packet begun before the takeover, whole"
    );
    reply_when_room(&mut mcp, &request, &whole);
    assert_eq!(read_n(&mut half, whole.len()), whole);
    for i in 0..16 {
        assert!(
            read_n(&mut slow, 512 * 1024) == chunk(i),
            "reply {i} intact, in order"
        );
    }
    for (request, body) in held.iter().zip([b"X", b"Y", b"Z"]) {
        reply_when_room(&mut mcp, request, body);
    }
    let mut rest = Vec::new();
    closing.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"XYZ", "the held replies, then the close");
    let mut farewell = Vec::new();
    leaving.read_to_end(&mut farewell).unwrap();
    assert!(
        farewell == chunk(25).repeat(16),
        "{} bytes, then the close",
        farewell.len()
    );
}

#[test]
fn a_reply_to_a_datagram_received_before_a_takeover_goes_out_after_it_from_the_same_socket() {
    let env = TestEnv::new(1, "proto = \"udp\"", "");
    let mut old = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).expect("attach");
    let mut msg = Message::new();
    let addr = old.addr();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.send_to(b"before", addr).unwrap();
    let (request, payload) = next_data(&mut mcp, &mut msg);
    assert_eq!(payload, b"before");
    let _new = env.take_over();
    assert_eq!(old.exit_code(), Some(0));
    // MCP answers the datagram of the old process now.
    reply_when_room(&mut mcp, &request, b"answered after");
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"answered after"[..], addr));
    client.send_to(b"after", addr).unwrap();
    let (request, payload) = next_data(&mut mcp, &mut msg);
    assert_eq!(payload, b"after");
    reply_when_room(&mut mcp, &request, b"and again");
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"and again");
}

#[test]
fn the_admin_port_and_its_unix_socket_are_served_by_the_new_process() {
    let env = TestEnv::new(1, "", "");
    let socket = env.dir.join("admin.sock");
    env.add_setting("admin", &format!("unix = \"{}\"", socket.display()));
    let mut old = env.start_ccsd();
    let admin = old.admin.expect("admin port");
    let _new = env.take_over();
    assert_eq!(old.exit_code(), Some(0));
    let mut tcp = common::AdminClient::connect(admin);
    let workers = tcp.ask_until_end("workers");
    assert_eq!(workers.len(), 1, "{workers:?}");
    let mut unix = std::os::unix::net::UnixStream::connect(&socket).expect("the admin socket");
    unix.write_all(b"help\n").unwrap();
    let mut help = [0u8; 4];
    unix.read_exact(&mut help).unwrap();
    assert_eq!(&help, b"help", "the new process answers on the Unix socket");
}
