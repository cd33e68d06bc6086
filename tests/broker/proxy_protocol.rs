//! `listen[i].proxy_protocol`: behind a load balancer, every record MCP gets (connect, data,
//! disconnect) names the client the PROXY header names, not the balancer; a connection without
//! a valid header, from a source not in `proxy_from`, or silent past `limits.packet_timeout` is
//! closed before MCP hears of it, and counted. The test process is the MCP. The last tests put a
//! real HAProxy (Debian's `haproxy` package) in front, with `send-proxy` and `send-proxy-v2`.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ccsd::mcp::{McpEndpoint, Message};
use ccsd::proxy_protocol::V2_SIGNATURE;
use ccsd::record::Kind;
use common::{Proc, TestEnv, WAIT, assert_closed, connect, next_of_kind, packet, read_n};

/// A listener taking either version from the test's own address.
const PROXY_ANY_FROM_LOCALHOST: &str = "proxy_protocol = \"any\"\nproxy_from = [\"127.0.0.0/8\"]\n";

/// A version 2 PROXY header for a TCP client `src` (IPv4 or IPv6) reaching `dst`, with `tlvs`.
fn v2_header(src: SocketAddr, dst: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let (family, mut body) = match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            (0x11, [s.ip().octets(), d.ip().octets()].concat())
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            (0x21, [s.ip().octets(), d.ip().octets()].concat())
        }
        _ => panic!("one family for both addresses"),
    };
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    body.extend_from_slice(tlvs);
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, family]);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&body);
    h
}

/// Sends `header` then a packet (in one write, so the packet follows the header in the same
/// read), and checks that connect, data and disconnect records all name `client`.
fn records_name_the_client(env: &TestEnv, header: &[u8], client: SocketAddr) {
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let mut conn = connect(ccsd.addr());
    conn.write_all(&[header, &packet(b"hello")].concat())
        .unwrap();

    let connect_notice = next_of_kind(&mut mcp, &mut msg, Kind::Connect);
    assert_eq!(connect_notice.peer, client);
    let request = next_of_kind(&mut mcp, &mut msg, Kind::Data);
    assert_eq!(request.peer, client);
    assert_eq!(request.flow, connect_notice.flow);
    assert_eq!(
        msg.payload(),
        packet(b"hello"),
        "the bytes after the header"
    );
    mcp.reply(&request, &packet(b"hi")).unwrap();
    mcp.flush().unwrap();
    assert_eq!(read_n(&mut conn, 6), packet(b"hi"));
    drop(conn);
    let disconnect = next_of_kind(&mut mcp, &mut msg, Kind::Disconnect);
    assert_eq!((disconnect.flow, disconnect.peer), (request.flow, client));
    env.wait_stat("totals.proxy_headers_accepted", |v| v == 1);
}

#[test]
fn a_v1_header_makes_its_client_the_peer_of_every_record() {
    let env = TestEnv::new(
        1,
        PROXY_ANY_FROM_LOCALHOST,
        "[mcp]\nconnect_events = true\n",
    );
    let header = b"PROXY TCP4 203.0.113.9 192.0.2.1 40001 7300\r\n";
    records_name_the_client(&env, header, "203.0.113.9:40001".parse().unwrap());
}

#[test]
fn a_v2_ipv6_header_with_tlvs_makes_its_client_the_peer_of_every_record() {
    let env = TestEnv::new(
        1,
        PROXY_ANY_FROM_LOCALHOST,
        "[mcp]\nconnect_events = true\n",
    );
    let client: SocketAddr = "[2001:db8::9]:40002".parse().unwrap();
    // PP2_TYPE_AUTHORITY "example.org" and PP2_TYPE_UNIQUE_ID of 3 bytes: skipped.
    let tlvs = [&[0x02, 0, 11][..], b"example.org", &[0x05, 0, 3, 1, 2, 3]].concat();
    let header = v2_header(client, "[2001:db8::1]:7300".parse().unwrap(), &tlvs);
    records_name_the_client(&env, &header, client);
}

/// The `conns` answer of the admin port at `admin`: one line per connection.
fn admin_conns(admin: SocketAddr) -> Vec<String> {
    let mut session = connect(admin);
    session.write_all(b"conns\n").unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(session).lines() {
        let line = line.expect("admin reply");
        if line == "END" {
            return lines;
        }
        lines.push(line);
    }
    panic!("admin closed before END: {lines:?}");
}

/// The value after `name` in a `conns` line.
fn conn_field<'a>(line: &'a str, name: &str) -> &'a str {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == name).expect(name);
    words[at + 1]
}

#[test]
fn a_header_split_over_reads_is_reassembled_and_conns_then_shows_the_client() {
    let env = TestEnv::new(1, PROXY_ANY_FROM_LOCALHOST, "");
    let ccsd = env.start_ccsd();
    let admin = ccsd.admin.expect("admin port");
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let client: SocketAddr = "203.0.113.5:40005".parse().unwrap();
    let header = v2_header(
        client,
        "192.0.2.1:7300".parse().unwrap(),
        &[0x04, 0, 2, 0, 0],
    );
    let mut conn = connect(ccsd.addr());
    conn.write_all(&header[..10]).unwrap();
    // The first part is read and held (ccsd's `conns` shows it buffered) before the rest is sent.
    let deadline = Instant::now() + WAIT;
    loop {
        let conns = admin_conns(admin);
        let held = conns
            .iter()
            .find(|l| l.starts_with("conn "))
            .map(|l| conn_field(l, "buffered_in").to_owned());
        if held.as_deref() == Some("10") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first 10 bytes never showed: {conns:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    conn.write_all(&[&header[10..], &packet(b"split")].concat())
        .unwrap();
    let request = next_of_kind(&mut mcp, &mut msg, Kind::Data);
    assert_eq!(
        (request.peer, msg.payload()),
        (client, &packet(b"split")[..])
    );
    let conns = admin_conns(admin);
    let line = conns
        .iter()
        .find(|l| l.starts_with("conn "))
        .expect("one conn");
    assert_eq!(conn_field(line, "peer"), client.to_string());
    assert_eq!(conn_field(line, "buffered_in"), "0");
}

/// Waits until ccsd closes `conn` (assert_closed, with a read deadline).
fn expect_closed(conn: &mut TcpStream) {
    conn.set_read_timeout(Some(WAIT)).unwrap();
    assert_closed(conn);
}

#[test]
fn a_connection_from_a_source_not_in_proxy_from_is_closed_counted_and_never_reaches_mcp() {
    let env = TestEnv::new(
        1,
        "proxy_protocol = \"v1\"\nproxy_from = [\"10.0.0.0/8\", \"::1\"]\n",
        "[mcp]\nconnect_events = true\n",
    );
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let mut conn = connect(ccsd.addr());
    // A header claiming any client it likes: not believed from 127.0.0.1.
    let _ = conn.write_all(b"PROXY TCP4 10.1.1.1 10.0.0.1 1000 7300\r\n");
    expect_closed(&mut conn);
    env.wait_stat("totals.closed_proxy_untrusted", |v| v == 1);
    assert_eq!(
        common::stat(&env.stats(), "totals.connections_opened"),
        Some(0)
    );
    assert!(
        !mcp.recv(&mut msg, Some(Duration::from_millis(200)))
            .unwrap(),
        "MCP is told nothing about a refused connection: {:?}",
        msg.header()
    );
}

#[test]
fn a_missing_or_malformed_header_closes_the_connection_and_is_counted_by_reason() {
    let env = TestEnv::new(
        1,
        "proxy_protocol = \"v2\"\nproxy_from = [\"127.0.0.1\"]\n",
        "[mcp]\nconnect_events = true\n",
    );
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();

    // A client talking straight to ccsd, past the balancer.
    let mut direct = connect(ccsd.addr());
    direct.write_all(&packet(b"hello")).unwrap();
    expect_closed(&mut direct);
    env.wait_stat("totals.closed_proxy_missing", |v| v == 1);

    // A v1 header on a v2-only listener is missing too.
    let mut v1 = connect(ccsd.addr());
    v1.write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n").unwrap();
    expect_closed(&mut v1);
    env.wait_stat("totals.closed_proxy_missing", |v| v == 2);

    // The signature, then command 0xF (undefined).
    let mut broken = v2_header(
        "1.2.3.4:1".parse().unwrap(),
        "5.6.7.8:2".parse().unwrap(),
        &[],
    );
    broken[12] = 0x2f;
    let mut bad = connect(ccsd.addr());
    bad.write_all(&broken).unwrap();
    expect_closed(&mut bad);

    // A length over the 4 KiB cap is refused from the fixed 16 bytes, before any body.
    let mut long = V2_SIGNATURE.to_vec();
    long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    let mut too_long = connect(ccsd.addr());
    too_long.write_all(&long).unwrap();
    expect_closed(&mut too_long);
    env.wait_stat("totals.closed_proxy_malformed", |v| v == 2);
    assert!(
        !mcp.recv(&mut msg, Some(Duration::from_millis(200)))
            .unwrap(),
        "MCP is told nothing about a refused connection: {:?}",
        msg.header()
    );
    assert_eq!(
        common::stat(&env.stats(), "totals.proxy_headers_accepted"),
        Some(0)
    );
}

#[test]
fn a_connection_that_sends_no_whole_header_is_closed_at_the_packet_timeout() {
    let env = TestEnv::new(
        1,
        PROXY_ANY_FROM_LOCALHOST,
        "[limits]\npacket_timeout = \"300ms\"\n",
    );
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut silent = connect(ccsd.addr());
    let mut partial = connect(ccsd.addr());
    partial.write_all(b"PROXY TCP4 1.2.3.4").unwrap();
    let begun = Instant::now();
    expect_closed(&mut silent);
    expect_closed(&mut partial);
    assert!(
        begun.elapsed() >= Duration::from_millis(250),
        "not before the timeout"
    );
    env.wait_stat("totals.closed_proxy_timeout", |v| v == 2);
}

/// A TCP connection to `to` from `from` (any address on the loopback network works on Linux),
/// so the client's address differs from the balancer's.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    bind(&fd, &SocketAddrV4::new(from, 0)).unwrap();
    connect(&fd, &to).unwrap();
    TcpStream::from(fd)
}

/// A free TCP port on 127.0.0.1 at the time of the call (HAProxy cannot bind port 0 and report
/// it): bound, read and released.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy in the foreground, relaying 127.0.0.1:`port` to `backend` with `send_proxy`
/// (`send-proxy` or `send-proxy-v2`); killed with the test.
struct Haproxy {
    _proc: Proc,
    addr: SocketAddr,
}

impl Haproxy {
    /// Starts HAProxy and waits until it accepts connections; retries on another port when the
    /// one picked was taken in between.
    fn start(dir: &Path, backend: SocketAddr, send_proxy: &str) -> Haproxy {
        let on_path = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("haproxy").is_file()));
        assert!(
            on_path,
            "haproxy is not installed: it comes with Debian's haproxy package (apt-get install -y haproxy, or .ci/deps)"
        );
        for _ in 0..5 {
            let port = free_port();
            let config = dir.join(format!("haproxy-{port}.cfg"));
            std::fs::write(
                &config,
                format!(
                    "global\n  maxconn 100\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
                     timeout client 30s\n  timeout server 30s\n\n\
                     frontend clients\n  bind 127.0.0.1:{port}\n  default_backend ccsd\n\n\
                     backend ccsd\n  server ccsd {backend} {send_proxy}\n"
                ),
            )
            .unwrap();
            let mut cmd = Command::new("haproxy");
            // -db: foreground, no daemon; -f: the test's own configuration.
            cmd.arg("-db").arg("-f").arg(&config);
            let mut proc = Proc::spawn(cmd, "haproxy");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if proc.child.try_wait().unwrap().is_some() {
                    break; // The port was taken (or the config refused): try another one.
                }
                if TcpStream::connect(addr).is_ok() {
                    return Haproxy { _proc: proc, addr };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            proc.kill();
        }
        panic!("haproxy did not start on any of five ports");
    }
}

/// Through HAProxy with `send_proxy`, the request of a client on 127.0.0.2 reaches MCP naming
/// that client's address and port, and the reply reaches the client.
fn haproxy_relays_the_client_address(send_proxy: &str) {
    let env = TestEnv::new(1, PROXY_ANY_FROM_LOCALHOST, "");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let haproxy = Haproxy::start(&env.dir, ccsd.addr(), send_proxy);

    let mut client = connect_from(Ipv4Addr::new(127, 0, 0, 2), haproxy.addr);
    let me = client.local_addr().unwrap();
    client.write_all(&packet(b"through haproxy")).unwrap();
    let request = next_of_kind(&mut mcp, &mut msg, Kind::Data);
    assert_eq!(request.peer, me, "MCP sees the client, not HAProxy");
    assert_eq!(msg.payload(), packet(b"through haproxy"));
    mcp.reply(&request, &packet(b"back")).unwrap();
    mcp.flush().unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(read_n(&mut client, 8), packet(b"back"));
    // HAProxy's own readiness probe came through it too, with a header naming 127.0.0.1.
    assert!(env.wait_stat("totals.proxy_headers_accepted", |v| v >= 2) >= 2);
    assert_eq!(
        common::stat(&env.stats(), "totals.closed_proxy_malformed"),
        Some(0)
    );
}

#[test]
fn haproxy_send_proxy_v1_relays_each_client_address_to_mcp() {
    haproxy_relays_the_client_address("send-proxy");
}

#[test]
fn haproxy_send_proxy_v2_relays_each_client_address_to_mcp() {
    haproxy_relays_the_client_address("send-proxy-v2");
}
