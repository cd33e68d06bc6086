//! Listening sockets built with the options ccsd needs: `SO_REUSEADDR` always, `SO_REUSEPORT`
//! on request, and a chosen `listen(2)` backlog — which `std::net::TcpListener::bind` cannot set.
//!
//! The socket is made with rustix and handed over as a plain non-blocking
//! [`std::net::TcpListener`], so the rest of ccsd does not know how it was built.

use std::io;
use std::net::{SocketAddr, TcpListener};

use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};

/// How to open one listening socket (from a `[[listen]]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenOptions {
    /// Pending connections the kernel queues before `accept` (capped by `net.core.somaxconn`).
    pub backlog: u32,
    /// Set `SO_REUSEPORT`, so several processes can listen on the same address and the kernel
    /// spreads new connections over them.
    pub reuse_port: bool,
}

/// Creates a non-blocking, close-on-exec TCP socket bound to `addr` and listening.
///
/// # Errors
/// Any failing step (`socket`, `setsockopt`, `bind`, `listen`), e.g. `AddrInUse`.
pub fn bind(addr: SocketAddr, options: ListenOptions) -> io::Result<TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    // As std does: a restarted ccsd can bind while old connections sit in TIME_WAIT.
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if options.reuse_port {
        sockopt::set_socket_reuseport(&fd, true)?;
    }
    rustix::net::bind(&fd, &addr)?;
    let backlog = i32::try_from(options.backlog).unwrap_or(i32::MAX);
    rustix::net::listen(&fd, backlog)?;
    Ok(TcpListener::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &str = "127.0.0.1:0";

    fn options(reuse_port: bool) -> ListenOptions {
        ListenOptions {
            backlog: 16,
            reuse_port,
        }
    }

    #[test]
    fn bound_listener_is_non_blocking_and_accepts_connections() {
        let listener = bind(LOCAL.parse().unwrap(), options(false)).expect("bind");
        let addr = listener.local_addr().unwrap();
        let err = listener.accept().expect_err("nothing pending");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        listener.set_nonblocking(false).unwrap();
        listener.accept().expect("accept the pending connection");
    }

    #[test]
    fn reuse_port_lets_two_sockets_share_an_address() {
        let first = bind(LOCAL.parse().unwrap(), options(true)).expect("first");
        let addr = first.local_addr().unwrap();
        bind(addr, options(true)).expect("second with reuse_port");
    }

    #[test]
    fn without_reuse_port_a_busy_address_is_refused() {
        let first = bind(LOCAL.parse().unwrap(), options(false)).expect("first");
        let addr = first.local_addr().unwrap();
        let err = bind(addr, options(false)).expect_err("address in use");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
