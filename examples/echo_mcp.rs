//! Echo MCP: answers every packet with the same bytes, to the same connection.
//!
//! ```text
//! cargo run --example echo_mcp -- --config settings/default.toml
//! ```
//!
//! It reads the same settings file as ccsd to find the lanes (`[queues]`), waits for ccsd to
//! create them, and keeps serving across ccsd restarts (the lanes survive them).

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;

fn main() -> ExitCode {
    common::run(&mut ccsd::mcp::demo::Echo)
}
