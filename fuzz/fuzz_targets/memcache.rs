//! Fuzz target: the `memcache` framer keeps its contract over any stream, at any limits, and
//! framing it in reads of any sizes (resuming with `Progress`) agrees with framing it at once
//! (see `ccsd::framing::check_fuzz_input` for how the input is read).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = ccsd::framing::check_fuzz_input("memcache", data) {
        panic!("memcache framer breaks its contract: {broken}");
    }
});
