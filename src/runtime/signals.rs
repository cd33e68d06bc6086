//! The process's signals: SIGTERM and SIGINT ask for a graceful stop, SIGHUP for a settings
//! reload (what `systemctl reload` sends; the caller does it, as admin `reload`), SIGUSR1 for
//! reopening the log file (logrotate's postrotate, as nginx has it), and SIGUSR2 for a hot
//! restart (the caller starts a successor: `upgrade.rs`), so that none of them can kill ccsd.
//!
//! The signal handlers (signal-hook) only set a flag and then write a byte to a socket that sits in
//! the main poller; the main loop does the work. The flag tells the signals apart (the byte is the
//! same for all) and is set first: signal-hook runs a signal's actions in the order they were
//! registered, so when the byte is read the flag is already visible.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, info};
use polling::{Event, Poller};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};

use super::{StartError, StartStep};
use crate::logging::{LogLimiter, log_limited, reopen_log_file};
use crate::stats::ProcessCounters;
use crate::watched::Watched;

/// Which signals arrived since the last look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Received {
    /// SIGTERM or SIGINT: stop gracefully.
    pub stop: bool,
    /// SIGHUP: reload the settings (the caller's part).
    pub hangup: bool,
    /// SIGUSR1: reopen the log file.
    pub user1: bool,
    /// SIGUSR2: start a successor that takes this process over (the caller's part).
    pub user2: bool,
}

/// The flags the handlers set, one per kind of signal.
struct Flags {
    stop: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
    user1: Arc<AtomicBool>,
    user2: Arc<AtomicBool>,
}

/// The installed handlers and the socket they write to.
#[derive(Debug)]
pub(super) struct Signals {
    /// Watched by the main poller (readable) under the signals' key.
    wake: Watched<UnixStream>,
    stop: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
    user1: Arc<AtomicBool>,
    user2: Arc<AtomicBool>,
    counters: ProcessCounters,
    reopen_log: LogLimiter,
    ignored_log: LogLimiter,
}

impl Signals {
    /// Installs the handlers for SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2, and has `poller`
    /// watch the socket they write to under `key`.
    ///
    /// # Errors
    /// The socket pair or a handler could not be set up, or the poller refused the socket.
    pub(crate) fn install(poller: &Arc<Poller>, key: usize) -> Result<Signals, StartError> {
        Signals::install_handlers()
            .map_err(StartError::at(StartStep::SignalHandlers))
            .and_then(|(wake, flags)| {
                let wake = Watched::new(poller, wake, Event::readable(key))
                    .map_err(StartError::at(StartStep::WatchSignals))?;
                Ok(Signals {
                    wake,
                    stop: flags.stop,
                    hangup: flags.hangup,
                    user1: flags.user1,
                    user2: flags.user2,
                    counters: ProcessCounters::default(),
                    reopen_log: LogLimiter::default(),
                    ignored_log: LogLimiter::default(),
                })
            })
    }

    /// The handlers, the flags they set and the socket they write a byte to.
    fn install_handlers() -> io::Result<(UnixStream, Flags)> {
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
        let flags = Flags {
            stop,
            hangup,
            user1,
            user2,
        };
        Ok((wake, flags))
    }

    /// Empties the socket and says which signals arrived since the last call.
    pub(super) fn take(&mut self) -> Received {
        let mut buf = [0u8; 64];
        while matches!(self.wake.source().read(&mut buf), Ok(n) if n > 0) {}
        // SYNC POINT: each handler stores its flag (signal-hook: SeqCst) before it writes its byte,
        // so a byte read above means its flag is already set. Reading and clearing in one swap
        // loses no signal: one that lands after the swap sets the flag again and writes another
        // byte, which wakes the loop for it. No other memory is published through the flags, so
        // SeqCst is not needed for that; it only matches the handlers' stores.
        Received {
            stop: self.stop.swap(false, Ordering::SeqCst),
            hangup: self.hangup.swap(false, Ordering::SeqCst),
            user1: self.user1.swap(false, Ordering::SeqCst),
            user2: self.user2.swap(false, Ordering::SeqCst),
        }
    }

    /// Carries out what the signals in `received` ask for, but stopping, reloading and hot
    /// restarting (the caller's part): SIGUSR1 reopens the log file.
    pub(super) fn handle(&mut self, received: Received) {
        if received.user1 {
            self.reopen_log("SIGUSR1");
        }
    }

    /// A SIGUSR2 that started nothing (`why`: a successor already runs, ccsd is stopping, the
    /// binary cannot be started): counted, and logged at most once per ten seconds.
    pub(super) fn ignored_hot_restart(&mut self, why: &str) {
        self.counters.ignored_signals += 1;
        log_limited!(self.ignored_log, Level::Warn, "SIGUSR2: ignored: {why}");
    }

    /// SIGUSR1 (named by `signal` in the log line): reopens the log file at its
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
                log_limited!(
                    self.reopen_log,
                    Level::Error,
                    "{signal}: cannot reopen the log, still writing to the old file: {e}"
                );
            }
        }
    }

    /// What was counted so far.
    pub(super) fn counters(&self) -> ProcessCounters {
        self.counters
    }
}
