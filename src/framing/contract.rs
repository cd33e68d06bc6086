//! The framer contract as a check: runs a framer over a byte stream, prefix by prefix and as a
//! worker would (in reads of many sizes, resuming with [`Progress`]), and reports the first rule
//! it breaks. The fuzz targets in `fuzz/` and the tests use it; it allocates and is
//! quadratic in the stream length, so it is no part of the hot path.

use std::sync::Arc;

use super::{FrameCheck, Framer, Progress};
use crate::settings::{ByteSize, Endian, LengthIncludes, ListenSettings};

/// Runs `framer` over `input` as one connection's stream, taking complete packets one after the
/// other until the rest is incomplete or invalid, and checks the contract of the
/// [module documentation](super) at every prefix of every packet:
///
/// - `check(&[])` is `Incomplete`, and `check` gives the same answer when asked twice;
/// - `Complete(n)` has `1 <= n <= buf.len()` and `n <= max_packet()`; every prefix shorter than
///   `n` is `Incomplete` and every longer one is `Complete(n)`;
/// - `Incomplete` is at most `max_packet()` bytes and every prefix of it is `Incomplete`;
/// - before the first invalid prefix everything is `Incomplete`, and from it on every prefix gives
///   the same error;
/// - fed as a worker feeds it, in reads of one byte each and in reads of pseudo-random sizes
///   (drawn from a seed that the input chooses), `check_from` with the packet's [`Progress`]
///   answers what `check` answers for the same bytes after every read: incremental framing finds
///   the packets one-shot framing finds, however the stream is split.
///
/// # Errors
///
/// The first rule broken, with the offset of the packet and the prefix length that show it.
pub fn check_contract(framer: &dyn Framer, input: &[u8]) -> Result<(), String> {
    let max = framer.max_packet();
    let empty = framer.check(&[]);
    if empty != FrameCheck::Incomplete {
        return Err(format!("check(&[]) is {empty:?}, not Incomplete"));
    }
    check_reads(framer, input, |_| 1)?;
    let mut seed = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    for most in [3, 17, 257] {
        check_reads(framer, input, |_| {
            // xorshift64: a different split for every input, the same for the same input.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            1 + (seed % most) as usize
        })?;
    }
    let mut start = 0;
    loop {
        let rest = &input[start..];
        let whole = framer.check(rest);
        let again = framer.check(rest);
        if whole != again {
            return Err(format!(
                "at {start}: check gave {whole:?}, then {again:?} for the same bytes"
            ));
        }
        let at = |len: usize| framer.check(&rest[..len]);
        match whole {
            FrameCheck::Complete(n) => {
                if n == 0 || n > rest.len() || n > max {
                    return Err(format!(
                        "at {start}: Complete({n}) of {} bytes with max_packet {max}",
                        rest.len()
                    ));
                }
                if let Some(len) = (0..n).find(|&len| at(len) != FrameCheck::Incomplete) {
                    return Err(format!(
                        "at {start}: Complete({n}), but the first {len} bytes give {:?}",
                        at(len)
                    ));
                }
                if let Some(len) = (n..rest.len()).find(|&len| at(len) != whole) {
                    return Err(format!(
                        "at {start}: Complete({n}) with {} bytes, but {:?} with {len}",
                        rest.len(),
                        at(len)
                    ));
                }
                start += n;
            }
            FrameCheck::Incomplete => {
                if rest.len() > max {
                    return Err(format!(
                        "at {start}: Incomplete after {} bytes with max_packet {max}",
                        rest.len()
                    ));
                }
                return match (0..rest.len()).find(|&len| at(len) != FrameCheck::Incomplete) {
                    Some(len) => Err(format!(
                        "at {start}: Incomplete with {} bytes, but {:?} with {len}",
                        rest.len(),
                        at(len)
                    )),
                    None => Ok(()),
                };
            }
            FrameCheck::Invalid(_) => {
                let first = (0..=rest.len())
                    .find(|&len| at(len) != FrameCheck::Incomplete)
                    .unwrap_or(rest.len());
                return match (first..rest.len()).find(|&len| at(len) != whole) {
                    Some(len) => Err(format!(
                        "at {start}: {whole:?} with {} bytes, but {:?} with {len} (first not Incomplete at {first})",
                        rest.len(),
                        at(len)
                    )),
                    None => Ok(()),
                };
            }
        }
    }
}

/// Feeds `input` to `framer` as a worker does: in reads whose sizes `next_read` gives (the
/// argument is the number of bytes received so far), after each read asking `check_from` with the
/// current packet's [`Progress`] until the rest is incomplete, and checks every answer against
/// `check` of the same bytes.
fn check_reads(
    framer: &dyn Framer,
    input: &[u8],
    mut next_read: impl FnMut(usize) -> usize,
) -> Result<(), String> {
    let mut start = 0;
    let mut received = 0;
    let mut progress = Progress::default();
    while received < input.len() {
        received = (received + next_read(received).max(1)).min(input.len());
        loop {
            let buf = &input[start..received];
            let resumed = framer.check_from(buf, &mut progress);
            let whole = framer.check(buf);
            if resumed != whole {
                return Err(format!(
                    "at {start}: check_from gave {resumed:?} after {received} bytes were received in reads, but check gives {whole:?}"
                ));
            }
            match resumed {
                FrameCheck::Complete(n) => {
                    start += n;
                    progress = Progress::default();
                }
                FrameCheck::Incomplete => break,
                FrameCheck::Invalid(_) => return Ok(()),
            }
        }
    }
    Ok(())
}

/// Decodes a fuzz input and checks the contract of the built-in framing `framing` over it.
///
/// The first three bytes choose the limits, so that fuzzing reaches them: bytes 0–1 (big-endian)
/// give `max_packet` from 1 to 4096, byte 2 gives `http_max_header` (1 to 4081) and the `length`
/// layout (field size, byte order, what it counts, offset). The rest is the stream. An input of
/// fewer than three bytes, or settings the framing refuses, check nothing.
///
/// # Errors
///
/// An unknown framing, or the first rule of [`check_contract`] broken.
#[doc(hidden)]
pub fn check_fuzz_input(framing: &str, input: &[u8]) -> Result<(), String> {
    let [high, low, shape, stream @ ..] = input else {
        return Ok(());
    };
    let listen = ListenSettings {
        framing: framing.to_owned(),
        max_packet: ByteSize(1 + u64::from(u16::from_be_bytes([*high, *low])) % 4096),
        http_max_header: ByteSize(1 + u64::from(*shape) * 16),
        length_size: [1, 2, 4, 8][usize::from(shape & 3)],
        length_endian: [Endian::Big, Endian::Little][usize::from((shape >> 2) & 1)],
        length_includes: [
            LengthIncludes::Body,
            LengthIncludes::Field,
            LengthIncludes::All,
        ][usize::from((shape >> 3) % 3)],
        length_offset: usize::from(shape >> 5),
        ..ListenSettings::default()
    };
    if !super::is_known(framing) {
        return Err(format!("unknown framing {framing:?}"));
    }
    let framer: Arc<dyn Framer> = match super::build(&listen) {
        Ok(framer) => framer,
        Err(_) => return Ok(()),
    };
    check_contract(&*framer, stream)
}
