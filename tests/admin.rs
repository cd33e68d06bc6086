//! The admin port: every line command, `GET /metrics` in Prometheus text, authentication,
//! malformed input and idle clients, through the real binary.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, Reason};
use common::{TestEnv, WAIT, assert_closed, connect, packet, round_trip, stat};

/// An admin session: send a line, read the reply lines up to and including `END` (or one line).
struct AdminClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl AdminClient {
    fn connect(addr: SocketAddr) -> AdminClient {
        let s = connect(addr);
        AdminClient {
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

    fn ask_until_end(&mut self, command: &str) -> Vec<String> {
        writeln!(self.writer, "{command}").unwrap();
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            if line == "END" {
                return lines;
            }
            assert!(!line.is_empty(), "admin closed before END: {lines:?}");
            lines.push(line);
        }
    }
}

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
        if name.starts_with("ccsd_packets_in{") {
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
    assert!(http_get(addr, "/metrics", Some("s3cret")).starts_with("HTTP/1.1 200"));
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
