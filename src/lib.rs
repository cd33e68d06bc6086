//! ccsd, a client connection server.
//!
//! ccsd holds client connections, cuts their byte streams into packets and hands every packet,
//! with a header naming its connection (the *flow*), to an external business process (MCP)
//! through shared-memory lanes. MCP answers through another lane; ccsd routes each answer back.
//!
//! Where things live (`docs/architecture.md` tells the whole story):
//! - [`runtime`]: [`runtime::Broker`] builds everything from [`settings`] and runs the main loop;
//!   [`listener`] opens its listening sockets.
//! - [`actors`]: one actor per file — acceptor, MCP bridge, stats reporter (main thread), worker;
//!   a worker's per-connection byte handling (buffers, framing into the lane, writing) is in
//!   `connection.rs`; the per-connection limits (`[limits]`) are in `limits.rs` and [`idle`].
//! - [`message`] and [`mailbox`]: the typed messages actors exchange and how they are delivered.
//! - [`lane`]: the single-producer/single-consumer shared-memory ring and its wake-up.
//! - [`record`] and [`flow`]: the record header every packet carries, and the flow ids in it;
//!   [`response`]: the checks the MCP bridge applies to each record MCP sends.
//! - [`framing`]: framers that find packet boundaries in a byte stream.
//! - [`mcp`]: the MCP side of the lanes, for business processes written in Rust; [`service`]: the
//!   request loop of a simple MCP around a [`service::Service`]; [`demo`]: the echo service.
//! - [`stats`], [`logging`], [`clock`]: counters, log setup, timestamps; [`instance`]: one ccsd
//!   per queue name; [`fd_limit`]: the open-file limit raised to fit `broker.max_connections`.

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

#[path = "../actors/mod.rs"]
pub mod actors;
pub mod clock;
pub(crate) mod connection;
pub mod demo;
pub mod fd_limit;
pub mod flow;
pub mod framing;
pub mod idle;
pub mod instance;
pub mod lane;
pub(crate) mod limits;
pub mod listener;
pub mod logging;
pub mod mailbox;
pub mod mcp;
pub mod message;
pub mod record;
pub mod response;
pub mod runtime;
pub mod service;
pub mod settings;
pub mod stats;
