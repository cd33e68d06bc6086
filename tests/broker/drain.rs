//! Draining a node: admin `drain` turns `health` (and `GET /health`) to `DOWN draining` while
//! the node keeps accepting and serving; behind a real HAProxy (Debian's `haproxy` package)
//! running `docs/deployment.md`'s configuration, two nodes on 127.0.0.2 and 127.0.0.3, each with
//! its own MCP process (`examples/whoami_mcp`), take clients that keep making requests over new
//! and existing connections; one node is drained and stopped under that load, its clients' new
//! connections go to the other node, no request fails, and every answer names the client's own
//! address and port as MCP saw it.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use common::{
    Proc, TestEnv, WAIT, deployment_haproxy_config, haproxy_installed, haproxy_server_stat, packet,
    replace_all,
};

/// Requests each client makes on one connection before it closes it and opens another.
const REQUESTS_PER_CONNECTION: usize = 4;
/// Clients making requests at once, each from its own address (127.0.0.10 and up).
const CLIENTS: u8 = 4;

/// Sends `commands` to the admin port `admin` and reads until `lines` answer lines came.
fn admin_lines(admin: SocketAddr, commands: &str, lines: usize) -> Vec<String> {
    let conn = TcpStream::connect(admin).expect("connect to the admin port");
    conn.set_read_timeout(Some(WAIT)).unwrap();
    (&conn).write_all(commands.as_bytes()).unwrap();
    BufReader::new(conn)
        .lines()
        .take(lines)
        .map(|l| l.expect("admin answer").trim_end().to_owned())
        .collect()
}

/// `GET /health` on the admin port `admin`: the status line and the body.
fn http_health(admin: SocketAddr) -> (String, String) {
    let mut conn = TcpStream::connect(admin).expect("connect to the admin port");
    conn.set_read_timeout(Some(WAIT)).unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: ccsd\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// Polls `health` on `admin` until it answers `want`.
fn wait_health(admin: SocketAddr, want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = admin_lines(admin, "health\n", 1);
        if got == [want] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {got:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn drain_turns_health_down_with_and_without_a_token_while_the_node_keeps_serving() {
    let env = TestEnv::new(1, "", "");
    env.add_setting("admin", "token = \"s3cret\"");
    let ccsd = env.start_ccsd();
    let admin = ccsd.admin.expect("ccsd logged its admin port");

    // No MCP yet: the node must not take clients.
    assert_eq!(admin_lines(admin, "health\n", 1), ["DOWN mcp"]);
    let _mcp = env.start_echo_mcp();
    wait_health(admin, "UP serving");
    assert_eq!(
        http_health(admin),
        ("HTTP/1.1 200 OK".to_owned(), "UP serving\n".to_owned())
    );

    // `drain` changes something: it needs the token, `health` does not.
    assert_eq!(
        admin_lines(admin, "drain\n", 1),
        ["ERROR auth required: send auth TOKEN first"]
    );
    assert_eq!(admin_lines(admin, "health\n", 1), ["UP serving"]);
    let answer = admin_lines(admin, "auth s3cret\ndrain\ndrain\n", 3);
    assert_eq!(answer[0], "OK");
    assert!(answer[1].starts_with("OK draining"), "{answer:?}");
    assert_eq!(answer[2], "OK already draining");
    assert_eq!(admin_lines(admin, "health\n", 1), ["DOWN draining"]);
    assert_eq!(
        http_health(admin),
        (
            "HTTP/1.1 503 Service Unavailable".to_owned(),
            "DOWN draining\n".to_owned()
        )
    );
    let stats = admin_lines(admin, "auth s3cret\nstats\nquit\n", usize::MAX);
    assert!(
        stats.iter().any(|l| l == "STAT admin_draining 1"),
        "{stats:?}"
    );

    // Still accepting and answering: the balancer decides when the clients stop coming.
    let mut client = common::connect(ccsd.addr());
    assert_eq!(
        common::round_trip(&mut client, b"still served"),
        packet(b"still served")
    );
}

/// A client's connection made from `from` to `to`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddrV4::new(from, 0))?;
    connect(&fd, &to)?;
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(WAIT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One node: ccsd on `ip` (client and admin ports), with its own whoami MCP named `name`.
struct Node {
    env: TestEnv,
    ccsd: Proc,
    mcp: Proc,
    admin: SocketAddr,
}

impl Node {
    fn start(ip: &str, name: &str) -> Node {
        let env = TestEnv::new(
            1,
            "proxy_protocol = \"v2\"\nproxy_from = [\"127.0.0.0/8\"]",
            "",
        );
        env.set_listen_addr(&format!("{ip}:0"));
        let toml = std::fs::read_to_string(&env.config).unwrap();
        let from = "[admin]\naddr = \"127.0.0.1:0\"";
        assert!(toml.contains(from));
        std::fs::write(
            &env.config,
            toml.replace(from, &format!("[admin]\naddr = \"{ip}:0\"")),
        )
        .unwrap();
        let ccsd = env.start_ccsd();
        let mut cmd = Command::new(common::example_bin("whoami_mcp"));
        cmd.arg("--config").arg(&env.config).arg("--node").arg(name);
        let mut mcp = Proc::spawn(cmd, "whoami_mcp");
        mcp.wait_for_line("whoami_mcp attached");
        let admin = ccsd.admin.expect("ccsd logged its admin port");
        wait_health(admin, "UP serving");
        Node {
            env,
            ccsd,
            mcp,
            admin,
        }
    }
}

/// What one client connection saw: when it was opened, and which node answered it.
#[derive(Debug, Clone)]
struct Served {
    opened: Instant,
    node: String,
}

/// Clients making requests through `frontend` until `stop`: each from its own address, a few
/// requests per connection, then a new connection. Every answer must name the node and the
/// client's own address and port; anything else (an error, a close, a wrong address) is a
/// failure.
fn run_clients(
    frontend: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<Mutex<Vec<Served>>>,
    failures: Arc<Mutex<Vec<String>>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|i| {
            let (stop, served, failures) = (stop.clone(), served.clone(), failures.clone());
            std::thread::spawn(move || {
                let from = Ipv4Addr::new(127, 0, 0, 10 + i);
                // SYNC POINT: Relaxed: a request to stop, seen at the next connection.
                while !stop.load(Ordering::Relaxed) {
                    let opened = Instant::now();
                    match one_connection(from, frontend) {
                        Ok(node) => served.lock().unwrap().push(Served { opened, node }),
                        Err(e) => {
                            failures.lock().unwrap().push(e);
                            return;
                        }
                    }
                }
            })
        })
        .collect()
}

/// One connection's requests; the node that answered them.
fn one_connection(from: Ipv4Addr, frontend: SocketAddr) -> Result<String, String> {
    let conn = connect_from(from, frontend).map_err(|e| format!("connect from {from}: {e}"))?;
    let me = conn.local_addr().unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut node = None::<String>;
    for n in 0..REQUESTS_PER_CONNECTION {
        (&conn)
            .write_all(&packet(format!("request {n}").as_bytes()))
            .map_err(|e| format!("{me}: request {n}: send: {e}"))?;
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return Err(format!("{me}: request {n}: closed without an answer")),
            Ok(_) => {}
            Err(e) => return Err(format!("{me}: request {n}: no answer: {e}")),
        }
        let mut words = line.split_whitespace();
        let (Some(who), Some(peer)) = (words.next(), words.next()) else {
            return Err(format!("{me}: request {n}: answer {line:?}"));
        };
        if peer != me.to_string() {
            return Err(format!("{me}: MCP of {who} saw the client as {peer}"));
        }
        if node.as_deref().is_some_and(|n| n != who) {
            return Err(format!("{me}: answered by {node:?}, then by {who}"));
        }
        node = Some(who.to_owned());
    }
    Ok(node.expect("at least one request"))
}

/// Polls until `ok` holds for what the clients were served (or a client failed).
fn wait_served(
    served: &Mutex<Vec<Served>>,
    failures: &Mutex<Vec<String>>,
    what: &str,
    ok: impl Fn(&[Served]) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        if ok(&served.lock().unwrap()) {
            return;
        }
        let failed = failures.lock().unwrap().clone();
        assert!(failed.is_empty(), "clients failed: {failed:?}");
        assert!(Instant::now() < deadline, "never {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Connections opened after `since` and answered by `node`, and by any other node.
fn opened_since(served: &[Served], since: Instant, node: &str) -> (usize, usize) {
    let after = served.iter().filter(|s| s.opened >= since);
    let (on, off): (Vec<_>, Vec<_>) = after.partition(|s| s.node == node);
    (on.len(), off.len())
}

#[test]
fn a_node_drained_and_stopped_behind_haproxy_under_load_fails_no_request() {
    if !haproxy_installed() {
        eprintln!(
            "SKIPPED: haproxy is not installed (Debian's haproxy package: apt-get install -y haproxy, or .ci/deps)"
        );
        return;
    }
    let mut node1 = Node::start("127.0.0.2", "node1");
    let node2 = Node::start("127.0.0.3", "node2");

    // docs/deployment.md's configuration with this machine's addresses: each node's admin port
    // is the check port of its server line; checks every 100 ms instead of 2 s.
    let dir = &node1.env.dir;
    let socket = dir.join("haproxy.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = replace_all(
        deployment_haproxy_config(),
        &[
            (
                "log stdout format raw local0",
                format!(
                    "log stderr format raw local0\n    stats socket {}",
                    socket.display()
                ),
            ),
            ("bind :7300", format!("bind 127.0.0.1:{port}")),
            (
                "tcp-check connect port 7301",
                "tcp-check connect".to_owned(),
            ),
            ("inter 2s", "inter 100ms".to_owned()),
            (
                "10.0.0.5:7300 check",
                format!("{} check port {}", node1.ccsd.addr(), node1.admin.port()),
            ),
            (
                "10.0.0.6:7300 check",
                format!("{} check port {}", node2.ccsd.addr(), node2.admin.port()),
            ),
        ],
    );
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, &config).unwrap();
    let mut cmd = Command::new("haproxy");
    cmd.arg("-db").arg("-f").arg(&file);
    let mut haproxy = Proc::spawn(cmd, "haproxy");
    let frontend = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + WAIT;
    loop {
        let s1 = haproxy_server_stat(&socket, "node1").unwrap_or_default();
        let s2 = haproxy_server_stat(&socket, "node2").unwrap_or_default();
        if s1.contains(",UP,") && s2.contains(",UP,") {
            break;
        }
        assert!(
            haproxy.child.try_wait().unwrap().is_none(),
            "haproxy exited (port {port} taken?): {:?}",
            haproxy.kill_and_collect_stderr()
        );
        assert!(
            Instant::now() < deadline,
            "HAProxy never found both nodes up:\n{s1}\n{s2}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients = run_clients(frontend, stop.clone(), served.clone(), failures.clone());
    let start = Instant::now();
    wait_served(&served, &failures, "served by both nodes", |s| {
        let (on1, on2) = opened_since(s, start, "node1");
        on1 >= 20 && on2 >= 20
    });

    // Drain node1: its health check fails and HAProxy takes it out; it serves meanwhile.
    let answer = admin_lines(node1.admin, "drain\n", 1);
    assert!(answer[0].starts_with("OK draining"), "{answer:?}");
    node1
        .ccsd
        .wait_for_line("draining: health answers DOWN draining");
    let deadline = Instant::now() + WAIT;
    while !haproxy_server_stat(&socket, "node1")
        .unwrap_or_default()
        .contains(",DOWN,")
    {
        assert!(Instant::now() < deadline, "HAProxy never took node1 out");
        std::thread::sleep(Duration::from_millis(10));
    }
    let down = Instant::now();
    wait_served(
        &served,
        &failures,
        "served 20 new connections on node2",
        |s| opened_since(s, down, "node2").0 >= 20,
    );
    // Its clients' connections end by themselves (a few requests each); then it stops.
    node1
        .env
        .wait_stat("totals.connections_open", |open| open == 0);
    kill_process(Pid::from_child(&node1.ccsd.child), Signal::TERM).unwrap();
    assert_eq!(node1.ccsd.exit_code(), Some(0), "node1's graceful stop");
    let stopped = Instant::now();
    node1.mcp.kill();
    wait_served(
        &served,
        &failures,
        "served 20 connections after the stop",
        |s| opened_since(s, stopped, "node2").0 >= 20,
    );

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let failed = failures.lock().unwrap().clone();
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    let served = served.lock().unwrap();
    let (on2, on1) = opened_since(&served, down, "node2");
    assert_eq!(
        on1, 0,
        "{on1} connections opened after HAProxy took node1 out went to it ({on2} to node2)"
    );
    assert!(haproxy_server_stat(&socket, "node2").is_some_and(|s| s.contains(",UP,")));
}
