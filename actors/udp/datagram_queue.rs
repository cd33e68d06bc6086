//! Replies waiting for a UDP socket that would not take them: bounded in bytes, expiring by age.
//!
//! UDP has no back-pressure towards MCP: when `sendto` would block (the socket's send buffer is
//! full), a reply waits here, in order, until the socket is writable again. The queue holds at
//! most `listen[i].udp_send_queue` bytes (each datagram counted with [`ENTRY_OVERHEAD`], so even
//! empty ones are bounded); a reply that does not fit is dropped. A reply that waited longer than
//! `listen[i].udp_send_timeout` is dropped when the queue is next looked at: the client has given
//! up on it by then. The callers count both.
//!
//! Payload buffers of sent entries are kept for reuse, so a queue that fills and drains again
//! allocates nothing in steady state.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bytes every queued datagram counts on top of its payload.
pub(super) const ENTRY_OVERHEAD: usize = 64;
/// Emptied payload buffers kept for reuse.
const SPARE_BUFFERS: usize = 64;
/// Largest buffer kept for reuse (a larger one is freed).
const SPARE_MAX_CAPACITY: usize = 64 * 1024;

/// One reply waiting to be sent.
#[derive(Debug)]
struct Waiting {
    peer: SocketAddr,
    since: Instant,
    payload: Vec<u8>,
}

/// What one [`DatagramQueue::send`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sent {
    /// Datagrams the socket took.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Datagrams dropped because `sendto` failed with an error other than "would block".
    pub errors: u64,
    /// Datagrams dropped because they were too old.
    pub expired: u64,
}

/// The replies waiting for one UDP socket, oldest first.
#[derive(Debug)]
pub(super) struct DatagramQueue {
    entries: VecDeque<Waiting>,
    /// Bytes counted against `max_bytes` (payloads plus [`ENTRY_OVERHEAD`] each).
    bytes: usize,
    max_bytes: usize,
    max_age: Duration,
    spare: Vec<Vec<u8>>,
}

impl DatagramQueue {
    /// An empty queue of at most `max_bytes`, whose entries expire after `max_age`.
    pub(super) fn new(max_bytes: usize, max_age: Duration) -> DatagramQueue {
        DatagramQueue {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
            max_age,
            spare: Vec::new(),
        }
    }

    /// True when nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes counted against the bound now.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues `payload` for `peer`; false (and nothing queued) when it does not fit the bound.
    pub(super) fn push(&mut self, peer: SocketAddr, payload: &[u8], now: Instant) -> bool {
        let cost = payload.len() + ENTRY_OVERHEAD;
        if self.bytes + cost > self.max_bytes {
            return false;
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.extend_from_slice(payload);
        self.entries.push_back(Waiting {
            peer,
            since: now,
            payload: buf,
        });
        self.bytes += cost;
        true
    }

    /// When the oldest entry expires; `None` when the queue is empty.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.entries.front().map(|w| w.since + self.max_age)
    }

    /// Drops the entries older than the timeout at `now`; returns how many.
    pub(super) fn expire(&mut self, now: Instant) -> u64 {
        let mut expired = 0;
        while self
            .entries
            .front()
            .is_some_and(|w| now.duration_since(w.since) >= self.max_age)
        {
            self.pop_front();
            expired += 1;
        }
        expired
    }

    /// Drops what expired, then offers the entries, oldest first, to `send_to` until it would
    /// block or the queue is empty. An entry `send_to` fails with another error is dropped.
    pub(super) fn send(
        &mut self,
        now: Instant,
        mut send_to: impl FnMut(&[u8], SocketAddr) -> io::Result<usize>,
    ) -> Sent {
        let mut sent = Sent {
            expired: self.expire(now),
            ..Sent::default()
        };
        while let Some(front) = self.entries.front() {
            match send_to(&front.payload, front.peer) {
                Ok(n) => {
                    sent.datagrams += 1;
                    sent.bytes += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => sent.errors += 1,
            }
            self.pop_front();
        }
        sent
    }

    fn pop_front(&mut self) {
        if let Some(mut w) = self.entries.pop_front() {
            self.bytes -= w.payload.len() + ENTRY_OVERHEAD;
            if self.spare.len() < SPARE_BUFFERS && w.payload.capacity() <= SPARE_MAX_CAPACITY {
                w.payload.clear();
                self.spare.push(w.payload);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn would_block() -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    #[test]
    fn a_reply_over_the_byte_bound_is_refused_and_the_queue_keeps_the_rest() {
        let now = Instant::now();
        let mut q = DatagramQueue::new(2 * (100 + ENTRY_OVERHEAD), Duration::from_secs(1));
        assert!(q.push(peer(1), &[1; 100], now));
        assert!(q.push(peer(2), &[2; 100], now));
        assert!(!q.push(peer(3), &[3; 1], now), "no room for a third");
        assert_eq!(q.bytes(), 2 * (100 + ENTRY_OVERHEAD));
        let mut seen = Vec::new();
        q.send(now, |p, to| {
            seen.push((p[0], to.port()));
            Ok(p.len())
        });
        assert_eq!(seen, [(1, 1), (2, 2)]);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn empty_datagrams_are_bounded_too() {
        let now = Instant::now();
        let mut q = DatagramQueue::new(10 * ENTRY_OVERHEAD, Duration::from_secs(1));
        let queued = (0..100).filter(|_| q.push(peer(1), &[], now)).count();
        assert_eq!(queued, 10);
    }

    #[test]
    fn a_blocked_socket_keeps_entries_in_order_until_it_takes_them() {
        let now = Instant::now();
        let mut q = DatagramQueue::new(1 << 20, Duration::from_secs(1));
        for i in 0..5u8 {
            assert!(q.push(peer(u16::from(i)), &[i; 10], now));
        }
        let mut budget = 2;
        let mut seen = Vec::new();
        let sent = q.send(now, |p, _| {
            if budget == 0 {
                return would_block();
            }
            budget -= 1;
            seen.push(p[0]);
            Ok(p.len())
        });
        assert_eq!((sent.datagrams, sent.bytes, sent.errors), (2, 20, 0));
        assert!(!q.is_empty(), "three wait for the socket");
        let sent = q.send(now, |p, _| {
            seen.push(p[0]);
            Ok(p.len())
        });
        assert_eq!(sent.datagrams, 3);
        assert_eq!(seen, [0, 1, 2, 3, 4], "sent in the order MCP wrote them");
    }

    #[test]
    fn entries_older_than_the_timeout_are_dropped_and_counted_not_sent() {
        let start = Instant::now();
        let mut q = DatagramQueue::new(1 << 20, Duration::from_millis(100));
        assert!(q.push(peer(1), b"old", start));
        assert!(q.push(peer(2), b"newer", start + Duration::from_millis(80)));
        assert_eq!(q.next_expiry(), Some(start + Duration::from_millis(100)));

        let later = start + Duration::from_millis(150);
        let mut seen = Vec::new();
        let sent = q.send(later, |p, _| {
            seen.push(p.to_vec());
            Ok(p.len())
        });
        assert_eq!((sent.expired, sent.datagrams), (1, 1));
        assert_eq!(seen, [b"newer".to_vec()]);

        assert!(q.push(peer(3), b"late", later));
        assert_eq!(q.expire(later + Duration::from_millis(101)), 1);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn a_send_error_drops_that_entry_and_goes_on() {
        let now = Instant::now();
        let mut q = DatagramQueue::new(1 << 20, Duration::from_secs(1));
        assert!(q.push(peer(1), b"bad", now));
        assert!(q.push(peer(2), b"good", now));
        let sent = q.send(now, |p, _| {
            if p == b"bad" {
                Err(io::ErrorKind::InvalidInput.into())
            } else {
                Ok(p.len())
            }
        });
        assert_eq!((sent.errors, sent.datagrams, sent.bytes), (1, 1, 4));
        assert!(q.is_empty());
    }

    #[test]
    fn sent_buffers_are_reused() {
        let now = Instant::now();
        let mut q = DatagramQueue::new(1 << 20, Duration::from_secs(1));
        assert!(q.push(peer(1), &[7; 1000], now));
        q.send(now, |p, _| Ok(p.len()));
        assert_eq!(q.spare.len(), 1);
        assert!(q.push(peer(1), &[8; 10], now));
        assert!(q.spare.is_empty(), "the spare buffer was taken");
        assert!(q.entries[0].payload.capacity() >= 1000);
    }
}
