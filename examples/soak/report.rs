//! What a soak counted, what it must have counted to pass, and the text or JSON report.

use serde_json::{Value, json};

use crate::admin::{self, MUST_BE_ZERO, Stats};
use crate::args::Args;
use crate::idle::IdleCheck;
use crate::payload::Verdict;
use crate::servers::Memory;

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

fn pct(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

impl Rss {
    /// `measure` (e.g. the whole resident set) of the samples after the warm-up, if any.
    pub fn summary(&self, measure: fn(&Memory) -> u64) -> Option<RssSummary> {
        let judged: Vec<u64> = self
            .samples
            .iter()
            .filter(|(t, _)| *t >= self.warmup)
            .map(|(_, m)| measure(m))
            .collect();
        Some(RssSummary {
            samples: judged.len(),
            baseline: *judged.first()?,
            min: *judged.iter().min()?,
            max: *judged.iter().max()?,
            last: *judged.last()?,
        })
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
    /// ccsd's resident memory.
    pub rss: Rss,
    /// How ccsd ended if it ended during the run (it must not).
    pub ccsd_died: Option<String>,
    /// ccsd's counters after the run.
    pub stats: Stats,
    /// How ccsd ended after SIGTERM at the end.
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

    /// ccsd's counters against what the clients did.
    fn check_stats(&self, f: &mut Vec<String>) {
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
