//! systemd's notification protocol (sd_notify(3)), hand-written: one datagram of `KEY=value` lines
//! to the socket named by `$NOTIFY_SOCKET` (a path, or an abstract name when it starts with '@').
//! ccsd sends `READY=1` when its main loop starts (listeners bound, lanes up, workers running),
//! `STATUS=` lines, `RELOADING=1` … `READY=1` around a settings reload, `STOPPING=1` at a graceful
//! stop and `WATCHDOG=1` every half `$WATCHDOG_USEC` when the unit sets `WatchdogSec=`.
//!
//! Without `$NOTIFY_SOCKET` (not run by systemd, or `Type=simple`) every call does nothing. The
//! variables are left set: they are only read here, and a child that inherits them (an actor's
//! process, say) is refused by systemd under `NotifyAccess=main` anyway. A failed send is logged
//! (rate-limited) and otherwise ignored: systemd's bookkeeping must never stop ccsd.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use log::Level;

use crate::logging::{LogLimiter, log_limited};

/// Where notifications go, and the watchdog's schedule.
#[derive(Debug)]
pub(super) struct Notifier {
    /// `None` when `$NOTIFY_SOCKET` is not set (or names no usable socket).
    target: Option<(UnixDatagram, SocketAddr)>,
    /// Half the watchdog interval systemd asked for, when it asked this process.
    watchdog_every: Option<Duration>,
    next_watchdog: Instant,
    failed_log: LogLimiter,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (see sd_watchdog_enabled(3)).
    pub(super) fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let name = name.to_string_lossy().into_owned();
            match socket_for(&name) {
                Ok(target) => Some(target),
                Err(e) => {
                    log::warn!("NOTIFY_SOCKET={name}: cannot notify systemd there: {e}");
                    None
                }
            }
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && for_us && target.is_some())
            .map(|usec| Duration::from_micros(usec) / 2);
        Notifier {
            target,
            watchdog_every,
            next_watchdog: Instant::now(),
            failed_log: LogLimiter::default(),
        }
    }

    /// Sends `state` (newline-separated `KEY=value` assignments) as one datagram.
    pub(super) fn notify(&mut self, state: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
            log_limited!(
                self.failed_log,
                Level::Warn,
                "cannot notify systemd ({}): {e}",
                state.replace('\n', " ")
            );
        }
    }

    /// `RELOADING=1` with the monotonic time, as systemd ≥ 253 wants it for `Type=notify-reload`.
    pub(super) fn reloading(&mut self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
        self.notify(&format!(
            "RELOADING=1\nSTATUS=reloading the settings\nMONOTONIC_USEC={usec}"
        ));
    }

    /// Sends `WATCHDOG=1` when it is due; how long until the next one (`None`: no watchdog).
    pub(super) fn watchdog_tick(&mut self) -> Option<Duration> {
        let every = self.watchdog_every?;
        let now = Instant::now();
        if now >= self.next_watchdog {
            self.notify("WATCHDOG=1");
            self.next_watchdog = now + every;
        }
        Some(self.next_watchdog.saturating_duration_since(now))
    }
}

/// An unbound datagram socket and the address `name` stands for ('@' starts an abstract name).
fn socket_for(name: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match name.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
        None if name.starts_with('/') => SocketAddr::from_pathname(name)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor an abstract name (@...)",
            ));
        }
    };
    let socket = UnixDatagram::unbound()?;
    // sd_notify's datagrams are small; a full receive queue must not block the main loop.
    socket.set_nonblocking(true)?;
    Ok((socket, addr))
}
