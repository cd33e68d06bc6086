//! The process's signals: SIGTERM and SIGINT ask for a graceful stop, SIGHUP and SIGUSR1 for
//! reopening the log file (logrotate; SIGUSR1 as nginx gives it), and SIGUSR2, reserved for a
//! later hot restart, is ignored with a log line, so that none of them can kill ccsd.
//!
//! The signal handlers (signal-hook) only set a flag and then write a byte to a socket that sits in
//! the main poller; the main loop does the work. The flag tells the signals apart (the byte is the
//! same for all) and is set first: signal-hook runs a signal's actions in the order they were
//! registered, so when the byte is read the flag is already visible.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{error, info};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};

use crate::logging::{LogLimiter, reopen_log_file};
use crate::stats::ProcessCounters;

/// Which signals arrived since the last look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// SIGTERM or SIGINT: stop gracefully.
    pub stop: bool,
    /// SIGHUP: reopen the log file.
    pub hangup: bool,
    /// SIGUSR1: reopen the log file, as SIGHUP.
    pub user1: bool,
    /// SIGUSR2: reserved for hot restart; ignored for now.
    pub user2: bool,
}

/// The installed handlers and the socket they write to.
#[derive(Debug)]
pub struct Signals {
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
    user1: Arc<AtomicBool>,
    user2: Arc<AtomicBool>,
    counters: ProcessCounters,
    reopen_log: LogLimiter,
    ignored_log: LogLimiter,
}

impl Signals {
    /// Installs the handlers for SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2.
    ///
    /// # Errors
    /// The socket pair or a handler could not be set up.
    pub fn install() -> io::Result<Signals> {
        let (wake, write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let hangup = Arc::new(AtomicBool::new(false));
        let user1 = Arc::new(AtomicBool::new(false));
        let user2 = Arc::new(AtomicBool::new(false));
        for (signal, flag) in [
            (SIGTERM, &stop),
            (SIGINT, &stop),
            (SIGHUP, &hangup),
            (SIGUSR1, &user1),
            (SIGUSR2, &user2),
        ] {
            // The flag first: actions run in registration order, so it is set before the byte.
            signal_hook::flag::register(signal, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
        }
        Ok(Signals {
            wake,
            stop,
            hangup,
            user1,
            user2,
            counters: ProcessCounters::default(),
            reopen_log: LogLimiter::default(),
            ignored_log: LogLimiter::default(),
        })
    }

    /// The socket to watch for readability in the main poller.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Empties the socket and says which signals arrived since the last call.
    pub fn take(&mut self) -> Received {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        Received {
            stop: self.stop.swap(false, Ordering::SeqCst),
            hangup: self.hangup.swap(false, Ordering::SeqCst),
            user1: self.user1.swap(false, Ordering::SeqCst),
            user2: self.user2.swap(false, Ordering::SeqCst),
        }
    }

    /// Carries out what the signals in `received` ask for, but stopping (the caller's part):
    /// SIGHUP and SIGUSR1 reopen the log file (once, if both came), SIGUSR2 is logged and ignored.
    pub fn handle(&mut self, received: Received) {
        match (received.hangup, received.user1) {
            (true, true) => self.reopen_log("SIGHUP and SIGUSR1"),
            (true, false) => self.reopen_log("SIGHUP"),
            (false, true) => self.reopen_log("SIGUSR1"),
            (false, false) => {}
        }
        if received.user2 {
            self.counters.ignored_signals += 1;
            if let Some(held) = self.ignored_log.allow() {
                info!(
                    "SIGUSR2: ignored (reserved for hot restart, which this version does not have) ({held} similar suppressed)"
                );
            }
        }
    }

    /// SIGHUP or SIGUSR1 (named by `signal` in the log line): reopens the log file at its
    /// configured path, so lines go to a new file after logrotate renamed the old one. A failure
    /// keeps the old file and is logged (rate-limited).
    fn reopen_log(&mut self, signal: &str) {
        match reopen_log_file() {
            Ok(Some(path)) => {
                self.counters.log_reopens += 1;
                info!("{signal}: reopened the log file {}", path.display());
            }
            Ok(None) => info!("{signal}: no log file to reopen (log.file is not set)"),
            Err(e) => {
                self.counters.log_reopen_errors += 1;
                if let Some(held) = self.reopen_log.allow() {
                    error!(
                        "{signal}: cannot reopen the log, still writing to the old file: {e} ({held} similar suppressed)"
                    );
                }
            }
        }
    }

    /// What was counted so far.
    pub fn counters(&self) -> ProcessCounters {
        self.counters
    }
}
