//! The admin `conns [N]` command: workers own their connections, so the admin asks every worker
//! for a sample (`WorkerMsg::SampleConns`) and collects the answers (`MainMsg::ConnSample`) here,
//! never waiting for them: the answer is written once every worker has answered, or after
//! [`SAMPLE_TIMEOUT`] naming the workers that did not.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::message::ConnSample;

/// Connections shown by `conns` without an argument.
pub(super) const DEFAULT_CONNS: usize = 20;
/// Most connections `conns N` shows.
pub(super) const MAX_CONNS: usize = 1000;
/// How long the admin waits for the workers' answers.
pub(super) const SAMPLE_TIMEOUT: Duration = Duration::from_secs(1);

/// The usage line for a bad argument.
pub(crate) const USAGE: &str = "ERROR usage: conns [N] (N from 0 to 1000, default 20)\r\n";

/// `N` of `conns [N]`; `None` when it is not a number from 0 to [`MAX_CONNS`].
pub(crate) fn parse_max(arg: Option<&str>) -> Option<usize> {
    match arg {
        None => Some(DEFAULT_CONNS),
        Some(text) => text.parse().ok().filter(|&n| n <= MAX_CONNS),
    }
}

/// One worker's part of the answer.
#[derive(Debug)]
enum Part {
    Waiting,
    /// Its mailbox was full: it was never asked.
    Unreachable,
    Answered(ConnSample),
}

/// A `conns` request waiting for the workers.
#[derive(Debug)]
pub(crate) struct PendingSample {
    /// The request's token (also the asking client's `awaiting`).
    pub(crate) token: u64,
    max: usize,
    deadline: Instant,
    parts: Vec<Part>,
}

impl PendingSample {
    /// A request for `max` connections sent to `workers` workers now.
    pub(crate) fn new(token: u64, max: usize, workers: usize) -> PendingSample {
        PendingSample {
            token,
            max,
            deadline: Instant::now() + SAMPLE_TIMEOUT,
            parts: (0..workers).map(|_| Part::Waiting).collect(),
        }
    }

    /// Worker `worker` answered (`None`: its mailbox was full, so it was never asked).
    pub(crate) fn answer(&mut self, worker: usize, sample: Option<ConnSample>) {
        if let Some(part) = self.parts.get_mut(worker) {
            *part = match sample {
                Some(sample) => Part::Answered(sample),
                None => Part::Unreachable,
            };
        }
    }

    /// Every worker has answered (or could not be asked).
    pub(crate) fn is_complete(&self) -> bool {
        !self.parts.iter().any(|p| matches!(p, Part::Waiting))
    }

    /// When the answer is written whatever is missing.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The answer: up to `max` `conn` lines taken from the workers in turn, a `total` line, a
    /// `missing` line per worker that did not answer, `END`.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let samples: Vec<&ConnSample> = self
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Answered(s) => Some(s),
                _ => None,
            })
            .collect();
        let mut shown = 0;
        // Round robin over the workers, so a small sample still shows every worker's connections.
        'rounds: for i in 0.. {
            let mut any = false;
            for s in &samples {
                let Some(c) = s.conns.get(i) else { continue };
                if shown == self.max {
                    break 'rounds;
                }
                any = true;
                shown += 1;
                let _ = write!(
                    out,
                    "conn {} worker {} peer {} listen_port {} age_ms {} buffered_in {} buffered_out {} outstanding {} pinned {}\r\n",
                    c.flow,
                    s.worker,
                    c.peer,
                    c.listen_port,
                    c.age.as_millis(),
                    c.buffered_in,
                    c.buffered_out,
                    c.outstanding,
                    u8::from(c.pinned)
                );
            }
            if !any {
                break;
            }
        }
        let total: usize = samples.iter().map(|s| s.open).sum();
        let _ = write!(out, "total {total} shown {shown}\r\n");
        for (w, part) in self.parts.iter().enumerate() {
            let why = match part {
                Part::Answered(_) => continue,
                Part::Unreachable => "its mailbox is full".to_owned(),
                Part::Waiting => format!("no answer within {} ms", SAMPLE_TIMEOUT.as_millis()),
            };
            let _ = write!(out, "missing worker {w} ({why})\r\n");
        }
        out.push_str("END\r\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowId;
    use crate::message::ConnInfo;

    fn sample(worker: usize, slots: &[u32]) -> ConnSample {
        ConnSample {
            token: 1,
            worker,
            open: slots.len() + 10,
            conns: slots
                .iter()
                .map(|&slot| ConnInfo {
                    flow: FlowId::new(1, worker as u8, 0, slot),
                    pinned: slot == 7,
                    peer: "127.0.0.1:4000".parse().unwrap(),
                    listen_port: 7300,
                    age: Duration::from_millis(1500),
                    buffered_in: 3,
                    buffered_out: 4,
                    outstanding: 5,
                })
                .collect(),
        }
    }

    #[test]
    fn workers_take_turns_up_to_the_limit_and_the_missing_ones_are_named() {
        let mut pending = PendingSample::new(1, 3, 3);
        pending.answer(0, Some(sample(0, &[1, 2, 3])));
        assert!(!pending.is_complete());
        pending.answer(2, None);
        assert!(!pending.is_complete());
        pending.answer(1, Some(sample(1, &[7])));
        assert!(pending.is_complete());
        let text = pending.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert_eq!(
            lines[0],
            "conn 0x0001000000000001 worker 0 peer 127.0.0.1:4000 listen_port 7300 age_ms 1500 buffered_in 3 buffered_out 4 outstanding 5 pinned 0"
        );
        assert!(lines[1].starts_with("conn 0x0001010000000007 worker 1 "));
        assert!(lines[1].ends_with(" pinned 1"), "{}", lines[1]);
        assert!(lines[2].starts_with("conn 0x0001000000000002 worker 0 "));
        assert_eq!(lines[3], "total 24 shown 3");
        assert_eq!(lines[4], "missing worker 2 (its mailbox is full)");
        assert_eq!(lines[5], "END");
    }

    #[test]
    fn a_worker_that_never_answers_is_reported_as_such() {
        let pending = PendingSample::new(1, 20, 1);
        assert_eq!(
            pending.render(),
            "total 0 shown 0\r\nmissing worker 0 (no answer within 1000 ms)\r\nEND\r\n"
        );
    }

    #[test]
    fn the_argument_is_a_count_up_to_the_maximum() {
        assert_eq!(parse_max(None), Some(DEFAULT_CONNS));
        assert_eq!(parse_max(Some("0")), Some(0));
        assert_eq!(parse_max(Some("1000")), Some(1000));
        assert_eq!(parse_max(Some("1001")), None);
        assert_eq!(parse_max(Some("-1")), None);
        assert_eq!(parse_max(Some("ten")), None);
    }
}
