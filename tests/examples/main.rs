//! The example programs (`examples/`) through the real ccsd: MCPs of the user's own, a binary
//! built with `Broker::builder`, a framer of one's own, the load generator, replay and soak tools,
//! and `ccsd --demo`.

#[path = "../common/mod.rs"]
mod common;

mod custom_actor;
mod custom_framer;
mod demo;
mod help;
mod http_mcp;
mod kv_mcp;
mod loadgen;
mod replay;
mod soak_short;
