//! Hot restart (issue 12): a new ccsd process takes over the listeners, the lanes and every live
//! connection of the running one. `channel.rs` is the transport between the two processes (a
//! `SOCK_SEQPACKET` Unix socket passing descriptors, bulk state through a memfd) and `wire.rs`
//! the versioned messages they exchange; `docs/hot-restart.md` specifies both.

pub(crate) mod channel;
pub(crate) mod wire;
