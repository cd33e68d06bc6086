//! Fuzz target: bytes read as a hot restart's handover message and as the connection records of
//! its bulk, as one ccsd reads what another sent (see `fuzz/harness/handover.rs` for what is
//! checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/handover.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = harness::check_input(data) {
        panic!("handover message check fails: {broken}");
    }
});
