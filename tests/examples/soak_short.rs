//! The soak benchmark (`examples/soak`) in a short run: the real ccsd and echo MCP, idle
//! connections held open, load clients closing in the middle of packets and reconnecting. Every
//! request sent in full on a connection its client did not close must come back exact, and
//! ccsd's counters must agree with what the clients did.

use crate::common;

use std::process::Command;

use common::example_bin;
use serde_json::Value;

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {report}"))
}

#[test]
fn short_soak_answers_every_request_across_mid_packet_closes() {
    let out = Command::new(example_bin("soak"))
        .args(["--duration", "3", "--load-conns", "4", "--idle-conns", "50"])
        .args(["--close-probability", "0.002", "--reply-timeout", "10"])
        // Three seconds are all warm-up for memory: the lanes' pages are still being touched
        // for the first time. The ten-minute run judges memory (docs/benchmarks.md).
        .args(["--max-rss-growth", "1000", "--json"])
        .output()
        .expect("run soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("soak printed no JSON ({e}): {stdout}\nstderr: {stderr}"));
    assert_eq!(out.status.code(), Some(0), "{report}\nstderr: {stderr}");
    assert_eq!(report["pass"], Value::Bool(true), "{report}");
    for key in [
        "lost",
        "misrouted",
        "corrupted",
        "failed",
        "connect_failures",
    ] {
        assert_eq!(count(&report, key), 0, "{key}: {report}");
    }
    assert!(count(&report, "answered") >= 1000, "{report}");
    let closes = count(&report, "mid_packet_closes");
    assert!(closes >= 3, "too few mid-packet closes: {report}");
    // Every connection the clients opened ended once: cut mid-packet, at the end of the run, or
    // failed. (A client that cut one just before the end does not reconnect.)
    let connections = count(&report, "connections");
    assert_eq!(
        connections,
        closes + count(&report, "closed_at_end") + count(&report, "failed"),
        "{report}"
    );
    assert_eq!(
        count(&report, "sent"),
        count(&report, "answered") + count(&report, "abandoned"),
        "{report}"
    );
    assert_eq!(count(&report, "idle_alive"), 50, "{report}");
    let stats = &report["ccsd_stats"];
    assert_eq!(
        count(stats, "closed_peer") + count(stats, "closed_error"),
        connections,
        "ccsd saw other closes than the clients made: {report}"
    );
    assert_eq!(count(stats, "closed_idle"), 0, "{report}");
}

#[test]
fn short_soak_with_takeovers_loses_nothing_and_each_old_process_exits_0() {
    let out = Command::new(example_bin("soak"))
        .args(["--duration", "6", "--takeover-every", "2"])
        .args(["--load-conns", "4", "--idle-conns", "50"])
        .args(["--close-probability", "0.002", "--reply-timeout", "10"])
        // As above: six seconds are too short to judge memory.
        .args(["--max-rss-growth", "1000", "--json"])
        .output()
        .expect("run soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("soak printed no JSON ({e}): {stdout}\nstderr: {stderr}"));
    assert_eq!(out.status.code(), Some(0), "{report}\nstderr: {stderr}");
    assert_eq!(report["pass"], Value::Bool(true), "{report}");
    for key in [
        "lost",
        "misrouted",
        "corrupted",
        "failed",
        "connect_failures",
    ] {
        assert_eq!(count(&report, key), 0, "{key}: {report}");
    }
    assert_eq!(count(&report, "idle_alive"), 50, "{report}");
    let takeovers = report["takeovers"].as_array().expect("takeovers");
    assert_eq!(takeovers.len(), 2, "{report}");
    let mut pids = vec![];
    for t in takeovers {
        assert_eq!(t["old_exit"], "0", "{t}");
        // Every idle connection, and the load connections open at that moment (a closed one
        // whose end ccsd had not read yet included).
        assert!(count(t, "handed") >= 50, "{t}");
        pids.extend([count(t, "old_pid"), count(t, "new_pid")]);
    }
    // Each takeover starts from the process the previous one started.
    assert_eq!(pids[1], pids[2], "{report}");
    // The last process holds the idle connections, adopted from the first through the second.
    assert_eq!(
        count(&report["ccsd_stats"], "connections_open"),
        50,
        "{report}"
    );
}
