//! `/metrics` follows Prometheus conventions, checked by the real `promtool check metrics` against
//! a live ccsd that has served traffic, and the shipped Grafana dashboard
//! (`deploy/grafana/ccsd.json`) queries only metrics a live ccsd exposes.

use crate::common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use common::{TestEnv, connect, packet, round_trip, tool};

/// The body of `GET /metrics` on the admin port.
fn metrics_body(admin: SocketAddr) -> String {
    let mut s = connect(admin);
    write!(s, "GET /metrics HTTP/1.1\r\nHost: ccsd\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").expect("a body");
    body.to_owned()
}

/// A live ccsd (two workers, the echo MCP) that has answered five packets: every family, the
/// latency histograms included, has samples. Returns its `/metrics` body.
fn metrics_after_traffic() -> String {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    for i in 0..5u8 {
        assert_eq!(round_trip(&mut client, &[i; 10]), packet(&[i; 10]));
    }
    env.wait_stat("request_latency.count", |v| v == 5);
    metrics_body(ccsd.admin.expect("admin port"))
}

/// Whether `promtool` can run: in CI (`CI=true`) its absence fails the test, elsewhere the test
/// says why it is skipped.
fn promtool_available() -> bool {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("promtool").is_file()));
    if !on_path {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is not installed: .ci/deps installs it (Debian's prometheus package)"
        );
        eprintln!("SKIPPED: promtool is not installed (Debian's prometheus package, see .ci/deps)");
    }
    on_path
}

#[test]
fn live_metrics_pass_promtool_check_metrics() {
    if !promtool_available() {
        return;
    }
    let body = metrics_after_traffic();
    assert!(
        body.contains(&format!(
            "\nccsd_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{body}"
    );
    assert!(
        body.contains("\n# TYPE ccsd_mcp_up gauge\nccsd_mcp_up "),
        "{body}"
    );
    let mut check = tool("promtool", "prometheus");
    let mut child = check
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}):\n{said}",
        out.status
    );
}

/// Every metric family a Prometheus text body declares (its `# TYPE` lines), with the series
/// names a histogram family adds.
fn exposed_names(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            names.insert(name.to_owned());
        }
    }
    names
}

/// The `ccsd_` metric names a PromQL expression mentions.
fn queried_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("ccsd_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every `expr` of every panel's targets, with the panel's title, and every templating variable's
/// query.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("panel title").to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("target expr");
            queries.push((title.clone(), expr.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(definition) = variable["definition"].as_str() {
            let name = variable["name"].as_str().expect("variable name");
            queries.push((format!("variable {name}"), definition.to_owned()));
        }
    }
    queries
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_a_live_ccsd_exposes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/ccsd.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana/ccsd.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["title"].is_string(), "a dashboard title");
    let queries = dashboard_queries(&dashboard);
    let titles: BTreeSet<&str> = queries.iter().map(|(t, _)| t.as_str()).collect();
    for wanted in [
        "Connections",
        "Packets and replies per second",
        "Request to reply latency",
        "Lane fill",
        "MCP up",
        "Drops by reason",
    ] {
        assert!(
            titles.contains(wanted),
            "no panel {wanted:?} with queries: {titles:?}"
        );
    }

    let exposed = exposed_names(&metrics_after_traffic());
    let mut missing = Vec::new();
    for (title, expr) in &queries {
        let names = queried_names(expr);
        assert!(!names.is_empty(), "{title}: {expr} queries no ccsd metric");
        for name in names {
            if !exposed.contains(&name) {
                missing.push(format!("{title}: {name}"));
            }
        }
    }
    assert!(missing.is_empty(), "not in /metrics: {missing:#?}");
}
