//! What a run counted, merged over threads, and the text or JSON report made of it.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::args::Args;
use crate::protocol::Reply;

/// Errors described in the report; the rest are only counted.
const MAX_SAMPLES: usize = 5;
/// Highest latency the histogram tells apart (one hour, in nanoseconds); longer ones count as it.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// Counters and the latency histogram of one thread, or of the whole run once merged.
#[derive(Debug)]
pub struct Totals {
    /// Latencies of measured requests, in nanoseconds.
    latency: Histogram<u64>,
    /// Measured requests answered correctly.
    pub requests: u64,
    /// Measured GETs that found their value.
    pub get_hits: u64,
    /// Measured GETs that found nothing.
    pub get_misses: u64,
    /// Measured SETs stored.
    pub sets: u64,
    /// Measured echoes returned byte-exact.
    pub echoes: u64,
    /// Failed connections and wrong replies, warm-up and preload included.
    pub errors: u64,
    /// Descriptions of the first errors.
    pub samples: Vec<String>,
}

impl Totals {
    /// Nothing counted yet.
    pub fn new() -> Totals {
        Totals {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid"),
            requests: 0,
            get_hits: 0,
            get_misses: 0,
            sets: 0,
            echoes: 0,
            errors: 0,
            samples: Vec::new(),
        }
    }

    /// Counts a correct reply to a measured request that took `latency`.
    pub fn record(&mut self, reply: Reply, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.latency.saturating_record(ns);
        self.requests += 1;
        match reply {
            Reply::Hit => self.get_hits += 1,
            Reply::Miss => self.get_misses += 1,
            Reply::Stored => self.sets += 1,
            Reply::Echoed => self.echoes += 1,
        }
    }

    /// Counts an error; `describe` is only called for the first few.
    pub fn error(&mut self, describe: impl FnOnce() -> String) {
        self.errors += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(describe());
        }
    }

    /// Adds another thread's totals.
    pub fn merge(&mut self, other: Totals) {
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds add");
        self.requests += other.requests;
        self.get_hits += other.get_hits;
        self.get_misses += other.get_misses;
        self.sets += other.sets;
        self.echoes += other.echoes;
        self.errors += other.errors;
        let room = MAX_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }

    /// The latency percentiles, in microseconds.
    fn percentiles(&self) -> [(&'static str, f64); 6] {
        let h = &self.latency;
        let us = |ns: u64| {
            if h.is_empty() {
                0.0
            } else {
                (ns as f64 / 100.0).round() / 10.0
            }
        };
        [
            ("min", us(h.min())),
            ("p50", us(h.value_at_quantile(0.50))),
            ("p90", us(h.value_at_quantile(0.90))),
            ("p99", us(h.value_at_quantile(0.99))),
            ("p999", us(h.value_at_quantile(0.999))),
            ("max", us(h.max())),
        ]
    }
}

/// The human-readable report.
pub fn text(args: &Args, totals: &Totals, seconds: f64) -> String {
    let loop_kind = match args.rate {
        Some(rate) => format!("open loop at {rate} req/s"),
        None => "closed loop".to_string(),
    };
    let mut out = format!(
        "loadgen: {} to {}, {} connections, pipeline {}, {} thread(s), {loop_kind}\n",
        args.protocol.name(),
        args.addr,
        args.connections,
        args.pipeline,
        args.threads,
    );
    out += &format!(
        "requests    {} in {seconds:.3} s: {:.0} req/s\n",
        totals.requests,
        throughput(totals, seconds)
    );
    out += &format!(
        "            echoes {}, get hits {}, get misses {}, sets {}\n",
        totals.echoes, totals.get_hits, totals.get_misses, totals.sets
    );
    out += &format!("errors      {}\n", totals.errors);
    out += "latency us ";
    for (name, us) in totals.percentiles() {
        let name = if name == "p999" { "p99.9" } else { name };
        out += &format!(" {name} {us:.1}");
    }
    out.push('\n');
    if !totals.samples.is_empty() {
        out += "first errors:\n";
        for s in &totals.samples {
            out += &format!("  {s}\n");
        }
    }
    out
}

/// The report as one JSON object.
pub fn json(args: &Args, totals: &Totals, seconds: f64) -> String {
    let latency: serde_json::Map<String, serde_json::Value> = totals
        .percentiles()
        .into_iter()
        .map(|(name, us)| (name.to_string(), us.into()))
        .collect();
    serde_json::json!({
        "protocol": args.protocol.name(),
        "connections": args.connections,
        "pipeline": args.pipeline,
        "requests": totals.requests,
        "errors": totals.errors,
        "get_hits": totals.get_hits,
        "get_misses": totals.get_misses,
        "sets": totals.sets,
        "seconds": seconds,
        "throughput": throughput(totals, seconds),
        "latency_us": latency,
        "first_errors": totals.samples,
    })
    .to_string()
}

fn throughput(totals: &Totals, seconds: f64) -> f64 {
    if seconds > 0.0 {
        totals.requests as f64 / seconds
    } else {
        0.0
    }
}
