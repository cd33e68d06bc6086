//! One client connection: its non-blocking socket, send and receive buffers, and the requests
//! it has in flight, oldest first.
//!
//! The buffers are allocated once and reused; the receive buffer only grows when a single reply
//! is larger than it.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Instant;

use polling::{Event, PollMode, Poller};

use crate::protocol::{Codec, Op, Request};

/// The receive buffer's initial size.
const RECV_BUF: usize = 16 << 10;
/// Free space below which the receive buffer is compacted (or grown) before a read.
const MIN_FREE: usize = 4 << 10;

/// A request sent (or queued to be sent) and not answered yet.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    /// What was asked.
    pub req: Request,
    /// When it was sent or, in an open loop, scheduled: latency counts from here.
    pub sent: Instant,
    /// Sent after the warm-up, so its reply is recorded.
    pub measured: bool,
}

/// What a read brought.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// New bytes are in the receive buffer.
    Data,
    /// Nothing to read yet.
    Nothing,
    /// The server closed the connection.
    Closed,
}

/// A connection and its buffers.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    key: usize,
    in_flight: VecDeque<Pending>,
    send: Vec<u8>,
    sent: usize,
    recv: Vec<u8>,
    recv_start: usize,
    recv_end: usize,
    write_armed: bool,
    next_seq: u64,
    /// The last time a reply byte arrived or a request was sent with none in flight.
    pub last_progress: Instant,
}

impl Conn {
    /// Registers `stream` (non-blocking) with `poller` under `key`, for up to `pipeline`
    /// requests of at most `request_len` bytes in flight.
    pub fn new(
        stream: TcpStream,
        poller: &Poller,
        key: usize,
        pipeline: usize,
        request_len: usize,
    ) -> io::Result<Conn> {
        // SAFETY: the stream is deleted from the poller before it is dropped (`close`).
        unsafe { poller.add_with_mode(&stream, Event::readable(key), PollMode::Level)? };
        Ok(Conn {
            stream,
            key,
            in_flight: VecDeque::with_capacity(pipeline),
            send: Vec::with_capacity(pipeline * request_len),
            sent: 0,
            recv: vec![0; RECV_BUF],
            recv_start: 0,
            recv_end: 0,
            write_armed: false,
            next_seq: 0,
            last_progress: Instant::now(),
        })
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// No request in flight and nothing left to send.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.sent == self.send.len()
    }

    /// Encodes a request for `key` into the send buffer (sent by the next `flush`) and
    /// remembers it.
    pub fn push(&mut self, codec: &Codec, op: Op, key: u64, sent: Instant, measured: bool) {
        if self.sent > 0 {
            self.send.drain(..self.sent);
            self.sent = 0;
        }
        if self.in_flight.is_empty() {
            self.last_progress = sent.max(self.last_progress);
        }
        let req = Request {
            op,
            key,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        codec.encode(&req, &mut self.send);
        self.in_flight.push_back(Pending {
            req,
            sent,
            measured,
        });
    }

    /// Writes as much of the send buffer as the socket takes; arms write interest for the rest.
    pub fn flush(&mut self, poller: &Poller) -> io::Result<()> {
        while self.sent < self.send.len() {
            match self.stream.write(&self.send[self.sent..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.send.len() {
            self.send.clear();
            self.sent = 0;
        }
        let want_write = self.sent < self.send.len();
        if want_write != self.write_armed {
            let interest = if want_write {
                Event::all(self.key)
            } else {
                Event::readable(self.key)
            };
            poller.modify_with_mode(&self.stream, interest, PollMode::Level)?;
            self.write_armed = want_write;
        }
        Ok(())
    }

    /// Reads what the socket has into the receive buffer.
    pub fn read(&mut self) -> io::Result<ReadOutcome> {
        let mut outcome = ReadOutcome::Nothing;
        loop {
            self.make_room();
            match self.stream.read(&mut self.recv[self.recv_end..]) {
                Ok(0) => return Ok(ReadOutcome::Closed),
                Ok(n) => {
                    self.recv_end += n;
                    outcome = ReadOutcome::Data;
                    // A read that did not fill the buffer emptied the socket: level-triggered
                    // polling reports anything that arrives later.
                    if self.recv_end < self.recv.len() {
                        return Ok(outcome);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(outcome),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The received bytes not yet consumed, and the oldest request in flight.
    pub fn front(&self) -> Option<(&Pending, &[u8])> {
        let pending = self.in_flight.front()?;
        Some((pending, &self.recv[self.recv_start..self.recv_end]))
    }

    /// Received bytes not yet consumed.
    pub fn unconsumed(&self) -> usize {
        self.recv_end - self.recv_start
    }

    /// Retires the oldest request, whose reply took `len` bytes.
    pub fn pop(&mut self, len: usize) -> Pending {
        self.recv_start += len;
        self.in_flight
            .pop_front()
            .expect("a reply was parsed for a request in flight")
    }

    /// Leaves the poller and closes the socket.
    pub fn close(&mut self, poller: &Poller) {
        // Errors here change nothing: the connection is being abandoned either way.
        let _ = poller.delete(&self.stream);
        let _ = self.stream.shutdown(Shutdown::Both);
        self.in_flight.clear();
        self.send.clear();
        self.sent = 0;
    }

    /// Moves unconsumed bytes to the front when space runs low; grows the buffer when a reply
    /// fills all of it.
    fn make_room(&mut self) {
        if self.recv_start == self.recv_end {
            self.recv_start = 0;
            self.recv_end = 0;
        }
        if self.recv.len() - self.recv_end >= MIN_FREE {
            return;
        }
        if self.recv_start > 0 {
            self.recv.copy_within(self.recv_start..self.recv_end, 0);
            self.recv_end -= self.recv_start;
            self.recv_start = 0;
        }
        if self.recv.len() - self.recv_end < MIN_FREE {
            self.recv.resize(self.recv.len() * 2, 0);
        }
    }
}
