//! MCPs written with the MCP libraries against the real `ccsd` binary: the C library
//! (`libccsd_mcp`) built and installed as a C author would, its C examples and its Python module,
//! the delivery guarantees, request lanes that change while MCP runs, and the C snippets of
//! `docs/protocol.md`. `c_common` builds and compiles the C side once per run.

#[path = "../common/mod.rs"]
mod common;

mod c_common;
mod c_library;
mod delivery;
mod lanes_change;
mod protocol_snippets;
mod python;
