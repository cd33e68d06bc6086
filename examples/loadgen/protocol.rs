//! Request encoders and incremental reply parsers for the three protocols.
//!
//! Encoders append to a connection's send buffer; parsers look at the front of its receive
//! buffer and either ask for more bytes, return one complete reply and its length, or report a
//! fault. They allocate nothing unless a reply is wrong.

use crate::args::Protocol;

/// Longest reply line accepted (status lines, memcached `VALUE` headers, RESP headers).
const MAX_LINE: usize = 1024;
/// Largest payload a reply may announce before the stream is considered garbage; also the
/// largest `--value-size`.
pub const MAX_PAYLOAD: usize = 64 << 20;
/// How deep RESP arrays in an unexpected reply may nest before the stream is given up.
const MAX_RESP_DEPTH: usize = 8;

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read a key.
    Get,
    /// Write a key.
    Set,
    /// `length` protocol: send a payload, expect it back.
    Echo,
}

/// A correct reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A GET found a value of the expected size.
    Hit,
    /// A GET found nothing.
    Miss,
    /// A SET was stored.
    Stored,
    /// An echo came back byte-exact.
    Echoed,
}

/// A reply that is not the one expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A well-delimited but wrong reply of this many bytes: count it, skip it, go on.
    Wrong(usize, String),
    /// The stream cannot be cut into replies any more: the connection must be closed.
    Broken(String),
}

/// The outcome of looking at the front of a receive buffer.
pub type Parsed = Result<Option<(usize, Reply)>, Fault>;

/// One request in flight, as the parser needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// What is asked.
    pub op: Op,
    /// The key number (GET and SET).
    pub key: u64,
    /// The connection's sequence number of the request, stamped into echo payloads.
    pub seq: u64,
}

/// Builds requests and checks replies for one protocol, value size and key space.
#[derive(Debug, Clone)]
pub struct Codec {
    protocol: Protocol,
    /// The SET value and the echo payload before its sequence stamp.
    value: Vec<u8>,
    /// Digits in a key number: keys are `key:` and this many zero-padded digits.
    key_digits: usize,
}

impl Codec {
    /// A codec for `protocol`, values of `value_size` bytes and keys below `keys`.
    pub fn new(protocol: Protocol, value_size: usize, keys: u64) -> Codec {
        let value = (0..value_size).map(|i| b'a' + (i % 26) as u8).collect();
        let key_digits = (keys.saturating_sub(1).checked_ilog10().unwrap_or(0) as usize + 1).max(6);
        Codec {
            protocol,
            value,
            key_digits,
        }
    }

    /// The bytes of a key: `key:` and the zero-padded number.
    pub fn key<'a>(&self, key: u64, buf: &'a mut [u8; 24]) -> &'a [u8] {
        let len = 4 + self.key_digits;
        buf[..4].copy_from_slice(b"key:");
        let mut n = key;
        for b in buf[4..len].iter_mut().rev() {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
        &buf[..len]
    }

    /// Appends the encoded request to `out`.
    pub fn encode(&self, req: &Request, out: &mut Vec<u8>) {
        let mut key_buf = [0u8; 24];
        let key = self.key(req.key, &mut key_buf);
        match (self.protocol, req.op) {
            (Protocol::Length, _) => {
                let len =
                    u32::try_from(self.value.len()).expect("value size fits the length field");
                out.extend_from_slice(&len.to_be_bytes());
                let start = out.len();
                out.extend_from_slice(&self.value);
                stamp(&mut out[start..], req.seq);
            }
            (Protocol::Memcache, Op::Get | Op::Echo) => {
                out.extend_from_slice(b"get ");
                out.extend_from_slice(key);
                out.extend_from_slice(b"\r\n");
            }
            (Protocol::Memcache, Op::Set) => {
                out.extend_from_slice(b"set ");
                out.extend_from_slice(key);
                out.extend_from_slice(b" 0 0 ");
                push_decimal(out, self.value.len());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&self.value);
                out.extend_from_slice(b"\r\n");
            }
            (Protocol::Resp, Op::Get | Op::Echo) => {
                out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
                push_bulk(out, key);
            }
            (Protocol::Resp, Op::Set) => {
                out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
                push_bulk(out, key);
                push_bulk(out, &self.value);
            }
        }
    }

    /// Looks for the reply to `req` at the front of `input`.
    pub fn parse(&self, req: &Request, input: &[u8]) -> Parsed {
        match self.protocol {
            Protocol::Length => self.parse_echo(req, input),
            Protocol::Memcache => self.parse_memcache(req, input),
            Protocol::Resp => self.parse_resp(req, input),
        }
    }

    fn parse_echo(&self, req: &Request, input: &[u8]) -> Parsed {
        let Some(head) = input.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > MAX_PAYLOAD {
            return Err(Fault::Broken(format!("echo announces {len} bytes")));
        }
        let Some(body) = input.get(4..4 + len) else {
            return Ok(None);
        };
        if len != self.value.len() {
            let msg = format!("{} came back with {len} bytes", self.describe(req));
            return Err(Fault::Wrong(4 + len, msg));
        }
        let mut expected = [0u8; 8];
        let n = len.min(8);
        expected[..n].copy_from_slice(&self.value[..n]);
        stamp(&mut expected[..n], req.seq);
        if body[..n] != expected[..n] || body[n..] != self.value[n..] {
            let msg = format!("{} came back changed", self.describe(req));
            return Err(Fault::Wrong(4 + len, msg));
        }
        Ok(Some((4 + len, Reply::Echoed)))
    }

    fn parse_memcache(&self, req: &Request, input: &[u8]) -> Parsed {
        let Some(end) = line_end(input)? else {
            return Ok(None);
        };
        let line = &input[..end];
        let line_len = end + 2;
        match (req.op, line) {
            (Op::Set, b"STORED") => Ok(Some((line_len, Reply::Stored))),
            (Op::Get, b"END") => Ok(Some((line_len, Reply::Miss))),
            (Op::Get, _) if line.starts_with(b"VALUE ") => self.memcache_value(req, input, end),
            _ => Err(Fault::Wrong(line_len, self.unexpected(req, line))),
        }
    }

    /// A `VALUE <key> <flags> <bytes> [<cas>]` line at `input[..end]`, its data and `END`.
    fn memcache_value(&self, req: &Request, input: &[u8], end: usize) -> Parsed {
        let line = &input[..end];
        let mut fields = line.split(|&b| b == b' ').skip(1);
        let (key, _flags, bytes) = (fields.next(), fields.next(), fields.next());
        let bytes = bytes
            .and_then(parse_decimal)
            .filter(|&n| n <= MAX_PAYLOAD)
            .ok_or_else(|| Fault::Broken(format!("bad VALUE line {}", show(line))))?;
        let data = end + 2;
        let total = data + bytes + b"\r\nEND\r\n".len();
        let Some(tail) = input.get(data + bytes..total) else {
            return Ok(None);
        };
        if tail != b"\r\nEND\r\n" {
            return Err(Fault::Broken(format!(
                "VALUE data not followed by END: {}",
                show(tail)
            )));
        }
        let mut key_buf = [0u8; 24];
        if key != Some(self.key(req.key, &mut key_buf)) {
            return Err(Fault::Wrong(total, self.unexpected(req, line)));
        }
        if bytes != self.value.len() {
            let msg = format!("{} returned {bytes} bytes", self.describe(req));
            return Err(Fault::Wrong(total, msg));
        }
        Ok(Some((total, Reply::Hit)))
    }

    fn parse_resp(&self, req: &Request, input: &[u8]) -> Parsed {
        let Some((len, value)) = resp_value(input, 0)? else {
            return Ok(None);
        };
        match (req.op, value) {
            (Op::Set, RespValue::Simple(b"OK")) => Ok(Some((len, Reply::Stored))),
            (Op::Get, RespValue::Bulk(None)) => Ok(Some((len, Reply::Miss))),
            (Op::Get, RespValue::Bulk(Some(data))) if data.len() == self.value.len() => {
                Ok(Some((len, Reply::Hit)))
            }
            (Op::Get, RespValue::Bulk(Some(data))) => {
                let msg = format!("{} returned {} bytes", self.describe(req), data.len());
                Err(Fault::Wrong(len, msg))
            }
            _ => Err(Fault::Wrong(len, self.unexpected(req, &input[..len]))),
        }
    }

    /// The request in words, for error messages: `GET key:000042`, `echo #7`.
    fn describe(&self, req: &Request) -> String {
        let mut key_buf = [0u8; 24];
        let key = self.key(req.key, &mut key_buf).escape_ascii();
        match req.op {
            Op::Get => format!("GET {key}"),
            Op::Set => format!("SET {key}"),
            Op::Echo => format!("echo #{}", req.seq),
        }
    }

    fn unexpected(&self, req: &Request, reply: &[u8]) -> String {
        format!(
            "unexpected reply to {}: {}",
            self.describe(req),
            show(reply)
        )
    }
}

/// One RESP2 value, as far as the replies to GET and SET need to tell them apart.
enum RespValue<'a> {
    /// `+...`
    Simple(&'a [u8]),
    /// `$n` with its data, or `$-1`.
    Bulk(Option<&'a [u8]>),
    /// `-ERR ...`, `:n` or an array: never a correct reply to GET or SET.
    Other,
}

/// The RESP value at the front of `input` and its length, if complete.
fn resp_value(input: &[u8], depth: usize) -> Result<Option<(usize, RespValue<'_>)>, Fault> {
    let Some(end) = line_end(input)? else {
        return Ok(None);
    };
    let line = &input[..end];
    let header = end + 2;
    let count = || parse_count(&line[1..]);
    match line.first() {
        Some(b'+') => Ok(Some((header, RespValue::Simple(&line[1..])))),
        Some(b'-' | b':') => Ok(Some((header, RespValue::Other))),
        Some(b'$') => match count() {
            Some(None) => Ok(Some((header, RespValue::Bulk(None)))),
            Some(Some(n)) => {
                let Some(data) = input.get(header..header + n + 2) else {
                    return Ok(None);
                };
                if !data.ends_with(b"\r\n") {
                    return Err(Fault::Broken("bulk string not ended by CRLF".into()));
                }
                Ok(Some((header + n + 2, RespValue::Bulk(Some(&data[..n])))))
            }
            None => Err(Fault::Broken(format!("bad bulk header {}", show(line)))),
        },
        Some(b'*') if depth < MAX_RESP_DEPTH => {
            let elements =
                count().ok_or_else(|| Fault::Broken(format!("bad array header {}", show(line))))?;
            let mut len = header;
            for _ in 0..elements.unwrap_or(0) {
                let Some((n, _)) = resp_value(&input[len..], depth + 1)? else {
                    return Ok(None);
                };
                len += n;
            }
            Ok(Some((len, RespValue::Other)))
        }
        _ => Err(Fault::Broken(format!("not a RESP value: {}", show(line)))),
    }
}

/// A RESP length: `-1` is `None`, otherwise a count up to `MAX_PAYLOAD`.
fn parse_count(digits: &[u8]) -> Option<Option<usize>> {
    if digits == b"-1" {
        return Some(None);
    }
    parse_decimal(digits)
        .filter(|&n| n <= MAX_PAYLOAD)
        .map(Some)
}

/// The position of the first CRLF, if the line is complete.
fn line_end(input: &[u8]) -> Result<Option<usize>, Fault> {
    let window = &input[..input.len().min(MAX_LINE + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some(end)),
        None if input.len() >= MAX_LINE + 2 => Err(Fault::Broken(format!(
            "no line end in {MAX_LINE} bytes: {}",
            show(window)
        ))),
        None => Ok(None),
    }
}

fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0')))
}

fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn push_bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    push_decimal(out, data.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Marks an echo payload with its sequence number: XOR into its first (up to) 8 bytes.
fn stamp(payload: &mut [u8], seq: u64) {
    for (b, s) in payload.iter_mut().zip(seq.to_le_bytes()) {
        *b ^= s;
    }
}

/// At most 60 bytes of a reply, escaped for the report.
fn show(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(60)];
    let mut s = format!("\"{}\"", shown.escape_ascii());
    if shown.len() < bytes.len() {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: Request = Request {
        op: Op::Get,
        key: 42,
        seq: 7,
    };
    const SET: Request = Request {
        op: Op::Set,
        key: 42,
        seq: 8,
    };

    /// Every prefix of a complete reply is incomplete; the whole reply parses to `reply`.
    fn assert_incremental(codec: &Codec, req: &Request, bytes: &[u8], reply: Reply) {
        for cut in 0..bytes.len() {
            assert_eq!(codec.parse(req, &bytes[..cut]), Ok(None), "cut at {cut}");
        }
        let mut more = bytes.to_vec();
        more.extend_from_slice(b"END\r\n");
        assert_eq!(codec.parse(req, &more), Ok(Some((bytes.len(), reply))));
    }

    #[test]
    fn memcache_requests_and_replies() {
        let c = Codec::new(Protocol::Memcache, 3, 1000);
        let mut out = Vec::new();
        c.encode(&GET, &mut out);
        c.encode(&SET, &mut out);
        assert_eq!(out, b"get key:000042\r\nset key:000042 0 0 3\r\nabc\r\n");
        assert_incremental(
            &c,
            &GET,
            b"VALUE key:000042 5 3 99\r\nabc\r\nEND\r\n",
            Reply::Hit,
        );
        assert_incremental(&c, &GET, b"END\r\n", Reply::Miss);
        assert_incremental(&c, &SET, b"STORED\r\n", Reply::Stored);
        let wrong_key = b"VALUE key:000041 0 3\r\nabc\r\nEND\r\n";
        assert!(matches!(c.parse(&GET, wrong_key), Err(Fault::Wrong(32, _))));
        let short = b"VALUE key:000042 0 2\r\nab\r\nEND\r\n";
        assert!(matches!(c.parse(&GET, short), Err(Fault::Wrong(31, _))));
        assert!(matches!(
            c.parse(&SET, b"SERVER_ERROR oom\r\n"),
            Err(Fault::Wrong(18, _))
        ));
        assert!(matches!(
            c.parse(&GET, &[b'x'; 2000]),
            Err(Fault::Broken(_))
        ));
    }

    #[test]
    fn resp_requests_and_replies() {
        let c = Codec::new(Protocol::Resp, 3, 10);
        let mut out = Vec::new();
        c.encode(&GET, &mut out);
        c.encode(&SET, &mut out);
        let expected: &[u8] = b"*2\r\n$3\r\nGET\r\n$10\r\nkey:000042\r\n\
              *3\r\n$3\r\nSET\r\n$10\r\nkey:000042\r\n$3\r\nabc\r\n";
        assert_eq!(out, expected);
        assert_incremental(&c, &GET, b"$3\r\nabc\r\n", Reply::Hit);
        assert_incremental(&c, &GET, b"$-1\r\n", Reply::Miss);
        assert_incremental(&c, &SET, b"+OK\r\n", Reply::Stored);
        assert!(matches!(
            c.parse(&GET, b"-ERR no\r\n"),
            Err(Fault::Wrong(9, _))
        ));
        assert!(matches!(
            c.parse(&GET, b"$2\r\nab\r\n"),
            Err(Fault::Wrong(8, _))
        ));
        let array = b"*2\r\n$1\r\na\r\n*1\r\n:5\r\n+x";
        assert!(matches!(c.parse(&SET, array), Err(Fault::Wrong(19, _))));
        assert!(matches!(c.parse(&SET, b"?what\r\n"), Err(Fault::Broken(_))));
    }

    #[test]
    fn echoes_must_return_the_stamped_payload() {
        let c = Codec::new(Protocol::Length, 10, 10);
        let echo = Request {
            op: Op::Echo,
            key: 0,
            seq: 0x0102,
        };
        let mut out = Vec::new();
        c.encode(&echo, &mut out);
        assert_eq!(&out[..4], &[0, 0, 0, 10]);
        assert_ne!(&out[4..], &c.value[..], "the sequence number is stamped");
        assert_incremental(&c, &echo, &out, Reply::Echoed);
        let other = Request { seq: 3, ..echo };
        assert!(matches!(c.parse(&other, &out), Err(Fault::Wrong(14, _))));
    }

    #[test]
    fn keys_are_zero_padded_to_the_key_space() {
        let mut buf = [0u8; 24];
        assert_eq!(
            Codec::new(Protocol::Resp, 1, 10_000).key(123, &mut buf),
            b"key:000123"
        );
        assert_eq!(
            Codec::new(Protocol::Resp, 1, 10_000_001).key(5, &mut buf),
            b"key:00000005"
        );
    }
}
