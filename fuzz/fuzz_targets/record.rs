//! Fuzz target: records from the response lane, judged as the MCP bridge judges them and batched
//! as it batches them (see `fuzz/harness/record.rs` for how the input is read and what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/record.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = harness::check_input(data) {
        panic!("response lane record check fails: {broken}");
    }
});
