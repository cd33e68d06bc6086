//! The actors, one per file (and its folder for what only that actor uses).
//!
//! Main thread: [`acceptor::Acceptor`], [`udp::UdpActor`], [`mcp_bridge::McpBridge`],
//! [`mcp_watch::McpWatch`], [`admin::Admin`] (its `conns` command gathers the workers' answers in
//! `admin/conns.rs`) and [`stats_reporter::StatsReporter`], all on one poller; the acceptor and the
//! admin back off their listeners with [`accept_pause::AcceptPause`] when descriptors run out. Each worker thread runs
//! one [`worker::Worker`] on its own poller.

pub mod accept_pause;
pub mod acceptor;
pub mod admin;
pub mod mcp_bridge;
pub mod mcp_watch;
pub mod stats_reporter;
pub mod udp;
pub mod worker;
