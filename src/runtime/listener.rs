//! Listening sockets built with the options ccsd needs: `SO_REUSEADDR` always, `SO_REUSEPORT`
//! on request, `IPV6_V6ONLY` on IPv6 sockets as asked (the system default varies with
//! `net.ipv6.bindv6only`), and a chosen `listen(2)` backlog — which
//! `std::net::TcpListener::bind` cannot set.
//!
//! The socket is made with rustix and handed over as a plain non-blocking
//! [`std::net::TcpListener`] (or [`std::net::UdpSocket`] for UDP listeners), so the rest of ccsd
//! does not know how it was built.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};

/// How to open one listening socket (from a `[[listen]]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ListenOptions {
    /// Pending connections the kernel queues before `accept` (capped by `net.core.somaxconn`).
    pub backlog: u32,
    /// Set `SO_REUSEPORT`, so several processes can listen on the same address and the kernel
    /// spreads new connections over them.
    pub reuse_port: bool,
    /// IPv6 addresses only: set `IPV6_V6ONLY` (take IPv6 clients only, so an IPv4 socket can
    /// share the port) or clear it (also take IPv4 clients, as IPv4-mapped addresses).
    pub v6only: bool,
}

/// Creates a non-blocking, close-on-exec TCP socket bound to `addr` and listening.
///
/// # Errors
/// Any failing step (`socket`, `setsockopt`, `bind`, `listen`), e.g. `AddrInUse`.
pub(super) fn bind(addr: SocketAddr, options: ListenOptions) -> io::Result<TcpListener> {
    let fd = bound_socket(addr, SocketType::STREAM, options)?;
    let backlog = i32::try_from(options.backlog).unwrap_or(i32::MAX);
    rustix::net::listen(&fd, backlog)?;
    Ok(TcpListener::from(fd))
}

/// Creates a non-blocking, close-on-exec UDP socket bound to `addr` with `options`; the backlog
/// does not apply.
///
/// # Errors
/// Any failing step (`socket`, `setsockopt`, `bind`), e.g. `AddrInUse`.
pub(super) fn bind_udp(addr: SocketAddr, options: ListenOptions) -> io::Result<UdpSocket> {
    let fd = bound_socket(addr, SocketType::DGRAM, options)?;
    Ok(UdpSocket::from(fd))
}

fn bound_socket(
    addr: SocketAddr,
    kind: SocketType,
    options: ListenOptions,
) -> io::Result<rustix::fd::OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = rustix::net::socket_with(
        family,
        kind,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    // As std does: a restarted ccsd can bind while old connections sit in TIME_WAIT.
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if options.reuse_port {
        sockopt::set_socket_reuseport(&fd, true)?;
    }
    if addr.is_ipv6() {
        sockopt::set_ipv6_v6only(&fd, options.v6only)?;
    }
    rustix::net::bind(&fd, &addr)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &str = "127.0.0.1:0";

    fn options(reuse_port: bool) -> ListenOptions {
        ListenOptions {
            backlog: 16,
            reuse_port,
            v6only: true,
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
    fn bound_udp_socket_is_non_blocking_and_receives_datagrams() {
        let socket = bind_udp(LOCAL.parse().unwrap(), options(false)).expect("bind");
        let mut buf = [0u8; 8];
        let err = socket.recv_from(&mut buf).expect_err("nothing sent");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let client = UdpSocket::bind(LOCAL).unwrap();
        client
            .send_to(b"ping", socket.local_addr().unwrap())
            .unwrap();
        socket.set_nonblocking(false).unwrap();
        let (n, from) = socket.recv_from(&mut buf).expect("the datagram");
        assert_eq!(
            (&buf[..n], from),
            (&b"ping"[..], client.local_addr().unwrap())
        );
    }

    #[test]
    fn without_reuse_port_a_busy_address_is_refused() {
        let first = bind(LOCAL.parse().unwrap(), options(false)).expect("first");
        let addr = first.local_addr().unwrap();
        let err = bind(addr, options(false)).expect_err("address in use");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}

#[cfg(test)]
mod v6only_tests {
    use super::*;

    fn options(v6only: bool) -> ListenOptions {
        ListenOptions {
            backlog: 16,
            reuse_port: false,
            v6only,
        }
    }

    /// A free port on both the IPv4 and the IPv6 wildcard, or `None` without IPv6.
    fn free_dual_port() -> Option<u16> {
        let probe = bind("[::]:0".parse().unwrap(), options(false)).ok()?;
        Some(probe.local_addr().unwrap().port())
    }

    #[test]
    fn a_v6only_wildcard_listener_shares_its_port_with_an_ipv4_one() {
        let Some(port) = free_dual_port() else {
            println!("skipped: no IPv6 on this host");
            return;
        };
        let v4 = bind(SocketAddr::from(([0, 0, 0, 0], port)), options(true)).expect("0.0.0.0");
        let v6 = bind(format!("[::]:{port}").parse().unwrap(), options(true)).expect("[::]");
        let v4_udp = bind_udp(SocketAddr::from(([0, 0, 0, 0], port)), options(true));
        let v6_udp = bind_udp(format!("[::]:{port}").parse().unwrap(), options(true));
        assert!(v4_udp.is_ok() && v6_udp.is_ok(), "{v4_udp:?} {v6_udp:?}");
        drop((v4, v6));
    }

    #[test]
    fn a_dual_stack_wildcard_listener_takes_the_ipv4_port_too() {
        let Some(port) = free_dual_port() else {
            println!("skipped: no IPv6 on this host");
            return;
        };
        let _v6 = bind(format!("[::]:{port}").parse().unwrap(), options(false)).expect("[::]");
        let err = bind(SocketAddr::from(([0, 0, 0, 0], port)), options(true)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
