//! What a soak counted, what it must have counted to pass, and the text or JSON report.

use serde_json::{Value, json};

use crate::admin::{self, MUST_BE_ZERO, Stats};
use crate::args::Args;
use crate::idle::IdleCheck;
use crate::payload::Verdict;
use crate::servers::Memory;
use crate::takeover::Takeover;

/// Problems described in the report; the rest are only counted.
const MAX_SAMPLES: usize = 5;

/// What the load clients counted (one client's, or all of them merged).
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Requests written in full.
    pub sent: u64,
    /// Exact echoes received.
    pub answered: u64,
    /// Sent in full, unanswered when the client closed the connection in the middle of a packet.
    pub abandoned: u64,
    /// Sent in full on a connection the client did not close, and never answered (a later
    /// request's echo came first, no reply came in time, ccsd closed, or the reply was damaged).
    pub lost: u64,
    /// Replies carrying another connection's request.
    pub misrouted: u64,
    /// Damaged replies, or echoes of requests not in flight.
    pub corrupted: u64,
    /// Connections opened.
    pub connections: u64,
    /// Connections closed by the client in the middle of a request (each followed by a new one
    /// while the run lasts).
    pub mid_packet_closes: u64,
    /// Connections closed when the run ended, every reply in.
    pub closed_at_end: u64,
    /// Connections given up on: closed by ccsd, a socket error, no reply in time, a broken
    /// reply stream.
    pub failed: u64,
    /// Connects that failed.
    pub connect_failures: u64,
    /// The first problems, described.
    pub errors: Vec<String>,
}

impl Counts {
    /// Counts what a reply on connection `conn` turned out to be.
    pub fn judge(&mut self, conn: u64, verdict: Verdict) {
        match verdict {
            Verdict::Echo => self.answered += 1,
            Verdict::EchoAfterLost { lost } => {
                self.answered += 1;
                self.lost += lost;
                self.error(|| format!("connection {conn:#x}: {lost} requests got no reply"));
            }
            Verdict::Misrouted { conn: theirs } => {
                self.misrouted += 1;
                self.error(|| format!("connection {conn:#x} got connection {theirs:#x}'s request"));
            }
            Verdict::Corrupted { retired } => {
                self.corrupted += 1;
                // The request it stood in for got no intact reply.
                self.lost += u64::from(retired);
                self.error(|| format!("connection {conn:#x}: a corrupted reply"));
            }
        }
    }

    /// Requests lost, misrouted or corrupted.
    pub fn bad(&self) -> u64 {
        self.lost + self.misrouted + self.corrupted
    }

    /// Notes a problem; `describe` is only called for the first few.
    pub fn error(&mut self, describe: impl FnOnce() -> String) {
        if self.errors.len() < MAX_SAMPLES {
            self.errors.push(describe());
        }
    }

    /// Adds another client's counts.
    pub fn merge(&mut self, other: Counts) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.abandoned += other.abandoned;
        self.lost += other.lost;
        self.misrouted += other.misrouted;
        self.corrupted += other.corrupted;
        self.connections += other.connections;
        self.mid_packet_closes += other.mid_packet_closes;
        self.closed_at_end += other.closed_at_end;
        self.failed += other.failed;
        self.connect_failures += other.connect_failures;
        let room = MAX_SAMPLES.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
    }

    /// Closes ccsd must have seen from the client side.
    pub fn client_closes(&self) -> u64 {
        self.mid_packet_closes + self.closed_at_end + self.failed
    }
}

/// ccsd's resident memory over the run.
#[derive(Debug, Default, Clone)]
pub struct Rss {
    /// Before the idle connections were opened.
    pub at_start: Memory,
    /// Once the idle connections were open, before the load.
    pub with_idle: Memory,
    /// (seconds since the load started, memory then), in order.
    pub samples: Vec<(f64, Memory)>,
    /// Samples before this many seconds are not judged.
    pub warmup: f64,
}

/// One measure of the samples after the warm-up, summed up.
#[derive(Debug, Clone, Copy)]
pub struct RssSummary {
    /// Samples judged.
    pub samples: usize,
    /// The first of them: what growth is measured against.
    pub baseline: u64,
    /// The smallest.
    pub min: u64,
    /// The largest.
    pub max: u64,
    /// The last.
    pub last: u64,
}

impl RssSummary {
    /// (max - min) over the baseline, in percent.
    pub fn spread_pct(&self) -> f64 {
        pct(self.max - self.min, self.baseline)
    }

    /// How far the largest sample is above the baseline, in percent.
    pub fn growth_pct(&self) -> f64 {
        pct(self.max.saturating_sub(self.baseline), self.baseline)
    }

    fn json(&self) -> Value {
        json!({
            "samples": self.samples,
            "first": self.baseline,
            "min": self.min,
            "max": self.max,
            "last": self.last,
            "spread_pct": self.spread_pct(),
            "growth_pct": self.growth_pct(),
        })
    }

    fn text(&self) -> String {
        format!(
            "first {}, min {}, max {}, last {}; spread {:.1}%, growth {:.1}%",
            mib(self.baseline),
            mib(self.min),
            mib(self.max),
            mib(self.last),
            self.spread_pct(),
            self.growth_pct()
        )
    }
}

/// Samples in order, summed up; `None` when there are none.
pub fn summarize(samples: impl Iterator<Item = u64>) -> Option<RssSummary> {
    let judged: Vec<u64> = samples.collect();
    Some(RssSummary {
        samples: judged.len(),
        baseline: *judged.first()?,
        min: *judged.iter().min()?,
        max: *judged.iter().max()?,
        last: *judged.last()?,
    })
}

/// The longest reply wait, in ms, of the `waits` windows whose end (seconds since the load
/// started) passes `counted`; 0 when none does.
pub fn longest_wait(waits: &[(f64, f64)], counted: impl Fn(f64) -> bool) -> f64 {
    waits
        .iter()
        .filter(|(end, _)| counted(*end))
        .map(|(_, ms)| *ms)
        .fold(0.0, f64::max)
}

fn pct(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

impl Rss {
    /// `measure` (e.g. the whole resident set) of the samples after the warm-up, if any.
    pub fn summary(&self, measure: fn(&Memory) -> u64) -> Option<RssSummary> {
        summarize(
            self.samples
                .iter()
                .filter(|(t, _)| *t >= self.warmup)
                .map(|(_, m)| measure(m)),
        )
    }

    /// The whole resident set (`VmRSS`) after the warm-up: what is judged.
    pub fn total(&self) -> Option<RssSummary> {
        self.summary(|m| m.rss)
    }

    /// The private part (`RssAnon`: heap, stacks) after the warm-up: where a leak would show.
    pub fn private(&self) -> Option<RssSummary> {
        self.summary(|m| m.anon)
    }
}

/// Everything a soak found.
#[derive(Debug)]
pub struct Report {
    /// The options.
    pub args: Args,
    /// The load clients' counts.
    pub load: Counts,
    /// How long the load ran, last replies included.
    pub seconds: f64,
    /// Idle connections opened.
    pub idle_open: usize,
    /// Their round trip before the load.
    pub idle_before: IdleCheck,
    /// Their check after the load.
    pub idle_after: IdleCheck,
    /// The first ccsd process's resident memory.
    pub rss: Rss,
    /// The hot restarts (`--takeover-every`), each with the memory of the process that took over.
    pub takeovers: Vec<Takeover>,
    /// The longest reply wait of each window: (end of the window in seconds since the load
    /// started, ms).
    pub waits: Vec<(f64, f64)>,
    /// How ccsd ended if it ended during the run (it must not).
    pub ccsd_died: Option<String>,
    /// The last ccsd process's counters after the run.
    pub stats: Stats,
    /// How the last ccsd process ended after SIGTERM at the end.
    pub ccsd_exit: String,
}

impl Report {
    /// What went wrong; empty when the soak passed.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        let l = &self.load;
        for (n, what) in [
            (l.lost, "replies lost"),
            (l.misrouted, "replies misrouted"),
            (l.corrupted, "replies corrupted"),
            (
                l.failed,
                "load connections failed (closed by ccsd, error or reply timeout)",
            ),
            (l.connect_failures, "connects failed"),
        ] {
            if n > 0 {
                f.push(format!("{n} {what}"));
            }
        }
        if l.sent != l.answered + l.abandoned + l.lost {
            f.push(format!(
                "requests do not add up: {} sent, {} answered + {} abandoned + {} lost",
                l.sent, l.answered, l.abandoned, l.lost
            ));
        }
        let idle = &self.idle_after;
        if idle.alive != self.idle_open as u64 {
            f.push(format!(
                "{} of {} idle connections answered at the end ({} dead, {} misrouted, {} corrupted)",
                idle.alive, self.idle_open, idle.dead, idle.misrouted, idle.corrupted
            ));
        }
        match self.rss.total() {
            None => f.push("no memory sample after the warm-up".into()),
            Some(s) if s.growth_pct() > self.args.max_rss_growth => f.push(format!(
                "ccsd's resident memory grew {:.1}% after the warm-up (limit {}%)",
                s.growth_pct(),
                self.args.max_rss_growth
            )),
            Some(_) => {}
        }
        self.check_takeovers(&mut f);
        if let Some(how) = &self.ccsd_died {
            f.push(format!("ccsd died during the run: {how}"));
        }
        self.check_stats(&mut f);
        if self.ccsd_exit != "exit status: 0" {
            f.push(format!(
                "ccsd did not stop cleanly on SIGTERM: {}",
                self.ccsd_exit
            ));
        }
        f
    }

    /// The samples of a process that took over are judged after this many seconds of its life:
    /// the warm-up, or half the time between takeovers if that is shorter.
    pub fn settle(&self) -> f64 {
        let every = self
            .args
            .takeover_every
            .map_or(f64::MAX, |e| e.as_secs_f64());
        self.rss.warmup.min(every / 2.0)
    }

    /// Each takeover completed (the old process's admin port answered, it exited 0 after
    /// handing over at least the idle connections, the new one serves on the same address), and
    /// each new process's memory stayed within bounds over its own life.
    fn check_takeovers(&self, f: &mut Vec<String>) {
        let idle = self.idle_open as u64;
        for (n, t) in self.takeovers.iter().enumerate() {
            let n = n + 1;
            for failure in &t.failures {
                f.push(format!("takeover {n}: {failure}"));
            }
            // Every idle connection, plus the load connections open then; no upper bound: a
            // connection its client has closed, whose end ccsd has not read yet, is handed over
            // too (the new process reads the end).
            if let Some(handed) = t.handed
                && handed < idle
            {
                f.push(format!(
                    "takeover {n}: {handed} connections handed over, fewer than the {idle} idle ones"
                ));
            }
            match summarize(t.judged(self.settle()).map(|m| m.rss)) {
                None if t.failures.is_empty() => f.push(format!(
                    "takeover {n}: no memory sample of the new process after {:.0} s",
                    self.settle()
                )),
                Some(s) if s.growth_pct() > self.args.max_rss_growth => f.push(format!(
                    "takeover {n}: the new process's resident memory grew {:.1}% over its life (limit {}%)",
                    s.growth_pct(),
                    self.args.max_rss_growth
                )),
                _ => {}
            }
        }
    }

    /// ccsd's counters against what the clients did.
    fn check_stats(&self, f: &mut Vec<String>) {
        if !self.takeovers.is_empty() {
            return self.check_stats_across_takeovers(f);
        }
        let s = |name| admin::get(&self.stats, name);
        for name in MUST_BE_ZERO {
            if s(name) != 0 {
                f.push(format!("ccsd counted {name} = {}", s(name)));
            }
        }
        let l = &self.load;
        let idle = self.idle_open as u64;
        let opened = idle + l.connections;
        if s("connections_opened") != opened {
            f.push(format!(
                "ccsd opened {} connections, the clients {opened}",
                s("connections_opened")
            ));
        }
        if s("connections_open") != idle {
            f.push(format!(
                "ccsd holds {} connections after the load, the clients {idle}",
                s("connections_open")
            ));
        }
        let closes = s("closed_peer") + s("closed_error");
        if closes != l.client_closes() {
            f.push(format!(
                "ccsd saw {closes} client closes (closed_peer + closed_error), the clients made {}",
                l.client_closes()
            ));
        }
        // The echo MCP answers every packet; ccsd writes each answer to its connection or, the
        // connection being closed, drops it as stale.
        let settled = s("replies_out") + s("dropped_stale_flow");
        if settled != s("packets_in") {
            f.push(format!(
                "ccsd read {} packets but wrote {} replies and dropped {} for closed connections",
                s("packets_in"),
                s("replies_out"),
                s("dropped_stale_flow")
            ));
        }
        // Two round trips per idle connection; no packet out of a request cut short.
        let (most, least) = (l.sent + 2 * idle, l.answered + 2 * idle);
        if !(least..=most).contains(&s("packets_in")) {
            f.push(format!(
                "ccsd read {} packets; the clients sent {most} in full and got {least} answers",
                s("packets_in")
            ));
        }
    }

    /// Every process's counters (the old ones' read just before their takeover, the last one's
    /// at the end), summed, for [`Report::check_stats_across_takeovers`] and the report.
    pub fn summed_stats(&self) -> Stats {
        let mut sum = self.stats.clone();
        for t in &self.takeovers {
            for (name, value) in &t.old_stats {
                *sum.entry(name.clone()).or_default() += value;
            }
        }
        sum
    }

    /// The counters with hot restarts. A new process's counters start at zero
    /// (docs/hot-restart.md), and an old process's can only be read before its takeover (its
    /// main thread serves nothing during the handover, then it exits), so what it counted from
    /// that reading to its freeze is in no reading. What stays exact:
    /// - every process's drop and close-by-ccsd counters ([`MUST_BE_ZERO`]) are zero in its
    ///   reading (for an old one, up to the reading; a close by ccsd after it shows at the
    ///   clients, whose checks are exact);
    /// - the last process holds exactly the idle connections, adopted ones included;
    /// - the last process answered (or dropped as stale) every packet it read, and more (it
    ///   writes replies to packets an old process read);
    /// - summed over the readings, which each count no more than their process did, ccsd opened
    ///   no more connections, saw no more closes and read no more packets than the clients
    ///   made, opened and sent. The clients' own totals minus these sums (what happened between
    ///   a reading and its freeze) are reported, not judged.
    fn check_stats_across_takeovers(&self, f: &mut Vec<String>) {
        let last = |name| admin::get(&self.stats, name);
        for (who, stats) in self
            .takeovers
            .iter()
            .enumerate()
            .map(|(n, t)| {
                (
                    format!("process {} (before takeover {})", t.old_pid, n + 1),
                    &t.old_stats,
                )
            })
            .chain(std::iter::once((
                "the last process".to_string(),
                &self.stats,
            )))
        {
            for name in MUST_BE_ZERO {
                let value = admin::get(stats, name);
                if value != 0 {
                    f.push(format!("{who} counted {name} = {value}"));
                }
            }
        }
        let idle = self.idle_open as u64;
        if last("connections_open") != idle {
            f.push(format!(
                "the last ccsd holds {} connections after the load, the clients {idle}",
                last("connections_open")
            ));
        }
        if last("replies_out") + last("dropped_stale_flow") < last("packets_in") {
            f.push(format!(
                "the last ccsd read {} packets but wrote {} replies and dropped {} for closed connections",
                last("packets_in"),
                last("replies_out"),
                last("dropped_stale_flow")
            ));
        }
        let sum = self.summed_stats();
        let sum = |name| admin::get(&sum, name);
        let l = &self.load;
        for (counted, made, what) in [
            (
                sum("connections_opened"),
                idle + l.connections,
                "connections opened",
            ),
            (
                sum("closed_peer") + sum("closed_error"),
                l.client_closes(),
                "client closes",
            ),
            (sum("packets_in"), l.sent + 2 * idle, "packets"),
        ] {
            if counted > made {
                f.push(format!(
                    "ccsd's processes counted {counted} {what}, more than the clients' {made}"
                ));
            }
        }
    }

    /// The takeovers' lines of the text report: one per takeover, and each process's memory.
    fn takeovers_text(&self) -> String {
        let Some(every) = self.args.takeover_every else {
            return String::new();
        };
        let mut out = format!(
            "takeovers    {} (one every {:.0} s); longest reply wait outside them {:.1} ms\n",
            self.takeovers.len(),
            every.as_secs_f64(),
            longest_wait(&self.waits, |end| !self
                .takeovers
                .iter()
                .any(|t| t.covers(end)))
        );
        let ms = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.1} ms"));
        let first = self.rss.total();
        let first_private = self.rss.private();
        for (n, t) in self.takeovers.iter().enumerate() {
            out += &format!(
                "  #{} at {:.1} s: process {} -> {}: {} connections handed over in {} (old log), new ready after {}, old exit {}, longest reply wait {:.1} ms\n",
                n + 1,
                t.at,
                t.old_pid,
                t.new_pid,
                t.handed.map_or("?".into(), |h| h.to_string()),
                ms(t.handed_ms),
                ms(t.ready_ms),
                t.old_exit,
                t.max_wait_ms
            );
            let settle = self.settle();
            if let (Some(total), Some(private)) = (
                summarize(t.judged(settle).map(|m| m.rss)),
                summarize(t.judged(settle).map(|m| m.anon)),
            ) {
                let ratio = |new: &RssSummary, old: Option<RssSummary>| {
                    old.map_or("?".into(), |o| {
                        format!("{:.2}", new.max as f64 / o.max.max(1) as f64)
                    })
                };
                out += &format!(
                    "     new process RSS after {settle:.0} s of its life ({} samples): {}\n       private: {}\n       max against the first process's max after its warm-up: {} (RSS), {} (private)\n",
                    total.samples,
                    total.text(),
                    private.text(),
                    ratio(&total, first),
                    ratio(&private, first_private)
                );
            }
        }
        out
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let a = &self.args;
        let l = &self.load;
        let mut out = format!(
            "soak: {:.0} s, {} load connections (pipeline {}, bodies {}-{} B), {} idle, close probability {}\n",
            a.duration.as_secs_f64(),
            a.load_conns,
            a.pipeline,
            crate::payload::MIN_BODY,
            a.max_payload,
            self.idle_open,
            a.close_probability
        );
        out += &format!(
            "requests     {} sent in full, {} answered exactly ({:.0}/s over {:.1} s), {} abandoned by the client's closes\n",
            l.sent,
            l.answered,
            self.throughput(),
            self.seconds,
            l.abandoned
        );
        out += &format!(
            "             lost {}, misrouted {}, corrupted {}\n",
            l.lost, l.misrouted, l.corrupted
        );
        out += &format!(
            "connections  {} opened by the load clients: {} closed mid-packet (then reconnected), {} at the end, {} failed, {} connects failed\n",
            l.connections, l.mid_packet_closes, l.closed_at_end, l.failed, l.connect_failures
        );
        let i = &self.idle_after;
        out += &format!(
            "idle         {} of {} answered after the load ({} dead, {} misrouted, {} corrupted)\n",
            i.alive, self.idle_open, i.dead, i.misrouted, i.corrupted
        );
        let (start, idle) = (&self.rss.at_start, &self.rss.with_idle);
        out += &format!(
            "ccsd RSS     {} at start, {} with the idle connections ({} private, {} shared memory)\n",
            mib(start.rss),
            mib(idle.rss),
            mib(idle.anon),
            mib(idle.shmem)
        );
        if let (Some(total), Some(private)) = (self.rss.total(), self.rss.private()) {
            out += &format!(
                "             after the {:.0} s warm-up ({} samples): {}\n",
                self.rss.warmup,
                total.samples,
                total.text()
            );
            out += &format!("             private part: {}\n", private.text());
        }
        out += &self.takeovers_text();
        let s = |name| admin::get(&self.stats, name);
        out += &format!(
            "ccsd         connections_opened {}, closed_peer {}, closed_error {}, packets_in {}, replies_out {}, dropped_stale_flow {}\n",
            s("connections_opened"),
            s("closed_peer"),
            s("closed_error"),
            s("packets_in"),
            s("replies_out"),
            s("dropped_stale_flow")
        );
        if !self.takeovers.is_empty() {
            out += "             (the last process's counters, since it took over)\n";
            let sum = self.summed_stats();
            let sum = |name| admin::get(&sum, name);
            let l = &self.load;
            let idle = self.idle_open as u64;
            out += &format!(
                "summed       over the processes' readings (old ones just before their takeover): connections_opened {} (clients {}), closes {} (clients {}), packets_in {} (clients sent {} in full)\n",
                sum("connections_opened"),
                idle + l.connections,
                sum("closed_peer") + sum("closed_error"),
                l.client_closes(),
                sum("packets_in"),
                l.sent + 2 * idle
            );
        }
        out += &format!("             after SIGTERM: {}\n", self.ccsd_exit);
        let problems = l
            .errors
            .iter()
            .chain(&self.idle_before.errors)
            .chain(&self.idle_after.errors);
        for (n, e) in problems.enumerate() {
            out += &format!("{}{e}\n", if n == 0 { "first problems:\n  " } else { "  " });
        }
        let failures = self.failures();
        if failures.is_empty() {
            out += "PASS\n";
        } else {
            out += &format!("FAIL: {}\n", failures.join("; "));
        }
        out
    }

    /// The report as one JSON object.
    pub fn json(&self) -> Value {
        let a = &self.args;
        let l = &self.load;
        let i = &self.idle_after;
        let failures = self.failures();
        json!({
            "duration_s": a.duration.as_secs_f64(),
            "seconds": self.seconds,
            "load_conns": a.load_conns,
            "idle_conns": self.idle_open,
            "pipeline": a.pipeline,
            "max_payload": a.max_payload,
            "close_probability": a.close_probability,
            "sent": l.sent,
            "answered": l.answered,
            "abandoned": l.abandoned,
            "lost": l.lost,
            "misrouted": l.misrouted,
            "corrupted": l.corrupted,
            "throughput": self.throughput(),
            "connections": l.connections,
            "mid_packet_closes": l.mid_packet_closes,
            "closed_at_end": l.closed_at_end,
            "failed": l.failed,
            "connect_failures": l.connect_failures,
            "idle_alive": i.alive,
            "idle_dead": i.dead,
            "idle_misrouted": i.misrouted,
            "idle_corrupted": i.corrupted,
            "rss_at_start": self.rss.at_start.rss,
            "rss_with_idle": self.rss.with_idle.rss,
            "rss_warmup_s": self.rss.warmup,
            "rss_after_warmup": self.rss.total().map(|r| r.json()),
            "private_after_warmup": self.rss.private().map(|r| r.json()),
            "rss_samples": self.rss.samples.iter().map(|(t, m)| [*t, m.rss as f64, m.anon as f64, m.shmem as f64]).collect::<Vec<_>>(),
            "takeover_every_s": self.args.takeover_every.map(|e| e.as_secs_f64()),
            "takeovers": self.takeovers.iter().map(Takeover::json).collect::<Vec<_>>(),
            "max_wait_outside_takeovers_ms": longest_wait(&self.waits, |end| !self.takeovers.iter().any(|t| t.covers(end))),
            "summed_stats": self.summed_stats(),
            "ccsd_died": self.ccsd_died,
            "ccsd_exit": self.ccsd_exit,
            "ccsd_stats": self.stats,
            "errors": l.errors.iter().chain(&self.idle_before.errors).chain(&i.errors).collect::<Vec<_>>(),
            "failures": failures,
            "pass": failures.is_empty(),
        })
    }

    /// Exact echoes per second.
    pub fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.load.answered as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Bytes as MiB with one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}
