//! The `resp` framing: Redis requests in RESP2, as arrays of bulk strings or inline commands.

use std::io;

use super::scan::{Step, add, crlf_at, line_end_resuming, malformed, oversize, within};
use super::{FrameCheck, Framer, Progress, max_packet_of};
use crate::settings::ListenSettings;

/// The longest inline command accepted, its `\n` included: 64 KiB, Redis's own limit.
pub const RESP_MAX_INLINE: usize = 64 * 1024;

/// The most bulk strings one request array may hold: 1,048,576, Redis's own limit.
pub const RESP_MAX_ELEMENTS: u64 = 1024 * 1024;

/// The shortest bulk string: `$0\r\n\r\n`.
const MIN_BULK: u64 = 6;

/// A Redis RESP2 request, as clients send them:
///
/// - an array of bulk strings, `*<n>\r\n` followed by `n` times `$<len>\r\n<len bytes>\r\n`;
///   `*0\r\n` and `*-1\r\n` are complete empty requests;
/// - an inline command: any line not starting with `*`, ending in `\n`.
///
/// Counts and lengths are decimal numbers without sign or leading zeros, each followed by `\r\n`.
/// An array element other than a bulk string, a bulk string not followed by `\r\n`, a bad number
/// and an array of more than [`RESP_MAX_ELEMENTS`] are [malformed](super::FrameError::Malformed).
/// A request longer than `max_packet` is [`Oversize`](super::FrameError::Oversize) as soon as that
/// is certain: when a length or count line shows that even the shortest remaining elements would
/// not fit. An inline command longer than [`RESP_MAX_INLINE`] (or `max_packet`, if smaller) is
/// `Oversize` too.
///
/// # Examples
///
/// ```
/// use ccsd::framing::{FrameCheck, Framer, RespFramer};
///
/// let framer = RespFramer::new(1 << 20);
/// assert_eq!(framer.check(b"*1\r\n$4\r\nPING\r\nPING\r\n"), FrameCheck::Complete(14));
/// assert_eq!(framer.check(b"PING\r\n*1\r\n"), FrameCheck::Complete(6));
/// assert_eq!(framer.check(b"*1\r\n$4\r\nPI"), FrameCheck::Incomplete);
/// ```
#[derive(Debug, Clone)]
pub struct RespFramer {
    max_packet: usize,
}

impl RespFramer {
    /// A framer for requests of at most `max_packet` bytes.
    pub fn new(max_packet: usize) -> RespFramer {
        RespFramer { max_packet }
    }

    /// A framer for a listener's `max_packet`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `max_packet` does not fit in `usize`.
    pub fn from_listen(listen: &ListenSettings) -> io::Result<RespFramer> {
        Ok(RespFramer::new(max_packet_of(listen)?))
    }

    /// Parses the request at the start of `buf`, resuming from `progress`: an inline command's
    /// search for its `\n` goes on from `progress.scanned`; an array goes on from the first
    /// element not yet read in full, `notes[0]` (0 until the count line is read), with
    /// `notes[1]` elements left.
    fn parse(&self, buf: &[u8], progress: &mut Progress) -> Step<usize> {
        match buf.first() {
            None => Err(FrameCheck::Incomplete),
            Some(b'*') => self.array(buf, progress),
            Some(_) => {
                let limit = RESP_MAX_INLINE.min(self.max_packet);
                line_end_resuming(buf, 0, &mut progress.scanned, limit).map(|end| end + 1)
            }
        }
    }

    /// The array of bulk strings at the start of `buf`, which starts with `*`.
    fn array(&self, buf: &[u8], progress: &mut Progress) -> Step<usize> {
        let max = self.max_packet;
        let (mut pos, count) = match progress.notes {
            [0, ..] => {
                if buf.get(1) == Some(&b'-') {
                    return match buf.get(2) {
                        None => Err(FrameCheck::Incomplete),
                        Some(b'1') => crlf_at(buf, 3, "array count not followed by \\r\\n"),
                        Some(_) => malformed("negative array count other than -1"),
                    };
                }
                let (count, pos) = number(buf, 1, RESP_MAX_ELEMENTS, |_| {
                    malformed("array of more than 1048576 elements")
                })?;
                let least = add(pos, count.saturating_mul(MIN_BULK));
                if least > max as u64 {
                    return Err(oversize(least, max));
                }
                (pos, count)
            }
            // Set below from a position within max_packet, a usize.
            [pos, left, _] => (pos as usize, left),
        };
        for left in (0..count).rev() {
            progress.notes = [pos as u64, left + 1, 0];
            match buf.get(pos) {
                None => return Err(FrameCheck::Incomplete),
                Some(b'$') => {}
                Some(_) => return malformed("array element is not a bulk string"),
            }
            let (len, data) = number(buf, pos + 1, max as u64, |len| Err(oversize(len, max)))?;
            let least = add(data, len)
                .saturating_add(2)
                .saturating_add(left * MIN_BULK);
            if least > max as u64 {
                return Err(oversize(least, max));
            }
            // data + len + 2 <= max, a usize.
            pos = crlf_at(
                buf,
                data + len as usize,
                "bulk string not followed by \\r\\n",
            )?;
        }
        Ok(pos)
    }
}

impl Framer for RespFramer {
    fn name(&self) -> &'static str {
        "resp"
    }

    fn check(&self, buf: &[u8]) -> FrameCheck {
        self.check_from(buf, &mut Progress::default())
    }

    fn check_from(&self, buf: &[u8], progress: &mut Progress) -> FrameCheck {
        within(buf, self.max_packet, |buf| self.parse(buf, progress))
    }

    fn max_packet(&self) -> usize {
        self.max_packet
    }
}

/// Reads the decimal number at `buf[at..]` and the `\r\n` after it, returning the number and
/// where the next element starts. Digit by digit, so a bad byte is caught as it arrives; a value
/// above `limit` gives `too_big(value)` as soon as its digits show it.
fn number(
    buf: &[u8],
    at: usize,
    limit: u64,
    too_big: impl FnOnce(u64) -> Step<(u64, usize)>,
) -> Step<(u64, usize)> {
    let mut value = 0u64;
    let mut pos = at;
    loop {
        match buf.get(pos) {
            None => return Err(FrameCheck::Incomplete),
            Some(&digit @ b'0'..=b'9') => {
                if pos > at && buf[at] == b'0' {
                    return malformed("number with a leading zero");
                }
                value = value
                    .saturating_mul(10)
                    .saturating_add(u64::from(digit - b'0'));
                if value > limit {
                    return too_big(value);
                }
            }
            Some(b'\r') if pos > at => {
                let next = crlf_at(buf, pos, "number not followed by \\r\\n")?;
                return Ok((value, next));
            }
            Some(_) => return malformed("expected a decimal number"),
        }
        pos += 1;
    }
}
