//! The framers: each built-in framing on its own (every split offset, limits, bad input), the
//! registry, the same framings through the real binary, and the committed fuzz corpora replayed.

#[path = "../common/mod.rs"]
mod common;
mod framer_checks;

mod drip;
mod fuzz_corpus;
mod http;
mod http_through_ccsd;
mod length;
mod line;
mod memcache;
mod registry;
mod resp;
mod through_ccsd;
