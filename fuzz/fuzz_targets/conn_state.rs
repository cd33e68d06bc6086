//! Fuzz target: bytes read as a connection state and as a list of them, as a hot restart reads
//! what another ccsd sent (see `fuzz/harness/conn_state.rs` for what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/conn_state.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = harness::check_input(data) {
        panic!("connection state check fails: {broken}");
    }
});
