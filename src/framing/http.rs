//! The `http` framing: HTTP/1.1 requests, the head and the body it announces.
//!
//! The head is read line by line (lines end in `\n`, with an optional `\r` before it) and only
//! `Content-Length` and `Transfer-Encoding` are interpreted; the body is skipped by its length, or
//! chunk by chunk, never searched. Every search stops at a limit, so nothing past the head limit
//! or `max_packet` is ever scanned.

use std::io;

use super::scan::{
    Step, add, crlf_at, decimal, line_end, malformed, oversize, strip_cr, trim_ows, within,
};
use super::{FrameCheck, Framer, invalid_input, max_packet_of};
use crate::settings::ListenSettings;

/// The shortest chunked body: the last chunk `0\r\n` and the final `\r\n`.
const MIN_CHUNKED_BODY: u64 = 5;

/// An HTTP/1.1 request: the head (request line and header fields, up to an empty line), then the
/// body the head announces.
///
/// - The head ends with an empty line: `\r\n\r\n`, or `\n\n` from clients that end lines with a
///   bare `\n`. Empty lines before the request line are skipped (RFC 9112, section 2.2) and belong
///   to the packet. A head longer than `max_header` (or `max_packet`, if smaller) is
///   [`Oversize`](super::FrameError::Oversize).
/// - `Content-Length: N` (header names are case-insensitive): the body is the next `N` bytes.
/// - `Transfer-Encoding` ending in `chunked`: the body is chunks (a hexadecimal size line with
///   optional `;extensions`, the data, `\r\n`), the last chunk `0`, trailer fields and a final
///   empty line, every line ending in `\r\n`.
/// - Neither: no body.
///
/// The packet is the head and the body, at most `max_packet` bytes; a `Content-Length` or chunk
/// size that cannot fit is `Oversize` as soon as it is read, before the body arrives. Pipelined
/// requests are consecutive packets.
///
/// [Malformed](super::FrameError::Malformed), to close the door on request smuggling: both
/// `Content-Length` and `Transfer-Encoding`; `Content-Length` headers that differ or that are not
/// a decimal number; a `Transfer-Encoding` whose last coding is not `chunked`, or that applies
/// `chunked` twice; a header line without a colon, with whitespace before the colon, or folded
/// onto the next line (obsolete line folding); a carriage return not followed by `\n`; a chunk size
/// that is not hexadecimal; chunk data not followed by `\r\n`.
///
/// # Examples
///
/// ```
/// use ccsd::framing::{FrameCheck, Framer, HttpFramer};
///
/// let framer = HttpFramer::new(8192, 1 << 20);
/// let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
/// assert_eq!(framer.check(get), FrameCheck::Complete(get.len()));
/// let post = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET";
/// assert_eq!(framer.check(post), FrameCheck::Complete(post.len() - 3));
/// assert_eq!(framer.check(&post[..30]), FrameCheck::Incomplete);
/// ```
#[derive(Debug, Clone)]
pub struct HttpFramer {
    max_header: usize,
    max_packet: usize,
}

/// What follows the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
}

impl HttpFramer {
    /// A framer for request heads of at most `max_header` bytes and requests of at most
    /// `max_packet` bytes.
    pub fn new(max_header: usize, max_packet: usize) -> HttpFramer {
        HttpFramer {
            max_header,
            max_packet,
        }
    }

    /// A framer for a listener's `http_max_header` and `max_packet`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if either does not fit in `usize`.
    pub fn from_listen(listen: &ListenSettings) -> io::Result<HttpFramer> {
        let max_header = usize::try_from(listen.http_max_header.bytes()).map_err(|_| {
            invalid_input(format!(
                "http_max_header {} does not fit in memory",
                listen.http_max_header
            ))
        })?;
        Ok(HttpFramer::new(max_header, max_packet_of(listen)?))
    }

    /// The longest request head accepted, in bytes (never more than [`Framer::max_packet`]).
    pub fn max_header(&self) -> usize {
        self.max_header.min(self.max_packet)
    }

    fn parse(&self, buf: &[u8]) -> Step<usize> {
        let (head, body) = self.head(buf)?;
        let max = self.max_packet;
        match body {
            Body::None => Ok(head),
            Body::Length(len) => {
                let total = add(head, len);
                if total > max as u64 {
                    return Err(oversize(total, max));
                }
                // total <= max_packet, a usize.
                let total = total as usize;
                if buf.len() >= total {
                    Ok(total)
                } else {
                    Err(FrameCheck::Incomplete)
                }
            }
            Body::Chunked => {
                let least = add(head, MIN_CHUNKED_BODY);
                if least > max as u64 {
                    return Err(oversize(least, max));
                }
                self.chunked(buf, head)
            }
        }
    }

    /// The length of the head at the start of `buf`, and the body it announces.
    fn head(&self, buf: &[u8]) -> Step<(usize, Body)> {
        let limit = self.max_header();
        let mut fields = Fields::default();
        let mut request_line = false;
        let mut pos = 0;
        loop {
            let newline = line_end(buf, pos, limit)?;
            let line = strip_cr(&buf[pos..newline]);
            pos = newline + 1;
            if line.contains(&b'\r') {
                return malformed("carriage return without a line feed in the request head");
            }
            if line.is_empty() {
                if request_line {
                    return Ok((pos, fields.body()?));
                }
            } else if request_line {
                fields.read(line)?;
            } else {
                request_line = true;
            }
        }
    }

    /// The end of the chunked body that starts at `buf[pos..]`.
    fn chunked(&self, buf: &[u8], mut pos: usize) -> Step<usize> {
        let max = self.max_packet;
        loop {
            let (line, next) = chunk_line(buf, pos, max)?;
            let size = chunk_size(line)?;
            if size == 0 {
                pos = next;
                break;
            }
            // This chunk and its \r\n, then at least the last chunk and the final \r\n.
            let least = add(next, size)
                .saturating_add(2)
                .saturating_add(MIN_CHUNKED_BODY);
            if least > max as u64 {
                return Err(oversize(least, max));
            }
            // next + size + 2 <= max_packet, a usize.
            pos = crlf_at(
                buf,
                next + size as usize,
                "chunk data not followed by \\r\\n",
            )?;
        }
        // The trailer section: fields up to an empty line.
        loop {
            let least = add(pos, 2);
            if least > max as u64 {
                return Err(oversize(least, max));
            }
            let (line, next) = chunk_line(buf, pos, max)?;
            pos = next;
            if line.is_empty() {
                return Ok(pos);
            }
        }
    }
}

impl Framer for HttpFramer {
    fn name(&self) -> &'static str {
        "http"
    }

    fn check(&self, buf: &[u8]) -> FrameCheck {
        within(buf, self.max_packet, |buf| self.parse(buf))
    }

    fn max_packet(&self) -> usize {
        self.max_packet
    }
}

/// What the header fields read so far say about the body.
#[derive(Debug, Default)]
struct Fields {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked_seen: bool,
    chunked_last: bool,
}

impl Fields {
    /// Reads one header line (not empty, without its line ending).
    fn read(&mut self, line: &[u8]) -> Step<()> {
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            return malformed("header line folded onto the next line (obsolete line folding)");
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return malformed("header line without a colon");
        };
        let name = &line[..colon];
        if name.is_empty() || name.iter().any(|&b| b == b' ' || b == b'\t') {
            return malformed("header name empty or followed by whitespace before the colon");
        }
        let value = trim_ows(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(len) = decimal(value) else {
                return malformed("Content-Length is not a decimal number");
            };
            if self.content_length.is_some_and(|earlier| earlier != len) {
                return malformed("Content-Length headers that differ");
            }
            self.content_length = Some(len);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            for coding in value.split(|&b| b == b',') {
                let coding = coding.split(|&b| b == b';').next().unwrap_or(coding);
                let coding = trim_ows(coding);
                if coding.is_empty() {
                    continue;
                }
                let chunked = coding.eq_ignore_ascii_case(b"chunked");
                if chunked && self.chunked_seen {
                    return malformed("Transfer-Encoding applies chunked twice");
                }
                self.chunked_seen |= chunked;
                self.chunked_last = chunked;
            }
        }
        Ok(())
    }

    /// The body the whole head announces.
    fn body(&self) -> Step<Body> {
        match (self.content_length, self.transfer_encoding) {
            (Some(_), true) => malformed("both Content-Length and Transfer-Encoding"),
            (None, true) if self.chunked_last => Ok(Body::Chunked),
            (None, true) => malformed("Transfer-Encoding does not end with chunked"),
            (Some(len), false) => Ok(Body::Length(len)),
            (None, false) => Ok(Body::None),
        }
    }
}

/// The line of a chunked body starting at `buf[at..]`: its content and where the next line
/// starts. It must end in `\r\n` and hold no other `\r`.
fn chunk_line(buf: &[u8], at: usize, limit: usize) -> Step<(&[u8], usize)> {
    let newline = line_end(buf, at, limit)?;
    let Some(line) = buf[at..newline].strip_suffix(b"\r") else {
        return malformed("chunked body line not ended by \\r\\n");
    };
    if line.contains(&b'\r') {
        return malformed("carriage return without a line feed in a chunked body line");
    }
    Ok((line, newline + 1))
}

/// The size a chunk-size line announces: hexadecimal digits (saturated at `u64::MAX`), then
/// nothing or optional whitespace and `;` chunk extensions.
fn chunk_size(line: &[u8]) -> Step<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return malformed("chunk size is not a hexadecimal number");
    }
    let size = line[..digits].iter().fold(0u64, |size, &digit| {
        let value = char::from(digit).to_digit(16).unwrap_or(0);
        size.saturating_mul(16).saturating_add(u64::from(value))
    });
    match trim_ows(&line[digits..]).first() {
        None | Some(b';') => Ok(size),
        Some(_) => malformed("chunk size is not a hexadecimal number"),
    }
}
