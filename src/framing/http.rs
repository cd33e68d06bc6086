//! The `http` framing: HTTP/1.1 requests, the head and the body it announces.
//!
//! The head is read line by line (lines end in `\n`, with an optional `\r` before it) and only
//! `Content-Length` and `Transfer-Encoding` are interpreted; the body is skipped by its length, or
//! chunk by chunk, never searched. Every search stops at a limit, so nothing past the head limit
//! or `max_packet` is ever scanned, and resumes where the last one stopped (the connection's
//! [`Progress`]), so each byte of a request arriving in many reads is scanned once.

use std::io;

use super::scan::{
    Step, add, crlf_at, decimal, line_end_resuming, malformed, oversize, strip_cr, trim_ows, within,
};
use super::{FrameCheck, Framer, Progress, invalid_input, max_packet_of};
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
/// - `Expect: 100-continue` in an HTTP/1.1 request whose head is in and whose body is not: the
///   framer asks ccsd ([`Progress::interim`]) to send the client `HTTP/1.1 100 Continue` at once,
///   so that it sends the body without waiting (unless built [`with_continue`](Self::with_continue)
///   `(false)`, `listen[i].http_continue = false`).
///
/// The packet is the head and the body, at most `max_packet` bytes; a `Content-Length` or chunk
/// size that cannot fit is `Oversize` as soon as it is read, before the body arrives. Pipelined
/// requests are consecutive packets.
///
/// [Malformed](super::FrameError::Malformed), to close the door on request smuggling: both
/// `Content-Length` and `Transfer-Encoding`; a header name holding a byte other than an RFC 9110
/// token character (letters, digits, ``!#$%&'*+-.^_`|~``: no NUL, no control or non-ASCII byte);
/// `Content-Length` headers that differ or that are not
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
    send_continue: bool,
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
            send_continue: true,
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
        Ok(HttpFramer::new(max_header, max_packet_of(listen)?).with_continue(listen.http_continue))
    }

    /// The longest request head accepted, in bytes (never more than [`Framer::max_packet`]).
    pub fn max_header(&self) -> usize {
        self.max_header.min(self.max_packet)
    }

    /// Whether this framer asks ccsd to answer `Expect: 100-continue` with an interim
    /// `100 Continue` (`listen[i].http_continue`).
    pub fn sends_continue(&self) -> bool {
        self.send_continue
    }

    /// This framer, asking ccsd to answer `Expect: 100-continue` or not.
    pub fn with_continue(self, send_continue: bool) -> HttpFramer {
        HttpFramer {
            send_continue,
            ..self
        }
    }

    /// Parses the request at the start of `buf` from where `scan` stopped, advancing it.
    fn parse(&self, buf: &[u8], scan: &mut Scan) -> Step<usize> {
        let max = self.max_packet;
        loop {
            match scan.stage {
                Stage::Head => match self.head(buf, scan)? {
                    Body::None => return Ok(scan.at),
                    Body::Length(len) => {
                        let total = add(scan.at, len);
                        if total > max as u64 {
                            return Err(oversize(total, max));
                        }
                        // total <= max_packet, a usize.
                        scan.enter(Stage::LengthBody, total as usize);
                    }
                    Body::Chunked => {
                        let least = add(scan.at, MIN_CHUNKED_BODY);
                        if least > max as u64 {
                            return Err(oversize(least, max));
                        }
                        scan.enter(Stage::ChunkSize, scan.at);
                    }
                },
                Stage::LengthBody => {
                    let total = scan.at;
                    return if buf.len() >= total {
                        Ok(total)
                    } else {
                        Err(FrameCheck::Incomplete)
                    };
                }
                Stage::ChunkSize => {
                    let (line, next) = chunk_line(buf, scan, max)?;
                    let size = chunk_size(line)?;
                    if size == 0 {
                        scan.enter(Stage::Trailer, next);
                        continue;
                    }
                    // This chunk and its \r\n, then at least the last chunk and the final \r\n.
                    let least = add(next, size)
                        .saturating_add(2)
                        .saturating_add(MIN_CHUNKED_BODY);
                    if least > max as u64 {
                        return Err(oversize(least, max));
                    }
                    // next + size + 2 <= max_packet, a usize.
                    scan.enter(Stage::ChunkData, next + size as usize);
                }
                Stage::ChunkData => {
                    let next = crlf_at(buf, scan.at, "chunk data not followed by \\r\\n")?;
                    scan.enter(Stage::ChunkSize, next);
                }
                // The trailer section: fields up to an empty line.
                Stage::Trailer => {
                    let least = add(scan.at, 2);
                    if least > max as u64 {
                        return Err(oversize(least, max));
                    }
                    let (line, next) = chunk_line(buf, scan, max)?;
                    let end = line.is_empty();
                    scan.enter(Stage::Trailer, next);
                    if end {
                        return Ok(next);
                    }
                }
            }
        }
    }

    /// Reads the head's lines from `scan.at` on; once the empty line ending it is read,
    /// `scan.at` is the head's length and the result the body it announces.
    fn head(&self, buf: &[u8], scan: &mut Scan) -> Step<Body> {
        let limit = self.max_header();
        loop {
            let newline = line_end_resuming(buf, scan.at, &mut scan.searched, limit)?;
            let line = strip_cr(&buf[scan.at..newline]);
            scan.enter(Stage::Head, newline + 1);
            if line.contains(&b'\r') {
                return malformed("carriage return without a line feed in the request head");
            }
            if line.is_empty() {
                if scan.request_line {
                    return scan.fields.body();
                }
            } else if scan.request_line {
                scan.fields.read(line)?;
            } else {
                scan.request_line = true;
                // RFC 9110, section 10.1.1: ignore 100-continue in an HTTP/1.0 request.
                scan.http11 = line.ends_with(b" HTTP/1.1");
            }
        }
    }
}

impl Framer for HttpFramer {
    fn name(&self) -> &'static str {
        "http"
    }

    fn check(&self, buf: &[u8]) -> FrameCheck {
        self.check_from(buf, &mut Progress::default())
    }

    /// Resumes at the line, chunk or body where the last call stopped (what `progress` holds);
    /// asks for `100 Continue` when this call completes the head of an HTTP/1.1 request that
    /// expects it and the body has not all arrived.
    fn check_from(&self, buf: &[u8], progress: &mut Progress) -> FrameCheck {
        let mut scan = Scan::load(progress);
        let in_head = scan.stage == Stage::Head;
        let check = within(buf, self.max_packet, |buf| self.parse(buf, &mut scan));
        scan.save(progress);
        if check == FrameCheck::Incomplete
            && in_head
            && scan.stage != Stage::Head
            && scan.http11
            && scan.fields.expect_continue
            && self.send_continue
        {
            progress.interim = Some(CONTINUE);
        }
        check
    }

    fn max_packet(&self) -> usize {
        self.max_packet
    }
}

/// The interim response to `Expect: 100-continue` (RFC 9110, section 15.2.1).
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Which part of the request a [`Scan`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The head; `at` is where its next line starts.
    Head,
    /// A `Content-Length` body; `at` is where the request ends.
    LengthBody,
    /// A chunked body; `at` is where the next chunk-size line starts.
    ChunkSize,
    /// A chunk's data; `at` is where the `\r\n` after it is due.
    ChunkData,
    /// The trailer section; `at` is where its next line starts.
    Trailer,
}

/// How far a request has been parsed: what [`HttpFramer`] keeps in a connection's [`Progress`].
#[derive(Debug)]
struct Scan {
    stage: Stage,
    /// The position `stage` names (where the next line starts, the request ends or a `\r\n` is
    /// due), from the start of the request.
    at: usize,
    /// How far the search for the current line's `\n` got (`Progress::scanned`).
    searched: usize,
    /// The request line has been read.
    request_line: bool,
    /// The request line says `HTTP/1.1`.
    http11: bool,
    /// The header fields read so far.
    fields: Fields,
}

/// Bits of `Progress::notes[2]`; the stage is in the bits above them.
const REQUEST_LINE: u64 = 1;
const HTTP11: u64 = 1 << 1;
const HAS_CONTENT_LENGTH: u64 = 1 << 2;
const TRANSFER_ENCODING: u64 = 1 << 3;
const CHUNKED_SEEN: u64 = 1 << 4;
const CHUNKED_LAST: u64 = 1 << 5;
const EXPECT_CONTINUE: u64 = 1 << 6;
const STAGE_SHIFT: u32 = 8;
const STAGES: [Stage; 5] = [
    Stage::Head,
    Stage::LengthBody,
    Stage::ChunkSize,
    Stage::ChunkData,
    Stage::Trailer,
];

impl Scan {
    /// The scan `progress` holds: `notes[0]` = `at`, `notes[1]` = the `Content-Length`
    /// value, `notes[2]` = flags and stage; `Progress::default()` is the start of a request.
    fn load(progress: &Progress) -> Scan {
        let [at, content_length, bits] = progress.notes;
        let flag = |bit: u64| bits & bit != 0;
        let stage = STAGES
            .get((bits >> STAGE_SHIFT) as usize)
            .copied()
            .unwrap_or(Stage::Head);
        Scan {
            stage,
            at: usize::try_from(at).unwrap_or(usize::MAX),
            searched: progress.scanned,
            request_line: flag(REQUEST_LINE),
            http11: flag(HTTP11),
            fields: Fields {
                content_length: flag(HAS_CONTENT_LENGTH).then_some(content_length),
                transfer_encoding: flag(TRANSFER_ENCODING),
                chunked_seen: flag(CHUNKED_SEEN),
                chunked_last: flag(CHUNKED_LAST),
                expect_continue: flag(EXPECT_CONTINUE),
            },
        }
    }

    /// Writes this scan into `progress`, for [`Scan::load`].
    fn save(&self, progress: &mut Progress) {
        let flags = [
            (self.request_line, REQUEST_LINE),
            (self.http11, HTTP11),
            (self.fields.content_length.is_some(), HAS_CONTENT_LENGTH),
            (self.fields.transfer_encoding, TRANSFER_ENCODING),
            (self.fields.chunked_seen, CHUNKED_SEEN),
            (self.fields.chunked_last, CHUNKED_LAST),
            (self.fields.expect_continue, EXPECT_CONTINUE),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |bits, (_, bit)| bits | bit);
        let stage = STAGES.iter().position(|&s| s == self.stage).unwrap_or(0) as u64;
        progress.scanned = self.searched;
        progress.notes = [
            self.at as u64,
            self.fields.content_length.unwrap_or(0),
            flags | stage << STAGE_SHIFT,
        ];
    }

    /// Moves on to `stage`, at `at`: nothing from there on has been searched yet.
    fn enter(&mut self, stage: Stage, at: usize) {
        self.stage = stage;
        self.at = at;
        self.searched = at;
    }
}

/// What the header fields read so far say about the body.
#[derive(Debug, Default)]
struct Fields {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked_seen: bool,
    chunked_last: bool,
    /// An `Expect: 100-continue` field was read.
    expect_continue: bool,
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
        if !name.iter().copied().all(is_tchar) {
            return malformed("header name with a byte that is not an RFC 9110 token character");
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
        } else if name.eq_ignore_ascii_case(b"expect") {
            self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
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

/// Whether `byte` may appear in a header name: an RFC 9110 `tchar` (section 5.6.2), a letter, a
/// digit or one of ``!#$%&'*+-.^_`|~``.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// The line of a chunked body starting at `scan.at`, its `\n` searched for from where the last
/// search stopped: its content and where the next line starts. It must end in `\r\n` and hold no
/// other `\r`.
fn chunk_line<'b>(buf: &'b [u8], scan: &mut Scan, limit: usize) -> Step<(&'b [u8], usize)> {
    let at = scan.at;
    let newline = line_end_resuming(buf, at, &mut scan.searched, limit)?;
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
