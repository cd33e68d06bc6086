//! The open-file limit (`RLIMIT_NOFILE`): raised at start so `broker.max_connections` fits.
//!
//! Every connection is a file descriptor, and so are the listeners, the pollers, the lanes and
//! their FIFOs, the lock, log and stats files. [`fd_budget`] says how many ccsd needs;
//! [`raise_for`] raises the soft limit toward the hard limit to fit it, and only warns when it
//! cannot: ccsd still runs, and once descriptors run out the acceptor pauses accepting (counted
//! as `accept_pauses`) until some are free again.

use log::{info, warn};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for everything but connections, beyond the per-worker and per-listener ones:
/// the main poller, the response lane and its FIFO, the lock, log and stats files, the signal
/// pipe, and room for short-lived ones (the stats file's temporary copy).
const FIXED_HEADROOM: u64 = 64;
/// Descriptors per worker: its poller (epoll, eventfd, timerfd), its request lane and FIFO.
const PER_WORKER: u64 = 8;

/// File descriptors ccsd needs to hold `max_connections` connections with `workers` workers and
/// `listeners` listeners.
pub fn fd_budget(max_connections: usize, workers: usize, listeners: usize) -> u64 {
    let per_worker = PER_WORKER.saturating_mul(workers as u64);
    (max_connections as u64)
        .saturating_add(listeners as u64)
        .saturating_add(per_worker)
        .saturating_add(FIXED_HEADROOM)
}

/// What to do with the soft limit, given what is needed and the current limits (`None`:
/// unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The soft limit already fits.
    Enough,
    /// Raise the soft limit to `to`, which fits.
    Raise {
        /// The new soft limit.
        to: u64,
    },
    /// The hard limit is below what is needed: raise the soft limit to `hard` (if it is lower)
    /// and warn.
    Short {
        /// The hard limit.
        hard: u64,
    },
}

/// Decides how to fit `needed` descriptors under the `soft` and `hard` limits.
pub fn plan(needed: u64, soft: Option<u64>, hard: Option<u64>) -> Plan {
    match (soft, hard) {
        (None, _) => Plan::Enough,
        (Some(soft), _) if soft >= needed => Plan::Enough,
        (_, Some(hard)) if hard < needed => Plan::Short { hard },
        _ => Plan::Raise { to: needed },
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to fit `needed` descriptors (see [`fd_budget`]),
/// logging what it did; `max_connections` is named in the messages. Never fails: a limit that
/// cannot be raised enough is a warning.
pub fn raise_for(needed: u64, max_connections: usize) {
    let current = getrlimit(Resource::Nofile);
    let show = |limit: Option<u64>| limit.map_or("unlimited".to_owned(), |n| n.to_string());
    let soft = show(current.current);
    let to = match plan(needed, current.current, current.maximum) {
        Plan::Enough => {
            info!(
                "open-file limit {soft} fits broker.max_connections = {max_connections} ({needed} descriptors)"
            );
            return;
        }
        Plan::Raise { to } => to,
        Plan::Short { hard } => {
            warn!(
                "open-file limit: broker.max_connections = {max_connections} needs {needed} descriptors but the hard limit (RLIMIT_NOFILE) is {hard}; accepts beyond it will fail (raise the hard limit, e.g. LimitNOFILE=, or lower broker.max_connections)"
            );
            if current.current >= Some(hard) {
                return;
            }
            hard
        }
    };
    let new = Rlimit {
        current: Some(to),
        maximum: current.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => info!(
            "open-file limit raised from {soft} to {to} for broker.max_connections = {max_connections}"
        ),
        Err(e) => warn!(
            "open-file limit: cannot raise it from {soft} to {to} for broker.max_connections = {max_connections}: {e}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_adds_listeners_workers_and_fixed_headroom_to_connections() {
        assert_eq!(fd_budget(100_000, 2, 3), 100_000 + 3 + 16 + 64);
        assert_eq!(fd_budget(usize::MAX, 255, 1), u64::MAX);
    }

    #[test]
    fn a_soft_limit_that_fits_is_left_alone() {
        assert_eq!(plan(1000, Some(1000), Some(2000)), Plan::Enough);
        assert_eq!(plan(1000, None, None), Plan::Enough);
    }

    #[test]
    fn a_soft_limit_too_low_is_raised_to_what_is_needed() {
        assert_eq!(plan(1000, Some(512), Some(4096)), Plan::Raise { to: 1000 });
        assert_eq!(plan(1000, Some(512), None), Plan::Raise { to: 1000 });
        assert_eq!(plan(1000, Some(512), Some(1000)), Plan::Raise { to: 1000 });
    }

    #[test]
    fn a_hard_limit_too_low_is_reported_short() {
        assert_eq!(plan(1000, Some(512), Some(999)), Plan::Short { hard: 999 });
        assert_eq!(plan(1000, Some(999), Some(999)), Plan::Short { hard: 999 });
    }
}
