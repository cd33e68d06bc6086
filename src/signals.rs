//! The process's signals: SIGTERM and SIGINT ask for a graceful stop, SIGHUP for reopening the
//! log file (logrotate).
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
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::logging::{LogLimiter, reopen_log_file};
use crate::stats::ProcessCounters;

/// Which signals arrived since the last look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// SIGTERM or SIGINT: stop gracefully.
    pub stop: bool,
    /// SIGHUP: reopen the log file.
    pub hangup: bool,
}

/// The installed handlers and the socket they write to.
#[derive(Debug)]
pub struct Signals {
    wake: UnixStream,
    stop: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
    counters: ProcessCounters,
    reopen_log: LogLimiter,
}

impl Signals {
    /// Installs the handlers for SIGTERM, SIGINT and SIGHUP.
    ///
    /// # Errors
    /// The socket pair or a handler could not be set up.
    pub fn install() -> io::Result<Signals> {
        let (wake, write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let hangup = Arc::new(AtomicBool::new(false));
        for (signal, flag) in [(SIGTERM, &stop), (SIGINT, &stop), (SIGHUP, &hangup)] {
            // The flag first: actions run in registration order, so it is set before the byte.
            signal_hook::flag::register(signal, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
        }
        Ok(Signals {
            wake,
            stop,
            hangup,
            counters: ProcessCounters::default(),
            reopen_log: LogLimiter::default(),
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
        }
    }

    /// SIGHUP: reopens the log file at its configured path, so lines go to a new file after
    /// logrotate renamed the old one. A failure keeps the old file and is logged (rate-limited).
    pub fn reopen_log(&mut self) {
        match reopen_log_file() {
            Ok(Some(path)) => {
                self.counters.log_reopens += 1;
                info!("SIGHUP: reopened the log file {}", path.display());
            }
            Ok(None) => info!("SIGHUP: no log file to reopen (log.file is not set)"),
            Err(e) => {
                self.counters.log_reopen_errors += 1;
                if let Some(held) = self.reopen_log.allow() {
                    error!(
                        "SIGHUP: cannot reopen the log, still writing to the old file: {e} ({held} similar suppressed)"
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
