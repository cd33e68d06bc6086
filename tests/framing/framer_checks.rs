//! Shared checks for the framer tests: a stream of pipelined packets fed at every split offset,
//! the framer contract over it, and the exact byte at which bad input is refused.
#![allow(dead_code)] // each test binary uses a different subset

use ccsd::framing::{self, FrameCheck, FrameError, Framer};

/// The packet ends a worker finds in `buf` by checking and consuming until the rest is
/// incomplete. Panics if the stream is refused.
pub fn boundaries(framer: &dyn Framer, buf: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut start = 0;
    loop {
        match framer.check(&buf[start..]) {
            FrameCheck::Complete(n) => {
                assert!(n >= 1, "a complete packet has at least one byte");
                start += n;
                ends.push(start);
            }
            FrameCheck::Incomplete => return ends,
            FrameCheck::Invalid(err) => panic!("valid stream refused at {start}: {err}"),
        }
    }
}

/// Asserts that the stream of `packets`, back to back, is cut at exactly the ends of the packets
/// received so far whatever the number of bytes received, and that the framer keeps the contract
/// over it.
pub fn assert_packets_found_at_every_split(framer: &dyn Framer, packets: &[&[u8]]) {
    let stream = packets.concat();
    let ends: Vec<usize> = packets
        .iter()
        .scan(0, |end, packet| {
            *end += packet.len();
            Some(*end)
        })
        .collect();
    for received in 0..=stream.len() {
        let expected: Vec<usize> = ends
            .iter()
            .copied()
            .filter(|&end| end <= received)
            .collect();
        assert_eq!(
            boundaries(framer, &stream[..received]),
            expected,
            "after {received} bytes of {:?}",
            String::from_utf8_lossy(&stream)
        );
    }
    assert_contract(framer, &stream);
}

/// Asserts that `bytes` are refused exactly when their last byte arrives (one byte fewer is still
/// incomplete), and returns why.
pub fn refused_at_last_byte(framer: &dyn Framer, bytes: &[u8]) -> FrameError {
    let shown = String::from_utf8_lossy(bytes);
    assert_eq!(
        framer.check(&bytes[..bytes.len() - 1]),
        FrameCheck::Incomplete,
        "one byte before the end of {shown:?}"
    );
    assert_contract(framer, bytes);
    match framer.check(bytes) {
        FrameCheck::Invalid(err) => err,
        other => panic!("{shown:?} gave {other:?}"),
    }
}

/// Asserts that `bytes` are malformed exactly when their last byte arrives.
pub fn assert_malformed_at_last_byte(framer: &dyn Framer, bytes: &[u8]) {
    let err = refused_at_last_byte(framer, bytes);
    assert!(
        matches!(err, FrameError::Malformed(_)),
        "{:?} gave {err:?}",
        String::from_utf8_lossy(bytes)
    );
}

/// Asserts that the framer keeps its contract over `stream`.
pub fn assert_contract(framer: &dyn Framer, stream: &[u8]) {
    if let Err(broken) = framing::check_contract(framer, stream) {
        panic!(
            "{} framer breaks its contract over {:?}: {broken}",
            framer.name(),
            String::from_utf8_lossy(stream)
        );
    }
}

/// `FrameCheck::Invalid(FrameError::Oversize { declared, max })`.
pub fn oversize(declared: u64, max: usize) -> FrameCheck {
    FrameCheck::Invalid(FrameError::Oversize { declared, max })
}
