//! Hot restart (issue 12): a new ccsd process takes over the listeners, the lanes and every live
//! connection of the running one. `channel.rs` is the transport between the two processes (a
//! `SOCK_SEQPACKET` Unix socket passing descriptors, bulk state through a memfd) and `wire.rs`
//! the versioned messages they exchange; `docs/hot-restart.md` specifies both. `hand_over.rs` is
//! the running process's side (check, freeze, hand over, let go or thaw), `take_over.rs` the new
//! process's (receive, build around it, say ready, serve once committed), `fault.rs` the
//! test-only faults the rollback tests inject; the start path (`start.rs`) builds a broker
//! around what was handed over.

pub(crate) mod channel;
pub(crate) mod fault;
pub(crate) mod hand_over;
pub(crate) mod take_over;
pub(crate) mod wire;
