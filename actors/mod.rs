//! The actors, one per file (and its folder for what only that actor uses).
//!
//! Main thread: [`acceptor::Acceptor`], [`udp::UdpActor`], [`mcp_bridge::McpBridge`],
//! [`mcp_watch::McpWatch`], [`admin::Admin`] (its `conns` command gathers the workers' answers in
//! `admin/conns.rs`) and [`stats_reporter::StatsReporter`], all on one poller; the acceptor and the
//! admin back off their listeners with [`accept_pause::AcceptPause`] when descriptors run out. Each worker thread runs
//! one [`worker::Worker`] on its own poller.

pub(crate) mod accept_pause;
pub(crate) mod acceptor;
pub(crate) mod admin;
pub(crate) mod mcp_bridge;
pub(crate) mod mcp_watch;
pub(crate) mod stats_reporter;
pub(crate) mod udp;
pub(crate) mod worker;
