//! ccsd, a client connection server.
//!
//! ccsd holds client connections, cuts their byte streams into packets and hands every packet,
//! with a header naming its connection (the *flow*), to an external business process (MCP)
//! through shared-memory lanes. MCP answers through another lane; ccsd routes each answer back.
//!
//! Where things live:
//! - [`settings`]: the settings file, environment overrides and their validation.
//! - [`lane`]: the single-producer/single-consumer shared-memory ring and its wake-up.
//! - [`framing`]: framers that find packet boundaries in a byte stream.

pub mod framing;
pub mod lane;
pub mod settings;
