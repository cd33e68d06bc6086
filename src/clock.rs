//! Monotonic nanosecond timestamps shared by ccsd and MCP.
//!
//! Both processes read `CLOCK_MONOTONIC`, so a timestamp written into a record header by one of
//! them can be compared with the other's clock to measure how long the record waited.

use rustix::time::{ClockId, clock_gettime};

/// Nanoseconds of `CLOCK_MONOTONIC` (the same clock in every process of this machine).
pub fn monotonic_ns() -> u64 {
    let ts = clock_gettime(ClockId::Monotonic);
    // tv_sec and tv_nsec are never negative for CLOCK_MONOTONIC.
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}
