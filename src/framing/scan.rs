//! Scanning helpers shared by the text framings: bounded line search, numbers, limits.
//!
//! The framings parse with `Result<usize, FrameCheck>`: `Ok(n)` is a complete packet of `n`
//! bytes, `Err` carries [`FrameCheck::Incomplete`] or [`FrameCheck::Invalid`] out of the parse
//! with `?` as soon as either is known.

use super::{FrameCheck, FrameError};

/// What a parse step found: the value and where the next one starts, or why it stops.
pub(super) type Step<T> = Result<T, FrameCheck>;

/// Runs `parse` over at most the first `max` bytes of `buf`, so nothing beyond `max` is ever
/// scanned: a packet still incomplete once `max` bytes are there is longer than `max`, hence
/// [`FrameError::Oversize`].
pub(super) fn within(
    buf: &[u8],
    max: usize,
    parse: impl FnOnce(&[u8]) -> Step<usize>,
) -> FrameCheck {
    let view = &buf[..buf.len().min(max)];
    match parse(view) {
        Ok(n) => FrameCheck::Complete(n),
        Err(FrameCheck::Incomplete) if !buf.is_empty() && view.len() == max => {
            oversize(add(max, 1), max)
        }
        Err(check) => check,
    }
}

/// [`FrameError::Oversize`]: the packet (or a part with its own limit) is at least `declared`
/// bytes, more than `max`.
pub(super) fn oversize(declared: u64, max: usize) -> FrameCheck {
    FrameCheck::Invalid(FrameError::Oversize { declared, max })
}

/// [`FrameError::Malformed`] as the error of a parse step.
pub(super) fn malformed<T>(reason: &'static str) -> Step<T> {
    Err(FrameCheck::Invalid(FrameError::Malformed(reason)))
}

/// The index of the `\n` ending the line that starts at `from`. The line may not reach index
/// `limit`: if `limit` bytes are there without a `\n`, the line is too long ([`oversize`] of
/// `limit + 1` against `limit`).
pub(super) fn line_end(buf: &[u8], from: usize, limit: usize) -> Step<usize> {
    let end = buf.len().min(limit);
    match buf
        .get(from..end)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
    {
        Some(i) => Ok(from + i),
        None if buf.len() >= limit => Err(oversize(add(limit, 1), limit)),
        None => Err(FrameCheck::Incomplete),
    }
}

/// [`line_end`], resuming the search: `*searched` bytes from the start of `buf` are known to
/// hold no `\n` past `from`, so the search starts at the later of the two and, when the line is
/// still incomplete, records how far it got in `*searched`.
pub(super) fn line_end_resuming(
    buf: &[u8],
    from: usize,
    searched: &mut usize,
    limit: usize,
) -> Step<usize> {
    let end = line_end(buf, from.max(*searched), limit);
    if end == Err(FrameCheck::Incomplete) {
        *searched = buf.len().min(limit);
    }
    end
}

/// `line` without one trailing `\r`.
pub(super) fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Checks that `buf[at..]` starts with `\r\n`, as far as it goes: `Ok(at + 2)` when both bytes
/// are there, [`FrameCheck::Incomplete`] when they are right so far, malformed for `reason` as soon
/// as a byte is wrong.
pub(super) fn crlf_at(buf: &[u8], at: usize, reason: &'static str) -> Step<usize> {
    match (buf.get(at), buf.get(at + 1)) {
        (Some(b'\r'), Some(b'\n')) => Ok(at + 2),
        (Some(b'\r'), None) | (None, _) => Err(FrameCheck::Incomplete),
        _ => malformed(reason),
    }
}

/// The value of a non-empty string of decimal digits, saturated at `u64::MAX`; `None` if `digits`
/// is empty or holds anything else.
pub(super) fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |value, &d| {
        value.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// `bytes` without leading and trailing spaces and tabs (HTTP's optional whitespace).
pub(super) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// `a + b` on packet lengths, saturated at `u64::MAX`.
pub(super) fn add(a: usize, b: u64) -> u64 {
    (a as u64).saturating_add(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_end_stops_at_the_limit() {
        assert_eq!(line_end(b"ab\ncd", 0, 10), Ok(2));
        assert_eq!(line_end(b"ab\ncd\n", 3, 10), Ok(5));
        assert_eq!(line_end(b"abc", 0, 10), Err(FrameCheck::Incomplete));
        assert_eq!(line_end(b"abc\n", 0, 3), Err(oversize(4, 3)));
        assert_eq!(line_end(b"ab\n", 0, 3), Ok(2));
    }

    #[test]
    fn a_resumed_line_search_starts_where_the_last_one_stopped() {
        let mut searched = 0;
        assert_eq!(
            line_end_resuming(b"abc", 0, &mut searched, 10),
            Err(FrameCheck::Incomplete)
        );
        assert_eq!(searched, 3);
        // A `\n` before `searched` is not looked for again: those bytes were searched already.
        assert_eq!(line_end_resuming(b"a\ncd\n", 0, &mut searched, 10), Ok(4));
        assert_eq!(
            line_end_resuming(b"abcd", 0, &mut searched, 4),
            Err(oversize(5, 4))
        );
    }

    #[test]
    fn crlf_is_checked_byte_by_byte() {
        assert_eq!(crlf_at(b"x\r\n", 1, "r"), Ok(3));
        assert_eq!(crlf_at(b"x\r", 1, "r"), Err(FrameCheck::Incomplete));
        assert_eq!(crlf_at(b"x", 1, "r"), Err(FrameCheck::Incomplete));
        assert_eq!(crlf_at(b"xy", 1, "r"), malformed::<usize>("r"));
        assert_eq!(crlf_at(b"x\rx", 1, "r"), malformed::<usize>("r"));
    }

    #[test]
    fn decimal_saturates_and_refuses_signs() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"00123"), Some(123));
        assert_eq!(decimal(b"99999999999999999999999"), Some(u64::MAX));
        assert_eq!(decimal(b""), None);
        assert_eq!(decimal(b"+1"), None);
        assert_eq!(decimal(b"1 "), None);
    }

    #[test]
    fn trim_ows_removes_spaces_and_tabs_at_both_ends() {
        assert_eq!(trim_ows(b" \t5 \t"), b"5");
        assert_eq!(trim_ows(b"  "), b"");
        assert_eq!(trim_ows(b"a b"), b"a b");
    }
}
