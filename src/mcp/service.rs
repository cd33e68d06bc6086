//! Serving requests with a [`Service`]: the loop a simple MCP runs.
//!
//! A service answers one client packet at a time: it gets the packet and appends its reply. The
//! loop ([`serve`]) takes records from the request lanes, hands data records to the service,
//! queues the reply (in chunks of at most [`REPLY_CHUNK`] bytes, which ccsd writes to the client
//! back to back, so a large reply fits even the smallest lane; a reply to a UDP datagram is one
//! record, since ccsd sends each record as one datagram), closes the connection when the
//! service says so, and publishes replies in batches. The echo MCP ([`super::demo::Echo`]) and the
//! example MCPs (`examples/kv_mcp`, `examples/http_mcp`) are services.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::mcp::{McpEndpoint, McpError, Message};
use crate::record::{CloseMode, Kind, Transport};

/// Largest payload of one reply record.
pub const REPLY_CHUNK: usize = 16 * 1024;

/// How long the loop sleeps before it looks at the stop flag again.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// What happens to the connection after a request's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// The connection stays open for more requests.
    KeepOpen,
    /// The connection is closed once the reply has been written.
    Close,
}

/// A business process that answers one client packet at a time, keeping no state per connection.
pub trait Service {
    /// The program's name, for the usage line and the log.
    const NAME: &'static str;

    /// Answers `packet` by appending the reply bytes to `reply` (empty when called). An empty
    /// reply sends nothing.
    fn handle(&mut self, packet: &[u8], reply: &mut Vec<u8>) -> After;
}

/// What [`serve`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServeCounters {
    /// Data records answered.
    pub requests: u64,
    /// Disconnect notices received.
    pub disconnects: u64,
    /// Records of other kinds, ignored.
    pub ignored: u64,
    /// Replies to UDP datagrams too large for one record of the response lane, dropped.
    pub dropped_too_large: u64,
}

/// Answers requests with `service` until `stop` is set. A reply that finds the response lane full
/// waits for room ([`McpEndpoint::when_room`]), so nothing is lost.
///
/// # Errors
/// Waiting on the lanes failed, or a reply could not be queued.
pub fn serve<S: Service>(
    mcp: &mut McpEndpoint,
    service: &mut S,
    stop: &AtomicBool,
) -> Result<ServeCounters, McpError> {
    let mut msg = Message::new();
    let mut reply = Vec::with_capacity(64 * 1024);
    let mut counters = ServeCounters::default();
    // SYNC POINT: Relaxed: a request to stop, seen within STOP_CHECK; nothing is published with it.
    while !stop.load(Ordering::Relaxed) {
        if !mcp.recv(&mut msg, Some(STOP_CHECK))? {
            continue;
        }
        let header = msg.header();
        match header.kind {
            Kind::Data => {
                reply.clear();
                let after = service.handle(msg.payload(), &mut reply);
                if header.transport == Transport::Udp {
                    // One datagram in, one datagram out: a UDP reply is never cut into chunks.
                    if !reply.is_empty() {
                        match mcp.when_room(|mcp| mcp.reply(header, &reply)) {
                            Err(McpError::TooLarge(_)) => counters.dropped_too_large += 1,
                            other => other?,
                        }
                    }
                } else {
                    for chunk in reply.chunks(REPLY_CHUNK) {
                        mcp.when_room(|mcp| mcp.reply(header, chunk))?;
                    }
                }
                if after == After::Close {
                    mcp.when_room(|mcp| mcp.close(header.flow, CloseMode::AfterFlush))?;
                }
                counters.requests += 1;
            }
            Kind::Disconnect => counters.disconnects += 1,
            _ => counters.ignored += 1,
        }
        if !mcp.has_pending_requests() {
            mcp.flush()?;
        }
    }
    mcp.flush()?;
    Ok(counters)
}
