//! A source watched by a poller: [`Watched`] owns an fd (a socket, a pipe) together with its
//! registration in a `polling::Poller`, and takes it out of the poller before the fd can close.
//!
//! `Poller::add` is `unsafe` because an epoll registration belongs to the open file, not to the
//! fd number: an fd closed while still registered would leave the poller reporting events under
//! its key for whatever the number is reused for. The main thread's sources (listeners, the
//! signal socket, the response lane's FIFO, admin clients, custom actors' fds) are all registered
//! through this one type, so that argument is made once, here.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use polling::{Event, PollMode, Poller};

/// `source`, watched level-triggered by `poller` under `interest` while `in_poller`.
pub(crate) struct Watched<S: AsFd> {
    source: S,
    poller: Arc<Poller>,
    interest: Event,
    in_poller: bool,
}

impl<S: AsFd> Watched<S> {
    /// Watches `source` on `poller` (level-triggered) for `interest`, whose key names it.
    ///
    /// # Errors
    /// The poller refused the fd; `source` is dropped.
    pub(crate) fn new(poller: &Arc<Poller>, source: S, interest: Event) -> io::Result<Self> {
        let mut watched = Watched {
            source,
            poller: Arc::clone(poller),
            interest,
            in_poller: false,
        };
        watched.resume()?;
        Ok(watched)
    }

    /// The source, lent only by shared reference: nobody but this guard can close it.
    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    /// Changes what the source is watched for (applied at once when it is in the poller, at
    /// [`resume`](Self::resume) otherwise).
    ///
    /// # Errors
    /// The poller refused the change.
    pub(crate) fn set_interest(&mut self, readable: bool, writable: bool) -> io::Result<()> {
        self.interest = Event::new(self.interest.key, readable, writable);
        if !self.in_poller {
            return Ok(());
        }
        self.poller
            .modify_with_mode(self.source.as_fd(), self.interest, PollMode::Level)
    }

    /// Takes the source out of the poller (it stays open) until [`resume`](Self::resume).
    ///
    /// # Errors
    /// The poller refused; the source counts as out of it anyway (it is not resumed twice).
    pub(crate) fn pause(&mut self) -> io::Result<()> {
        if !self.in_poller {
            return Ok(());
        }
        self.in_poller = false;
        self.poller.delete(self.source.as_fd())
    }

    /// Puts the source back into the poller after [`pause`](Self::pause); nothing if it is in.
    ///
    /// # Errors
    /// The poller refused the fd; the source stays out.
    pub(crate) fn resume(&mut self) -> io::Result<()> {
        if self.in_poller {
            return Ok(());
        }
        // SAFETY: `self` owns `source` and lends it out only by shared reference, so its fd stays
        // open for as long as `self` lives; `Drop` deletes it from the poller (while `in_poller`)
        // before the fields, and with them the fd, are dropped. The poller itself is kept alive
        // by the `Arc`. So the poller never watches a closed fd.
        unsafe {
            self.poller.add_with_mode(
                self.source.as_fd().as_raw_fd(),
                self.interest,
                PollMode::Level,
            )?;
        }
        self.in_poller = true;
        Ok(())
    }
}

impl<S: AsFd> Drop for Watched<S> {
    fn drop(&mut self) {
        if self.in_poller {
            // A failure leaves nothing to undo: the fd closes right after, which ends the
            // registration of an fd that was the last one on its file.
            let _ = self.poller.delete(self.source.as_fd());
        }
    }
}

impl<S: AsFd> fmt::Debug for Watched<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("fd", &self.source.as_fd().as_raw_fd())
            .field("key", &self.interest.key)
            .field("in_poller", &self.in_poller)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use polling::Events;

    use super::*;

    fn ready_keys(poller: &Poller) -> Vec<usize> {
        let mut events = Events::new();
        poller
            .wait(&mut events, Some(Duration::ZERO))
            .expect("wait");
        events.iter().map(|e| e.key).collect()
    }

    #[test]
    fn a_paused_source_reports_nothing_until_resumed_and_a_dropped_one_is_deleted() {
        let poller = Arc::new(Poller::new().expect("poller"));
        let (a, mut b) = UnixStream::pair().expect("pair");
        let mut watched = Watched::new(&poller, a, Event::readable(7)).expect("watched");
        b.write_all(b"x").expect("write");
        assert_eq!(ready_keys(&poller), [7]);
        watched.pause().expect("pause");
        assert_eq!(ready_keys(&poller), Vec::<usize>::new());
        watched.resume().expect("resume");
        assert_eq!(ready_keys(&poller), [7]);
        drop(watched);
        // The fd number is reused by the next socket; a registration left behind would report
        // its readiness under key 7.
        let (reused, mut peer) = UnixStream::pair().expect("pair");
        peer.write_all(b"y").expect("write");
        assert_eq!(ready_keys(&poller), Vec::<usize>::new());
        drop(reused);
    }
}
