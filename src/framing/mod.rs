//! Framing: finding packet boundaries in a connection's byte stream (see [`length`]).

mod length;

pub use length::*;
