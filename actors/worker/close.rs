//! Why a worker closes a connection: each cause says what MCP is told in the disconnect notice
//! and which `closed_*` counter grows. (A connection closed while it waits for its PROXY header was
//! never announced to MCP, so MCP is told nothing about it.)

use crate::proxy_protocol::HeaderError;
use crate::record::Reason;
use crate::stats::WorkerCounters;

/// Why the worker closes a connection: what MCP is told and which counter grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CloseCause {
    /// The client closed (a read of 0, or a reset while half-closed).
    Peer,
    /// A read, write or poller error.
    SocketError,
    /// A packet that breaks the framing.
    Malformed,
    /// A packet over its listener's `max_packet`.
    Oversize,
    /// MCP (or the admin, or a custom actor) asked for the close.
    ByMcp,
    /// The request lane was full and `queues.on_full = "close"`.
    QueueFull,
    /// ccsd is stopping.
    Shutdown,
    /// No activity for `limits.idle_timeout`.
    Idle,
    /// Unwritten replies over `limits.max_send_buffer`.
    SlowClient,
    /// More packets in a second than `limits.max_requests_per_second`.
    RateLimited,
    /// A packet over its listener's `max_requests_per_second`.
    ListenerRateLimited,
    /// Half-closed by the client, and its replies did not all come within
    /// `limits.half_close_timeout` (counted as `closed_peer`, and in `half_close_timeouts`).
    HalfCloseTimeout,
    /// An unfinished packet older than `limits.packet_timeout`.
    PacketTimeout,
    /// One of the largest holders while ccsd held more than `limits.max_memory`.
    MaxMemory,
    /// A `proxy_protocol` listener's connection began with something else than a PROXY header.
    ProxyMissing,
    /// A `proxy_protocol` listener's connection sent a broken PROXY header.
    ProxyMalformed(HeaderError),
    /// A `proxy_protocol` listener's connection came from a source not in `proxy_from`.
    ProxyUntrusted,
    /// A `proxy_protocol` listener's connection sent no whole header within
    /// `limits.packet_timeout`.
    ProxyTimeout,
    /// A connection moved here found no free slot (`closed_table_full`).
    TableFull,
}

impl From<HeaderError> for CloseCause {
    fn from(e: HeaderError) -> CloseCause {
        match e {
            HeaderError::Missing => CloseCause::ProxyMissing,
            e => CloseCause::ProxyMalformed(e),
        }
    }
}

impl CloseCause {
    /// What MCP is told in the disconnect notice.
    pub(super) fn reason(self) -> Reason {
        match self {
            CloseCause::Peer | CloseCause::HalfCloseTimeout => Reason::PeerClosed,
            CloseCause::SocketError => Reason::Error,
            CloseCause::Malformed
            | CloseCause::Oversize
            | CloseCause::ProxyMissing
            | CloseCause::ProxyMalformed(_)
            | CloseCause::ProxyUntrusted => Reason::Protocol,
            CloseCause::ByMcp => Reason::Local,
            CloseCause::QueueFull
            | CloseCause::SlowClient
            | CloseCause::RateLimited
            | CloseCause::ListenerRateLimited
            | CloseCause::MaxMemory
            | CloseCause::TableFull => Reason::Overload,
            CloseCause::Shutdown => Reason::Shutdown,
            CloseCause::Idle | CloseCause::PacketTimeout | CloseCause::ProxyTimeout => {
                Reason::Timeout
            }
        }
    }

    /// Bumps the counter for this cause (exactly one `closed_*` counter per close).
    pub(super) fn count(self, c: &mut WorkerCounters) {
        if self == CloseCause::HalfCloseTimeout {
            c.half_close_timeouts += 1;
        }
        *match self {
            CloseCause::Peer | CloseCause::HalfCloseTimeout => &mut c.closed_peer,
            CloseCause::SocketError => &mut c.closed_error,
            CloseCause::Malformed => &mut c.closed_protocol,
            CloseCause::Oversize => &mut c.closed_oversize,
            CloseCause::ByMcp => &mut c.closed_by_mcp,
            CloseCause::QueueFull => &mut c.closed_queue_full,
            CloseCause::Shutdown => &mut c.closed_shutdown,
            CloseCause::Idle => &mut c.closed_idle,
            CloseCause::PacketTimeout => &mut c.closed_packet_timeout,
            CloseCause::MaxMemory => &mut c.closed_max_memory,
            CloseCause::SlowClient => &mut c.closed_slow_client,
            CloseCause::RateLimited => &mut c.closed_rate_limited,
            CloseCause::ListenerRateLimited => &mut c.closed_listener_rate_limited,
            CloseCause::ProxyMissing => &mut c.closed_proxy_missing,
            CloseCause::ProxyMalformed(_) => &mut c.closed_proxy_malformed,
            CloseCause::ProxyUntrusted => &mut c.closed_proxy_untrusted,
            CloseCause::ProxyTimeout => &mut c.closed_proxy_timeout,
            CloseCause::TableFull => &mut c.closed_table_full,
        } += 1;
    }
}
