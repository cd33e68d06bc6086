//! The admin's reports: `stats` (memcached-style `STAT` lines), `workers` (a line per worker)
//! and `/metrics` (Prometheus text exposition), all rendered from one [`AdminView`].

use std::fmt::Write as _;

use super::AdminView;

/// The main thread's counters with the group prefix `stats` and `/metrics` give them, in order.
fn each_main_counter(view: &AdminView<'_>, mut f: impl FnMut(&str, &'static str, u64)) {
    each_main_counter_described(view, |group, k, _, v| f(group, k, v));
}

/// [`each_main_counter`] with each counter's doc comment (its `# HELP` text).
fn each_main_counter_described(
    view: &AdminView<'_>,
    mut f: impl FnMut(&str, &'static str, &'static str, u64),
) {
    let main = view.main;
    main.acceptor
        .for_each_described(|k, h, v| f("acceptor", k, h, v));
    main.udp.for_each_described(|k, h, v| f("udp", k, h, v));
    main.bridge
        .for_each_described(|k, h, v| f("bridge", k, h, v));
    main.mcp_watch
        .for_each_described(|k, h, v| f("mcp_watch", k, h, v));
    main.control
        .for_each_described(|k, h, v| f("control", k, h, v));
    main.process
        .for_each_described(|k, h, v| f("process", k, h, v));
    main.admin.for_each_described(|k, h, v| f("admin", k, h, v));
    main.main_lane
        .for_each_described(|k, h, v| f("main", k, h, v));
}

/// Every counter as `STAT name value` lines, then `END`, like memcached's `stats`.
/// `snapshot_age_ms` says how old the workers' counters are (they report every `stats.interval`);
/// the main thread's are live.
pub(super) fn stats_text(view: &AdminView<'_>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "STAT uptime_ms {}\r\nSTAT snapshot_age_ms {}\r\nSTAT epoch {}\r\nSTAT response_lane_used_bytes {}\r\nSTAT main_lane_used_bytes {}\r\nSTAT memory_held_bytes {}\r\nSTAT max_memory_bytes {}\r\n",
        view.stats.uptime().as_millis(),
        view.stats.snapshot_age().as_millis(),
        view.stats.epoch(),
        view.main.response_lane_used_bytes,
        view.main.main_lane_used_bytes,
        view.main.memory_held_bytes,
        view.main.max_memory_bytes
    );
    view.stats.totals().for_each(|k, v| {
        let _ = write!(out, "STAT {k} {v}\r\n");
    });
    each_main_counter(view, |group, k, v| {
        let _ = write!(out, "STAT {group}_{k} {v}\r\n");
    });
    for (i, load) in view.stats.worker_loads().iter().enumerate() {
        let _ = write!(out, "STAT worker{i}_load {load}\r\n");
    }
    view.stats
        .latency_totals()
        .write_stat_lines(&mut out, "latency");
    view.main
        .response_lane_wait
        .write_stat_lines(&mut out, "response_lane_wait");
    out.push_str("END\r\n");
    out
}

/// One line per worker: its main figures.
pub(super) fn workers_text(view: &AdminView<'_>) -> String {
    let mut out = String::new();
    for (i, w) in view.stats.workers().iter().enumerate() {
        match w {
            Some(s) => {
                let c = &s.counters;
                let _ = write!(
                    out,
                    "worker {i} connections {} packets_in {} bytes_in {} replies_out {} bytes_out {} mailbox_depth {} lane_used_bytes {} load {}\r\n",
                    c.connections_open,
                    c.packets_in,
                    c.bytes_in,
                    c.replies_out,
                    c.bytes_out,
                    s.mailbox_depth,
                    s.lane_used_bytes,
                    view.stats.worker_loads().get(i).copied().unwrap_or(0)
                );
            }
            None => {
                let _ = write!(out, "worker {i} no report yet\r\n");
            }
        }
    }
    out.push_str("END\r\n");
    out
}

/// Gauges among the worker counters (everything else only grows).
const GAUGES: [&str; 2] = ["connections_open", "buffered_bytes"];
/// Gauges among the main thread's counters, by their `stats` name (`group_name`).
const MAIN_GAUGES: [&str; 3] = ["bridge_held_bytes", "mcp_watch_mcp_alive", "admin_draining"];

/// The `/metrics` names that are not `ccsd_` + the `stats` name (+ `_total` for a counter), by
/// `stats` name: MCP's liveness under an `mcp_` prefix, byte counters with their unit last.
/// docs/operations.md's changelog lists every name `/metrics` changed.
const RENAMED: [(&str, &str); 8] = [
    ("mcp_watch_mcp_alive", "ccsd_mcp_up"),
    ("mcp_watch_mcp_down_events", "ccsd_mcp_down_events_total"),
    (
        "mcp_watch_mcp_consumer_changes",
        "ccsd_mcp_consumer_changes_total",
    ),
    (
        "mcp_watch_mcp_consumer_contention",
        "ccsd_mcp_consumer_contention_total",
    ),
    ("bytes_in", "ccsd_packets_in_bytes_total"),
    ("bytes_out", "ccsd_replies_out_bytes_total"),
    ("udp_bytes_in", "ccsd_udp_datagrams_in_bytes_total"),
    ("udp_bytes_out", "ccsd_udp_datagrams_out_bytes_total"),
];

/// The `/metrics` name of the counter or gauge `stats` calls `stats_name`.
fn metric_name(stats_name: &str, gauge: bool) -> String {
    match RENAMED.iter().find(|(old, _)| *old == stats_name) {
        Some((_, new)) => (*new).to_owned(),
        None if gauge => format!("ccsd_{stats_name}"),
        None => format!("ccsd_{stats_name}_total"),
    }
}

/// Appends the `# HELP` and `# TYPE` lines of a family. `help` is a doc comment: its lines are
/// joined with single spaces, and a backslash is escaped as the text format asks.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    for word in help.split_whitespace() {
        out.push(' ');
        out.push_str(&word.replace('\\', "\\\\"));
    }
    let _ = writeln!(out, "\n# TYPE {name} {kind}");
}

/// Prometheus text exposition (every family with `# HELP` and `# TYPE`, counters ending in
/// `_total`, times in seconds, sizes in bytes): the build, worker counters per `worker` label,
/// then the main thread's, per-worker mailbox depth, request-lane fill and load, the lanes, memory,
/// the latency histograms and the uptime.
pub(super) fn metrics_text(view: &AdminView<'_>) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "ccsd_build_info",
        "gauge",
        "Always 1; the version label names the ccsd build answering.",
    );
    let _ = writeln!(
        out,
        "ccsd_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let mut described = Vec::new();
    view.stats
        .totals()
        .for_each_described(|k, help, _| described.push((k, help)));
    for (stats_name, help) in described {
        let gauge = GAUGES.contains(&stats_name);
        let name = metric_name(stats_name, gauge);
        family(
            &mut out,
            &name,
            if gauge { "gauge" } else { "counter" },
            help,
        );
        for (i, w) in view.stats.workers().iter().enumerate() {
            let mut value = 0;
            if let Some(s) = w {
                s.counters.for_each(|k, v| {
                    if k == stats_name {
                        value = v;
                    }
                });
            }
            let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {value}");
        }
    }
    each_main_counter_described(view, |group, k, help, v| {
        let stats_name = format!("{group}_{k}");
        let gauge = MAIN_GAUGES.contains(&stats_name.as_str());
        let name = metric_name(&stats_name, gauge);
        family(
            &mut out,
            &name,
            if gauge { "gauge" } else { "counter" },
            help,
        );
        let _ = writeln!(out, "{name} {v}");
    });
    family(
        &mut out,
        "ccsd_mailbox_depth",
        "gauge",
        "Messages waiting in the worker's mailbox at its last report.",
    );
    for (i, w) in view.stats.workers().iter().enumerate() {
        let depth = w.map_or(0, |s| s.mailbox_depth);
        let _ = writeln!(out, "ccsd_mailbox_depth{{worker=\"{i}\"}} {depth}");
    }
    family(
        &mut out,
        "ccsd_request_lane_used_bytes",
        "gauge",
        "Bytes in the worker's request lane not read by MCP yet, at its last report.",
    );
    for (i, w) in view.stats.workers().iter().enumerate() {
        let used = w.map_or(0, |s| s.lane_used_bytes);
        let _ = writeln!(out, "ccsd_request_lane_used_bytes{{worker=\"{i}\"}} {used}");
    }
    family(
        &mut out,
        "ccsd_worker_load",
        "gauge",
        "The worker's measured load: packets read plus KiB read, per second, over its last stats interval.",
    );
    for (i, load) in view.stats.worker_loads().iter().enumerate() {
        let _ = writeln!(out, "ccsd_worker_load{{worker=\"{i}\"}} {load}");
    }
    let main = &view.main;
    for (name, help, value) in [
        (
            "ccsd_main_lane_used_bytes",
            "Bytes in the main thread's request lane (UDP, overload notices) not read by MCP yet.",
            main.main_lane_used_bytes,
        ),
        (
            "ccsd_response_lane_used_bytes",
            "Bytes in the response lane not read by ccsd yet.",
            main.response_lane_used_bytes,
        ),
        (
            "ccsd_lane_capacity_bytes",
            "Bytes each lane holds (queues.capacity): a lane's fill is its used bytes over this.",
            main.lane_capacity_bytes,
        ),
        (
            "ccsd_memory_held_bytes",
            "Bytes the connections' buffers and the replies on their way to the workers hold.",
            main.memory_held_bytes,
        ),
        (
            "ccsd_max_memory_bytes",
            "limits.max_memory in bytes; 0: no ceiling.",
            main.max_memory_bytes,
        ),
    ] {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    family(
        &mut out,
        "ccsd_request_latency_seconds",
        "histogram",
        "Request to reply latency: from a request's first byte read to its reply's last byte written.",
    );
    for (i, w) in view.stats.workers().iter().enumerate() {
        let latency = w.map(|s| s.latency).unwrap_or_default();
        let labels = format!("worker=\"{i}\"");
        latency.write_prometheus(&mut out, "ccsd_request_latency_seconds", &labels);
    }
    family(
        &mut out,
        "ccsd_response_lane_wait_seconds",
        "histogram",
        "How long replies waited in the response lane, from MCP's write to ccsd's read.",
    );
    main.response_lane_wait
        .write_prometheus(&mut out, "ccsd_response_lane_wait_seconds", "");
    family(
        &mut out,
        "ccsd_uptime_seconds",
        "gauge",
        "Seconds since ccsd started.",
    );
    let _ = writeln!(out, "ccsd_uptime_seconds {}", view.stats.uptime().as_secs());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::stats_reporter::StatsReporter;
    use crate::settings::StatsSettings;
    use crate::stats::MainCounters;
    use crate::stats::McpWatchCounters;

    #[test]
    fn the_mcp_watch_counters_keep_their_stats_names_and_are_mcp_up_and_mcp_totals_in_metrics() {
        let stats = StatsReporter::new(&StatsSettings::default(), 1, 1);
        let main = MainCounters {
            mcp_watch: McpWatchCounters {
                mcp_alive: 1,
                mcp_down_events: 2,
                mcp_consumer_changes: 3,
                mcp_consumer_contention: 4,
            },
            ..MainCounters::default()
        };
        let view = AdminView {
            stats: &stats,
            main,
            workers: 1,
        };
        let text = stats_text(&view);
        for line in [
            "STAT mcp_watch_mcp_alive 1\r\n",
            "STAT mcp_watch_mcp_down_events 2\r\n",
            "STAT mcp_watch_mcp_consumer_changes 3\r\n",
            "STAT mcp_watch_mcp_consumer_contention 4\r\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from {text}");
        }
        let metrics = metrics_text(&view);
        for lines in [
            "# TYPE ccsd_mcp_up gauge\nccsd_mcp_up 1\n",
            "# TYPE ccsd_mcp_down_events_total counter\nccsd_mcp_down_events_total 2\n",
            "# TYPE ccsd_mcp_consumer_changes_total counter\nccsd_mcp_consumer_changes_total 3\n",
            "# TYPE ccsd_mcp_consumer_contention_total counter\nccsd_mcp_consumer_contention_total 4\n",
        ] {
            assert!(metrics.contains(lines), "{lines:?} missing from {metrics}");
        }
    }
    #[test]
    fn every_metrics_family_has_help_and_type_and_every_counter_ends_in_total() {
        let stats = StatsReporter::new(&StatsSettings::default(), 1, 2);
        let view = AdminView {
            stats: &stats,
            main: MainCounters::default(),
            workers: 2,
        };
        let metrics = metrics_text(&view);
        let mut help = None;
        let mut families = 0;
        for line in metrics.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').expect("HELP has a text");
                assert!(!text.trim().is_empty() && !text.contains("  "), "{line}");
                help = Some(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(
                    help.take().as_deref(),
                    Some(name),
                    "TYPE without HELP: {line}"
                );
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                families += 1;
            }
        }
        assert!(families > 90, "{families} families");
        assert!(metrics.starts_with(&format!(
            "# HELP ccsd_build_info Always 1; the version label names the ccsd build answering.\n\
             # TYPE ccsd_build_info gauge\nccsd_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(metrics.contains("ccsd_packets_in_bytes_total{worker=\"1\"} 0\n"));
    }
}
