//! The echo MCP: answers every data record with the same bytes to the same flow.
//!
//! `examples/echo_mcp.rs` runs it as its own process; `ccsd --demo` runs it on a thread of the
//! ccsd process itself, attached to the same shared-memory lanes, so a newcomer gets a working
//! server from one command.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::mcp::{McpEndpoint, McpError, Message};
use crate::record::Kind;

/// How long `recv` sleeps before looking at the stop flag again.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// What the echo service did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EchoCounters {
    /// Data records answered.
    pub echoed: u64,
    /// Disconnect notices received.
    pub disconnects: u64,
    /// Records of other kinds, ignored.
    pub ignored: u64,
}

/// Answers requests until `stop` is set.
///
/// When the response lane is full (ccsd is not reading), it waits for room
/// ([`McpEndpoint::when_room`]), so no reply is lost.
///
/// # Errors
/// Waiting on the lanes failed, or a reply is longer than a lane can carry.
pub fn serve_echo(mcp: &mut McpEndpoint, stop: &AtomicBool) -> Result<EchoCounters, McpError> {
    let mut msg = Message::new();
    let mut counters = EchoCounters::default();
    while !stop.load(Ordering::Relaxed) {
        if !mcp.recv(&mut msg, Some(STOP_CHECK))? {
            continue;
        }
        match msg.header().kind {
            Kind::Data => {
                mcp.when_room(|mcp| mcp.reply(msg.header(), msg.payload()))?;
                counters.echoed += 1;
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
