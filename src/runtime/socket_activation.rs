//! Socket activation (sd_listen_fds(3)), hand-written: listening sockets systemd (a `.socket`
//! unit, or `systemd-socket-activate`) opened and passed as descriptors 3, 4, … with
//! `LISTEN_PID` (ccsd's pid), `LISTEN_FDS` (how many) and `LISTEN_FDNAMES` (their
//! `FileDescriptorName=`s, colon-separated).
//!
//! Each `[[listen]]` table takes one received socket: the one named like its `name`, or else the
//! one of its protocol bound to exactly its `addr`. A table that takes none binds its own socket
//! as without systemd. A received socket no table takes refuses the start (a `.socket` unit and
//! the settings that disagree are a mistake the operator wants to hear about, not a port silently
//! left unserved). The variables are read, never unset: `LISTEN_PID` already keeps any child
//! from taking the sockets for its own.

use std::fmt;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::FdFlags;
use rustix::net::SocketType;

use crate::settings::{ListenSettings, Proto};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: i32 = 3;

/// Set once the received descriptors were taken, so a second broker in the same process (tests,
/// a binary of one's own) does not take ownership of them again.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// One received socket.
#[derive(Debug)]
enum Received {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Received {
    fn proto(&self) -> Proto {
        match self {
            Received::Tcp(_) => Proto::Tcp,
            Received::Udp(_) => Proto::Udp,
        }
    }
}

#[derive(Debug)]
struct Slot {
    fd: i32,
    name: String,
    local: SocketAddr,
    /// Handed over by the process this one took over from: its listener index there (a
    /// listener on port 0 takes the socket at its own index, of the same protocol and address).
    handed_index: Option<usize>,
    /// `None` once a `[[listen]]` table took it.
    socket: Option<Received>,
}

/// The sockets systemd passed, until the listeners take them.
#[derive(Debug, Default)]
pub(super) struct Inherited {
    slots: Vec<Slot>,
}

/// Why the received sockets cannot be used.
#[derive(Debug)]
pub enum ActivationError {
    /// `LISTEN_FDS` or `LISTEN_PID` is not a number.
    BadVariable(&'static str, String),
    /// A received descriptor could not be inspected or prepared.
    Descriptor {
        /// The descriptor.
        fd: i32,
        /// What the system said.
        source: std::io::Error,
    },
    /// A received descriptor is not a TCP or UDP socket.
    NotInet {
        /// The descriptor.
        fd: i32,
    },
    /// A table's `name` names a socket of the other protocol.
    WrongProto {
        /// Index in `listen`.
        listener: usize,
        /// The socket's name.
        name: String,
    },
    /// A received socket no `[[listen]]` table takes.
    Unclaimed {
        /// The descriptor.
        fd: i32,
        /// Its `FileDescriptorName=`.
        name: String,
        /// Its address.
        local: SocketAddr,
    },
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::BadVariable(var, value) => {
                write!(f, "{var}={value:?} is not a number")
            }
            ActivationError::Descriptor { fd, source } => write!(f, "descriptor {fd}: {source}"),
            ActivationError::NotInet { fd } => {
                write!(f, "descriptor {fd} is not a TCP or UDP socket")
            }
            ActivationError::WrongProto { listener, name } => write!(
                f,
                "listen[{listener}].name = {name:?} names a socket of the other protocol"
            ),
            ActivationError::Unclaimed { fd, name, local } => write!(
                f,
                "the socket {name:?} (descriptor {fd}, {local}) is taken by no [[listen]] table: \
                 give one `name = {name:?}` or `addr = \"{local}\"`"
            ),
        }
    }
}

impl std::error::Error for ActivationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ActivationError::Descriptor { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Inherited {
    /// The sockets passed to this process, if `LISTEN_PID` is its pid (none otherwise, and none
    /// the second time in a process).
    ///
    /// # Errors
    /// A malformed variable, or a descriptor that is not a TCP or UDP socket.
    pub(super) fn from_env() -> Result<Inherited, ActivationError> {
        let Ok(pid) = std::env::var("LISTEN_PID") else {
            return Ok(Inherited::default());
        };
        let pid: u32 = pid
            .trim()
            .parse()
            .map_err(|_| ActivationError::BadVariable("LISTEN_PID", pid.clone()))?;
        if pid != std::process::id() || TAKEN.swap(true, Ordering::SeqCst) {
            return Ok(Inherited::default());
        }
        let count = std::env::var("LISTEN_FDS").unwrap_or_default();
        let count: i32 = count
            .trim()
            .parse()
            .map_err(|_| ActivationError::BadVariable("LISTEN_FDS", count.clone()))?;
        let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
        let mut names = names.split(':');
        let mut slots = Vec::new();
        for fd in FIRST_FD..FIRST_FD.saturating_add(count) {
            // SAFETY: LISTEN_PID is this process's pid, so systemd passed descriptors 3 ..
            // 3 + LISTEN_FDS to it, open, for it to own; TAKEN makes this the only place in the
            // process that takes them, once. Nothing else in ccsd uses descriptors it did not
            // open itself.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let name = names.next().unwrap_or("unknown").to_owned();
            slots.push(Slot::prepare(fd, name, owned)?);
        }
        Ok(Inherited { slots })
    }

    /// The listening sockets the process this one takes over from handed over, in its listener
    /// order.
    ///
    /// # Errors
    /// A descriptor that is not a TCP or UDP socket.
    pub(super) fn from_handover(sockets: Vec<OwnedFd>) -> Result<Inherited, ActivationError> {
        let mut slots = Vec::with_capacity(sockets.len());
        for (index, owned) in sockets.into_iter().enumerate() {
            let fd = owned.as_raw_fd();
            let mut slot = Slot::prepare(fd, String::new(), owned)?;
            slot.handed_index = Some(index);
            slots.push(slot);
        }
        Ok(Inherited { slots })
    }

    /// How the log names where these sockets came from.
    pub(super) fn origin(&self) -> &'static str {
        if self.slots.iter().any(|s| s.handed_index.is_some()) {
            ", handed over"
        } else {
            ", from systemd"
        }
    }

    /// Closes the sockets no listener took (a listener the old process had and this one has
    /// not); returns their addresses.
    pub(super) fn close_untaken(&mut self) -> Vec<SocketAddr> {
        let mut closed = Vec::new();
        for slot in &mut self.slots {
            if slot.socket.take().is_some() {
                closed.push(slot.local);
            }
        }
        closed
    }

    /// The received socket `listen[i]` takes: named `l.name`, or else of its protocol and bound
    /// to `l.addr`.
    ///
    /// # Errors
    /// `l.name` names a socket of the other protocol.
    pub(super) fn take_tcp(
        &mut self,
        i: usize,
        l: &ListenSettings,
    ) -> Result<Option<TcpListener>, ActivationError> {
        match self.take(i, l)? {
            Some(Received::Tcp(socket)) => Ok(Some(socket)),
            Some(Received::Udp(_)) => unreachable!("take checks the protocol"),
            None => Ok(None),
        }
    }

    /// As [`Inherited::take_tcp`], for a UDP listener.
    ///
    /// # Errors
    /// `l.name` names a socket of the other protocol.
    pub(super) fn take_udp(
        &mut self,
        i: usize,
        l: &ListenSettings,
    ) -> Result<Option<UdpSocket>, ActivationError> {
        match self.take(i, l)? {
            Some(Received::Udp(socket)) => Ok(Some(socket)),
            Some(Received::Tcp(_)) => unreachable!("take checks the protocol"),
            None => Ok(None),
        }
    }

    fn take(&mut self, i: usize, l: &ListenSettings) -> Result<Option<Received>, ActivationError> {
        let free = |s: &&mut Slot| s.socket.is_some();
        if !l.name.is_empty() {
            if let Some(slot) = self
                .slots
                .iter_mut()
                .filter(free)
                .find(|s| s.name == l.name)
            {
                if slot.socket.as_ref().map(Received::proto) != Some(l.proto) {
                    return Err(ActivationError::WrongProto {
                        listener: i,
                        name: l.name.clone(),
                    });
                }
                return Ok(slot.socket.take());
            }
        }
        let same_proto = |s: &Slot| s.socket.as_ref().map(Received::proto) == Some(l.proto);
        if let Some(slot) = self
            .slots
            .iter_mut()
            .filter(free)
            .find(|s| s.local == l.addr && same_proto(s))
        {
            return Ok(slot.socket.take());
        }
        // Port 0 names no socket: a handed-over one at the same index, on the same address.
        Ok(self
            .slots
            .iter_mut()
            .filter(free)
            .find(|s| {
                l.addr.port() == 0
                    && s.handed_index == Some(i)
                    && s.local.ip() == l.addr.ip()
                    && same_proto(s)
            })
            .and_then(|s| s.socket.take()))
    }

    /// Fails on the first received socket no table took.
    ///
    /// # Errors
    /// [`ActivationError::Unclaimed`].
    pub(super) fn all_taken(&self) -> Result<(), ActivationError> {
        match self.slots.iter().find(|s| s.socket.is_some()) {
            Some(slot) => Err(ActivationError::Unclaimed {
                fd: slot.fd,
                name: slot.name.clone(),
                local: slot.local,
            }),
            None => Ok(()),
        }
    }
}

impl Slot {
    /// Makes the descriptor close-on-exec and non-blocking (systemd passes it without either)
    /// and finds its protocol and address.
    fn prepare(fd: i32, name: String, owned: OwnedFd) -> Result<Slot, ActivationError> {
        let err = |source: rustix::io::Errno| ActivationError::Descriptor {
            fd,
            source: source.into(),
        };
        rustix::io::fcntl_setfd(&owned, FdFlags::CLOEXEC).map_err(err)?;
        rustix::io::ioctl_fionbio(&owned, true).map_err(err)?;
        let kind = rustix::net::sockopt::socket_type(&owned).map_err(err)?;
        let io_err = |source| ActivationError::Descriptor { fd, source };
        let (socket, local) = match kind {
            SocketType::STREAM => {
                let socket = TcpListener::from(owned);
                let local = socket.local_addr().map_err(io_err)?;
                (Received::Tcp(socket), local)
            }
            SocketType::DGRAM => {
                let socket = UdpSocket::from(owned);
                let local = socket.local_addr().map_err(io_err)?;
                (Received::Udp(socket), local)
            }
            _ => return Err(ActivationError::NotInet { fd }),
        };
        Ok(Slot {
            fd,
            name,
            local,
            handed_index: None,
            socket: Some(socket),
        })
    }
}
