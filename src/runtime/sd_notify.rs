//! systemd's notification protocol (sd_notify(3)), hand-written: one datagram of `KEY=value` lines
//! to the socket named by `$NOTIFY_SOCKET` (a path, or an abstract name when it starts with '@').
//! ccsd sends `READY=1` when its main loop starts (listeners bound, lanes up, workers running),
//! `STATUS=` lines, `RELOADING=1` … `READY=1` around a settings reload, `STOPPING=1` at a graceful
//! stop and `WATCHDOG=1` every half `$WATCHDOG_USEC` when the unit sets `WatchdogSec=`. Across a
//! hot restart the old process sends `MAINPID=<new pid>` and waits until systemd has read it
//! (`BARRIER=1`, sd_notify_barrier(3)) before it exits; the new one sends `MAINPID=` with its
//! `READY=1` (`upgrade.rs`).
//!
//! Without `$NOTIFY_SOCKET` (not run by systemd, or `Type=simple`) every call does nothing. The
//! variables are left set: they are only read here, and a hot restart's successor needs them
//! (the shipped unit has `NotifyAccess=all` for it; a custom actor that starts processes of its
//! own inside the unit should unset `NOTIFY_SOCKET` for them). A failed send is logged
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

    /// Waits (at most [`BARRIER_TIMEOUT`]) until the receiver has read every notification sent
    /// so far, as sd_notify_barrier(3): sends `BARRIER=1` with the write end of a fresh pipe and
    /// waits for the read end to see it closed (systemd closes it once it has handled the
    /// datagrams before). Used before this process exits after a hot restart, so that systemd
    /// has read `MAINPID=` while this process still lives. A failure is logged, nothing more.
    pub(super) fn barrier(&mut self) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(e) = barrier(socket, addr) {
            log_limited!(
                self.failed_log,
                Level::Warn,
                "systemd notification barrier: {e}"
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

/// How long [`Notifier::barrier`] waits for systemd (sd_notify_barrier(3) suggests 5 s).
const BARRIER_TIMEOUT: Duration = Duration::from_secs(5);

/// `BARRIER=1` to `addr` through `socket`, then the wait (see [`Notifier::barrier`]).
fn barrier(socket: &UnixDatagram, addr: &SocketAddr) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix};
    use std::io::IoSlice;
    use std::mem::MaybeUninit;
    use std::os::fd::AsFd;

    let to = match (addr.as_pathname(), addr.as_abstract_name()) {
        (Some(path), _) => SocketAddrUnix::new(path)?,
        (None, Some(name)) => SocketAddrUnix::new_abstract_name(name)?,
        (None, None) => return Err(io::Error::other("an unnamed notification socket")),
    };
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [write.as_fd()];
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg_addr(
        socket,
        &to,
        &[IoSlice::new(b"BARRIER=1")],
        &mut control,
        SendFlags::DONTWAIT,
    )?;
    // Only the copy in flight (then systemd's) keeps the pipe open now.
    drop(write);
    let deadline = Instant::now() + BARRIER_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("not acknowledged within {BARRIER_TIMEOUT:?}"),
            ));
        }
        let timeout = Timespec::try_from(left).map_err(io::Error::other)?;
        let mut fds = [PollFd::new(&read, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            // Closed by the receiver: POLLHUP (nothing is ever written to the pipe).
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
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
