//! A fixed-bucket latency histogram for the statistics: counts per bucket, their sum, min and max.
//!
//! The bucket bounds are the 1–2.5–5 series Prometheus uses, from 10 µs to 10 s (19 bounds, and
//! one bucket above 10 s): coarse, but enough to tell 50 µs from 500 µs from 5 ms, and the same
//! bounds in every ccsd, so histograms of several workers (or processes) add up. A [`Histogram`]
//! is a plain `Copy` value of 24 counters: recording a value is a comparison over 19 bounds and
//! four additions, it never allocates, and it travels inside `NotifyStat` to the main thread,
//! where histograms are merged by addition.
//!
//! Percentiles are estimated from the buckets by linear interpolation inside the bucket that holds
//! the rank, narrowed by the smallest and largest value seen; an estimate is therefore exact when
//! a bucket holds one distinct value and otherwise off by at most the bucket's width.
//!
//! Public for reading (a custom actor gets the workers' histograms in
//! [`crate::actor::StatsSnapshot`]); only ccsd records into one.

use std::fmt::Write as _;

/// Upper bounds (inclusive) of the finite buckets, in nanoseconds.
pub const BUCKET_BOUNDS_NS: [u64; 19] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Buckets: one per bound, and the last for values above 10 s.
pub const BUCKETS: usize = BUCKET_BOUNDS_NS.len() + 1;

/// The percentiles ccsd reports, with the suffix of their names (`p50`, ... `p999`).
pub(crate) const REPORTED_PERCENTILES: [(f64, &str); 4] =
    [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p999")];

/// Counts of latencies by bucket, with their sum, min and max.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; BUCKETS],
    count: u64,
    sum_ns: u64,
    /// `u64::MAX` while empty.
    min_ns: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
            count: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }
}

impl Histogram {
    /// Records one latency of `ns` nanoseconds.
    pub(crate) fn record_ns(&mut self, ns: u64) {
        let bucket = BUCKET_BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.counts[bucket] += 1;
        self.count += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds every value recorded in `other` to this histogram.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their sum, in nanoseconds.
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns
    }

    /// The smallest value recorded; 0 while empty.
    pub fn min_ns(&self) -> u64 {
        if self.count == 0 { 0 } else { self.min_ns }
    }

    /// The largest value recorded; 0 while empty.
    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// Values per bucket (not cumulative): bucket `i < 19` holds the values in
    /// `(BUCKET_BOUNDS_NS[i - 1], BUCKET_BOUNDS_NS[i]]`, the last one those above 10 s.
    pub fn bucket_counts(&self) -> &[u64; BUCKETS] {
        &self.counts
    }

    /// An estimate of the `q` quantile (`0.99` for p99) in nanoseconds; `None` while empty.
    pub fn percentile_ns(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        // The rank of the wanted value among the sorted values, 1-based.
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut below = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            if below + n < rank {
                below += n;
                continue;
            }
            let lower = if i == 0 { 0 } else { BUCKET_BOUNDS_NS[i - 1] };
            let upper = BUCKET_BOUNDS_NS.get(i).copied().unwrap_or(u64::MAX);
            // Every value in this bucket lies within [min, max] too.
            let lower = lower.max(self.min_ns);
            let upper = upper.min(self.max_ns);
            let width = u128::from(upper.saturating_sub(lower));
            let offset = width * u128::from(rank - below) / u128::from(n);
            return Some(lower + offset as u64);
        }
        Some(self.max_ns)
    }

    /// Appends the histogram as a JSON object: `count`, `sum_us`, `min_us`, `max_us`, the
    /// reported percentiles (`p50_us` ...; every figure 0 while `count` is 0), and `buckets`:
    /// the count of each bucket (not cumulative) keyed by its upper bound in µs, `"+Inf"` last.
    pub(crate) fn write_json(&self, out: &mut String) {
        let _ = write!(
            out,
            "{{\"count\":{},\"sum_us\":{},\"min_us\":{},\"max_us\":{}",
            self.count,
            self.sum_ns / 1_000,
            self.min_ns() / 1_000,
            self.max_ns / 1_000
        );
        for (q, name) in REPORTED_PERCENTILES {
            let us = self.percentile_ns(q).unwrap_or(0) / 1_000;
            let _ = write!(out, ",\"{name}_us\":{us}");
        }
        out.push_str(",\"buckets\":{");
        for (i, n) in self.counts.iter().enumerate() {
            match BUCKET_BOUNDS_NS.get(i) {
                Some(bound) => {
                    let _ = write!(out, "\"{}\":{n},", bound / 1_000);
                }
                None => {
                    let _ = write!(out, "\"+Inf\":{n}");
                }
            }
        }
        out.push_str("}}");
    }

    /// Appends `name_count`, `name_sum_us`, `name_min_us`, `name_max_us` and the reported
    /// percentiles (`name_p50_us` ...) as `STAT` lines of the admin `stats` command.
    pub(crate) fn write_stat_lines(&self, out: &mut String, name: &str) {
        let _ = write!(
            out,
            "STAT {name}_count {}\r\nSTAT {name}_sum_us {}\r\nSTAT {name}_min_us {}\r\nSTAT {name}_max_us {}\r\n",
            self.count,
            self.sum_ns / 1_000,
            self.min_ns() / 1_000,
            self.max_ns / 1_000
        );
        for (q, suffix) in REPORTED_PERCENTILES {
            let us = self.percentile_ns(q).unwrap_or(0) / 1_000;
            let _ = write!(out, "STAT {name}_{suffix}_us {us}\r\n");
        }
    }

    /// Appends the Prometheus samples of a histogram in seconds: `name_bucket{labels,le="..."}`
    /// (cumulative, `+Inf` last), `name_sum{labels}` and `name_count{labels}`. `labels` is empty or
    /// a list such as `worker="0"`; the `# TYPE` line is the caller's.
    pub(crate) fn write_prometheus(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, n) in self.counts.iter().enumerate() {
            cumulative += n;
            match BUCKET_BOUNDS_NS.get(i) {
                Some(&bound) => {
                    let le = bound as f64 / 1e9;
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
                    );
                }
            }
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_ns as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_bucket_whose_bound_is_the_first_not_below_them() {
        let mut h = Histogram::default();
        for ns in [
            0,
            10_000,
            10_001,
            25_000,
            10_000_000_000,
            10_000_000_001,
            u64::MAX,
        ] {
            h.record_ns(ns);
        }
        let counts = h.bucket_counts();
        assert_eq!(counts[0], 2, "0 and 10 µs are within the first bound");
        assert_eq!(counts[1], 2, "10.001 µs and 25 µs");
        assert_eq!(counts[18], 1, "exactly 10 s");
        assert_eq!(counts[19], 2, "above 10 s");
        assert_eq!(h.count(), 7);
        assert_eq!(h.sum_ns(), u64::MAX, "the sum saturates");
        assert_eq!((h.min_ns(), h.max_ns()), (0, u64::MAX));
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut both) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for (i, ns) in [5_000, 70_000, 3_000_000, 40_000, 900, 12_000_000_000]
            .into_iter()
            .enumerate()
        {
            if i % 2 == 0 { &mut a } else { &mut b }.record_ns(ns);
            both.record_ns(ns);
        }
        a.merge(&b);
        assert_eq!(a, both);
        let mut empty = Histogram::default();
        empty.merge(&Histogram::default());
        assert_eq!(empty, Histogram::default());
        assert_eq!((empty.min_ns(), empty.percentile_ns(0.5)), (0, None));
    }

    #[test]
    fn a_few_values_give_their_count_max_and_a_median_in_their_buckets() {
        let mut h = Histogram::default();
        for us in [40, 60, 70, 80, 3_000] {
            h.record_ns(us * 1_000);
        }
        assert_eq!(h.count(), 5);
        assert_eq!(h.max_ns(), 3_000_000);
        let p50 = h.percentile_ns(0.5).unwrap();
        assert!((50_000..=100_000).contains(&p50), "p50 {p50} ns");
    }

    #[test]
    fn percentiles_are_exact_for_one_value_and_within_the_bucket_otherwise() {
        let mut one = Histogram::default();
        one.record_ns(123_456);
        for (q, _) in REPORTED_PERCENTILES {
            assert_eq!(one.percentile_ns(q), Some(123_456));
        }
        // 1000 values spread evenly over 1..=1000 µs.
        let mut spread = Histogram::default();
        for us in 1..=1000 {
            spread.record_ns(us * 1_000);
        }
        for (q, expected_us) in [(0.5, 500), (0.9, 900), (0.99, 990), (0.999, 999)] {
            let got = spread.percentile_ns(q).unwrap();
            let bucket = BUCKET_BOUNDS_NS.partition_point(|&b| b < expected_us * 1_000);
            let lower = if bucket == 0 {
                0
            } else {
                BUCKET_BOUNDS_NS[bucket - 1]
            };
            assert!(
                (lower..=BUCKET_BOUNDS_NS[bucket]).contains(&got),
                "p{q}: {got} ns outside the bucket of {expected_us} µs"
            );
        }
        assert_eq!(spread.percentile_ns(1.0), Some(1_000_000), "the max");
    }

    #[test]
    fn prometheus_buckets_are_cumulative_and_end_with_the_count() {
        let mut h = Histogram::default();
        for ns in [20_000, 20_000, 2_000_000, 20_000_000_000] {
            h.record_ns(ns);
        }
        let mut out = String::new();
        h.write_prometheus(&mut out, "x_seconds", "worker=\"3\"");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "x_seconds_bucket{worker=\"3\",le=\"0.00001\"} 0");
        assert_eq!(lines[1], "x_seconds_bucket{worker=\"3\",le=\"0.000025\"} 2");
        assert_eq!(lines[7], "x_seconds_bucket{worker=\"3\",le=\"0.0025\"} 3");
        assert_eq!(lines[18], "x_seconds_bucket{worker=\"3\",le=\"10\"} 3");
        assert_eq!(lines[19], "x_seconds_bucket{worker=\"3\",le=\"+Inf\"} 4");
        assert_eq!(lines[20], "x_seconds_sum{worker=\"3\"} 20.00204");
        assert_eq!(lines[21], "x_seconds_count{worker=\"3\"} 4");
        let mut bare = String::new();
        Histogram::default().write_prometheus(&mut bare, "y", "");
        assert!(bare.starts_with("y_bucket{le=\"0.00001\"} 0\n"), "{bare}");
        assert!(bare.ends_with("y_sum 0\ny_count 0\n"), "{bare}");
    }

    #[test]
    fn json_names_every_figure_and_bucket() {
        let mut h = Histogram::default();
        h.record_ns(30_000);
        h.record_ns(30_000_000_000);
        let mut out = String::new();
        h.write_json(&mut out);
        assert!(
            out.starts_with(
                "{\"count\":2,\"sum_us\":30000030,\"min_us\":30,\"max_us\":30000000,\"p50_us\":50,"
            ),
            "{out}"
        );
        assert!(
            out.ends_with("\"50\":1,\"100\":0,\"250\":0,\"500\":0,\"1000\":0,\"2500\":0,\"5000\":0,\"10000\":0,\"25000\":0,\"50000\":0,\"100000\":0,\"250000\":0,\"500000\":0,\"1000000\":0,\"2500000\":0,\"5000000\":0,\"10000000\":0,\"+Inf\":1}}"),
            "{out}"
        );
    }
}
