//! MCP watch: notices when the business process is gone or stuck, and when it is back.
//!
//! The watch runs on the main thread and maps every request lane a second time, read-only in
//! spirit (it writes nothing). Every [`CHECK_EVERY`] it looks at each lane's header: MCP is down
//! when a lane has no consumer yet, when its consumer's pid no longer names a process
//! (`kill(pid, 0)` fails with `ESRCH`), or when records have waited `mcp.stall_timeout` in a
//! lane whose `head` did not move. It logs one warning when MCP goes down and one info line when
//! it is back, and keeps the `mcp_alive` gauge and the `mcp_down_events` counter.
//!
//! Clients stay connected either way. What becomes of their new requests is `mcp.when_down`: with
//! `"queue"` they wait in the lanes for MCP's return; with `"refuse"` the workers drop them. The
//! watch publishes its verdict in one [`AtomicBool`] that every worker reads once per loop turn
//! ([`McpWatch::down_flag`]): no lock and no message on the data path, and a worker sees a change
//! at its next turn.
//!
//! It also notices who attaches: MCP writes its pid into `consumer_pid` of every request lane
//! and `producer_pid` of the response lane. When one of those changes, the watch reads the pid in
//! the MCP lock file (`{queues.name}.mcp.lock`, see `ccsd::mcp::consumer_lock`): a new process
//! that holds the lock, or that follows one which no longer exists, is an MCP restart (one info
//! line, `mcp_consumer_changes`); a new process that does not hold the lock while the previous
//! one, or the lock's holder, still runs is a second MCP on the same lanes (a warning,
//! `mcp_consumer_contention`): replies may be lost or doubled until one of them stops.
//!
//! Limits: a pid is only meaningful in ccsd's pid namespace, an exited but unreaped MCP (a
//! zombie) still counts as a process, and a reused pid looks alive; the stall rule catches all
//! three as soon as requests wait unread.

use std::mem;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{Level, info, warn};
use rustix::io::Errno;
use rustix::process::{Pid, test_kill_process};

use crate::lane::{Lane, LaneError};
use crate::logging::{LogLimiter, log_limited};
use crate::mcp::consumer_lock;
use crate::settings::{Settings, WhenDown};
use crate::stats::McpWatchCounters;

/// How often the lanes are looked at.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Why MCP counts as down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Down {
    /// No process has attached to request lane `lane` yet.
    NotAttached { lane: usize },
    /// The process that consumes request lane `lane` no longer exists.
    Gone { lane: usize, pid: u32 },
    /// Records have waited in request lane `lane` for `for_` without its head moving.
    Stalled { lane: usize, for_: Duration },
}

/// One request lane as the watch sees it.
#[derive(Debug)]
struct Watched {
    lane: Lane,
    /// The head last seen.
    head: u64,
    /// When the head last moved or the lane was last empty.
    since: Instant,
    /// Its `consumer_pid` at the last check.
    consumer: u32,
}

/// What changed in who is attached as MCP since the last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Takeover {
    /// Request lane index, or `None` for the response lane.
    lane: Option<usize>,
    /// The MCP before (for a contention: the one that still runs).
    previous: u32,
    /// The process that attached.
    current: u32,
}

/// Watches the request lanes' consumer: MCP.
#[derive(Debug)]
pub(crate) struct McpWatch {
    lanes: Vec<Watched>,
    stall_timeout: Duration,
    next_check: Instant,
    /// The state after the last check; `None` before the first.
    down: Option<Option<Down>>,
    /// Whether MCP counted as down at the last check, for the workers.
    down_flag: Arc<AtomicBool>,
    when_down: WhenDown,
    counters: McpWatchCounters,
    /// The response lane, whose `producer_pid` is MCP's.
    response: Lane,
    /// Its `producer_pid` at the last check.
    response_producer: u32,
    /// The MCP lock file, read when the pid of a lane's MCP side changes.
    lock_path: PathBuf,
    change_log: LogLimiter,
    contention_log: LogLimiter,
    /// The MCP last counted as a change.
    last_change: Option<u32>,
    /// The rivals (still running, attached) last counted as a contention.
    last_contention: Option<(u32, u32)>,
}

impl McpWatch {
    /// Maps every request lane named by `settings`, the workers' and the main thread's, and the
    /// response lane (ccsd has created them), and checks them once, so the [`down_flag`](McpWatch::down_flag) is
    /// right before the first client comes.
    ///
    /// # Errors
    /// A lane could not be attached.
    pub(crate) fn attach(settings: &Settings) -> Result<McpWatch, LaneError> {
        let now = Instant::now();
        let capacity = Some(settings.queues.capacity.bytes());
        let lanes = (0..settings.request_lane_count())
            .map(|w| {
                let lane = Lane::attach(&settings.request_lane_path(w), capacity)?;
                Ok(Watched {
                    head: lane.head_position(),
                    consumer: lane.consumer_pid(),
                    lane,
                    since: now,
                })
            })
            .collect::<Result<Vec<_>, LaneError>>()?;
        let response = Lane::attach(&settings.response_lane_path(), capacity)?;
        let mut watch = McpWatch {
            lanes,
            stall_timeout: settings.mcp.stall_timeout,
            next_check: now,
            down: None,
            down_flag: Arc::new(AtomicBool::new(false)),
            when_down: settings.mcp.when_down,
            counters: McpWatchCounters::default(),
            response_producer: response.producer_pid(),
            response,
            lock_path: consumer_lock::lock_path(settings),
            change_log: LogLimiter::default(),
            contention_log: LogLimiter::default(),
            last_change: None,
            last_contention: None,
        };
        watch.tick();
        Ok(watch)
    }

    /// True while MCP counts as down: set at every check, read by the workers once per turn.
    pub(crate) fn down_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.down_flag)
    }

    /// What the watch counted so far.
    pub(crate) fn counters(&self) -> McpWatchCounters {
        self.counters
    }

    /// Time left until the next check is due.
    pub(crate) fn time_to_next(&self) -> Duration {
        self.next_check.saturating_duration_since(Instant::now())
    }

    /// Checks the lanes if a check is due, logging and counting a change of state.
    pub(crate) fn tick(&mut self) {
        let now = Instant::now();
        if now < self.next_check {
            return;
        }
        self.next_check = now + CHECK_EVERY;
        self.check_takeovers();
        let down = self.check(now);
        let was = self.down.replace(down);
        // SYNC POINT: pairs with the workers' Acquire load; nothing else is published with it.
        self.down_flag.store(down.is_some(), Ordering::Release);
        self.counters.mcp_alive = u64::from(down.is_none());
        match (was, down) {
            (Some(None), Some(why)) => {
                self.counters.mcp_down_events += 1;
                let outcome = match self.when_down {
                    WhenDown::Queue => "requests wait in the lanes",
                    WhenDown::Refuse => "new requests are dropped (mcp.when_down = \"refuse\")",
                };
                warn!("MCP is down: {}; {outcome}", describe(why));
            }
            (None, Some(why)) => info!("MCP is not serving yet: {}", describe(why)),
            (Some(Some(_)) | None, None) => info!("MCP is up: reading every request lane"),
            _ => {}
        }
    }

    /// Compares the pids MCP wrote into the lanes with the last check's; counts and logs an MCP
    /// restart or a second MCP (see the module header), at most one of each per check.
    fn check_takeovers(&mut self) {
        let mut seen = self
            .lanes
            .iter_mut()
            .enumerate()
            .map(|(i, w)| (Some(i), w.lane.consumer_pid(), &mut w.consumer))
            .chain([(
                None,
                self.response.producer_pid(),
                &mut self.response_producer,
            )]);
        let (mut change, mut contention) = (None, None);
        let mut holder = None;
        for (lane, current, last) in &mut seen {
            if current == *last {
                continue;
            }
            let previous = mem::replace(last, current);
            let holder = *holder.get_or_insert_with(|| consumer_lock::holder_pid(&self.lock_path));
            // Another live process that consumes, or holds the lock, while this one does not.
            let rival = if holder == Some(current) {
                None
            } else {
                [holder, Some(previous)]
                    .into_iter()
                    .flatten()
                    .find(|&p| p != 0 && p != current && process_exists(p))
            };
            match rival {
                Some(rival) => {
                    contention = Some(Takeover {
                        lane,
                        previous: rival,
                        current,
                    })
                }
                // 0: the first MCP since the lanes were created.
                None if previous != 0 => {
                    change = Some(Takeover {
                        lane,
                        previous,
                        current,
                    })
                }
                None => {}
            }
        }
        // One MCP attaches to the lanes one after the other, perhaps across checks: count each
        // new MCP, and each pair of rivals, once.
        if let Some(t) = change.filter(|t| self.last_change != Some(t.current)) {
            self.last_change = Some(t.current);
            self.counters.mcp_consumer_changes += 1;
            log_limited!(
                self.change_log,
                Level::Info,
                "MCP changed: process {} attached to {} after process {}",
                t.current,
                lane_name(t.lane),
                t.previous
            );
        }
        if let Some(t) =
            contention.filter(|t| self.last_contention != Some((t.previous, t.current)))
        {
            self.last_contention = Some((t.previous, t.current));
            self.counters.mcp_consumer_contention += 1;
            log_limited!(
                self.contention_log,
                Level::Warn,
                "two MCPs on these lanes: process {} attached to {} while process {} still runs, \
                     and it does not hold {}; replies may be lost or doubled until one stops",
                t.current,
                lane_name(t.lane),
                t.previous,
                self.lock_path.display()
            );
        }
    }

    /// The first reason found to call MCP down, or `None` when it serves every lane.
    fn check(&mut self, now: Instant) -> Option<Down> {
        let mut down = None;
        // One MCP usually consumes every lane: ask the kernel once per distinct pid.
        let mut last: Option<(u32, bool)> = None;
        for (i, w) in self.lanes.iter_mut().enumerate() {
            let head = w.lane.head_position();
            if head != w.head || w.lane.used_bytes() == 0 {
                w.head = head;
                w.since = now;
            }
            if down.is_some() {
                continue;
            }
            let pid = w.lane.consumer_pid();
            let exists = match last {
                Some((p, exists)) if p == pid => exists,
                _ => {
                    let exists = process_exists(pid);
                    last = Some((pid, exists));
                    exists
                }
            };
            let waited = now.duration_since(w.since);
            down = if pid == 0 {
                Some(Down::NotAttached { lane: i })
            } else if !exists {
                Some(Down::Gone { lane: i, pid })
            } else if waited >= self.stall_timeout {
                Some(Down::Stalled {
                    lane: i,
                    for_: waited,
                })
            } else {
                None
            };
        }
        down
    }
}

/// Whether `pid` names a process (of any owner): `kill(pid, 0)` succeeds or fails with `EPERM`.
fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    !matches!(test_kill_process(pid), Err(Errno::SRCH))
}

fn lane_name(lane: Option<usize>) -> String {
    match lane {
        Some(i) => format!("request lane {i}"),
        None => "the response lane".to_owned(),
    }
}

fn describe(why: Down) -> String {
    match why {
        Down::NotAttached { lane } => format!("no process has attached to request lane {lane}"),
        Down::Gone { lane, pid } => {
            format!("process {pid}, the consumer of request lane {lane}, is gone")
        }
        Down::Stalled { lane, for_ } => {
            format!("request lane {lane} has not been read for {for_:?} while requests wait")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_pid_exists_and_pid_zero_does_not() {
        assert!(process_exists(std::process::id()));
        assert!(!process_exists(0));
    }
}
