//! The admin's listening sockets: the TCP port and the optional Unix socket (`admin.unix`), the
//! connections they accept ([`AdminStream`]), and how they keep the admin reachable when the
//! process runs out of file descriptors.
//!
//! The Unix socket is made mode 0600 before it is bound (Linux gives a socket file the mode of
//! the socket's inode, less the umask), so at no moment can another user connect; a stale socket
//! file left by a ccsd that died is replaced, a live one or a file of another kind is an error.
//! The file is removed when the admin is dropped, if it is still ours.
//!
//! Out of descriptors, the admin first gives up a reserve descriptor it keeps open for that
//! moment, so the operator's `stats` still gets in, and takes it back as soon as an admin client
//! closes (or, failing that, when descriptors are free again); without one it pauses its
//! listeners as the acceptor does ([`AcceptPause`]).

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use polling::{Event, Poller};
use rustix::fs::Mode;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::actors::accept_pause::{AcceptPause, is_out_of_descriptors};
use crate::settings::AdminSettings;
use crate::socket_file::remove_if_stale;
use crate::watched::Watched;

/// How often a missing reserve descriptor is asked for again.
const RESERVE_RETRY: Duration = Duration::from_secs(1);

/// Which of the admin's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// The TCP port (`admin.addr`).
    Tcp,
    /// The Unix socket (`admin.unix`).
    Unix,
}

/// An accepted admin connection.
#[derive(Debug)]
pub(super) enum AdminStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AdminStream {
    pub(super) fn origin(&self) -> Origin {
        match self {
            AdminStream::Tcp(_) => Origin::Tcp,
            AdminStream::Unix(_) => Origin::Unix,
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            AdminStream::Tcp(s) => s.set_nonblocking(true),
            AdminStream::Unix(s) => s.set_nonblocking(true),
        }
    }
}

// By shared reference, as for the streams themselves: the admin holds its clients' streams in
// a `Watched`, which lends them out only that way.
impl Read for &AdminStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            AdminStream::Tcp(s) => (&*s).read(buf),
            AdminStream::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &AdminStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            AdminStream::Tcp(s) => (&*s).write(buf),
            AdminStream::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for AdminStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            AdminStream::Tcp(s) => s.as_fd(),
            AdminStream::Unix(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for AdminStream {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// Why the admin could not open its listeners.
#[derive(Debug)]
pub enum AdminBindError {
    /// `admin.addr` could not be bound.
    Tcp(io::Error),
    /// The main poller refused the bound `admin.addr` listener.
    Watch(io::Error),
    /// `admin.unix` could not be made: the path and the step that failed.
    Unix {
        /// The configured path.
        path: PathBuf,
        /// What failed.
        step: &'static str,
        /// What the system said.
        source: io::Error,
    },
}

impl fmt::Display for AdminBindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminBindError::Tcp(e) => write!(f, "{e}"),
            AdminBindError::Watch(e) => write!(f, "cannot watch it in the main poller: {e}"),
            AdminBindError::Unix { path, step, source } => {
                write!(f, "admin.unix {}: {step}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for AdminBindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminBindError::Tcp(e)
            | AdminBindError::Watch(e)
            | AdminBindError::Unix { source: e, .. } => Some(e),
        }
    }
}

/// The Unix socket and its file, removed on drop if it is still the one bound here.
#[derive(Debug)]
struct UnixSocket {
    listener: Watched<UnixListener>,
    path: PathBuf,
    /// Device and inode of the socket file, to recognise it at removal.
    file_id: (u64, u64),
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == self.file_id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The admin's listeners, their pause state and the reserve descriptor.
#[derive(Debug)]
pub(super) struct AdminListeners {
    /// Watched by the main poller under the admin's first key.
    tcp: Watched<TcpListener>,
    /// Watched under the key after it.
    unix: Option<UnixSocket>,
    pause: AcceptPause,
    /// Given up when an `accept` finds no descriptor, so the operator still gets in.
    reserve: Option<File>,
    next_reserve_try: Instant,
}

impl AdminListeners {
    /// Binds `admin.addr` and, if set, `admin.unix`, watched by `poller` under `key` and
    /// `key + 1`.
    pub(super) fn bind(
        settings: &AdminSettings,
        poller: &Arc<Poller>,
        key: usize,
        handed: Option<TcpListener>,
    ) -> Result<AdminListeners, AdminBindError> {
        let tcp = match handed {
            Some(tcp) => tcp,
            None => TcpListener::bind(settings.addr).map_err(AdminBindError::Tcp)?,
        };
        tcp.set_nonblocking(true).map_err(AdminBindError::Tcp)?;
        let tcp = Watched::new(poller, tcp, Event::readable(key)).map_err(AdminBindError::Watch)?;
        let unix = match settings.unix.as_deref() {
            Some(path) => Some(bind_unix(path, poller, key + 1)?),
            None => None,
        };
        Ok(AdminListeners {
            tcp,
            unix,
            pause: AcceptPause::default(),
            reserve: open_reserve().ok(),
            next_reserve_try: Instant::now(),
        })
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.source().local_addr()
    }

    /// The TCP listener's socket, to hand to a process taking over.
    pub(super) fn tcp_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.tcp.source().as_fd()
    }

    /// Closes the Unix socket and removes its file (a hot restart: the new process binds its own
    /// once this one has let go).
    pub(super) fn close_unix(&mut self) {
        self.unix = None;
    }

    /// Binds the Unix socket at `path` now (after a hot restart's commit), under `key`.
    pub(super) fn open_unix(
        &mut self,
        path: &Path,
        poller: &Arc<Poller>,
        key: usize,
    ) -> Result<(), AdminBindError> {
        self.unix = Some(bind_unix(path, poller, key)?);
        Ok(())
    }

    pub(super) fn unix_path(&self) -> Option<&Path> {
        self.unix.as_ref().map(|u| u.path.as_path())
    }

    /// Accepts one connection from `origin`; out of descriptors, gives up the reserve and tries
    /// once more (`used_reserve` tells). `Err(WouldBlock)` when nothing is pending.
    pub(super) fn accept(&mut self, origin: Origin) -> io::Result<(AdminStream, bool)> {
        let mut used_reserve = false;
        loop {
            let accepted = match (origin, &self.unix) {
                (Origin::Tcp, _) => self.tcp.source().accept().map(|(s, _)| AdminStream::Tcp(s)),
                (Origin::Unix, Some(u)) => u
                    .listener
                    .source()
                    .accept()
                    .map(|(s, _)| AdminStream::Unix(s)),
                (Origin::Unix, None) => Err(io::ErrorKind::WouldBlock.into()),
            };
            match accepted {
                Ok(stream) => {
                    self.pause.accepted();
                    stream.set_nonblocking()?;
                    return Ok((stream, used_reserve));
                }
                Err(e) if is_out_of_descriptors(&e) && self.reserve.is_some() => {
                    // Closing the reserve frees exactly the descriptor the next accept needs.
                    self.reserve = None;
                    self.next_reserve_try = Instant::now() + RESERVE_RETRY;
                    used_reserve = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A client's descriptor was just closed: takes it back as the reserve if the reserve was
    /// given up (the acceptor, on the same thread, cannot have taken it meanwhile).
    pub(super) fn client_closed(&mut self) {
        if self.reserve.is_none() {
            self.reserve = open_reserve().ok();
        }
    }

    /// Out of descriptors and without a reserve: takes the listeners out of the poller for a
    /// pause; returns its length.
    pub(super) fn pause(&mut self) -> Duration {
        let pause = self.pause.start(Instant::now());
        // Out of the poller even if the poller complained.
        let _ = self.tcp.pause();
        if let Some(unix) = &mut self.unix {
            let _ = unix.listener.pause();
        }
        pause
    }

    pub(super) fn is_paused(&self) -> bool {
        self.pause.is_paused()
    }

    /// Puts the listeners back once a pause is over, and takes a new reserve descriptor when
    /// it was used (tried at most once per [`RESERVE_RETRY`]). `Err`: the poller refused them;
    /// the caller pauses again.
    pub(super) fn tick(&mut self, now: Instant) -> io::Result<()> {
        if self.reserve.is_none() && now >= self.next_reserve_try {
            self.reserve = open_reserve().ok();
            self.next_reserve_try = now + RESERVE_RETRY;
        }
        if !self.pause.is_over(now) {
            return Ok(());
        }
        self.pause.end();
        self.tcp.resume()?;
        match &mut self.unix {
            Some(unix) => unix.listener.resume(),
            None => Ok(()),
        }
    }

    /// Time until a pause is over, if one runs.
    pub(super) fn time_to_resume(&self, now: Instant) -> Option<Duration> {
        self.pause.time_left(now)
    }
}

/// The reserve: any descriptor will do; `/dev/null` costs nothing else.
fn open_reserve() -> io::Result<File> {
    File::open("/dev/null")
}

/// Creates the Unix socket at `path`, mode 0600 from the start, replacing a stale socket file.
fn bind_unix(path: &Path, poller: &Arc<Poller>, key: usize) -> Result<UnixSocket, AdminBindError> {
    let err = |step: &'static str| {
        move |source: io::Error| AdminBindError::Unix {
            path: path.to_owned(),
            step,
            source,
        }
    };
    remove_if_stale(path, SocketType::STREAM, None)
        .map_err(err("an existing file is in the way"))?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| err("socket")(e.into()))?;
    // Before bind: Linux creates the file with the socket inode's mode (less the umask).
    rustix::fs::fchmod(&fd, Mode::RUSR | Mode::WUSR).map_err(|e| err("fchmod")(e.into()))?;
    let addr = SocketAddrUnix::new(path).map_err(|e| err("address")(e.into()))?;
    rustix::net::bind(&fd, &addr).map_err(|e| err("bind")(e.into()))?;
    rustix::net::listen(&fd, 16).map_err(|e| err("listen")(e.into()))?;
    let listener = UnixListener::from(fd);
    // Also on the file itself, in case a kernel ignored the socket's mode.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(err("chmod 0600"))?;
    let meta = std::fs::symlink_metadata(path).map_err(err("stat"))?;
    let listener = Watched::new(poller, listener, Event::readable(key))
        .map_err(err("watch it in the main poller"))?;
    Ok(UnixSocket {
        listener,
        path: path.to_owned(),
        file_id: (meta.dev(), meta.ino()),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn bind_unix(path: &Path) -> Result<UnixSocket, AdminBindError> {
        let poller = Arc::new(Poller::new().unwrap());
        super::bind_unix(path, &poller, 0)
    }

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ccsd-admintest-{tag}-{}.sock", std::process::id()))
    }

    #[test]
    fn the_unix_socket_is_mode_0600_replaces_a_stale_one_and_is_removed_on_drop() {
        let path = temp_path("mode");
        let _ = std::fs::remove_file(&path);
        // A stale socket: bound, then its listener gone.
        drop(UnixListener::bind(&path).unwrap());
        let socket = bind_unix(&path).expect("replaces the stale socket");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = bind_unix(&path).expect_err("a live socket is not replaced");
        assert!(err.to_string().contains("listens on it"), "{err}");
        drop(socket);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let path = temp_path("file");
        std::fs::write(&path, b"precious").unwrap();
        let err = bind_unix(&path).expect_err("not a socket");
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        std::fs::remove_file(&path).unwrap();
    }
}
