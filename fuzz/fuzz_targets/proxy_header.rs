//! Fuzz target: the first bytes of a connection on a `proxy_protocol` listener, parsed as the
//! worker parses them (see `fuzz/harness/proxy_header.rs` for how the input is read and what is
//! checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/proxy_header.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = harness::check_input(data) {
        panic!("PROXY header check fails: {broken}");
    }
});
