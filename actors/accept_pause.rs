//! Backing off a listener while the process is out of file descriptors.
//!
//! A listener sits in the main poller in level-triggered mode. When `accept` fails with EMFILE
//! (the process's `RLIMIT_NOFILE`) or ENFILE (the system's table), the pending connection stays
//! in the backlog, the listener stays readable, and a loop that simply tries again burns a core
//! in failed `accept` calls. So its owner (the acceptor, the admin) takes the listener out of the
//! poller for a short pause that doubles with every failure in a row, from [`FIRST_PAUSE`] up to
//! [`MAX_PAUSE`], puts it back when the pause is over, and starts again from [`FIRST_PAUSE`] once
//! an `accept` succeeds. Clients meanwhile wait in the kernel's backlog and are accepted as soon as
//! descriptors are free again (within [`MAX_PAUSE`]).

use std::io;
use std::time::{Duration, Instant};

use rustix::io::Errno;

/// The first pause after a failure.
pub(crate) const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause: how late, at most, accepting resumes after descriptors free up.
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Whether an `accept` failure means the process (or the system) has no descriptor (or socket
/// memory) left for the new connection, so that trying again at once would fail the same way.
pub(crate) fn is_out_of_descriptors(e: &io::Error) -> bool {
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .iter()
        .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

/// The pause state of one owner's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AcceptPause {
    /// The length of the next pause.
    next: Duration,
    /// When the current pause ends; `None` while accepting.
    until: Option<Instant>,
}

impl Default for AcceptPause {
    fn default() -> Self {
        AcceptPause {
            next: FIRST_PAUSE,
            until: None,
        }
    }
}

impl AcceptPause {
    /// Whether the listeners are out of the poller now.
    pub(crate) fn is_paused(&self) -> bool {
        self.until.is_some()
    }

    /// Starts a pause at `now`; returns its length (twice the last one, at most [`MAX_PAUSE`]).
    pub(crate) fn start(&mut self, now: Instant) -> Duration {
        let pause = self.next;
        self.until = Some(now + pause);
        self.next = (pause * 2).min(MAX_PAUSE);
        pause
    }

    /// Whether a pause is over at `now` (the listeners should go back into the poller).
    pub(crate) fn is_over(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| until <= now)
    }

    /// The listeners are back in the poller.
    pub(crate) fn end(&mut self) {
        self.until = None;
    }

    /// An `accept` succeeded: the next failure pauses for [`FIRST_PAUSE`] again.
    pub(crate) fn accepted(&mut self) {
        self.next = FIRST_PAUSE;
    }

    /// Time until the current pause is over, if one runs.
    pub(crate) fn time_left(&self, now: Instant) -> Option<Duration> {
        self.until.map(|until| until.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_maximum_and_restart_after_an_accept() {
        let mut pause = AcceptPause::default();
        let now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..9 {
            lengths.push(pause.start(now));
            assert!(pause.is_paused() && !pause.is_over(now));
            assert!(pause.is_over(now + MAX_PAUSE));
            pause.end();
        }
        let ms: Vec<u128> = lengths.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        pause.accepted();
        assert_eq!(pause.start(now), FIRST_PAUSE);
        assert_eq!(pause.time_left(now), Some(FIRST_PAUSE));
        pause.end();
        assert_eq!(pause.time_left(now), None);
    }

    #[test]
    fn only_resource_exhaustion_counts_as_out_of_descriptors() {
        let err = |errno: Errno| io::Error::from_raw_os_error(errno.raw_os_error());
        assert!(is_out_of_descriptors(&err(Errno::MFILE)));
        assert!(is_out_of_descriptors(&err(Errno::NFILE)));
        assert!(!is_out_of_descriptors(&err(Errno::CONNABORTED)));
        assert!(!is_out_of_descriptors(&io::ErrorKind::WouldBlock.into()));
    }
}
