//! ccsd, a client connection server.
//!
//! ccsd holds client connections, cuts their byte streams into packets and hands every packet,
//! with a header naming its connection (the *flow*), to an external business process (MCP)
//! through shared-memory lanes. MCP answers through another lane; ccsd routes each answer back.
//!
//! Where things live (`docs/architecture.md` tells the whole story):
//! - [`runtime`]: [`runtime::Broker`] builds everything from [`settings`] and runs the main loop;
//!   [`listener`] opens its listening sockets; [`actor`]: the interface of custom main-thread
//!   actors added with [`runtime::Broker::builder`]; `reload.rs`: what the admin `reload`
//!   command may change at run time.
//! - [`actors`]: one actor per file — acceptor, UDP, MCP bridge, stats reporter (main thread),
//!   [`rate_limit`] is the lock-free request-rate window a listener's workers share; [`memory`]
//!   the bytes all connections and replies hold together (`limits.max_memory`); a UDP
//!   listener's queue of replies waiting for its socket is in `datagram_queue.rs`; the
//! - [`message`] and [`mailbox`]: the typed messages actors exchange and how they are delivered.
//! - [`lane`]: the single-producer/single-consumer shared-memory ring and its wake-up;
//!   [`main_lane`]: the request lane the main thread produces into (UDP, overload notices).
//! - [`record`] and [`flow`]: the record header every packet carries, and the flow ids in it;
//! - [`framing`]: framers that find packet boundaries in a byte stream.
//! - [`mcp`]: the MCP side of the lanes, for business processes written in Rust; [`service`]: the
//!   request loop of a simple MCP around a [`service::Service`]; [`demo`]: the echo service.
//! - [`stats`], [`histogram`], [`logging`], [`clock`]: counters, latency histograms, log setup
//!   (and its reopening), timestamps; [`signals`]: SIGTERM/SIGINT (stop) and SIGHUP (reopen the
//!   log file); [`instance`]: one ccsd per queue name; [`pid_file`]: the optional pid file;
//!   [`fd_limit`]: the open-file limit raised to fit `broker.max_connections`.

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod actor;
#[path = "../actors/mod.rs"]
pub mod actors;
pub mod clock;
pub(crate) mod datagram_queue;
pub mod demo;
pub mod fd_limit;
pub mod flow;
pub mod framing;
pub mod histogram;
pub mod instance;
pub mod lane;
pub mod listener;
pub mod logging;
pub mod mailbox;
pub mod main_lane;
pub mod mcp;
pub mod memory;
pub mod message;
pub mod pid_file;
pub mod rate_limit;
pub mod record;
pub(crate) mod reload;
pub mod runtime;
pub mod service;
pub mod settings;
pub mod signals;
pub mod stats;
