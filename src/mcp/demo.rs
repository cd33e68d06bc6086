//! The echo MCP: answers every data record with the same bytes to the same flow.
//!
//! `examples/echo_mcp.rs` runs it as its own process; `ccsd --demo` runs it on a thread of the
//! ccsd process itself, attached to the same shared-memory lanes, so a newcomer gets a working
//! server from one command.

use super::service::{After, Service};

/// The echo service: the reply is the packet.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Service for Echo {
    const NAME: &'static str = "echo_mcp";

    fn handle(&mut self, packet: &[u8], reply: &mut Vec<u8>) -> After {
        reply.extend_from_slice(packet);
        After::KeepOpen
    }
}
