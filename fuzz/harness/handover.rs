//! The check behind the `handover` fuzz target, also run by `tests/framing/fuzz_corpus.rs` (both
//! include this file by path): arbitrary bytes read as a hot restart's handover message and as
//! the connection records of its bulk (`docs/hot-restart.md`, "Messages"), as one ccsd reads
//! what another sent.
//!
//! Input: the bytes, whole, to [`Handover::decode`] and to [`decode_conns`] (at most one of them
//! gets past the magic).
//!
//! Checked, besides "nothing panics": an accepted message re-encodes to bytes no longer than the
//! input (unknown skippable fields are dropped, nothing is invented) that decode to the same
//! message; accepted records hold at most the input's size in state bytes, and re-encode to
//! records that decode to the same; every refusal has a message.

use ccsd::fuzzing::{Handover, decode_conns, encode_conns};

/// The most records a reader accepts here (the bound ccsd's bulk has).
const MAX_CONNS: usize = 1 << 20;

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// Checks one fuzz input; `Err` describes the first broken rule.
pub fn check_input(input: &[u8]) -> Result<(), String> {
    match Handover::decode(input) {
        Ok(message) => {
            let again = message.encode();
            ensure!(
                again.len() <= input.len(),
                "{} input bytes re-encode to {}",
                input.len(),
                again.len()
            );
            let reread = Handover::decode(&again);
            ensure!(
                reread.as_ref() == Ok(&message),
                "re-encoded message reads back as {reread:?}, not {message:?}"
            );
        }
        Err(refused) => ensure!(!refused.to_string().is_empty(), "a refusal without words"),
    }
    match decode_conns(input, MAX_CONNS) {
        Ok(conns) => {
            let state_bytes: usize = conns.iter().map(|c| c.state.len()).sum();
            ensure!(
                state_bytes <= input.len(),
                "{state_bytes} state bytes from {} input bytes",
                input.len()
            );
            let again = encode_conns(&conns);
            let reread = decode_conns(&again, MAX_CONNS);
            ensure!(
                reread.as_ref() == Ok(&conns),
                "re-encoded records read back as {reread:?}, not {conns:?}"
            );
        }
        Err(refused) => ensure!(!refused.to_string().is_empty(), "a refusal without words"),
    }
    Ok(())
}
