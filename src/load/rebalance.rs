//! The rebalancing policy: which connections to move between workers so that no worker stays
//! much hotter than the others. A pure function of the loads it is given, the time it is told and
//! its small state; it does no I/O and reads no clock. The runtime measures, calls
//! [`Rebalancer::plan`] and carries out the [`Move`]s it returns.
//!
//! The rules, in order:
//! - The hottest worker must carry at least `broker.rebalance_threshold` times the mean load and
//!   at least `broker.rebalance_min_load` (below it moving is not worth its cost).
//! - Automatic rounds (`broker.rebalance = true`) need that imbalance to have lasted
//!   `broker.rebalance_after`; it is measured again from the start when it stops, and after a
//!   round that moved something. A forced round (admin `rebalance`) does not wait for it and runs
//!   even with `broker.rebalance = false`.
//! - After a round that moved something, no round (forced or not) runs for two stats intervals:
//!   until then the loads, and the heavy flows of the worker a flow left, are from before the
//!   move, and acting on them would move the same load twice.
//! - Candidates are the hottest worker's heaviest flows (`HeavyFlows`), never a pinned one, and
//!   only to a worker of the flow's listener's worker set (`listen[i].workers`).
//! - A flow of load x moves from h to w only if x < load(h) - load(w): the gap narrows and w
//!   never ends hotter than h was. Of the allowed moves, the one that lowers the spread of the
//!   loads most is taken (for one target: the one leaving h and w closest together; of equal
//!   flows: the coldest target); the projected loads are updated and the next move planned on
//!   them, from whichever worker is hottest then, while the imbalance lasts.
//! - At most `broker.rebalance_max_per_second` moves per second: a token bucket holding that many
//!   tokens, refilled at that rate. Over any span of T seconds at most
//!   `max_per_second × (1 + T)` moves are planned. Forced rounds draw from the same bucket.

use std::time::{Duration, Instant};

use super::{HeavyFlows, WorkerSet};
use crate::flow::FlowId;
use crate::settings::Settings;

/// What the rebalancer knows of one worker for a round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerView<'a> {
    /// Its load, in load units per second (`LoadMeter::loads`).
    pub load: u64,
    /// Its heaviest connections over the last stats interval.
    pub heavy: &'a HeavyFlows,
}

/// One planned migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Move {
    /// The connection.
    pub flow: FlowId,
    /// The worker it is on.
    pub from: usize,
    /// The worker it goes to.
    pub to: usize,
}

/// The rebalancing settings (`[broker]` `rebalance*` and `stats.interval`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Policy {
    /// `broker.rebalance`: whether rounds run on their own.
    pub automatic: bool,
    /// `broker.rebalance_threshold`: the hottest worker's load over the mean that is an imbalance.
    pub threshold: f64,
    /// `broker.rebalance_after`: how long an imbalance lasts before an automatic round acts.
    pub after: Duration,
    /// `broker.rebalance_max_per_second`: moves per second at most.
    pub max_per_second: u32,
    /// `broker.rebalance_min_load`: below this hottest-worker load nothing moves.
    pub min_load: u64,
    /// `stats.interval`: how often loads are measured (flow loads are per interval).
    pub interval: Duration,
}

impl Policy {
    /// The policy `settings` ask for.
    pub(crate) fn from_settings(settings: &Settings) -> Policy {
        let broker = &settings.broker;
        Policy {
            automatic: broker.rebalance,
            threshold: broker.rebalance_threshold.0,
            after: broker.rebalance_after,
            max_per_second: broker.rebalance_max_per_second,
            min_load: broker.rebalance_min_load,
            interval: settings.stats.interval,
        }
    }
}

/// The policy and its state between rounds.
#[derive(Debug)]
pub(crate) struct Rebalancer {
    policy: Policy,
    /// By listener index: the workers its connections may live on.
    listener_sets: Vec<WorkerSet>,
    /// Since when the current imbalance has lasted.
    imbalanced_since: Option<Instant>,
    /// No round before this (the loads are from before the last moves).
    quiet_until: Option<Instant>,
    /// Moves the bucket allows now (fractions accumulate).
    tokens: f64,
    /// When the bucket was last refilled.
    refilled_at: Option<Instant>,
}

impl Rebalancer {
    /// A rebalancer with `policy` for listeners whose connections may live on `listener_sets`
    /// (by listener index; a flow of a listener beyond it never moves).
    pub(crate) fn new(policy: Policy, listener_sets: Vec<WorkerSet>) -> Rebalancer {
        Rebalancer {
            policy,
            listener_sets,
            imbalanced_since: None,
            quiet_until: None,
            tokens: f64::from(policy.max_per_second),
            refilled_at: None,
        }
    }

    /// The rebalancer `settings` ask for (the worker sets of their listeners).
    pub(crate) fn from_settings(settings: &Settings) -> Rebalancer {
        let workers = settings.broker.worker_count();
        let sets = settings
            .listen
            .iter()
            .map(|l| WorkerSet::for_listener(l, workers))
            .collect();
        Rebalancer::new(Policy::from_settings(settings), sets)
    }

    /// Applies reloaded settings (the worker sets need a restart and stay).
    pub(crate) fn configure(&mut self, settings: &Settings) {
        self.policy = Policy::from_settings(settings);
        self.tokens = self.tokens.min(f64::from(self.policy.max_per_second));
    }

    /// The policy in force.
    #[cfg(test)]
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The moves to make now, given every worker's load and heavy flows (by worker index).
    /// `forced`: an operator asked for a round (admin `rebalance`); it runs even when automatic
    /// rounds are off and does not wait for `rebalance_after`. See the module's rules.
    pub(crate) fn plan(
        &mut self,
        now: Instant,
        workers: &[WorkerView<'_>],
        forced: bool,
    ) -> Vec<Move> {
        self.refill(now);
        if !forced && !self.policy.automatic {
            self.imbalanced_since = None;
            return Vec::new();
        }
        if self.quiet_until.is_some_and(|until| now < until) {
            // The loads predate the last moves: neither act on them nor count them as lasting.
            return Vec::new();
        }
        let mut loads: Vec<u64> = workers.iter().map(|w| w.load).collect();
        let Some(hottest) = self.imbalanced(&loads) else {
            self.imbalanced_since = None;
            return Vec::new();
        };
        let since = *self.imbalanced_since.get_or_insert(now);
        if !forced && now.saturating_duration_since(since) < self.policy.after {
            return Vec::new();
        }
        let mut moves = Vec::new();
        let mut h = hottest;
        while self.tokens >= 1.0 {
            let Some(next) = self.best_move(h, &loads, workers, &moves) else {
                break;
            };
            loads[next.step.from] -= next.load;
            loads[next.step.to] += next.load;
            moves.push(next.step);
            self.tokens -= 1.0;
            match self.imbalanced(&loads) {
                Some(hot) => h = hot,
                None => break,
            }
        }
        if !moves.is_empty() {
            self.imbalanced_since = None;
            self.quiet_until = Some(now + self.policy.interval * 2);
        }
        moves
    }

    /// Adds the tokens earned since the last refill.
    fn refill(&mut self, now: Instant) {
        let cap = f64::from(self.policy.max_per_second);
        if let Some(at) = self.refilled_at {
            let earned = now.saturating_duration_since(at).as_secs_f64() * cap;
            self.tokens = (self.tokens + earned).min(cap);
        }
        self.refilled_at = Some(now);
    }

    /// The hottest worker, if its load is an imbalance worth acting on.
    fn imbalanced(&self, loads: &[u64]) -> Option<usize> {
        if loads.len() < 2 {
            return None;
        }
        let (h, &top) = loads
            .iter()
            .enumerate()
            .max_by_key(|&(w, &load)| (load, std::cmp::Reverse(w)))?;
        let mean = loads.iter().map(|&l| l as f64).sum::<f64>() / loads.len() as f64;
        (top >= self.policy.min_load && top as f64 >= self.policy.threshold * mean).then_some(h)
    }

    /// Of the moves of one of `h`'s heavy flows not moved yet (`planned`) that narrow the gap
    /// between `h` and the target, the one that lowers the spread of the loads most. Moving x
    /// from h to w changes the sum of the squared loads by 2x(x - gap): the best move has the
    /// largest x(gap - x), which for one target is the move leaving h and w closest together,
    /// and of equal flows prefers the colder target.
    fn best_move(
        &self,
        h: usize,
        loads: &[u64],
        workers: &[WorkerView<'_>],
        planned: &[Move],
    ) -> Option<Planned> {
        let mut best: Option<(u128, Planned)> = None;
        for flow in workers[h].heavy.iter() {
            if flow.pinned || planned.iter().any(|m| m.flow == flow.flow) {
                continue;
            }
            let Some(set) = self.listener_sets.get(flow.listener) else {
                continue;
            };
            let x = flow.per_second(self.policy.interval);
            for w in set.iter().filter(|&w| w != h && w < loads.len()) {
                let gap = loads[h].saturating_sub(loads[w]);
                if x == 0 || x >= gap {
                    continue;
                }
                let gain = u128::from(x) * u128::from(gap - x);
                // Of equal gains: the colder target, then the heavier flow, then the first seen.
                let better = best.as_ref().is_none_or(|(best_gain, best)| {
                    (gain, std::cmp::Reverse(loads[w]), x)
                        > (
                            *best_gain,
                            std::cmp::Reverse(loads[best.step.to]),
                            best.load,
                        )
                });
                if better {
                    let step = Move {
                        flow: flow.flow,
                        from: h,
                        to: w,
                    };
                    best = Some((gain, Planned { step, load: x }));
                }
            }
        }
        best.map(|(_, planned)| planned)
    }
}

/// A move with the load it carries (for the projected loads).
#[derive(Debug, Clone, Copy)]
struct Planned {
    step: Move,
    load: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::FlowLoad;

    const SECOND: Duration = Duration::from_secs(1);

    fn policy() -> Policy {
        Policy {
            automatic: true,
            threshold: 1.5,
            after: Duration::from_secs(3),
            max_per_second: 10,
            min_load: 1000,
            interval: SECOND,
        }
    }

    /// A rebalancer for `workers` workers and one listener allowed on all of them.
    fn rebalancer(policy: Policy, workers: usize) -> Rebalancer {
        Rebalancer::new(policy, vec![WorkerSet::all(workers)])
    }

    /// A flow of `load` packets per interval on listener `listener`.
    fn flow(id: u64, load: u64, listener: usize, pinned: bool) -> FlowLoad {
        FlowLoad {
            flow: FlowId(id),
            listener,
            pinned,
            packets: load,
            bytes: 0,
        }
    }

    fn heavy(flows: &[FlowLoad]) -> HeavyFlows {
        let mut heavy = HeavyFlows::default();
        for &f in flows {
            heavy.offer(f);
        }
        heavy
    }

    fn views<'a>(loads: &[u64], heavy: &'a [HeavyFlows]) -> Vec<WorkerView<'a>> {
        loads
            .iter()
            .zip(heavy)
            .map(|(&load, heavy)| WorkerView { load, heavy })
            .collect()
    }

    /// Plans at `t0`, then at every second until `after` has passed; returns the last plan.
    fn plan_sustained(r: &mut Rebalancer, t0: Instant, workers: &[WorkerView<'_>]) -> Vec<Move> {
        assert!(r.plan(t0, workers, false).is_empty(), "not sustained yet");
        r.plan(t0 + r.policy.after, workers, false)
    }

    #[test]
    fn two_heavy_flows_on_one_of_two_workers_plan_exactly_one_move() {
        let mut r = rebalancer(policy(), 2);
        let heavy = [
            heavy(&[flow(1, 10_000, 0, false), flow(2, 10_000, 0, false)]),
            HeavyFlows::default(),
        ];
        let workers = views(&[20_000, 0], &heavy);
        let moves = plan_sustained(&mut r, Instant::now(), &workers);
        assert_eq!(
            moves,
            [Move {
                flow: FlowId(1),
                from: 0,
                to: 1
            }]
        );
    }

    #[test]
    fn the_move_that_best_evens_the_two_workers_is_taken() {
        let mut r = rebalancer(policy(), 2);
        // Gap 12000: moving 7000 leaves 2000 between them, 4000 leaves 4000, 1000 leaves 10000.
        let heavy = [
            heavy(&[
                flow(1, 1000, 0, false),
                flow(2, 4000, 0, false),
                flow(3, 7000, 0, false),
            ]),
            HeavyFlows::default(),
        ];
        let workers = views(&[12_000, 0], &heavy);
        let moves = plan_sustained(&mut r, Instant::now(), &workers);
        assert_eq!(moves.first().map(|m| m.flow), Some(FlowId(3)));
        assert_eq!(
            moves.len(),
            1,
            "5000 against 7000 is no imbalance: {moves:?}"
        );
    }

    #[test]
    fn balanced_load_plans_nothing() {
        let mut r = rebalancer(policy(), 3);
        let heavy = [
            heavy(&[flow(1, 9000, 0, false)]),
            heavy(&[flow(2, 8000, 0, false)]),
            heavy(&[flow(3, 7000, 0, false)]),
        ];
        let workers = views(&[9000, 8000, 7000], &heavy);
        let t0 = Instant::now();
        for s in 0..10 {
            assert!(r.plan(t0 + SECOND * s, &workers, false).is_empty());
        }
        assert!(r.plan(t0 + SECOND * 10, &workers, true).is_empty());
    }

    #[test]
    fn a_load_below_min_load_plans_nothing() {
        let mut r = rebalancer(policy(), 2);
        let heavy = [
            heavy(&[flow(1, 400, 0, false), flow(2, 400, 0, false)]),
            HeavyFlows::default(),
        ];
        let workers = views(&[800, 0], &heavy);
        let t0 = Instant::now();
        for s in 0..10 {
            assert!(r.plan(t0 + SECOND * s, &workers, false).is_empty());
        }
    }

    #[test]
    fn short_spikes_plan_nothing() {
        let mut r = rebalancer(policy(), 2);
        let skewed_heavy = [
            heavy(&[flow(1, 10_000, 0, false), flow(2, 10_000, 0, false)]),
            HeavyFlows::default(),
        ];
        let even_heavy = [
            heavy(&[flow(1, 10_000, 0, false)]),
            heavy(&[flow(2, 10_000, 0, false)]),
        ];
        let skewed = views(&[20_000, 0], &skewed_heavy);
        let even = views(&[10_000, 10_000], &even_heavy);
        let t0 = Instant::now();
        // Skewed for 2s out of every 3s, for a minute: never 3s in a row.
        for s in 0..60 {
            let workers = if s % 3 == 2 { &even } else { &skewed };
            let moves = r.plan(t0 + SECOND * s, workers, false);
            assert!(moves.is_empty(), "second {s}: {moves:?}");
        }
        // Then it lasts: once `after` has passed since it began, one move.
        let begun = t0 + SECOND * 60;
        assert!(r.plan(begun, &skewed, false).is_empty());
        assert!(r.plan(begun + SECOND * 2, &skewed, false).is_empty());
        assert_eq!(r.plan(begun + SECOND * 3, &skewed, false).len(), 1);
    }

    #[test]
    fn automatic_rounds_are_off_unless_rebalance_is_set_but_a_forced_round_runs() {
        let mut r = rebalancer(
            Policy {
                automatic: false,
                ..policy()
            },
            2,
        );
        let heavy = [
            heavy(&[flow(1, 10_000, 0, false), flow(2, 10_000, 0, false)]),
            HeavyFlows::default(),
        ];
        let workers = views(&[20_000, 0], &heavy);
        let t0 = Instant::now();
        for s in 0..10 {
            assert!(r.plan(t0 + SECOND * s, &workers, false).is_empty());
        }
        assert_eq!(r.plan(t0 + SECOND * 10, &workers, true).len(), 1);
    }

    #[test]
    fn forced_ignores_after() {
        let mut r = rebalancer(policy(), 2);
        let heavy = [
            heavy(&[flow(1, 10_000, 0, false), flow(2, 10_000, 0, false)]),
            HeavyFlows::default(),
        ];
        let workers = views(&[20_000, 0], &heavy);
        let moves = r.plan(Instant::now(), &workers, true);
        assert_eq!(moves.len(), 1, "at once, on the first look: {moves:?}");
    }

    #[test]
    fn pinned_flows_never_move() {
        let mut r = rebalancer(policy(), 2);
        let heavy = [
            heavy(&[flow(1, 10_000, 0, true), flow(2, 10_000, 0, true)]),
            HeavyFlows::default(),
        ];
        let workers = views(&[20_000, 0], &heavy);
        let t0 = Instant::now();
        for s in 0..30 {
            assert!(r.plan(t0 + SECOND * s, &workers, s % 5 == 0).is_empty());
        }
        // Unpinned, one of them goes.
        let heavy = [
            self::heavy(&[flow(1, 10_000, 0, true), flow(2, 10_000, 0, false)]),
            HeavyFlows::default(),
        ];
        let workers = views(&[20_000, 0], &heavy);
        let moves = r.plan(t0 + SECOND * 30, &workers, true);
        assert_eq!(
            moves.iter().map(|m| m.flow).collect::<Vec<_>>(),
            [FlowId(2)]
        );
    }

    #[test]
    fn worker_sets_are_respected() {
        // Listener 0 may use workers 0 and 1 only; listener 1 every worker.
        let mut r = Rebalancer::new(policy(), vec![WorkerSet::of([0, 1]), WorkerSet::all(3)]);
        let heavy = [
            heavy(&[
                flow(1, 12_000, 0, false),
                flow(2, 12_000, 0, false),
                flow(3, 1_000, 1, false),
            ]),
            heavy(&[flow(4, 20_000, 0, false)]),
            HeavyFlows::default(),
        ];
        let workers = views(&[25_000, 20_000, 0], &heavy);
        let moves = r.plan(Instant::now(), &workers, true);
        // Worker 2 is the coldest, but only listener 1's flow may go there; listener 0's flows
        // would not narrow the 5000 gap to worker 1.
        assert_eq!(
            moves,
            [Move {
                flow: FlowId(3),
                from: 0,
                to: 2
            }]
        );
        // A flow of a listener the rebalancer does not know never moves.
        let heavy = [
            self::heavy(&[flow(5, 10_000, 7, false)]),
            HeavyFlows::default(),
        ];
        let mut r = rebalancer(policy(), 2);
        assert!(
            r.plan(Instant::now(), &views(&[20_000, 0], &heavy), true)
                .is_empty()
        );
    }

    #[test]
    fn no_move_overshoots() {
        // Every flow of the hottest worker is heavier than its gap to any other worker but one.
        let mut r = rebalancer(policy(), 3);
        let heavy = [
            heavy(&[flow(1, 9_000, 0, false), flow(2, 3_000, 0, false)]),
            heavy(&[flow(3, 4_000, 0, false)]),
            heavy(&[flow(4, 5_000, 0, false)]),
        ];
        let loads = [12_000, 4_000, 5_000];
        let workers = views(&loads, &heavy);
        let moves = r.plan(Instant::now(), &workers, true);
        assert!(!moves.is_empty());
        let mut projected = loads;
        for m in &moves {
            let x = [9_000, 3_000][m.flow.0 as usize - 1];
            assert!(
                projected[m.to] + x < projected[m.from],
                "{m:?} makes worker {} hotter than {} was",
                m.to,
                m.from
            );
            projected[m.from] -= x;
            projected[m.to] += x;
        }
        assert!(moves.iter().all(|m| m.flow == FlowId(2)), "{moves:?}");
    }

    #[test]
    fn the_rate_cap_holds_over_time() {
        let cap = 3;
        let mut r = rebalancer(
            Policy {
                max_per_second: cap,
                after: Duration::ZERO,
                interval: Duration::from_millis(10),
                ..policy()
            },
            2,
        );
        // Eight light flows on worker 0: an imbalance no round can settle alone.
        let flows: Vec<FlowLoad> = (1..=8).map(|id| flow(id, 10, 0, false)).collect();
        let heavy = [heavy(&flows), HeavyFlows::default()];
        let workers = views(&[100_000, 0], &heavy);
        let t0 = Instant::now();
        let mut times = Vec::new();
        // A round every 10 ms for 10 s, forced or not.
        for tick in 0..1000u32 {
            let now = t0 + Duration::from_millis(10) * tick;
            let moves = r.plan(now, &workers, tick % 2 == 0);
            times.extend(moves.iter().map(|_| now));
        }
        assert!(times.len() > 20, "it did move: {}", times.len());
        for (i, &start) in times.iter().enumerate() {
            for span_s in [0u32, 1, 2, 5] {
                let end = start + SECOND * span_s;
                let within = times[i..].iter().take_while(|&&t| t <= end).count();
                let bound = cap as usize * (1 + span_s as usize);
                assert!(within <= bound, "{within} moves within {span_s}s");
            }
        }
        assert!(times.len() <= cap as usize * 11, "{} in 10s", times.len());
    }

    #[test]
    fn after_a_move_the_loads_are_measured_again_before_the_next_round() {
        let mut r = rebalancer(policy(), 2);
        let heavy = [
            heavy(&[
                flow(1, 10_000, 0, false),
                flow(2, 10_000, 0, false),
                flow(3, 10_000, 0, false),
            ]),
            HeavyFlows::default(),
        ];
        // Stale views: still as before the move.
        let workers = views(&[30_000, 0], &heavy);
        let t0 = Instant::now();
        assert_eq!(r.plan(t0, &workers, true).len(), 1);
        assert!(r.plan(t0 + SECOND, &workers, true).is_empty(), "quiet");
        assert!(
            r.plan(t0 + SECOND * 2, &workers, false).is_empty(),
            "sustain anew"
        );
        assert!(r.plan(t0 + SECOND * 4, &workers, false).is_empty());
        assert_eq!(r.plan(t0 + SECOND * 5, &workers, false).len(), 1);
    }

    #[test]
    fn a_reload_changes_the_policy_and_caps_the_bucket() {
        let settings = Settings::from_toml_str(
            "[broker]\nworkers = 2\nrebalance = true\nrebalance_max_per_second = 1\n\
             rebalance_after = \"0s\"\n[[listen]]\naddr = \"127.0.0.1:0\"\nworkers = [1]\n",
        )
        .unwrap();
        let mut r = rebalancer(policy(), 2);
        r.configure(&settings);
        assert_eq!(r.policy().max_per_second, 1);
        assert!(r.tokens <= 1.0);
        let r = Rebalancer::from_settings(&settings);
        assert_eq!(r.listener_sets, [WorkerSet::of([1])]);
        assert!(r.policy().automatic);
    }
}
