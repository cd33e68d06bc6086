//! ccsd, a client connection server.
//!
//! ccsd holds client connections, cuts their byte streams into packets and hands every packet,
//! with a header naming its connection (the *flow*), to an external business process (MCP)
//! through shared-memory lanes. MCP answers through another lane; ccsd routes each answer back.
//!
//! The public API is what users of the crate need; everything else is `pub(crate)` (the
//! `unreachable_pub` lint is on):
//!
//! - Building and extending a broker: [`runtime::Broker`] and its [`runtime::BrokerBuilder`]
//!   (custom framers, custom main-thread actors), [`actor`] (the [`actor::MainActor`] interface,
//!   its [`actor::ActorContext`], the [`actor::StatsSnapshot`] it receives), [`stats`] (the
//!   counters and the latency histogram in that snapshot), [`settings`], [`logging::init`].
//! - Framers: [`framing`] (the [`framing::Framer`] trait, [`framing::Progress`], the registry,
//!   the built-in framers and the contract check every framer must pass).
//! - The MCP side, for business processes written in Rust: [`mcp`] (the endpoint), with
//!   [`mcp::service`] (the request loop of a simple MCP around a [`mcp::service::Service`]) and
//!   [`mcp::demo`] (the echo service); and the vocabulary an MCP author reads and writes:
//!   [`record`] (the record header every packet carries), [`flow`] (the flow ids in it),
//!   [`clock`] (the clock of its timestamps), [`lane`] (the shared-memory ring itself).
//!
//! Where things live (`docs/architecture.md`, "Where things live", has the full map). A module
//! lives with its only owner; the root of `src/` holds what several owners share.
//!
//! - The shared vocabulary: [`lane`] (the single-producer/single-consumer shared-memory ring and
//!   its wake-up), [`proxy_protocol`] (the PROXY protocol header a load balancer sends first, and
//!   the networks trusted to send it), [`record`] and [`flow`], `message` and `mailbox` (the typed messages actors
//!   exchange and how they are delivered), [`framing`], [`settings`] (loading and validating the
//!   settings).
//! - `conn_state`: one client connection's complete state apart from its socket, and its
//!   versioned byte form (what moves between workers, and what a hot restart sends on).
//! - Shared by several actors: `main_lane` (the request lane the main thread produces into: UDP
//!   datagrams, overload notices), `memory` (the bytes all connections and replies hold together,
//!   `limits.max_memory`), `rate_limit` (the lock-free request-rate window a listener's workers
//!   share), [`logging`] (log setup and the rate-limited log line), [`clock`] (timestamps),
//!   `watched` (a source in a poller, taken out of it before it is closed: every main-thread
//!   registration), `socket_file` (a bound Unix socket's file: a stale one is removed before
//!   binding, never a live one), [`actor`].
//! - [`runtime`]: [`runtime::Broker`] builds everything from [`settings`] and runs the main loop;
//!   under it what only the runtime uses: the listening sockets, the signals, the single-instance
//!   lock, the pid file, the open-file limit and what the admin `reload` may change.
//! - `actors/` (the top-level folder, crate-private): one actor per file, and in the actor's
//!   folder what only it uses: the acceptor, the UDP actor (its send queue), the MCP bridge (the
//!   checks on MCP's records), the MCP watch, the admin (its `conns` collector, listeners and
//!   reports), the stats reporter (main thread), and the worker (its connections, their limits,
//!   idle lists and reply timing).
//! - `load`: the load each worker and connection carries (packets and bytes read per second),
//!   the per-listener worker sets (`listen[i].workers`) and the rebalancing policy, a pure
//!   function the runtime runs (`load::rebalance`).
//! - [`mcp`]: the MCP side of the lanes; under it [`mcp::service`] and [`mcp::demo`].
//! - [`stats`]: the counters every thread keeps and [`stats::histogram`], the latency histogram.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod actor;
#[path = "../actors/mod.rs"]
pub(crate) mod actors;
pub mod clock;
pub(crate) mod conn_state;
pub mod flow;
pub mod framing;
pub mod lane;
pub(crate) mod load;
pub mod logging;
pub(crate) mod mailbox;
pub(crate) mod main_lane;
pub mod mcp;
pub(crate) mod memory;
pub(crate) mod message;
pub mod proxy_protocol;
pub(crate) mod rate_limit;
pub mod record;
pub mod runtime;
pub mod settings;
pub(crate) mod socket_file;
pub mod stats;
pub(crate) mod watched;

/// What the fuzz targets (`fuzz/`) and the corpus replay (`tests/framing/fuzz_corpus.rs`) drive besides
/// the public API: the MCP bridge's checks on response records and the batch it hands a worker;
/// the connection state's byte form; the hot restart's handover messages. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::actors::mcp_bridge::response::{Destination, Rejection, ResponseCheck};
    pub use crate::conn_state::{ConnState, StateError, decode_list, encode_list};
    pub use crate::message::ReplyBatch;
    pub use crate::runtime::takeover::wire::{
        ConnOffer, Handover, LaneOffer, LaneRole, ListenerOffer, Proto, WireError, decode_conns,
        encode_conns,
    };
}
