//! Who-am-I MCP: answers every packet with one text line naming this MCP's node and the client
//! as ccsd reported it (`NODE ADDRESS:PORT\n`). Behind a load balancer with the PROXY protocol
//! it shows which node served a connection and that MCP sees the client, not the balancer
//! (`tests/broker/drain.rs` runs two of them behind HAProxy).
//!
//! ```text
//! cargo run --example whoami_mcp -- --config settings/default.toml --node node1
//! ```

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::Duration;

use std::io::Write as _;

use ccsd::mcp::{McpEndpoint, McpError, Message};
use ccsd::record::Kind;
use clap::Parser;
use log::error;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "whoami_mcp",
    about = "Answers every packet with a line naming this node and the client: `NODE ADDRESS:PORT`."
)]
struct Cli {
    #[command(flatten)]
    lanes: common::LaneArgs,
    /// The node's name, first word of every answer.
    #[arg(long, default_value = "node")]
    node: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (_, mut mcp) = match common::attach_mcp("whoami_mcp", &cli.lanes) {
        Ok(attached) => attached,
        Err(code) => return code,
    };
    let mut msg = Message::new();
    let mut reply = Vec::with_capacity(128);
    loop {
        if let Err(e) = answer_next(&mut mcp, &mut msg, &mut reply, &cli.node) {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    }
}

/// Waits (at most a second) for the next record and answers it if it is a packet; publishes the
/// replies once no request waits.
fn answer_next(
    mcp: &mut McpEndpoint,
    msg: &mut Message,
    reply: &mut Vec<u8>,
    node: &str,
) -> Result<(), McpError> {
    if !mcp.recv(msg, Some(Duration::from_secs(1)))? {
        return Ok(());
    }
    let header = *msg.header();
    if header.kind == Kind::Data {
        reply.clear();
        writeln!(reply, "{node} {}", header.peer).expect("writing to a Vec");
        mcp.when_room(|mcp| mcp.reply(&header, reply))?;
    }
    if !mcp.has_pending_requests() {
        mcp.flush()?;
    }
    Ok(())
}
