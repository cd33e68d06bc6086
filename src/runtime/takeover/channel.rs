//! The handover channel: a `SOCK_SEQPACKET` Unix socket between the running ccsd and the one
//! taking over, carrying whole messages with the descriptors that belong to them
//! (`docs/hot-restart.md`, "The handover channel").
//!
//! The listening socket is mode 0600 from the moment it exists (the mode is set on the socket
//! before `bind`, which creates the file with it) and both ends check that the other runs under
//! our effective uid (`SO_PEERCRED`). A message is at most [`MAX_MESSAGE`] bytes with at most
//! [`MAX_FDS_PER_MESSAGE`] descriptors (the kernel's `SCM_MAX_FD`); the receiver's control buffer
//! holds that many, so a cut control buffer (`MSG_CTRUNC`) can only come from a broken peer and
//! is refused, as is a cut payload (`MSG_TRUNC`). Received descriptors are close-on-exec
//! (`MSG_CMSG_CLOEXEC`), so a binary started later inherits none of them.
//!
//! Many descriptors and many bytes (every connection of a process) travel as a *bulk*: a header
//! message with the counts and a sealed memfd holding the bytes, then the descriptors in batches
//! of up to 253, so 10,000 connections take 41 messages (`bulk.rs`).

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::net::sockopt::Timeout;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use rustix::process::Uid;

use crate::socket_file::remove_if_stale;

mod bulk;
#[cfg(test)]
mod tests;

/// The most bytes one message carries.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;
/// The most descriptors one message carries (Linux's `SCM_MAX_FD`).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;
/// How long [`HandoverConn::send`] waits for room in the socket before giving up on the peer.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections a listener lets wait for `accept` (one new process at a time is expected).
const BACKLOG: i32 = 4;
/// The control buffer that holds [`MAX_FDS_PER_MESSAGE`] descriptors.
const CONTROL_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE));

/// The step of the channel that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Bind,
    Connect,
    Accept,
    Send,
    Recv,
    PeerCheck,
    Memfd,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Bind => "bind",
            Step::Connect => "connect",
            Step::Accept => "accept",
            Step::Send => "send",
            Step::Recv => "receive",
            Step::PeerCheck => "peer check",
            Step::Memfd => "memfd",
        })
    }
}

/// Why the handover channel failed.
#[derive(Debug)]
pub(crate) enum ChannelError {
    /// A system call failed at `step`.
    Io { step: Step, source: io::Error },
    /// The peer runs under another uid; the connection is closed.
    ForeignPeer { uid: u32 },
    /// More than the channel carries (refused before anything is sent, or refused on receipt).
    TooLarge {
        what: &'static str,
        found: u64,
        max: u64,
    },
    /// A message or its descriptors arrived cut (`MSG_TRUNC`, `MSG_CTRUNC`); every descriptor
    /// that did arrive is closed.
    Truncated,
    /// The peer closed the channel.
    Closed,
    /// Nothing happened within the time given, at `step`.
    TimedOut { step: Step },
    /// A message that breaks the channel's framing (a bulk's header or batches).
    BadFraming { reason: &'static str },
}

impl ChannelError {
    fn io(step: Step) -> impl FnOnce(Errno) -> ChannelError {
        move |e| ChannelError::Io {
            step,
            source: e.into(),
        }
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Io { step, source } => write!(f, "handover channel: {step}: {source}"),
            ChannelError::ForeignPeer { uid } => write!(
                f,
                "handover channel: the peer runs as uid {uid}, not as this process's uid"
            ),
            ChannelError::TooLarge { what, found, max } => {
                write!(f, "handover channel: {what}: {found} (at most {max})")
            }
            ChannelError::Truncated => {
                f.write_str("handover channel: a message or its descriptors arrived cut")
            }
            ChannelError::Closed => f.write_str("handover channel: the peer closed it"),
            ChannelError::TimedOut { step } => write!(f, "handover channel: {step}: timed out"),
            ChannelError::BadFraming { reason } => write!(f, "handover channel: {reason}"),
        }
    }
}

impl std::error::Error for ChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChannelError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A message and the descriptors that came with it, in the order they were sent.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// The listening end, held by the running ccsd; its socket file is removed on drop if it is
/// still the one bound here.
#[derive(Debug)]
pub(crate) struct HandoverListener {
    fd: OwnedFd,
    path: PathBuf,
    /// Device and inode of the socket file, to recognise it at removal.
    file_id: (u64, u64),
}

impl HandoverListener {
    /// Creates the non-blocking listening socket at `path`, mode 0600 from the start. A socket
    /// file nobody listens on and that belongs to our uid is replaced; a live one, another
    /// user's or a file of another kind is an error.
    pub(crate) fn bind(path: &Path) -> Result<HandoverListener, ChannelError> {
        let bind_err = |source: io::Error| ChannelError::Io {
            step: Step::Bind,
            source: io::Error::new(source.kind(), format!("{}: {source}", path.display())),
        };
        remove_if_stale(
            path,
            SocketType::SEQPACKET,
            Some(rustix::process::geteuid()),
        )
        .map_err(bind_err)?;
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| bind_err(e.into()))?;
        // Before bind: Linux creates the file with the socket inode's mode (less the umask), so
        // no other user can connect at any moment.
        rustix::fs::fchmod(&fd, Mode::RUSR | Mode::WUSR).map_err(|e| bind_err(e.into()))?;
        let addr = SocketAddrUnix::new(path).map_err(|e| bind_err(e.into()))?;
        rustix::net::bind(&fd, &addr).map_err(|e| bind_err(e.into()))?;
        // From here the file is ours: a failure below must not leave it behind.
        let meta = std::fs::symlink_metadata(path).map_err(bind_err)?;
        let listener = HandoverListener {
            fd,
            path: path.to_owned(),
            file_id: (meta.dev(), meta.ino()),
        };
        rustix::net::listen(&listener.fd, BACKLOG).map_err(|e| bind_err(e.into()))?;
        // Also on the file itself, in case a kernel ignored the socket's mode.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
        Ok(listener)
    }

    /// Accepts one waiting connection (`None` when nobody waits) and checks that its process
    /// runs as our uid; another user's connection is closed and refused.
    pub(crate) fn accept(&self) -> Result<Option<HandoverConn>, ChannelError> {
        loop {
            match rustix::net::accept_with(&self.fd, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
                Ok(fd) => {
                    check_peer(&fd, rustix::process::geteuid())?;
                    return Ok(Some(HandoverConn { fd }));
                }
                Err(Errno::WOULDBLOCK) => return Ok(None),
                // A connection that went away before we took it: look for the next one.
                Err(Errno::INTR | Errno::CONNABORTED) => {}
                Err(e) => return Err(ChannelError::io(Step::Accept)(e)),
            }
        }
    }
}

impl AsFd for HandoverListener {
    /// For a poller: readable when a connection waits for [`HandoverListener::accept`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for HandoverListener {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == self.file_id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Refuses a peer whose process does not run as `expected`.
fn check_peer(fd: &OwnedFd, expected: Uid) -> Result<(), ChannelError> {
    let cred =
        rustix::net::sockopt::socket_peercred(fd).map_err(ChannelError::io(Step::PeerCheck))?;
    if cred.uid != expected {
        return Err(ChannelError::ForeignPeer {
            uid: cred.uid.as_raw(),
        });
    }
    Ok(())
}

/// One end of a handover connection: messages with descriptors both ways.
#[derive(Debug)]
pub(crate) struct HandoverConn {
    fd: OwnedFd,
}

impl HandoverConn {
    /// Connects to the listener at `path`, waiting at most `timeout` (for a full accept queue),
    /// and checks that the listening process runs as our uid.
    pub(crate) fn connect(path: &Path, timeout: Duration) -> Result<HandoverConn, ChannelError> {
        let connect_err = ChannelError::io(Step::Connect);
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(connect_err)?;
        // A blocking Unix connect waits for room in the listener's queue at most SO_SNDTIMEO
        // (0 would mean forever).
        let timeout = timeout.max(Duration::from_millis(1));
        rustix::net::sockopt::set_socket_timeout(&fd, Timeout::Send, Some(timeout))
            .map_err(ChannelError::io(Step::Connect))?;
        let addr = SocketAddrUnix::new(path).map_err(ChannelError::io(Step::Connect))?;
        loop {
            match rustix::net::connect(&fd, &addr) {
                Ok(()) => break,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN | Errno::INPROGRESS) => {
                    return Err(ChannelError::TimedOut {
                        step: Step::Connect,
                    });
                }
                Err(e) => {
                    return Err(ChannelError::Io {
                        step: Step::Connect,
                        source: io::Error::new(
                            io::Error::from(e).kind(),
                            format!("{}: {e}", path.display()),
                        ),
                    });
                }
            }
        }
        rustix::net::sockopt::set_socket_timeout(&fd, Timeout::Send, None)
            .map_err(ChannelError::io(Step::Connect))?;
        rustix::io::ioctl_fionbio(&fd, true).map_err(ChannelError::io(Step::Connect))?;
        check_peer(&fd, rustix::process::geteuid())?;
        Ok(HandoverConn { fd })
    }

    /// Sends `msg` (1 to [`MAX_MESSAGE`] bytes) with `fds` (at most [`MAX_FDS_PER_MESSAGE`]) as
    /// one message, waiting at most [`SEND_TIMEOUT`] for room.
    pub(crate) fn send(&self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), ChannelError> {
        if msg.is_empty() {
            // A zero-length read is how the receiver sees the end of the channel.
            return Err(ChannelError::BadFraming {
                reason: "a message must hold at least one byte",
            });
        }
        check_at_most("message bytes", msg.len() as u64, MAX_MESSAGE as u64)?;
        check_at_most(
            "descriptors in one message",
            fds.len() as u64,
            MAX_FDS_PER_MESSAGE as u64,
        )?;
        let mut space = [MaybeUninit::<u8>::uninit(); CONTROL_SPACE];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(ChannelError::TooLarge {
                what: "descriptors in one message",
                found: fds.len() as u64,
                max: MAX_FDS_PER_MESSAGE as u64,
            });
        }
        let deadline = Instant::now() + SEND_TIMEOUT;
        loop {
            match rustix::net::sendmsg(
                &self.fd,
                &[IoSlice::new(msg)],
                &mut control,
                SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
            ) {
                // SOCK_SEQPACKET sends a message whole or not at all.
                Ok(_) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    wait_for(&self.fd, PollFlags::OUT, Some(deadline), Step::Send)?
                }
                Err(Errno::PIPE | Errno::CONNRESET) => return Err(ChannelError::Closed),
                Err(e) => return Err(ChannelError::io(Step::Send)(e)),
            }
        }
    }

    /// Receives one message, waiting at most `timeout` (`None`: until one comes).
    pub(crate) fn recv(&self, timeout: Option<Duration>) -> Result<Received, ChannelError> {
        let mut bytes = vec![0; MAX_MESSAGE];
        let mut space = [MaybeUninit::<u8>::uninit(); CONTROL_SPACE];
        let deadline = timeout.map(|t| Instant::now() + t);
        let (len, fds) = self.recv_into(deadline, &mut bytes, &mut space)?;
        bytes.truncate(len);
        bytes.shrink_to_fit();
        Ok(Received { bytes, fds })
    }

    /// Receives one message into `buf` (a longer one is [`ChannelError::Truncated`]) and its
    /// descriptors through the control buffer `space`, waiting until `deadline`; returns the
    /// message's length and its descriptors.
    fn recv_into(
        &self,
        deadline: Option<Instant>,
        buf: &mut [u8],
        space: &mut [MaybeUninit<u8>],
    ) -> Result<(usize, Vec<OwnedFd>), ChannelError> {
        loop {
            let mut control = RecvAncillaryBuffer::new(space);
            let received = rustix::net::recvmsg(
                &self.fd,
                &mut [IoSliceMut::new(buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
            );
            let msg = match received {
                Ok(msg) => msg,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => {
                    drop(control);
                    wait_for(&self.fd, PollFlags::IN, deadline, Step::Recv)?;
                    continue;
                }
                Err(Errno::CONNRESET) => return Err(ChannelError::Closed),
                Err(e) => return Err(ChannelError::io(Step::Recv)(e)),
            };
            // Owned from here: whatever is returned below, they are closed unless handed out.
            let mut fds = Vec::new();
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(rights) = message {
                    fds.extend(rights);
                }
            }
            if msg
                .flags
                .intersects(ReturnFlags::CTRUNC | ReturnFlags::TRUNC)
            {
                return Err(ChannelError::Truncated);
            }
            if msg.bytes == 0 {
                return Err(ChannelError::Closed);
            }
            return Ok((msg.bytes, fds));
        }
    }
}

impl AsFd for HandoverConn {
    /// For a poller: readable when a message (or the end) waits.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn check_at_most(what: &'static str, found: u64, max: u64) -> Result<(), ChannelError> {
    if found > max {
        return Err(ChannelError::TooLarge { what, found, max });
    }
    Ok(())
}

/// Waits until `fd` is ready for `events` or `deadline` passes.
fn wait_for(
    fd: &OwnedFd,
    events: PollFlags,
    deadline: Option<Instant>,
    step: Step,
) -> Result<(), ChannelError> {
    loop {
        let timeout = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ChannelError::TimedOut { step });
                }
                Some(Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: i64::MAX,
                    tv_nsec: 0,
                }))
            }
            None => None,
        };
        let mut polled = [PollFd::new(fd, events)];
        match rustix::event::poll(&mut polled, timeout.as_ref()) {
            // Ready, or hung up or in error: the next call on the socket says which.
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(ChannelError::io(step)(e)),
        }
    }
}
