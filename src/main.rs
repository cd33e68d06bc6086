//! The `ccsd` binary.
fn main() {}
