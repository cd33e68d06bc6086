//! Fuzz target: both ends of a real lane against a hostile peer writing the lane file (see
//! `fuzz/harness/lane.rs` for how the input is read and what is checked).
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

#[path = "../harness/lane.rs"]
mod harness;

/// One lane file per fuzzing process, created and removed by every run of the target.
static LANE: LazyLock<PathBuf> =
    LazyLock::new(|| PathBuf::from(format!("/dev/shm/ccsd-fuzz-lane-{}", std::process::id())));

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = harness::check_input(&LANE, data) {
        panic!("lane check fails: {broken}");
    }
});
