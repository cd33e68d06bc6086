//! One TCP connection's complete state apart from its socket, as one value: what moves with a
//! connection between workers (and, later, between processes).
//!
//! (Placeholder of the lead: the versioned byte form comes with the helper's module.)

use std::net::SocketAddr;

use crate::flow::FlowId;
use crate::framing::Progress;

/// Everything a connection is, apart from its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnState {
    pub flow: FlowId,
    pub peer: SocketAddr,
    pub listener: ListenerIdentity,
    pub opened_ns: u64,
    pub last_active_ns: Option<u64>,
    pub unfinished: Vec<u8>,
    pub unfinished_since_ns: u64,
    pub progress: Progress,
    pub unsent: Vec<u8>,
    pub unsent_timing: UnsentTiming,
    pub outstanding: u64,
    pub paused: bool,
    pub close_after_flush: bool,
    pub rate_window: RateWindow,
    pub listener_rate_paid: bool,
    pub half_closed_since_ns: Option<u64>,
    pub awaits_proxy_header: bool,
    pub pinned: bool,
    pub packets_in: u64,
    pub bytes_in: u64,
}

/// The listener that accepted a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerIdentity {
    pub index: usize,
    pub framing: String,
    pub local: SocketAddr,
}

/// Request→reply timing of the unwritten replies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UnsentTiming {
    pub queued: u64,
    pub entries: Vec<ReplyTiming>,
}

/// One entry of [`UnsentTiming`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplyTiming {
    pub end: u64,
    pub echo0_ns: u64,
    pub replies: u32,
}

/// The request-rate window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RateWindow {
    pub start_ns: u64,
    pub count: u64,
}
