//! ccsd, a client connection server.
//!
//! ccsd holds client connections, cuts their byte streams into packets and hands every packet,
//! with a header naming its connection (the *flow*), to an external business process (MCP)
//! through shared-memory lanes. MCP answers through another lane; ccsd routes each answer back.
//!
//! Where things live (`docs/architecture.md`, "Where things live", has the full map). A module
//! lives with its only owner; the root of `src/` holds what several owners share.
//!
//! - The shared vocabulary: [`lane`] (the single-producer/single-consumer shared-memory ring and
//!   its wake-up), [`proxy_protocol`] (the PROXY protocol header a load balancer sends first, and
//!   the networks trusted to send it), [`record`] and [`flow`] (the record header every packet carries and the flow
//!   ids in it), [`message`] and [`mailbox`] (the typed messages actors exchange and how they are
//!   delivered), [`framing`] (framers that find packet boundaries in a byte stream), [`settings`]
//!   (loading and validating the settings).
//! - Shared by several actors: [`main_lane`] (the request lane the main thread produces into:
//!   UDP datagrams, overload notices), [`memory`] (the bytes all connections and replies hold
//!   together, `limits.max_memory`), [`rate_limit`] (the lock-free request-rate window a
//!   listener's workers share), [`logging`] (log setup and the rate-limited log line),
//!   [`clock`] (timestamps), `watched.rs` (a source in a poller, taken out of it before it is
//!   closed: every main-thread registration), [`actor`] (the interface of custom main-thread
//!   actors a binary of one's own adds with [`runtime::Broker::builder`]).
//! - [`runtime`]: [`runtime::Broker`] builds everything from [`settings`] and runs the main loop;
//!   under it what only the runtime uses: the listening sockets, the signals, the single-instance
//!   lock, the pid file, the open-file limit and what the admin `reload` may change.
//! - [`actors`]: one actor per file, and in the actor's folder what only it uses: the acceptor,
//!   the UDP actor (its send queue), the MCP bridge (the checks on MCP's records), the MCP watch,
//!   the admin (its `conns` collector, listeners and reports), the stats reporter (main thread),
//!   and the worker (its connections, their limits, idle lists and reply timing).
//! - [`mcp`]: the MCP side of the lanes, for business processes written in Rust; under it
//!   [`mcp::service`] (the request loop of a simple MCP around a [`mcp::service::Service`]) and
//!   [`mcp::demo`] (the echo service).
//! - [`stats`]: the counters every thread keeps and [`stats::histogram`], the latency histogram.

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod actor;
#[path = "../actors/mod.rs"]
pub mod actors;
pub mod clock;
pub mod flow;
pub mod framing;
pub mod lane;
pub mod logging;
pub mod mailbox;
pub mod main_lane;
pub mod mcp;
pub mod memory;
pub mod message;
pub mod proxy_protocol;
pub mod rate_limit;
pub mod record;
pub mod runtime;
pub mod settings;
pub mod stats;
pub(crate) mod watched;

// The modules' paths before issue 10 moved them, kept until its three branches are merged: the
// worker wing (`crate::histogram`) and the tests (`ccsd::service`, `ccsd::fd_limit`) still use
// them. The public-surface pass removes these lines.
pub use mcp::service;
pub use runtime::fd_limit;
pub(crate) use stats::histogram;
