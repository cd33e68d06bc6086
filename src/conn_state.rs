//! One client connection's complete state, apart from its socket, as one value that can move
//! between workers in the process and be written to bytes and read back in another process
//! (possibly another ccsd version): what a live migration carries from worker to worker and
//! what a hot restart sends to the next ccsd (`docs/hot-restart.md`).
//!
//! [`ConnState`] is plain data. The worker converts its `Conn` to and from it; this module knows
//! nothing of sockets, pollers or lanes. The byte form ([`ConnState::encode`],
//! [`ConnState::decode`], and [`encode_list`] / [`decode_list`] for many connections) is specified
//! in `docs/connection-state.md`, exactly enough to write a reader in C:
//!
//! - a 16-byte header (magic `CCSC`, major and minor format version, total length), then tagged
//!   fields (tag `u16`, length `u64`, value), all integers little-endian;
//! - a tag with bit 15 clear is *mandatory*: a reader that does not know it refuses the state; a
//!   tag with bit 15 set is *skippable*: a reader that does not know it skips it. The default (a
//!   zero bit) is mandatory, so a writer must choose to let a field be lost;
//! - timestamps travel as ages relative to the writer's clock, and the reader turns them back
//!   into its own clock's timestamps (saturating at 0), because clock values of one process mean
//!   nothing in another's `Instant` and the state may wait in between;
//! - the framer's [`Progress`] is not carried: decoding gives [`Progress::default`], and the
//!   framer rescans the unfinished packet from its start, which is always correct.
//!
//! Decoding refuses, with a [`StateError`] naming the field, anything it cannot take whole:
//! a bad magic, a major version it does not know, an unknown mandatory field, a missing,
//! duplicated or wrongly sized field, a value out of range, a length past the input, trailing
//! bytes, and values the worker could not hold (more unsent bytes than were ever queued, a reply
//! timing list out of stream order). It never panics, costs time linear in the input, and
//! allocates no more than the input's size (the byte vectors it returns are copies of parts of
//! the input; the reply timing list keeps at most 32 entries, `encoding::MAX_TIMING_ENTRIES`,
//! and a longer one joins its last entry as the worker does).
//!
//! `encoding` holds the byte form, `error` its [`StateError`]. The types are `pub` in this
//! crate-private module so that `ccsd::fuzzing` can re-export them for the `conn_state` fuzz
//! target; nothing else outside the crate reaches them.

use std::net::SocketAddr;

use crate::flow::FlowId;
use crate::framing::Progress;

mod encoding;
mod error;

pub(crate) use encoding::{AddrError, MAX_TIMING_ENTRIES, put_addr, read_addr};
pub use encoding::{decode_list, encode_list};
pub use error::StateError;

/// A client connection: everything ccsd knows about it except its socket (and except what the
/// worker that holds it derives from its own state: poller registration, write interest, the
/// memory pause, its place in the idle list). See `docs/connection-state.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnState {
    /// The connection's flow id; never changes when the connection moves (MCP knows the
    /// connection only by it).
    pub flow: FlowId,
    /// The client (after a PROXY protocol header, the client it named).
    pub peer: SocketAddr,
    /// The listener that accepted it.
    pub listener: ListenerIdentity,
    /// When it was accepted: `CLOCK_MONOTONIC` nanoseconds ([`crate::clock::monotonic_ns`]).
    pub opened_ns: u64,
    /// Its last activity on the idle clock; `None`: off it (paused, half-closed, or
    /// `limits.idle_timeout` off).
    pub last_active_ns: Option<u64>,
    /// Bytes of an unfinished packet (and complete packets a full request lane held back), or
    /// of an unfinished PROXY protocol header.
    pub unfinished: Vec<u8>,
    /// When the first byte of `unfinished` was read (also when the wait for the PROXY protocol
    /// header began).
    pub unfinished_since_ns: u64,
    /// How far the framer got in `unfinished`. In the process only: the byte form does not
    /// carry it and decoding gives [`Progress::default`] (the framer rescans from the start).
    pub progress: Progress,
    /// Reply bytes not yet written to the client.
    pub unsent: Vec<u8>,
    /// Request→reply timing of the replies in `unsent`.
    pub unsent_timing: UnsentTiming,
    /// Requests sent to MCP and not answered yet.
    pub outstanding: u64,
    /// Not read: the request lane was full (or ccsd is stopping).
    pub paused: bool,
    /// MCP asked to close it once `unsent` is written.
    pub close_after_flush: bool,
    /// Its `limits.max_requests_per_second` window.
    pub rate_window: RateWindow,
    /// The first buffered packet already counts in its listener's rate window.
    pub listener_rate_paid: bool,
    /// When the client shut down its side with requests unanswered; `None`: it did not.
    pub half_closed_since_ns: Option<u64>,
    /// Its listener takes a PROXY protocol header first and it has not come yet.
    pub awaits_proxy_header: bool,
    /// Never moved to another worker automatically.
    pub pinned: bool,
    /// Packets read since it was accepted (load measurement).
    pub packets_in: u64,
    /// Bytes read since it was accepted (load measurement).
    pub bytes_in: u64,
}

/// Which listener accepted a connection: its index in the settings, and what it is, so that a
/// reader whose listeners differ (another process after a reload) can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerIdentity {
    /// Its index in `listen[]`.
    pub index: usize,
    /// Its `listen[i].framing` name.
    pub framing: String,
    /// The local address it listens on.
    pub local: SocketAddr,
}

/// The replies in a connection's unsent bytes, for their request→reply latency (the worker's
/// `UnsentReplies`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsentTiming {
    /// Bytes ever queued on the connection: the stream offset of the end of `unsent`.
    pub queued: u64,
    /// The unwritten replies, oldest first; at most 32 (`encoding::MAX_TIMING_ENTRIES`) once
    /// decoded: a longer list joins its last entry.
    pub entries: Vec<ReplyTiming>,
}

/// One or more replies ending at the same place in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTiming {
    /// Stream offset just past the reply's last byte.
    pub end: u64,
    /// The earliest `echo0` (when its request's first byte was read) of the replies it stands for.
    pub echo0_ns: u64,
    /// How many replies it stands for (at least one).
    pub replies: u32,
}

/// A connection's packets in its current one-second request-rate window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateWindow {
    /// When the window began.
    pub start_ns: u64,
    /// Packets taken in it.
    pub count: u64,
}

impl ConnState {
    /// Heap bytes the state holds (capacities of its vectors and string): what decoding
    /// allocated, bounded by the input's size.
    pub fn allocated_bytes(&self) -> usize {
        self.unfinished.capacity()
            + self.unsent.capacity()
            + self.listener.framing.capacity()
            + self.unsent_timing.entries.capacity() * size_of::<ReplyTiming>()
    }

    /// A state whose every field a decoder overwrites or defaults.
    fn blank() -> ConnState {
        let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
        ConnState {
            flow: FlowId(0),
            peer: nowhere,
            listener: ListenerIdentity {
                index: 0,
                framing: String::new(),
                local: nowhere,
            },
            opened_ns: 0,
            last_active_ns: None,
            unfinished: Vec::new(),
            unfinished_since_ns: 0,
            progress: Progress::default(),
            unsent: Vec::new(),
            unsent_timing: UnsentTiming::default(),
            outstanding: 0,
            paused: false,
            close_after_flush: false,
            rate_window: RateWindow::default(),
            listener_rate_paid: false,
            half_closed_since_ns: None,
            awaits_proxy_header: false,
            pinned: false,
            packets_in: 0,
            bytes_in: 0,
        }
    }
}
