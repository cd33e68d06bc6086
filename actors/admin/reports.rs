//! The admin's reports: `stats` (memcached-style `STAT` lines), `workers` (a line per worker)
//! and `/metrics` (Prometheus text exposition), all rendered from one [`AdminView`].

use std::fmt::Write as _;

use super::AdminView;

/// The main thread's counters with the group prefix `stats` and `/metrics` give them, in order.
fn each_main_counter(view: &AdminView<'_>, mut f: impl FnMut(&str, &'static str, u64)) {
    let main = view.main;
    main.acceptor.for_each(|k, v| f("acceptor", k, v));
    main.udp.for_each(|k, v| f("udp", k, v));
    main.bridge.for_each(|k, v| f("bridge", k, v));
    main.mcp_watch.for_each(|k, v| f("mcp_watch", k, v));
    main.control.for_each(|k, v| f("control", k, v));
    main.process.for_each(|k, v| f("process", k, v));
    main.admin.for_each(|k, v| f("admin", k, v));
    main.main_lane.for_each(|k, v| f("main", k, v));
}

/// Every counter as `STAT name value` lines, then `END`, like memcached's `stats`.
pub(super) fn stats_text(view: &AdminView<'_>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "STAT uptime_ms {}\r\nSTAT epoch {}\r\nSTAT response_lane_used_bytes {}\r\nSTAT main_lane_used_bytes {}\r\nSTAT memory_held_bytes {}\r\nSTAT max_memory_bytes {}\r\n",
        view.stats.uptime().as_millis(),
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
                    "worker {i} connections {} packets_in {} bytes_in {} replies_out {} bytes_out {} mailbox_depth {} lane_used_bytes {}\r\n",
                    c.connections_open,
                    c.packets_in,
                    c.bytes_in,
                    c.replies_out,
                    c.bytes_out,
                    s.mailbox_depth,
                    s.lane_used_bytes
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
/// Gauges among the main thread's counters, by `group_name`.
const MAIN_GAUGES: [&str; 2] = ["bridge_held_bytes", "mcp_watch_mcp_alive"];

/// Prometheus text exposition: worker counters per `worker` label, then the acceptor's and the
/// bridge's, then per-worker mailbox depth and request-lane fill.
pub(super) fn metrics_text(view: &AdminView<'_>) -> String {
    let mut out = String::new();
    let mut names = Vec::new();
    view.stats.totals().for_each(|k, _| names.push(k));
    for name in names {
        let kind = if GAUGES.contains(&name) {
            "gauge"
        } else {
            "counter"
        };
        let _ = writeln!(out, "# TYPE ccsd_{name} {kind}");
        for (i, w) in view.stats.workers().iter().enumerate() {
            let mut value = 0;
            if let Some(s) = w {
                s.counters.for_each(|k, v| {
                    if k == name {
                        value = v;
                    }
                });
            }
            let _ = writeln!(out, "ccsd_{name}{{worker=\"{i}\"}} {value}");
        }
    }
    each_main_counter(view, |group, k, v| {
        let kind = if MAIN_GAUGES.contains(&format!("{group}_{k}").as_str()) {
            "gauge"
        } else {
            "counter"
        };
        let _ = writeln!(out, "# TYPE ccsd_{group}_{k} {kind}\nccsd_{group}_{k} {v}");
    });
    let _ = writeln!(out, "# TYPE ccsd_mailbox_depth gauge");
    for (i, w) in view.stats.workers().iter().enumerate() {
        let depth = w.map_or(0, |s| s.mailbox_depth);
        let _ = writeln!(out, "ccsd_mailbox_depth{{worker=\"{i}\"}} {depth}");
    }
    let _ = writeln!(out, "# TYPE ccsd_request_lane_used_bytes gauge");
    for (i, w) in view.stats.workers().iter().enumerate() {
        let used = w.map_or(0, |s| s.lane_used_bytes);
        let _ = writeln!(out, "ccsd_request_lane_used_bytes{{worker=\"{i}\"}} {used}");
    }
    let _ = writeln!(
        out,
        "# TYPE ccsd_main_lane_used_bytes gauge\nccsd_main_lane_used_bytes {}",
        view.main.main_lane_used_bytes
    );
    let _ = writeln!(
        out,
        "# TYPE ccsd_response_lane_used_bytes gauge\nccsd_response_lane_used_bytes {}",
        view.main.response_lane_used_bytes
    );
    let _ = writeln!(
        out,
        "# TYPE ccsd_memory_held_bytes gauge\nccsd_memory_held_bytes {}\n\
         # TYPE ccsd_max_memory_bytes gauge\nccsd_max_memory_bytes {}",
        view.main.memory_held_bytes, view.main.max_memory_bytes
    );
    let _ = writeln!(out, "# TYPE ccsd_request_latency_seconds histogram");
    for (i, w) in view.stats.workers().iter().enumerate() {
        let latency = w.map(|s| s.latency).unwrap_or_default();
        let labels = format!("worker=\"{i}\"");
        latency.write_prometheus(&mut out, "ccsd_request_latency_seconds", &labels);
    }
    let _ = writeln!(out, "# TYPE ccsd_response_lane_wait_seconds histogram");
    view.main
        .response_lane_wait
        .write_prometheus(&mut out, "ccsd_response_lane_wait_seconds", "");
    let _ = writeln!(
        out,
        "# TYPE ccsd_uptime_seconds gauge\nccsd_uptime_seconds {}",
        view.stats.uptime().as_secs()
    );
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
    fn the_mcp_watch_counters_are_in_stats_and_metrics_with_mcp_alive_a_gauge() {
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
            "# TYPE ccsd_mcp_watch_mcp_alive gauge\nccsd_mcp_watch_mcp_alive 1\n",
            "# TYPE ccsd_mcp_watch_mcp_down_events counter\nccsd_mcp_watch_mcp_down_events 2\n",
            "# TYPE ccsd_mcp_watch_mcp_consumer_changes counter\nccsd_mcp_watch_mcp_consumer_changes 3\n",
            "# TYPE ccsd_mcp_watch_mcp_consumer_contention counter\nccsd_mcp_watch_mcp_consumer_contention 4\n",
        ] {
            assert!(metrics.contains(lines), "{lines:?} missing from {metrics}");
        }
    }
}
