//! Load: how much work each worker and each connection does, measured from the counters the
//! workers keep anyway, and what uses it: the `least_loaded` dispatch, the per-listener worker
//! sets every dispatch honours ([`WorkerSet`]) and the rebalancing policy ([`rebalance`]).
//!
//! One unit of load is one packet read, or 1 KiB of bytes read ([`load_units`]); loads are in
//! units per second. A worker's load comes from its cumulative `packets_in`/`bytes_in`
//! ([`LoadMeter`], fed by every `NotifyStat`); a connection's from what it read over the last
//! stats interval, of which each worker reports its heaviest few ([`HeavyFlows`]).

pub(crate) mod rebalance;
mod worker_set;

use std::time::{Duration, Instant};

use crate::flow::FlowId;

pub(crate) use worker_set::WorkerSet;

/// Bytes read that cost as much as one packet. A packet's fixed work — a share of a `read`, the
/// framer's scan, a 64-byte record header and a lane push, routing its reply back and a share of
/// a `write` — is on the order of a microsecond, about what copying 1 KiB a few times (socket
/// buffer, lane, MCP, reply) costs. The constant only has to be of the right order: loads rank
/// workers and flows against each other, they do not predict CPU time.
const BYTES_PER_PACKET: u64 = 1024;

/// The load of `packets` packets carrying `bytes` bytes: `packets + bytes / 1024`.
pub(crate) fn load_units(packets: u64, bytes: u64) -> u64 {
    packets.saturating_add(bytes / BYTES_PER_PACKET)
}

/// `units` over `span`, per second (0 for an empty span).
fn per_second(units: u64, span: Duration) -> u64 {
    let nanos = span.as_nanos();
    if nanos == 0 {
        return 0;
    }
    u64::try_from(u128::from(units) * 1_000_000_000 / nanos).unwrap_or(u64::MAX)
}

/// One connection's reads over the last stats interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowLoad {
    /// The connection.
    pub flow: FlowId,
    /// The listener that accepted it (index in `Settings::listen`).
    pub listener: usize,
    /// Pinned connections never move automatically.
    pub pinned: bool,
    /// Packets read over the interval.
    pub packets: u64,
    /// Bytes read over the interval.
    pub bytes: u64,
}

impl FlowLoad {
    /// An empty slot of [`HeavyFlows`].
    const NONE: FlowLoad = FlowLoad {
        flow: FlowId(0),
        listener: 0,
        pinned: false,
        packets: 0,
        bytes: 0,
    };

    /// Its load over the interval ([`load_units`]).
    pub(crate) fn units(&self) -> u64 {
        load_units(self.packets, self.bytes)
    }

    /// Its load per second, measured over an interval of `interval`.
    pub(crate) fn per_second(&self, interval: Duration) -> u64 {
        per_second(self.units(), interval)
    }
}

/// How many of its heaviest connections a worker reports.
pub(crate) const HEAVY_FLOWS: usize = 8;

/// The [`HEAVY_FLOWS`] heaviest connections offered, heaviest first. A fixed array: it travels
/// inside the worker's `NotifyStat` and never allocates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeavyFlows {
    /// `flows[..len]`, by load, heaviest first (of equal loads, the first offered first).
    flows: [FlowLoad; HEAVY_FLOWS],
    len: usize,
}

impl Default for HeavyFlows {
    fn default() -> Self {
        HeavyFlows {
            flows: [FlowLoad::NONE; HEAVY_FLOWS],
            len: 0,
        }
    }
}

impl HeavyFlows {
    /// Keeps `flow` if it is among the heaviest offered so far; a flow that read nothing is
    /// ignored. O([`HEAVY_FLOWS`]).
    pub(crate) fn offer(&mut self, flow: FlowLoad) {
        let units = flow.units();
        if units == 0 {
            return;
        }
        // The first slot holding a lighter flow: `flow` goes there, the rest shifts down.
        let Some(at) = (0..HEAVY_FLOWS).find(|&i| i >= self.len || self.flows[i].units() < units)
        else {
            return;
        };
        self.len = (self.len + 1).min(HEAVY_FLOWS);
        self.flows.copy_within(at..self.len - 1, at + 1);
        self.flows[at] = flow;
    }

    /// The flows kept, heaviest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &FlowLoad> {
        self.flows[..self.len].iter()
    }

    /// How many flows are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// A worker's counters at one report.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    packets: u64,
    bytes: u64,
}

/// Each worker's load, from the cumulative counters of its reports.
///
/// A rate is computed over at least half a stats interval: a report that arrives sooner after
/// the one before (the main thread was busy and drained two at once) is folded into the next
/// rate instead of making a spike out of a few microseconds.
#[derive(Debug)]
pub(crate) struct LoadMeter {
    /// The reading each worker's current rate will be measured from.
    last: Vec<Option<Reading>>,
    /// Load units per second, by worker.
    loads: Vec<u64>,
    /// The shortest span a rate is measured over.
    min_span: Duration,
}

impl LoadMeter {
    /// A meter for `workers` workers reporting every `interval` (`stats.interval`).
    pub(crate) fn new(workers: usize, interval: Duration) -> LoadMeter {
        LoadMeter {
            last: vec![None; workers],
            loads: vec![0; workers],
            min_span: interval / 2,
        }
    }

    /// Applies a new `stats.interval` (a reload).
    pub(crate) fn set_interval(&mut self, interval: Duration) {
        self.min_span = interval / 2;
    }

    /// Takes in worker `worker`'s cumulative `packets_in` and `bytes_in`, which arrived `at`.
    /// A counter lower than before (a restarted worker) counts as no work.
    pub(crate) fn observe(&mut self, worker: usize, at: Instant, packets_in: u64, bytes_in: u64) {
        let Some(last) = self.last.get_mut(worker) else {
            return;
        };
        let reading = Reading {
            at,
            packets: packets_in,
            bytes: bytes_in,
        };
        match *last {
            None => *last = Some(reading),
            Some(before) => {
                let span = at.saturating_duration_since(before.at);
                if span < self.min_span.max(Duration::from_nanos(1)) {
                    return;
                }
                let units = load_units(
                    packets_in.saturating_sub(before.packets),
                    bytes_in.saturating_sub(before.bytes),
                );
                self.loads[worker] = per_second(units, span);
                *last = Some(reading);
            }
        }
    }

    /// Worker `worker`'s load units per second over its last measured span (0 before two
    /// reports, or for a worker that does not exist).
    pub(crate) fn load(&self, worker: usize) -> u64 {
        self.loads.get(worker).copied().unwrap_or(0)
    }

    /// Every worker's load, by worker.
    pub(crate) fn loads(&self) -> &[u64] {
        &self.loads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(id: u64, packets: u64) -> FlowLoad {
        FlowLoad {
            flow: FlowId(id),
            listener: 0,
            pinned: false,
            packets,
            bytes: 0,
        }
    }

    #[test]
    fn a_packet_weighs_as_much_as_a_kibibyte() {
        assert_eq!(load_units(10, 0), 10);
        assert_eq!(load_units(0, 10 * 1024), 10);
        assert_eq!(load_units(3, 2048 + 1023), 5);
        assert_eq!(load_units(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn heavy_flows_keep_the_heaviest_offered_heaviest_first() {
        let mut heavy = HeavyFlows::default();
        for (id, packets) in [(1, 5), (2, 0), (3, 50), (4, 7)] {
            heavy.offer(flow(id, packets));
        }
        let kept: Vec<(u64, u64)> = heavy.iter().map(|f| (f.flow.0, f.units())).collect();
        assert_eq!(
            kept,
            [(3, 50), (4, 7), (1, 5)],
            "a flow with no load is ignored"
        );

        let mut heavy = HeavyFlows::default();
        for id in 0..100u64 {
            // Loads 0..100 in a scrambled order.
            heavy.offer(flow(id, (id * 37) % 100));
        }
        let loads: Vec<u64> = heavy.iter().map(FlowLoad::units).collect();
        assert_eq!(loads, [99, 98, 97, 96, 95, 94, 93, 92]);
        assert_eq!(heavy.len(), HEAVY_FLOWS);
    }

    #[test]
    fn of_equal_heavy_flows_the_first_offered_stays() {
        let mut heavy = HeavyFlows::default();
        for id in 0..20 {
            heavy.offer(flow(id, 10));
        }
        let ids: Vec<u64> = heavy.iter().map(|f| f.flow.0).collect();
        assert_eq!(ids, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn the_meter_turns_cumulative_counters_into_rates_per_second() {
        let t0 = Instant::now();
        let mut meter = LoadMeter::new(2, Duration::from_secs(1));
        meter.observe(0, t0, 100, 0);
        assert_eq!(meter.load(0), 0, "one report is no rate yet");
        meter.observe(0, t0 + Duration::from_secs(2), 2100, 1024 * 1000);
        assert_eq!(meter.load(0), (2000 + 1000) / 2);
        assert_eq!(meter.loads(), [1500, 0]);
        assert_eq!(meter.load(7), 0, "no such worker");
        meter.observe(7, t0, 1, 1);
    }

    #[test]
    fn a_counter_that_went_down_counts_as_no_work() {
        let t0 = Instant::now();
        let mut meter = LoadMeter::new(1, Duration::from_secs(1));
        meter.observe(0, t0, 1000, 1000);
        meter.observe(0, t0 + Duration::from_secs(1), 10, 5000);
        assert_eq!(
            meter.load(0),
            3,
            "packets went down (0), 4000 bytes read (3)"
        );
        meter.observe(0, t0 + Duration::from_secs(2), 1010, 5000);
        assert_eq!(meter.load(0), 1000, "measured from the lower reading on");
    }

    #[test]
    fn reports_arriving_close_together_make_no_spike() {
        let t0 = Instant::now();
        let mut meter = LoadMeter::new(1, Duration::from_secs(1));
        meter.observe(0, t0, 0, 0);
        meter.observe(0, t0 + Duration::from_secs(1), 1000, 0);
        assert_eq!(meter.load(0), 1000);
        // The next report arrives 1 us later (a drained backlog): folded into the next rate.
        meter.observe(
            0,
            t0 + Duration::from_secs(1) + Duration::from_micros(1),
            2000,
            0,
        );
        assert_eq!(meter.load(0), 1000);
        meter.observe(0, t0 + Duration::from_secs(2), 2000, 0);
        assert_eq!(meter.load(0), 1000);
    }
}
