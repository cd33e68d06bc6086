//! Hot restarts during the soak (`--takeover-every SECS`): one takeover ([`take_over`]): `ccsd --takeover --config FILE`
//! started beside the running process, the new one's "ccsd ready" and the old one's "handed N
//! connections over ... in X" and exit awaited, what they said kept ([`Takeover`]).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::admin::Stats;
use crate::servers::{Logged, Memory, ccsd_command, parse_handed};

/// How long one step of a takeover (a log line, a process's exit) may take.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// One takeover and the life of the process that took over.
#[derive(Debug, Clone, Default)]
pub struct Takeover {
    /// When `ccsd --takeover` was started, in seconds since the load started.
    pub at: f64,
    /// When the old process had exited (or the attempt was given up), same clock.
    pub done: f64,
    /// The old and the new process.
    pub old_pid: u32,
    pub new_pid: u32,
    /// Connections the old process says it handed over.
    pub handed: Option<u64>,
    /// The old process's own figure: from the freeze to the commit, in ms.
    pub handed_ms: Option<f64>,
    /// From the start of `ccsd --takeover` to its "ccsd ready", in ms.
    pub ready_ms: Option<f64>,
    /// The old process's exit code (or how it ended).
    pub old_exit: String,
    /// The old process's counters, read through its admin port just before the takeover.
    pub old_stats: Stats,
    /// The old process's resident memory at that moment.
    pub old_memory: Option<Memory>,
    /// The new process's resident memory samples: (seconds since the load started, memory).
    pub samples: Vec<(f64, Memory)>,
    /// The longest a load connection with requests in flight waited for reply bytes, over the
    /// reply-wait windows that end from the start of the takeover to [`AFTER`] after it, in ms.
    pub max_wait_ms: f64,
    /// What went wrong with this takeover.
    pub failures: Vec<String>,
}

/// How long after a takeover the reply-wait windows count as the takeover's: a reply held up by
/// it arrives after the new process serves, within the next window.
const AFTER: f64 = 2.0;

impl Takeover {
    /// Whether a reply-wait window ending at `end` (seconds since the load started) counts as
    /// this takeover's.
    pub fn covers(&self, end: f64) -> bool {
        end > self.at && end <= self.done + AFTER
    }

    /// Samples taken after `settle` seconds of the new process's life, if any: the ones judged.
    pub fn judged(&self, settle: f64) -> impl Iterator<Item = &Memory> {
        self.samples
            .iter()
            .filter(move |(t, _)| *t >= self.at + settle)
            .map(|(_, m)| m)
    }

    pub fn json(&self) -> Value {
        json!({
            "at_s": self.at,
            "done_s": self.done,
            "old_pid": self.old_pid,
            "new_pid": self.new_pid,
            "handed": self.handed,
            "handed_ms": self.handed_ms,
            "ready_ms": self.ready_ms,
            "old_exit": self.old_exit,
            "old_stats": self.old_stats,
            "old_rss": self.old_memory.map(|m| m.rss),
            "max_wait_ms": self.max_wait_ms,
            "rss_samples": self.samples.iter().map(|(t, m)| [*t, m.rss as f64, m.anon as f64, m.shmem as f64]).collect::<Vec<_>>(),
            "failures": self.failures,
        })
    }
}

/// Starts `ccsd --takeover` on `config` beside `old` and waits for the handover: the old
/// process's "handed N connections over", the new one's "ccsd ready" on the same listening
/// address, the old one's exit. Returns the new process when it took over (a rollback leaves
/// `old` serving; a failure is in the record either way).
pub fn take_over(
    config: &Path,
    old: &mut Logged,
    listen: SocketAddr,
    record: &mut Takeover,
) -> Option<Logged> {
    record.old_pid = old.pid();
    let started = Instant::now();
    let mut new = match ccsd_command(config, true).and_then(|cmd| Logged::start(cmd, PATIENCE)) {
        Ok(new) => new,
        Err(e) => {
            record.failures.push(format!("ccsd --takeover: {e}"));
            return None;
        }
    };
    record.new_pid = new.pid();
    match old.wait_for("connections over to the new process in ") {
        Ok((_, line)) => {
            let (count, ms) = parse_handed(&line);
            record.handed = count;
            record.handed_ms = ms;
            if count.is_none() || ms.is_none() {
                record.failures.push(format!("unreadable: {line}"));
            }
        }
        Err(e) => record.failures.push(format!("the old process: {e}")),
    }
    match new.wait_for("ccsd ready") {
        Ok(_) => record.ready_ms = Some(started.elapsed().as_secs_f64() * 1e3),
        Err(e) => record.failures.push(format!("the new process: {e}")),
    }
    if record.ready_ms.is_none() || record.handed.is_none() {
        // Not taken over: the old process serves on if it rolled back.
        record.old_exit = match old.server.exited() {
            Some(status) => status.to_string(),
            None => "still running (rolled back)".into(),
        };
        return None;
    }
    record.old_exit = old.wait_exit();
    if record.old_exit != "0" {
        record
            .failures
            .push(format!("the old process ended with {}", record.old_exit));
    }
    match new.addr("listening on tcp://") {
        Ok(addr) if addr == listen => {}
        Ok(addr) => record.failures.push(format!(
            "the new process listens on {addr}, the old one on {listen}"
        )),
        Err(e) => record.failures.push(e),
    }
    Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handed_over_line_gives_its_count_and_duration() {
        let line =
            "INFO hot restart: handed 2030 connections over to the new process in 12.5ms; exiting";
        assert_eq!(parse_handed(line), (Some(2030), Some(12.5)));
        let line =
            "INFO hot restart: handed 7 connections over to the new process in 830µs; exiting";
        let (count, ms) = parse_handed(line);
        assert_eq!(count, Some(7));
        assert!((ms.unwrap() - 0.83).abs() < 1e-9);
        assert_eq!(parse_handed("INFO something else"), (None, None));
    }
}
