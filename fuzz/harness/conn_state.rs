//! The check behind the `conn_state` fuzz target, also run by `tests/framing/fuzz_corpus.rs`
//! (both include this file by path): arbitrary bytes read as a connection state and as a list of
//! them (`docs/connection-state.md`), as a hot restart reads what another ccsd sent.
//!
//! Input: the bytes, whole, to [`ConnState::decode`] and to [`decode_list`] (at most one of them
//! gets past the magic).
//!
//! Checked, besides "nothing panics": a decoded state carries no framer progress, holds at most
//! the input's size on the heap, re-encodes to bytes that decode to the same state, and decoded
//! at a later clock has every timestamp later by exactly that much (or, for one that saturated to
//! 0, at most that much) and nothing else changed; a list yields exactly the number of states
//! its header declares, and the states it accepts re-encode to a list that yields them again.

use ccsd::framing::Progress;
use ccsd::fuzzing::{ConnState, decode_list, encode_list};

/// The reader's clock: about 11.5 days after boot.
const NOW: u64 = 1_000_000_000_000_000;
/// How much later the second reading happens.
const LATER: u64 = 3_600_000_000_000;

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// Checks one fuzz input; `Err` describes the first broken rule.
pub fn check_input(input: &[u8]) -> Result<(), String> {
    if let Ok(state) = ConnState::decode(input, NOW) {
        check_state(&state, input.len())?;
        let later = ConnState::decode(input, NOW + LATER)
            .map_err(|e| format!("decoded at {NOW} but not at {}: {e}", NOW + LATER))?;
        check_later(&state, later)?;
    }
    if let Ok(list) = decode_list(input, NOW) {
        let declared = list.len();
        let mut accepted = Vec::new();
        let mut yielded = 0;
        for item in list {
            yielded += 1;
            if let Ok(state) = item {
                check_state(&state, input.len())?;
                accepted.push(state);
            }
        }
        ensure!(
            yielded == declared,
            "{declared} states declared, {yielded} yielded"
        );
        let mut again = Vec::new();
        encode_list(&accepted, NOW, &mut again);
        let reread: Result<Vec<ConnState>, _> = decode_list(&again, NOW)
            .map_err(|e| format!("re-encoded list refused: {e}"))?
            .collect();
        ensure!(
            reread.as_ref() == Ok(&accepted),
            "re-encoded list reads back as {reread:?}, not {accepted:?}"
        );
    }
    Ok(())
}

/// What every decoded state must satisfy; `input_len`: the size of the bytes it came from.
fn check_state(state: &ConnState, input_len: usize) -> Result<(), String> {
    ensure!(
        state.progress == Progress::default(),
        "decoded with framer progress {:?}",
        state.progress
    );
    ensure!(
        state.allocated_bytes() <= input_len,
        "{} heap bytes from {input_len} input bytes",
        state.allocated_bytes()
    );
    let mut bytes = Vec::new();
    state.encode(NOW, &mut bytes);
    let again = ConnState::decode(&bytes, NOW);
    ensure!(
        again.as_ref() == Ok(state),
        "re-encoded state reads back as {again:?}, not {state:?}"
    );
    Ok(())
}

/// `later`, the same bytes decoded [`LATER`] ns after `state`, differs only in its timestamps,
/// each later by exactly [`LATER`] (or by at most that much where `state`'s saturated to 0).
fn check_later(state: &ConnState, mut later: ConnState) -> Result<(), String> {
    let shifted = |now: &mut u64, then: u64, what: &str| {
        let ok = if then == 0 {
            *now <= LATER
        } else {
            *now == then + LATER
        };
        let was = *now;
        *now = then;
        if ok {
            Ok(())
        } else {
            Err(format!("{what}: {then} read {LATER} ns later is {was}"))
        }
    };
    shifted(&mut later.opened_ns, state.opened_ns, "opened")?;
    shifted(
        &mut later.unfinished_since_ns,
        state.unfinished_since_ns,
        "unfinished_since",
    )?;
    shifted(
        &mut later.rate_window.start_ns,
        state.rate_window.start_ns,
        "rate_window",
    )?;
    for (now, then) in [
        (&mut later.last_active_ns, state.last_active_ns),
        (&mut later.half_closed_since_ns, state.half_closed_since_ns),
    ] {
        match (now, then) {
            (Some(now), Some(then)) => shifted(now, then, "an optional timestamp")?,
            (now, then) => ensure!(
                now.is_none() && then.is_none(),
                "{now:?} later, {then:?} before"
            ),
        }
    }
    ensure!(
        later.unsent_timing.entries.len() == state.unsent_timing.entries.len(),
        "a different number of reply timing entries"
    );
    for (now, then) in later
        .unsent_timing
        .entries
        .iter_mut()
        .zip(&state.unsent_timing.entries)
    {
        shifted(&mut now.echo0_ns, then.echo0_ns, "echo0")?;
    }
    ensure!(
        &later == state,
        "read later, more than the timestamps changed: {later:?} against {state:?}"
    );
    Ok(())
}
