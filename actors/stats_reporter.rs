//! Stats reporter: gathers `NotifyStat` from workers with the main thread's own counters and
//! writes them, at every stats interval, to the JSON status file (replaced atomically). It also
//! measures each worker's load from the counters of its reports ([`LoadMeter`]).

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{Level, log};

use crate::load::{HeavyFlows, LoadMeter};
use crate::logging::{LogLimiter, log_limited};
use crate::message::NotifyStat;
use crate::settings::StatsSettings;
use crate::stats::histogram::Histogram;
use crate::stats::{MainCounters, WorkerCounters};

/// Collects counters and writes the status file.
#[derive(Debug)]
pub(crate) struct StatsReporter {
    file: Option<PathBuf>,
    interval: Duration,
    next_report: Instant,
    /// `stats.log_interval`: how often the summary line is logged at info level (zero: never).
    log_interval: Duration,
    next_log: Instant,
    started: Instant,
    epoch: u16,
    workers: Vec<Option<NotifyStat>>,
    /// When each worker's latest counters arrived (`started` until its first report).
    reported_at: Vec<Instant>,
    /// Each worker's load, from its reports' `packets_in` and `bytes_in`.
    load: LoadMeter,
    write_log: LogLimiter,
}

impl StatsReporter {
    /// A reporter for `workers` workers, writing `settings.file` (if any) every
    /// `settings.interval` and logging a summary every `settings.log_interval`.
    pub(crate) fn new(settings: &StatsSettings, epoch: u16, workers: usize) -> StatsReporter {
        let now = Instant::now();
        StatsReporter {
            file: settings.file.clone(),
            interval: settings.interval,
            next_report: now + settings.interval,
            log_interval: settings.log_interval,
            next_log: now + settings.log_interval,
            started: now,
            epoch,
            workers: vec![None; workers],
            reported_at: vec![now; workers],
            load: LoadMeter::new(workers, settings.interval),
            write_log: LogLimiter::default(),
        }
    }

    /// Applies a new `stats.interval` (a reload); the next report is due within it.
    pub(crate) fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
        self.load.set_interval(interval);
        self.next_report = self.next_report.min(Instant::now() + interval);
    }

    /// Keeps a worker's latest counters and measures its load from them.
    pub(crate) fn on_notify_stat(&mut self, stat: NotifyStat) {
        if let Some(slot) = self.workers.get_mut(stat.worker) {
            let now = Instant::now();
            self.reported_at[stat.worker] = now;
            let c = &stat.counters;
            self.load
                .observe(stat.worker, now, c.packets_in, c.bytes_in);
            *slot = Some(stat);
        }
    }

    /// Each worker's load in load units per second (packets plus KiB read), by worker.
    pub(crate) fn worker_loads(&self) -> &[u64] {
        self.load.loads()
    }

    /// The latest counters of each worker (`None` until its first `NotifyStat`).
    pub(crate) fn workers(&self) -> &[Option<NotifyStat>] {
        &self.workers
    }

    /// The sum of every worker's latest counters.
    pub(crate) fn totals(&self) -> WorkerCounters {
        let mut totals = WorkerCounters::default();
        for w in self.workers.iter().flatten() {
            totals.add(&w.counters);
        }
        totals
    }

    /// The request→reply latency of every worker's latest report, merged.
    pub(crate) fn latency_totals(&self) -> Histogram {
        let mut totals = Histogram::default();
        for w in self.workers.iter().flatten() {
            totals.merge(&w.latency);
        }
        totals
    }

    /// Time since ccsd started.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// How old the workers' counters are: the time since the oldest of their latest reports (a
    /// worker that has not reported yet counts from the start). Workers report every
    /// `stats.interval`, so this is normally below it; more means a worker is late.
    pub(crate) fn snapshot_age(&self) -> Duration {
        let now = Instant::now();
        self.reported_at
            .iter()
            .map(|&at| now.saturating_duration_since(at))
            .max()
            .unwrap_or_default()
    }

    /// This start's epoch.
    pub(crate) fn epoch(&self) -> u16 {
        self.epoch
    }

    /// Time left until the next report is due.
    pub(crate) fn time_to_next(&self) -> Duration {
        self.next_report.saturating_duration_since(Instant::now())
    }

    /// Writes a report if one is due; true when it did.
    pub(crate) fn tick(&mut self, main: &MainCounters) -> bool {
        let due = Instant::now() >= self.next_report;
        if due {
            self.report(main, false);
        }
        due
    }

    /// Writes a report now (the last one, at a stop), with its summary at info level.
    pub(crate) fn report_now(&mut self, main: &MainCounters) {
        self.report(main, true);
    }

    /// Writes the status file and logs the summary line: at info level when `last` or when
    /// `stats.log_interval` has passed since the last info summary, at debug level otherwise.
    fn report(&mut self, main: &MainCounters, last: bool) {
        let now = Instant::now();
        self.next_report = now + self.interval;
        let json = self.render(main, now);
        let totals = self.totals();
        let latency = self.latency_totals();
        let log_due = !self.log_interval.is_zero() && now >= self.next_log;
        if log_due {
            self.next_log = now + self.log_interval;
        }
        let level = if last || log_due {
            Level::Info
        } else {
            Level::Debug
        };
        log!(
            level,
            "stats: {} open, {} packets in, {} replies out, {} stale, {} queue-full drops, latency p50 {} us p99 {} us",
            totals.connections_open,
            totals.packets_in,
            totals.replies_out,
            totals.dropped_stale_flow + main.bridge.dropped_stale_epoch,
            totals.dropped_queue_full,
            latency.percentile_ns(0.5).unwrap_or(0) / 1_000,
            latency.percentile_ns(0.99).unwrap_or(0) / 1_000
        );
        if let Some(path) = &self.file {
            if let Err(e) = write_atomically(path, &json) {
                log_limited!(
                    self.write_log,
                    Level::Warn,
                    "cannot write stats file {}: {e}",
                    path.display()
                );
            }
        }
    }

    /// The status document: totals, then the acceptor, the UDP actor, the bridge, the MCP watch,
    /// control requests, the process's signal handling, the admin, the main thread's lane, the latency
    /// histograms and each worker (with its own latency histogram).
    fn render(&self, main: &MainCounters, now: Instant) -> String {
        let totals = self.totals();
        let mut out = String::with_capacity(4096);
        let _ = write!(
            out,
            "{{\"uptime_ms\":{},\"epoch\":{},\"response_lane_used_bytes\":{},\"main_lane_used_bytes\":{},\"memory_held_bytes\":{},\"max_memory_bytes\":{},\"totals\":",
            now.duration_since(self.started).as_millis(),
            self.epoch,
            main.response_lane_used_bytes,
            main.main_lane_used_bytes,
            main.memory_held_bytes,
            main.max_memory_bytes
        );
        json_object(&mut out, |f| totals.for_each(f));
        out.push_str(",\"acceptor\":");
        json_object(&mut out, |f| main.acceptor.for_each(f));
        out.push_str(",\"udp\":");
        json_object(&mut out, |f| main.udp.for_each(f));
        out.push_str(",\"bridge\":");
        json_object(&mut out, |f| main.bridge.for_each(f));
        out.push_str(",\"mcp_watch\":");
        json_object(&mut out, |f| main.mcp_watch.for_each(f));
        out.push_str(",\"control\":");
        json_object(&mut out, |f| main.control.for_each(f));
        out.push_str(",\"process\":");
        json_object(&mut out, |f| main.process.for_each(f));
        out.push_str(",\"admin\":");
        json_object(&mut out, |f| main.admin.for_each(f));
        out.push_str(",\"main_lane\":");
        json_object(&mut out, |f| main.main_lane.for_each(f));
        out.push_str(",\"request_latency\":");
        self.latency_totals().write_json(&mut out);
        out.push_str(",\"response_lane_wait\":");
        main.response_lane_wait.write_json(&mut out);
        out.push_str(",\"workers\":[");
        for (i, w) in self.workers.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let stat = w.unwrap_or(NotifyStat {
                worker: i,
                counters: WorkerCounters::default(),
                latency: Histogram::default(),
                mailbox_depth: 0,
                lane_used_bytes: 0,
                heavy: HeavyFlows::default(),
            });
            json_object(&mut out, |f| {
                f("worker", i as u64);
                f("mailbox_depth", stat.mailbox_depth as u64);
                f("lane_used_bytes", stat.lane_used_bytes);
                f("load", self.load.load(i));
                stat.counters.for_each(f);
            });
            // Reopen the worker's object for its histogram.
            out.pop();
            out.push_str(",\"request_latency\":");
            stat.latency.write_json(&mut out);
            out.push('}');
        }
        out.push_str("]}\n");
        out
    }
}

/// Appends `{"name":value,...}` with the pairs `fill` produces.
fn json_object(out: &mut String, fill: impl FnOnce(&mut dyn FnMut(&'static str, u64))) {
    out.push('{');
    let mut first = true;
    fill(&mut |name, value| {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "\"{name}\":{value}");
    });
    out.push('}');
}

/// Replaces `path` with `contents` so that readers see the old file or the new one, never a mix.
fn write_atomically(path: &std::path::Path, contents: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, path)
}
