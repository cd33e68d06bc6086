//! The deterministic record stream of `lane_bench produce --seq-sizes`, shared by the example
//! that produces it and the tests that check it (the example includes it with `#[path]`).

/// The longest record of the stream.
pub const MAX_SEQ_RECORD: usize = 200;

/// Writes record number `seq` into the start of `buf` (at least [`MAX_SEQ_RECORD`] bytes) and
/// returns its length, 1..=200. Length and content are functions of `seq` alone.
pub fn seq_record(seq: u64, buf: &mut [u8]) -> usize {
    let mut x = seq.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    let len = 1 + (x % MAX_SEQ_RECORD as u64) as usize;
    let pattern = x.to_le_bytes();
    for (i, byte) in buf[..len].iter_mut().enumerate() {
        *byte = pattern[i % 8] ^ i as u8;
    }
    len
}
