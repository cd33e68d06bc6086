//! The admin port: every line command, `GET /metrics` in Prometheus text, authentication,
//! malformed input, idle and silent clients, and the admin Unix socket, through the real binary.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;

use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, Reason};
use common::{
    AdminClient, TestEnv, WAIT, assert_closed, assert_open_and_silent, connect, packet, round_trip,
    stat,
};

fn http_get(addr: SocketAddr, path: &str, auth: Option<&str>) -> String {
    let mut s = connect(addr);
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: ccsd\r\n{auth}\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

/// One Prometheus histogram series: its `le` bounds with their cumulative counts, sum and count.
#[derive(Debug, Default)]
struct PromHistogram {
    buckets: Vec<(String, u64)>,
    sum: f64,
    count: u64,
}

/// The histograms called `name` in a Prometheus text body, by their labels other than `le`.
fn prom_histograms(body: &str, name: &str) -> BTreeMap<String, PromHistogram> {
    let mut out: BTreeMap<String, PromHistogram> = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let (metric, labels) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let Some(suffix) = metric.strip_prefix(name) else {
            continue;
        };
        let mut le = None;
        let others: Vec<&str> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .filter(|l| match l.strip_prefix("le=") {
                Some(v) => {
                    le = Some(v.trim_matches('"').to_owned());
                    false
                }
                None => true,
            })
            .collect();
        let h = out.entry(others.join(",")).or_default();
        match suffix {
            "_bucket" => h
                .buckets
                .push((le.expect("le label"), value.parse().expect("bucket count"))),
            "_sum" => h.sum = value.parse().expect("sum"),
            "_count" => h.count = value.parse().expect("count"),
            other => panic!("unexpected series {name}{other}"),
        }
    }
    out
}

/// Checks one histogram is well formed (increasing bounds ending at `+Inf`, cumulative counts
/// that never decrease, `+Inf` equal to the count) and returns its count.
fn checked_count(labels: &str, h: &PromHistogram) -> u64 {
    assert_eq!(
        h.buckets.last().map(|b| b.0.as_str()),
        Some("+Inf"),
        "{labels}: {h:?}"
    );
    let bounds: Vec<f64> = h.buckets[..h.buckets.len() - 1]
        .iter()
        .map(|(le, _)| le.parse().expect("numeric le"))
        .collect();
    assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{labels}: {h:?}");
    assert!(
        h.buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "{labels}: cumulative counts decrease: {h:?}"
    );
    assert_eq!(h.buckets.last().unwrap().1, h.count, "{labels}: {h:?}");
    assert_eq!(h.count > 0, h.sum > 0.0, "{labels}: {h:?}");
    h.count
}

#[test]
fn stats_workers_and_metrics_report_the_traffic() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    for i in 0..5u8 {
        assert_eq!(round_trip(&mut client, &[i; 10]), packet(&[i; 10]));
    }
    env.wait_stat("totals.packets_in", |v| v == 5);
    // Replies are recorded once written in full: the client has them all, so they all count.
    env.wait_stat("request_latency.count", |v| v == 5);
    let doc = env.stats();
    let per_worker: u64 = (0..2)
        .map(|w| {
            doc["workers"][w]["request_latency"]["count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(per_worker, 5, "{doc}");
    let latency = &doc["request_latency"];
    let in_buckets: u64 = latency["buckets"]
        .as_object()
        .expect("buckets")
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(in_buckets, 5, "{latency}");
    let figure = |name: &str| latency[name].as_u64().unwrap();
    assert!(figure("min_us") <= figure("p50_us"), "{latency}");
    assert!(figure("p50_us") <= figure("p99_us"), "{latency}");
    assert!(figure("p99_us") <= figure("max_us"), "{latency}");
    assert_eq!(
        stat(&doc, "response_lane_wait.count"),
        Some(5),
        "the echo MCP stamps its replies: {doc}"
    );
    let mut admin = AdminClient::connect(ccsd.admin.expect("admin port"));

    let help = admin.ask_until_end("help");
    assert!(help[0].contains("stats"), "{help:?}");
    let stats = admin.ask_until_end("stats");
    assert!(stats.iter().all(|l| l.starts_with("STAT ")), "{stats:?}");
    assert!(stats.contains(&"STAT packets_in 5".to_owned()), "{stats:?}");
    assert!(
        stats.contains(&"STAT connections_open 1".to_owned()),
        "{stats:?}"
    );
    assert!(
        stats.contains(&"STAT latency_count 5".to_owned()),
        "{stats:?}"
    );
    for name in [
        "latency_p50_us",
        "latency_p999_us",
        "response_lane_wait_p99_us",
    ] {
        assert!(
            stats
                .iter()
                .any(|l| l.starts_with(&format!("STAT {name} "))),
            "{name}: {stats:?}"
        );
    }
    let workers = admin.ask_until_end("workers");
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(
        workers
            .iter()
            .any(|l| l.contains("connections 1 packets_in 5")),
        "{workers:?}"
    );

    let metrics = http_get(ccsd.admin.unwrap(), "/metrics", None);
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    let body = metrics.split("\r\n\r\n").nth(1).unwrap();
    let mut packets_in = 0;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').expect("name value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad sample {line}"));
        assert!(name.starts_with("ccsd_"), "{line}");
        if name.starts_with("ccsd_packets_in_total{") {
            packets_in += value as u64;
        }
    }
    assert_eq!(packets_in, 5, "{body}");
    assert!(body.contains("# TYPE ccsd_connections_open gauge"));
    assert!(body.contains("# TYPE ccsd_request_latency_seconds histogram"));
    let latency = prom_histograms(body, "ccsd_request_latency_seconds");
    assert_eq!(
        latency.keys().collect::<Vec<_>>(),
        ["worker=\"0\"", "worker=\"1\""],
        "{body}"
    );
    let observed: u64 = latency.iter().map(|(l, h)| checked_count(l, h)).sum();
    assert_eq!(observed, 5, "{body}");
    let lane_wait = prom_histograms(body, "ccsd_response_lane_wait_seconds");
    assert_eq!(checked_count("", &lane_wait[""]), 5, "{body}");
    assert!(http_get(ccsd.admin.unwrap(), "/nothing", None).starts_with("HTTP/1.1 404"));
}

#[test]
fn malformed_input_gets_an_error_line_and_the_session_goes_on() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let mut admin = AdminClient::connect(ccsd.admin.unwrap());
    assert!(admin.ask("frobnicate").starts_with("ERROR unknown command"));
    assert!(
        admin
            .ask("close notaflow")
            .starts_with("ERROR usage: close")
    );
    // Worker 7 of a one-worker ccsd.
    let reply = admin.ask("close 0x0000070000000000");
    assert!(reply.starts_with("ERROR flow"), "{reply}");
    assert!(
        admin
            .ask("loglevel loud")
            .starts_with("ERROR usage: loglevel")
    );
    assert_eq!(admin.ask("loglevel debug"), "OK log level DEBUG");
    admin.writer.write_all(&[b'y'; 2000]).unwrap();
    assert_eq!(admin.line(), "ERROR line too long");
}

#[test]
fn a_token_is_required_first_when_configured() {
    let env = TestEnv::new(1, "", "");
    env.add_setting("admin", "token = \"s3cret\"");
    let ccsd = env.start_ccsd();
    let addr = ccsd.admin.unwrap();
    let mut admin = AdminClient::connect(addr);
    assert!(admin.ask("stats").starts_with("ERROR auth required"));
    assert_eq!(admin.ask("auth s3cret"), "OK");
    assert!(
        admin
            .ask_until_end("stats")
            .iter()
            .any(|l| l.starts_with("STAT uptime_ms"))
    );
    let mut wrong = AdminClient::connect(addr);
    assert_eq!(wrong.ask("auth nope"), "ERROR bad token");
    assert_closed(&mut wrong.writer);
    assert!(http_get(addr, "/metrics", None).starts_with("HTTP/1.1 401"));
    assert!(http_get(addr, "/metrics", Some("s3cre")).starts_with("HTTP/1.1 401"));
    assert!(http_get(addr, "/metrics", Some("s3cret")).starts_with("HTTP/1.1 200"));
    let stats = admin.ask_until_end("stats");
    assert!(
        stats.contains(&"STAT admin_auth_failures 3".to_owned()),
        "{stats:?}"
    );
}

#[test]
fn a_client_that_does_not_log_in_is_closed_at_the_login_deadline() {
    let env = TestEnv::new(1, "", "");
    // Long enough that the operator logs in in time on a loaded machine.
    env.add_setting("admin", "token = \"s3cret\"\nlogin_timeout = \"2s\"");
    let ccsd = env.start_ccsd();
    let addr = ccsd.admin.unwrap();
    let mut operator = AdminClient::connect(addr);
    assert_eq!(operator.ask("auth s3cret"), "OK");
    let mut silent = connect(addr);
    // Talking without the token is not logging in.
    let mut chatty = AdminClient::connect(addr);
    assert!(chatty.ask("stats").starts_with("ERROR auth required"));
    assert_closed(&mut silent);
    assert_closed(&mut chatty.writer);
    env.wait_stat("admin.closed_login_timeout", |v| v == 2);
    // The operator logged in: only admin.idle_timeout (60s) applies to it.
    assert_open_and_silent(&mut operator.writer);
    assert!(
        operator
            .ask_until_end("stats")
            .contains(&"STAT admin_closed_login_timeout 2".to_owned())
    );
}

#[test]
fn without_a_token_a_client_must_send_a_command_before_the_login_deadline() {
    let env = TestEnv::new(1, "", "");
    // Long enough that the talker sends its command in time on a loaded machine.
    env.add_setting("admin", "login_timeout = \"2s\"");
    let ccsd = env.start_ccsd();
    let addr = ccsd.admin.unwrap();
    let mut talker = AdminClient::connect(addr);
    assert!(talker.ask_until_end("help")[0].contains("stats"));
    let mut silent = connect(addr);
    assert_closed(&mut silent);
    env.wait_stat("admin.closed_login_timeout", |v| v == 1);
    assert_open_and_silent(&mut talker.writer);
}

#[test]
fn silent_clients_in_every_slot_never_keep_the_operator_out() {
    let env = TestEnv::new(1, "", "");
    // A login deadline far away: the operator gets in because a silent client makes room.
    env.add_setting("admin", "token = \"s3cret\"\nlogin_timeout = \"1h\"");
    let ccsd = env.start_ccsd();
    let addr = ccsd.admin.unwrap();
    let mut silent: Vec<TcpStream> = Vec::new();
    for _ in 0..64 {
        silent.push(connect(addr));
        // One at a time, so the first is the longest silent.
        let accepted = silent.len() as u64;
        env.wait_stat("admin.clients_accepted", |v| v == accepted);
    }
    let mut operator = AdminClient::connect(addr);
    assert_eq!(operator.ask("auth s3cret"), "OK");
    let stats = operator.ask_until_end("stats");
    assert!(
        stats.contains(&"STAT admin_evicted_idle 1".to_owned()),
        "{stats:?}"
    );
    assert!(
        stats.contains(&"STAT admin_refused_busy 0".to_owned()),
        "{stats:?}"
    );
    // The longest silent client made room; the others are still connected.
    assert_closed(&mut silent[0]);
    assert_open_and_silent(&mut silent[63]);
    // Another operator: a silent client goes again, never the one logged in.
    let mut second = AdminClient::connect(addr);
    assert_eq!(second.ask("auth s3cret"), "OK");
    assert_closed(&mut silent[1]);
    assert!(
        operator
            .ask_until_end("stats")
            .contains(&"STAT admin_evicted_idle 2".to_owned())
    );
}

/// A session on the admin Unix socket: send a line, read reply lines.
struct UnixAdmin {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl UnixAdmin {
    fn connect(path: &std::path::Path) -> UnixAdmin {
        let s = UnixStream::connect(path).expect("connect to the admin Unix socket");
        s.set_read_timeout(Some(WAIT)).unwrap();
        UnixAdmin {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("admin reply");
        line.trim_end().to_owned()
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.writer, "{command}").unwrap();
        self.line()
    }

    fn until_end(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.line() {
                line if line == "END" => return lines,
                line if line.is_empty() => panic!("closed before END: {lines:?}"),
                line => lines.push(line),
            }
        }
    }
}

#[test]
fn the_unix_socket_is_private_and_alone_may_change_things_when_there_is_no_token() {
    let env = TestEnv::new(1, "", "");
    let path = env.dir.join("admin.sock");
    env.add_setting("admin", &format!("unix = {:?}", path.display().to_string()));
    let mut ccsd = env.start_ccsd();
    let announced = format!("admin on unix://{}", path.display());
    assert!(
        ccsd.lines.iter().any(|l| l.contains(&announced)),
        "{:?}",
        ccsd.lines
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");

    let mut tcp = AdminClient::connect(ccsd.admin.unwrap());
    assert!(tcp.ask_until_end("stats")[0].starts_with("STAT uptime_ms"));
    for denied in ["shutdown", "reload", "close 1", "loglevel debug"] {
        let verb = denied.split(' ').next().unwrap();
        assert_eq!(
            tcp.ask(denied),
            format!(
                "ERROR {verb} is served on the admin Unix socket only (admin.unix is set and admin.token is not)"
            )
        );
    }
    let mut unix = UnixAdmin::connect(&path);
    assert_eq!(unix.ask("loglevel debug"), "OK log level DEBUG");
    writeln!(unix.writer, "stats").unwrap();
    let stats = unix.until_end();
    assert!(
        stats.contains(&"STAT admin_denied_commands 4".to_owned()),
        "{stats:?}"
    );
    assert_eq!(unix.ask("shutdown"), "OK stopping");
    assert_eq!(ccsd.exit_code(), Some(0));
    assert!(!path.exists(), "the socket file was left behind");
}

#[test]
fn an_idle_admin_client_is_closed() {
    let env = TestEnv::new(1, "", "");
    env.add_setting("admin", "idle_timeout = \"1s\"");
    let ccsd = env.start_ccsd();
    let mut idle = connect(ccsd.admin.unwrap());
    idle.set_read_timeout(Some(WAIT)).unwrap();
    assert_closed(&mut idle);
}

#[test]
fn close_command_closes_that_flow_and_tells_mcp() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"hi")).unwrap();
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    let flow = msg.header().flow;

    let mut admin = AdminClient::connect(ccsd.admin.unwrap());
    assert_eq!(
        admin.ask(&format!("close {flow}")),
        format!("OK closing {flow}")
    );
    assert_closed(&mut client);
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    assert_eq!(msg.header().kind, Kind::Disconnect);
    assert_eq!(
        (msg.header().flow, Reason::from_u8(msg.header().code)),
        (flow, Some(Reason::Local))
    );
}

#[test]
fn shutdown_command_stops_ccsd_gracefully() {
    let env = TestEnv::new(1, "", "");
    let mut ccsd = env.start_ccsd();
    let mut admin = AdminClient::connect(ccsd.admin.unwrap());
    assert_eq!(admin.ask("shutdown"), "OK stopping");
    let status = ccsd.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// One `conn` line of the `conns` answer: flow, worker, peer and the byte counts.
#[derive(Debug)]
struct ConnLine {
    flow: u64,
    worker: usize,
    peer: SocketAddr,
    buffered_in: usize,
}

fn parse_conn_line(line: &str) -> ConnLine {
    let words: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| {
        let at = words.iter().position(|w| *w == name).expect(name);
        words[at + 1]
    };
    ConnLine {
        flow: u64::from_str_radix(field("conn").trim_start_matches("0x"), 16).unwrap(),
        worker: field("worker").parse().unwrap(),
        peer: field("peer").parse().unwrap(),
        buffered_in: field("buffered_in").parse().unwrap(),
    }
}

#[test]
fn conns_shows_each_client_with_its_peer_and_worker() {
    let env = TestEnv::new(2, "", "");
    env.add_setting("broker", "dispatch = \"round_robin\"");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(ccsd.addr())).collect();
    for c in &mut clients {
        assert_eq!(round_trip(c, b"hi"), packet(b"hi"));
    }
    // Half a length prefix: two bytes wait in the connection's receive buffer.
    clients[2].write_all(&[0, 0]).unwrap();
    env.wait_stat("totals.bytes_in", |v| v == 3 * 6);
    let mut admin = AdminClient::connect(ccsd.admin.unwrap());

    let conns = admin.ask_until_end("conns");
    assert_eq!(conns.len(), 4, "{conns:?}");
    assert_eq!(conns[3], "total 3 shown 3");
    let mut seen: Vec<ConnLine> = conns[..3].iter().map(|l| parse_conn_line(l)).collect();
    seen.sort_by_key(|c| c.peer);
    let mut peers: Vec<SocketAddr> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    peers.sort();
    assert_eq!(seen.iter().map(|c| c.peer).collect::<Vec<_>>(), peers);
    for c in &seen {
        assert_eq!(c.worker, (c.flow >> 40 & 0xff) as usize, "{c:?}");
    }
    let mut workers: Vec<usize> = seen.iter().map(|c| c.worker).collect();
    workers.sort();
    workers.dedup();
    assert_eq!(workers, [0, 1], "round robin over two workers");
    let partial = seen
        .iter()
        .find(|c| c.peer == clients[2].local_addr().unwrap())
        .unwrap();
    assert_eq!(partial.buffered_in, 2, "{partial:?}");

    let one = admin.ask_until_end("conns 1");
    assert_eq!(one.len(), 2, "{one:?}");
    assert!(one[0].starts_with("conn 0x"), "{one:?}");
    assert_eq!(one[1], "total 3 shown 1");
    for bad in ["conns many", "conns 1001", "conns -1", "conns 1 2"] {
        assert!(admin.ask(bad).starts_with("ERROR usage: conns"), "{bad}");
    }
    // Commands sent behind a `conns` are answered after it, in order.
    admin.writer.write_all(b"conns 0\nworkers\n").unwrap();
    assert_eq!(admin.until_end(), ["total 3 shown 0"]);
    let workers = admin.until_end();
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(workers[0].starts_with("worker 0 "), "{workers:?}");
}

/// Replaces `from` with `to` in the test's config file (which must contain `from`).
fn edit_config(env: &TestEnv, from: &str, to: &str) {
    let toml = std::fs::read_to_string(&env.config).unwrap();
    assert!(toml.contains(from), "the config has no {from:?}:\n{toml}");
    std::fs::write(&env.config, toml.replacen(from, to, 1)).unwrap();
}

#[test]
fn reload_applies_the_log_level_and_limits_and_names_what_needs_a_restart() {
    let env = TestEnv::new(1, "", "[limits]\nidle_timeout = \"60s\"\n");
    let mut ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut admin = AdminClient::connect(ccsd.admin.unwrap());
    let unchanged = admin.ask_until_end("reload");
    assert!(
        unchanged[0].starts_with("OK reloaded")
            && unchanged[0].ends_with(": 0 changed, 0 need a restart"),
        "{unchanged:?}"
    );
    let mut idle = connect(ccsd.addr());
    assert_eq!(round_trip(&mut idle, b"x"), packet(b"x"));

    edit_config(&env, "level = \"info\"", "level = \"debug\"");
    // 3s: long enough that `first` is still open when `second` connects on a loaded machine.
    edit_config(&env, "idle_timeout = \"60s\"", "idle_timeout = \"3s\"");
    env.add_setting("broker", "max_connections = 1");
    let reloaded = admin.ask_until_end("reload");
    assert_eq!(
        reloaded,
        [
            "OK reloaded ".to_owned()
                + &env.config.display().to_string()
                + ": 3 changed, 0 need a restart",
            "changed log.level info -> debug".to_owned(),
            "changed limits.idle_timeout 60s -> 3s".to_owned(),
            "changed broker.max_connections 100000 -> 1".to_owned(),
        ]
    );
    // Debug lines now appear: the stats summary at every interval.
    ccsd.wait_for_line(" DEBUG ");
    // The idle timeout reached the worker: the quiet client is closed.
    assert_closed(&mut idle);
    env.wait_stat("totals.closed_idle", |v| v == 1);
    env.wait_stat("totals.connections_open", |v| v == 0);
    // One connection at most: the second is refused.
    let mut first = connect(ccsd.addr());
    let mut second = connect(ccsd.addr());
    assert_closed(&mut second);
    env.wait_stat("acceptor.refused_max_connections", |v| v == 1);

    edit_config(&env, "workers = 1", "workers = 3");
    let restart = admin.ask_until_end("reload");
    assert!(
        restart[0].ends_with(": 0 changed, 1 need a restart"),
        "{restart:?}"
    );
    assert_eq!(restart[1], "restart broker.workers (not applied)");
    assert_eq!(admin.ask_until_end("workers").len(), 1, "still one worker");

    edit_config(&env, "idle_timeout = \"3s\"", "idle_timeout = \"soon\"");
    edit_config(&env, "level = \"debug\"", "level = \"error\"");
    let invalid = admin.ask("reload");
    assert!(
        invalid.starts_with("ERROR reload: invalid settings, nothing applied: ")
            && invalid.contains("limits.idle_timeout"),
        "{invalid}"
    );
    // The old settings stay: debug lines go on, idle clients are still closed after 3s.
    ccsd.wait_for_line("nothing applied");
    ccsd.wait_for_line(" DEBUG ");
    assert_closed(&mut first);
    env.wait_stat("totals.connections_open", |v| v == 0);
    let mut third = connect(ccsd.addr());
    assert_closed(&mut third);
    env.wait_stat("totals.closed_idle", |v| v == 3);
}

/// `STAT name value` from one `stats` answer.
fn admin_stat(admin: &mut AdminClient, name: &str) -> Option<u64> {
    let prefix = format!("STAT {name} ");
    admin.ask_until_end("stats").iter().find_map(|l| {
        l.strip_prefix(&prefix)
            .map(|v| v.parse().expect("a number"))
    })
}

#[test]
fn the_mcp_watch_verdict_is_in_stats_and_metrics_as_mcp_up_and_mcp_down_events_total() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = env.start_mcp("echo_mcp");
    let addr = ccsd.admin.expect("admin port");
    let mut admin = AdminClient::connect(addr);
    let wait_for = |admin: &mut AdminClient, name: &str, want: u64| {
        let deadline = std::time::Instant::now() + WAIT;
        while admin_stat(admin, name) != Some(want) {
            assert!(std::time::Instant::now() < deadline, "{name} never {want}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_for(&mut admin, "mcp_watch_mcp_alive", 1);
    assert_eq!(admin_stat(&mut admin, "mcp_watch_mcp_down_events"), Some(0));
    let metrics = http_get(addr, "/metrics", None);
    for lines in [
        "# TYPE ccsd_mcp_up gauge\nccsd_mcp_up 1\n",
        "# TYPE ccsd_mcp_down_events_total counter\nccsd_mcp_down_events_total 0\n",
        "# TYPE ccsd_mcp_consumer_changes_total counter\n",
        "# TYPE ccsd_mcp_consumer_contention_total counter\n",
    ] {
        assert!(metrics.contains(lines), "{lines:?} missing: {metrics}");
    }

    mcp.kill();
    wait_for(&mut admin, "mcp_watch_mcp_alive", 0);
    assert_eq!(admin_stat(&mut admin, "mcp_watch_mcp_down_events"), Some(1));
    let metrics = http_get(addr, "/metrics", None);
    assert!(
        metrics.contains("ccsd_mcp_up 0\n") && metrics.contains("ccsd_mcp_down_events_total 1\n"),
        "{metrics}"
    );
}

/// Every `STAT name value` line of one `stats` answer.
fn stats_answer(admin: &mut AdminClient) -> BTreeMap<String, u64> {
    admin
        .ask_until_end("stats")
        .iter()
        .filter_map(|l| {
            let mut words = l.strip_prefix("STAT ")?.split(' ');
            Some((words.next()?.to_owned(), words.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn stats_says_its_worker_counters_are_as_old_as_ccsd_when_no_worker_reported_yet() {
    let env = TestEnv::new(1, "", "");
    edit_config(&env, "interval = \"20ms\"", "interval = \"1h\"");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    assert_eq!(
        round_trip(&mut client, b"counted later"),
        packet(b"counted later")
    );
    let mut admin = AdminClient::connect(ccsd.admin.expect("admin address"));
    let s = stats_answer(&mut admin);
    assert_eq!(
        s["packets_in"], 0,
        "the worker reported before stats.interval: {s:?}"
    );
    assert!(s["snapshot_age_ms"] >= s["uptime_ms"], "{s:?}");
}

#[test]
fn stats_snapshot_age_is_no_older_than_the_report_carrying_the_latest_packet() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    let sent = std::time::Instant::now();
    assert_eq!(round_trip(&mut client, b"fresh"), packet(b"fresh"));
    let mut admin = AdminClient::connect(ccsd.admin.expect("admin address"));
    loop {
        let s = stats_answer(&mut admin);
        let since_sent = sent.elapsed().as_millis() as u64;
        if s["packets_in"] >= 1 {
            // The report that counted the packet arrived after it was sent.
            assert!(s["snapshot_age_ms"] <= since_sent, "{since_sent} ms: {s:?}");
            break;
        }
        assert!(sent.elapsed() < WAIT, "the packet was never counted: {s:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
