//! Parsing one HTTP/1.x request: request line, headers, the empty line, and the body
//! (`Content-Length` bytes, or a chunked body, which is decoded).
//!
//! The packet must hold exactly one request; bytes before or after it make it malformed. Line
//! ends may be `\r\n` or a bare `\n`.

/// The most digits a chunk size may have (16 hex digits already reach 2^64).
const MAX_CHUNK_SIZE_DIGITS: usize = 16;

/// The parts of a request the service needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method, as sent (methods are case-sensitive).
    pub method: &'a [u8],
    /// Whether the request line said `HTTP/1.0` (otherwise `HTTP/1.1`).
    pub http_1_0: bool,
    /// Whether the client wants the connection kept open after the response: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a [u8]>,
    /// The body, decoded if it was chunked.
    pub body: &'a [u8],
}

/// Parses `packet` as one request. A chunked body is decoded into `chunked_body` (cleared
/// first), so its buffer is reused from one request to the next.
///
/// # Errors
/// Why the request is malformed or unsupported, in a few words.
pub fn parse<'a>(
    packet: &'a [u8],
    chunked_body: &'a mut Vec<u8>,
) -> Result<Request<'a>, &'static str> {
    let (request_line, mut rest) = next_line(packet).ok_or("no request line")?;
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("request line is not `METHOD TARGET VERSION`");
    };
    if method.is_empty() || !method.iter().all(|&b| is_token_char(b)) || target.is_empty() {
        return Err("bad method or target");
    }
    let http_1_0 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Err("not HTTP/1.0 or HTTP/1.1"),
    };
    let mut keep_alive = !http_1_0;
    let mut content_type = None;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    loop {
        let (line, after) = next_line(rest).ok_or("headers do not end with an empty line")?;
        rest = after;
        if line.is_empty() {
            break;
        }
        let (name, value) = header(line)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok())
                .ok_or("bad Content-Length")?;
            if content_length.is_some_and(|old| old != n) {
                return Err("conflicting Content-Length headers");
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                return Err("unsupported Transfer-Encoding");
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(trim) {
                if option.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case(b"keep-alive") && http_1_0 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-type") {
            content_type = Some(value);
        }
    }
    let body: &'a [u8] = match (chunked, content_length) {
        (true, Some(_)) => return Err("both Content-Length and Transfer-Encoding"),
        (true, None) => {
            decode_chunked(rest, chunked_body)?;
            chunked_body
        }
        (false, Some(n)) if rest.len() == n => rest,
        (false, None) if rest.is_empty() => rest,
        (false, _) => return Err("body length differs from Content-Length"),
    };
    Ok(Request {
        method,
        http_1_0,
        keep_alive,
        content_type,
        body,
    })
}

/// The line at the start of `bytes` without its line end, and the bytes after it.
fn next_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let line = &bytes[..end];
    Some((line.strip_suffix(b"\r").unwrap_or(line), &bytes[end + 1..]))
}

/// Splits `Name: value`; the value is trimmed. Folded lines (starting with white space) and
/// names with white space are refused.
fn header(line: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or("header without ':'")?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
        return Err("bad header name");
    }
    Ok((name, trim(&line[colon + 1..])))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// RFC 9110 `tchar`: what method and header names are made of.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Decodes a whole chunked body (chunks, last-chunk, trailers, empty line) into `out`.
fn decode_chunked(mut rest: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    out.clear();
    loop {
        let (line, after) = next_line(rest).ok_or("chunk size line missing")?;
        let digits = line.split(|&b| b == b';').next().unwrap_or_default();
        let digits = trim(digits);
        if digits.is_empty()
            || digits.len() > MAX_CHUNK_SIZE_DIGITS
            || !digits.iter().all(u8::is_ascii_hexdigit)
        {
            return Err("bad chunk size");
        }
        let size = digits.iter().try_fold(0usize, |n, &d| {
            let digit = (d as char).to_digit(16).unwrap_or_default() as usize;
            n.checked_mul(16)?.checked_add(digit)
        });
        let size = size.ok_or("chunk size too large")?;
        if size == 0 {
            rest = after;
            break;
        }
        let data = after.get(..size).ok_or("chunk shorter than its size")?;
        let after = &after[size..];
        rest = after
            .strip_prefix(b"\r\n")
            .or_else(|| after.strip_prefix(b"\n"))
            .ok_or("chunk not followed by a line end")?;
        out.extend_from_slice(data);
    }
    loop {
        let (trailer, after) = next_line(rest).ok_or("trailers do not end with an empty line")?;
        rest = after;
        if trailer.is_empty() {
            break;
        }
        header(trailer)?;
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err("bytes after the chunked body")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(packet: &[u8]) -> Result<(String, bool, bool, String), &'static str> {
        let mut scratch = Vec::new();
        let r = parse(packet, &mut scratch)?;
        Ok((
            String::from_utf8_lossy(r.method).into_owned(),
            r.http_1_0,
            r.keep_alive,
            String::from_utf8_lossy(r.body).into_owned(),
        ))
    }

    #[test]
    fn a_get_without_body_keeps_alive_in_http_1_1() {
        let r = parsed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(r, ("GET".into(), false, true, String::new()));
    }

    #[test]
    fn connection_header_and_version_decide_keep_alive() {
        assert!(
            !parsed(b"GET / HTTP/1.1\r\nConnection: Keep-Alive, close\r\n\r\n")
                .unwrap()
                .2
        );
        assert!(!parsed(b"GET / HTTP/1.0\r\n\r\n").unwrap().2);
        assert!(
            parsed(b"GET / HTTP/1.0\nconnection: keep-alive\n\n")
                .unwrap()
                .2
        );
    }

    #[test]
    fn content_length_body_is_taken_whole() {
        let r = parsed(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(r.3, "hello");
        let mut scratch = Vec::new();
        let req = b"PUT / HTTP/1.1\r\nContent-Type: a/b\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse(req, &mut scratch).unwrap().content_type,
            Some(&b"a/b"[..])
        );
    }

    #[test]
    fn chunked_body_is_decoded_with_extensions_and_trailers() {
        let packet = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                       5;ext=1\r\nhello\r\nA\r\n, chunked!\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(parsed(packet).unwrap().3, "hello, chunked!");
    }

    #[test]
    fn malformed_requests_are_refused() {
        for packet in [
            &b""[..],
            b"GET /\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
            b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"GET / HTTP/1.1\r\n\r\nbody",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhi",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhi\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nextra",
        ] {
            assert!(
                parsed(packet).is_err(),
                "{:?}",
                String::from_utf8_lossy(packet)
            );
        }
    }
}
