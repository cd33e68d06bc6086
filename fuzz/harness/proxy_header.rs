//! The check behind the `proxy_header` fuzz target, also run by `tests/framing/fuzz_corpus.rs`
//! (both include this file by path): arbitrary bytes as the first bytes of a connection on a
//! `proxy_protocol` listener, parsed by [`proxy_protocol::parse`].
//!
//! Input: byte 0 picks the accepted versions (0: v1, 1: v2, 2: any, by its value modulo 3); the
//! rest is what the client sent.
//!
//! Checked, besides "nothing panics": a whole header is no longer than the input nor than
//! [`MAX_HEADER`], parses the same from its own bytes alone, and is incomplete one byte short;
//! an incomplete input is shorter than [`MAX_HEADER`] (the parser never waits past its bound); a
//! refusal is final (more bytes do not change it); a header one version accepts is read the same
//! when any version is accepted.

use ccsd::proxy_protocol::{self, Accepted, MAX_HEADER, Parsed};

/// Checks one fuzz input; `Err` describes the first broken rule.
pub fn check_input(input: &[u8]) -> Result<(), String> {
    let Some((&mode, bytes)) = input.split_first() else {
        return Ok(());
    };
    let accepted = [Accepted::V1, Accepted::V2, Accepted::Any][usize::from(mode % 3)];
    let parsed = proxy_protocol::parse(bytes, accepted);
    match parsed {
        Ok(Parsed::Complete(header)) => {
            if header.len > bytes.len() || header.len > MAX_HEADER {
                return Err(format!(
                    "header of {} bytes from {} bytes (bound {MAX_HEADER})",
                    header.len,
                    bytes.len()
                ));
            }
            let alone = proxy_protocol::parse(&bytes[..header.len], accepted);
            if alone != parsed {
                return Err(format!("{parsed:?} but {alone:?} from its own bytes"));
            }
            let short = proxy_protocol::parse(&bytes[..header.len - 1], accepted);
            if short != Ok(Parsed::Incomplete) {
                return Err(format!("{short:?} one byte short of {parsed:?}"));
            }
            let any = proxy_protocol::parse(bytes, Accepted::Any);
            if any != parsed {
                return Err(format!("{parsed:?} but {any:?} accepting any version"));
            }
        }
        Ok(Parsed::Incomplete) => {
            if bytes.len() >= MAX_HEADER {
                return Err(format!("incomplete after {} bytes", bytes.len()));
            }
        }
        Err(e) => {
            let longer = [bytes, &[b'\n'; 8]].concat();
            let again = proxy_protocol::parse(&longer, accepted);
            if again != Err(e) {
                return Err(format!("refused ({e}), then {again:?} with more bytes"));
            }
        }
    }
    Ok(())
}
