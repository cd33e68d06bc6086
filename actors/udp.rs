//! UDP actor: the UDP listeners, on the main thread.
//!
//! UDP has no connections and no framing: every datagram is one record (kind DATA, transport UDP,
//! `peer` = its source, `listen_port` = the listener's port) in the main thread's request lane.
//! Its flow names the main thread's lane in the worker field, generation 0, and the listener's
//! index as the slot, so the MCP bridge hands MCP's replies to this actor, which sends each
//! payload with `sendto` to the header's peer from the socket of the listener the flow names.
//!
//! Receiving: on readiness up to [`DATAGRAMS_PER_TURN`] datagrams are read into one reused buffer
//! of the largest `max_packet` and pushed straight into the lane. `MSG_TRUNC` makes `recvfrom`
//! report a datagram's real length, so one larger than the listener's `max_packet` is recognised
//! and dropped. A full lane drops the datagram: UDP has no back-pressure.
//!
//! Sending: a reply goes out at once when the socket takes it; otherwise it waits in the
//! listener's `DatagramQueue` (`udp/datagram_queue.rs`: bounded in bytes, entries expire) and write interest is armed
//! until the queue is empty. While a queue is not empty, later replies queue behind it, so a
//! listener's replies leave in the order MCP wrote them. Every loss is counted.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::Level;
use rustix::io::Errno;
use rustix::net::RecvFlags;

mod datagram_queue;

use crate::clock::monotonic_ns;
use crate::flow::FlowId;
use crate::logging::{LogLimiter, log_limited};
use crate::main_lane::MainLane;
use crate::rate_limit::RateLimiter;
use crate::record::{Kind, RecordHeader, Transport};
use crate::stats::UdpCounters;
use crate::watched::Watched;
use datagram_queue::DatagramQueue;

/// Datagrams read per listener per readiness, before the main loop looks elsewhere.
pub(crate) const DATAGRAMS_PER_TURN: usize = 256;

/// One UDP listener as the UDP actor sees it.
#[derive(Debug)]
pub(crate) struct UdpListening {
    socket: Watched<UdpSocket>,
    local: SocketAddr,
    port: u16,
    max_packet: usize,
    /// `max_requests_per_second` of this listener, if set.
    rate: Option<Arc<RateLimiter>>,
    queue: DatagramQueue,
    write_armed: bool,
}

impl UdpListening {
    /// A bound, non-blocking `socket` (watched by the main poller under its listener's key)
    /// whose datagrams may be up to `max_packet` bytes, at most
    /// as many per window as `rate` allows, with a send queue of `send_queue` bytes whose entries
    /// expire after `send_timeout`.
    ///
    /// # Errors
    /// The socket's local address cannot be read.
    pub(crate) fn new(
        socket: Watched<UdpSocket>,
        max_packet: usize,
        rate: Option<Arc<RateLimiter>>,
        send_queue: usize,
        send_timeout: Duration,
    ) -> io::Result<UdpListening> {
        let local = socket.source().local_addr()?;
        Ok(UdpListening {
            socket,
            local,
            port: local.port(),
            max_packet,
            rate,
            queue: DatagramQueue::new(send_queue, send_timeout),
            write_armed: false,
        })
    }
}

/// Receives datagrams into the main thread's lane and sends MCP's replies.
#[derive(Debug)]
pub(crate) struct UdpActor {
    /// By listener index (`Settings::listen`), which is also the poller key and the flow's slot;
    /// `None` for TCP listeners.
    listeners: Vec<Option<UdpListening>>,
    epoch: u16,
    lane_index: u8,
    buf: Vec<u8>,
    /// A graceful stop began: no more reading, replies still go out.
    stopped: bool,
    /// With `mcp.when_down = "refuse"`: the MCP watch's verdict, true while MCP is down.
    mcp_down: Option<Arc<AtomicBool>>,
    counters: UdpCounters,
    recv_log: LogLimiter,
    lane_log: LogLimiter,
    send_log: LogLimiter,
    queue_log: LogLimiter,
    reply_log: LogLimiter,
}

impl UdpActor {
    /// The actor for `listeners` (indexed like `Settings::listen`), writing flows of ccsd start
    /// `epoch` on the main thread's lane `lane_index`; while `mcp_down` (if given) holds true,
    /// datagrams are dropped.
    pub(crate) fn new(
        listeners: Vec<Option<UdpListening>>,
        epoch: u16,
        lane_index: u8,
        mcp_down: Option<Arc<AtomicBool>>,
    ) -> UdpActor {
        let largest = listeners
            .iter()
            .flatten()
            .map(|l| l.max_packet)
            .max()
            .unwrap_or(0);
        UdpActor {
            listeners,
            epoch,
            lane_index,
            buf: vec![0; largest],
            stopped: false,
            mcp_down,
            counters: UdpCounters::default(),
            recv_log: LogLimiter::default(),
            lane_log: LogLimiter::default(),
            send_log: LogLimiter::default(),
            queue_log: LogLimiter::default(),
            reply_log: LogLimiter::default(),
        }
    }

    /// Whether poller key `key` is one of this actor's sockets.
    pub(crate) fn owns(&self, key: usize) -> bool {
        self.listeners.get(key).is_some_and(Option::is_some)
    }

    /// What the actor counted so far.
    pub(crate) fn counters(&self) -> UdpCounters {
        self.counters
    }

    /// Socket `key` is ready: read datagrams into `lane`, send queued replies.
    pub(crate) fn on_ready(
        &mut self,
        key: usize,
        readable: bool,
        writable: bool,
        lane: &mut MainLane,
    ) {
        if readable && !self.stopped {
            self.receive(key, lane);
        }
        if writable {
            self.send_queued(key, Instant::now());
        }
    }

    /// A reply from MCP for a flow of the main thread's lane (the bridge checked its epoch).
    pub(crate) fn on_reply(&mut self, header: &RecordHeader, payload: &[u8]) {
        if header.kind != Kind::Data {
            self.counters.dropped_close += 1;
            return;
        }
        let slot = header.flow.slot();
        let listener = self
            .listeners
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|l| header.flow.generation() == 0 && l.port == header.listen_port);
        let Some(l) = listener else {
            self.counters.dropped_bad_listener += 1;
            log_limited!(
                self.reply_log,
                Level::Warn,
                "dropping a UDP reply: flow {} with listen_port {} names no UDP listener",
                header.flow,
                header.listen_port
            );
            return;
        };
        let to = destination(header.peer, l.local.is_ipv6());
        if l.queue.is_empty() {
            loop {
                match l.socket.source().send_to(payload, to) {
                    Ok(n) => {
                        self.counters.datagrams_out += 1;
                        self.counters.bytes_out += n as u64;
                        return;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        self.counters.send_errors += 1;
                        log_limited!(self.send_log, Level::Warn, "UDP send to {to} failed: {e}");
                        return;
                    }
                }
            }
        }
        if !l.queue.push(to, payload, Instant::now()) {
            self.counters.dropped_send_queue_full += 1;
            log_limited!(
                self.queue_log,
                Level::Warn,
                "UDP port {}: send queue full ({} bytes), dropping a reply",
                l.port,
                l.queue.bytes()
            );
            return;
        }
        self.counters.send_queued += 1;
        if !l.write_armed {
            l.write_armed = true;
            self.update_interest(slot);
        }
    }

    /// Drops queued replies that waited too long (the main loop calls this every turn).
    pub(crate) fn expire(&mut self, now: Instant) {
        for l in self.listeners.iter_mut().flatten() {
            if l.queue.next_expiry().is_some_and(|t| t <= now) {
                let expired = l.queue.expire(now);
                self.counters.dropped_send_expired += expired;
                log_limited!(
                    self.queue_log,
                    Level::Warn,
                    "UDP port {}: {expired} replies expired in the send queue",
                    l.port
                );
            }
        }
    }

    /// When the oldest queued reply expires, if any waits.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.listeners
            .iter()
            .flatten()
            .filter_map(|l| l.queue.next_expiry())
            .min()
    }

    /// A graceful stop began: stop reading; replies still go out.
    /// Stops reading while a new process takes over (hot restart); the sockets stay open.
    pub(crate) fn freeze(&mut self) {
        for l in self.listeners.iter_mut().flatten() {
            let _ = l.socket.pause();
        }
    }

    /// Reads again after [`freeze`](UdpActor::freeze).
    pub(crate) fn thaw(&mut self) {
        for l in self.listeners.iter_mut().flatten() {
            if let Err(e) = l.socket.resume() {
                log::error!("cannot watch a UDP socket again after a failed takeover: {e}");
            }
        }
    }

    /// Each UDP socket with its listener index, to hand to a process taking over.
    pub(crate) fn socket_fds(&self) -> Vec<(usize, BorrowedFd<'_>)> {
        self.listeners
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((i, l.as_ref()?.socket.source().as_fd())))
            .collect()
    }

    pub(crate) fn stop(&mut self) {
        self.stopped = true;
        for i in 0..self.listeners.len() {
            if self.owns(i) {
                self.update_interest(i);
            }
        }
    }

    fn receive(&mut self, i: usize, lane: &mut MainLane) {
        let Some(l) = self.listeners.get(i).and_then(Option::as_ref) else {
            return;
        };
        let flow = FlowId::new(self.epoch, self.lane_index, 0, i as u32);
        let mut header = RecordHeader::new(Kind::Data, flow);
        header.listen_port = l.port;
        header.transport = Transport::Udp;
        let buf = &mut self.buf[..l.max_packet];
        // SYNC POINT: Relaxed: the MCP watch stores this flag on this same (main) thread, so
        // program order already shows its latest verdict; nothing else is read through it.
        let refusing = self
            .mcp_down
            .as_ref()
            .is_some_and(|down| down.load(Ordering::Relaxed));
        for _ in 0..DATAGRAMS_PER_TURN {
            // MSG_TRUNC: the result is the datagram's real length, even beyond the buffer.
            let (len, from) =
                match rustix::net::recvfrom(l.socket.source(), &mut *buf, RecvFlags::TRUNC) {
                    Ok((_, len, Some(from))) => match SocketAddr::try_from(from) {
                        Ok(from) => (len, from),
                        Err(_) => continue,
                    },
                    Ok((_, _, None)) => continue,
                    Err(Errno::AGAIN) => return,
                    Err(Errno::INTR) => continue,
                    Err(e) => {
                        self.counters.recv_errors += 1;
                        log_limited!(
                            self.recv_log,
                            Level::Warn,
                            "UDP port {}: recvfrom failed: {e}",
                            l.port
                        );
                        return;
                    }
                };
            if len > l.max_packet {
                self.counters.dropped_truncated += 1;
                log_limited!(
                    self.recv_log,
                    Level::Warn,
                    "UDP port {}: dropped a datagram of {len} bytes from {from}: max_packet is {}",
                    l.port,
                    l.max_packet
                );
                continue;
            }
            let now = monotonic_ns();
            if refusing {
                self.counters.dropped_mcp_down += 1;
                continue;
            }
            if l.rate.as_ref().is_some_and(|rate| !rate.allow(now)) {
                self.counters.dropped_rate_limited += 1;
                log_limited!(
                    self.recv_log,
                    Level::Warn,
                    "UDP port {}: over max_requests_per_second, dropping datagrams",
                    l.port
                );
                continue;
            }
            header.peer = from;
            header.payload_len = len as u32;
            header.timestamp_ns = now;
            header.echo[0] = now;
            if lane.try_push(&[&header.encode(), &buf[..len]]) {
                self.counters.datagrams_in += 1;
                self.counters.bytes_in += len as u64;
            } else {
                self.counters.dropped_queue_full += 1;
                log_limited!(
                    self.lane_log,
                    Level::Warn,
                    "UDP port {}: the main thread's request lane is full, dropping datagrams",
                    l.port
                );
            }
        }
    }

    fn send_queued(&mut self, i: usize, now: Instant) {
        let Some(l) = self.listeners.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let sent = l
            .queue
            .send(now, |payload, to| l.socket.source().send_to(payload, to));
        self.counters.datagrams_out += sent.datagrams;
        self.counters.bytes_out += sent.bytes;
        self.counters.send_errors += sent.errors;
        self.counters.dropped_send_expired += sent.expired;
        if l.queue.is_empty() && l.write_armed {
            l.write_armed = false;
            self.update_interest(i);
        }
    }

    /// Sets listener `i`'s interest: readable unless stopped, writable while replies wait.
    fn update_interest(&mut self, i: usize) {
        let Some(l) = self.listeners.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if let Err(e) = l.socket.set_interest(!self.stopped, l.write_armed) {
            log_limited!(
                self.send_log,
                Level::Warn,
                "UDP port {}: cannot change poller interest: {e}",
                l.port
            );
        }
    }
}

/// Where a reply to `peer` goes from a socket of the given family: an IPv6 socket (which may
/// serve IPv4 clients too) needs IPv4 peers in their IPv4-mapped form.
fn destination(peer: SocketAddr, ipv6_socket: bool) -> SocketAddr {
    match (peer.ip(), ipv6_socket) {
        (IpAddr::V4(v4), true) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), peer.port()),
        _ => peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_peers_are_mapped_only_for_ipv6_sockets() {
        let v4: SocketAddr = "10.0.0.1:53".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:53".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
        assert_eq!(destination(v4, false), v4);
        assert_eq!(destination(v4, true), mapped);
        assert_eq!(destination(v6, true), v6);
        assert_eq!(destination(v6, false), v6);
    }
}
