//! RESP2 on the wire: splitting a request packet into its arguments, and writing replies.
//!
//! A request is an array of bulk strings (`*N\r\n$len\r\nbytes\r\n...`, lines ending in
//! `\r\n`) or an inline command line (ending in `\r\n` or `\n`, words separated by spaces or
//! tabs; quoting is not supported). The packet must hold exactly one request.

use std::io::Write;
use std::ops::Range;

use crate::store::parse_decimal;

/// Splits the request in `packet` into `args` (cleared first): positions of its arguments.
///
/// # Errors
/// Why the packet is not one RESP request, for a `Protocol error` reply.
pub fn parse(packet: &[u8], args: &mut Vec<Range<usize>>) -> Result<(), &'static str> {
    args.clear();
    if packet.first() == Some(&b'*') {
        parse_array(packet, args)
    } else {
        parse_inline(packet, args)
    }
}

/// Splits an array of bulk strings into `args`.
fn parse_array(packet: &[u8], args: &mut Vec<Range<usize>>) -> Result<(), &'static str> {
    let (count, mut at) = number_line(packet, 1, "invalid multibulk length")?;
    for _ in 0..count.max(0) {
        if packet.get(at) != Some(&b'$') {
            return Err("expected '$'");
        }
        let (len, start) = number_line(packet, at + 1, "invalid bulk length")?;
        let len = usize::try_from(len).map_err(|_| "invalid bulk length")?;
        let end = start.checked_add(len).ok_or("invalid bulk length")?;
        if packet.get(end..end + 2) != Some(b"\r\n") {
            return Err("bulk string not followed by CRLF");
        }
        args.push(start..end);
        at = end + 2;
    }
    if at != packet.len() {
        return Err("bytes after the request");
    }
    Ok(())
}

/// Reads the decimal number on the line starting at `at`, up to `\r\n`; returns it and where
/// the next line starts.
fn number_line(packet: &[u8], at: usize, why: &'static str) -> Result<(i64, usize), &'static str> {
    let rest = packet.get(at..).ok_or(why)?;
    let end = rest.windows(2).position(|w| w == b"\r\n").ok_or(why)?;
    let n = parse_decimal::<i64>(&rest[..end]).ok_or(why)?;
    Ok((n, at + end + 2))
}

/// Splits an inline command line into `args`.
fn parse_inline(packet: &[u8], args: &mut Vec<Range<usize>>) -> Result<(), &'static str> {
    let end = packet
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("unterminated inline command")?;
    if end + 1 != packet.len() {
        return Err("bytes after the request");
    }
    let line_end = if end > 0 && packet[end - 1] == b'\r' {
        end - 1
    } else {
        end
    };
    let mut start = None;
    for (i, &b) in packet[..line_end].iter().enumerate() {
        match (b == b' ' || b == b'\t', start) {
            (true, Some(s)) => {
                args.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        args.push(s..line_end);
    }
    Ok(())
}

/// A parsed request: its arguments as positions in the packet.
pub struct Request<'a> {
    /// The whole packet.
    pub packet: &'a [u8],
    /// Where each argument lies in `packet`; the command name first.
    pub args: &'a [Range<usize>],
}

impl<'a> Request<'a> {
    /// Argument `i` (0 is the command name).
    pub fn arg(&self, i: usize) -> &'a [u8] {
        &self.packet[self.args[i].clone()]
    }

    /// Number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// The arguments from `first` on.
    pub fn from(&self, first: usize) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.args[first..].iter().map(|r| &self.packet[r.clone()])
    }
}

/// Appends at most 128 bytes of `bytes`, with anything but printable ASCII as `?`, so a client's
/// bytes cannot break the reply line.
pub fn printable(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend(bytes.iter().take(128).map(|&b| {
        if b.is_ascii_graphic() || b == b' ' {
            b
        } else {
            b'?'
        }
    }));
}

/// A simple string: `+s`.
pub fn simple(out: &mut Vec<u8>, s: &str) {
    let _ = write!(out, "+{s}\r\n");
}

/// An error: `-s` (`s` starts with the error code, e.g. `ERR`).
pub fn error(out: &mut Vec<u8>, s: &str) {
    let _ = write!(out, "-{s}\r\n");
}

/// An integer: `:n`.
pub fn integer(out: &mut Vec<u8>, n: i64) {
    let _ = write!(out, ":{n}\r\n");
}

/// An array header: `*n`, followed by its `n` elements.
pub fn array(out: &mut Vec<u8>, n: usize) {
    let _ = write!(out, "*{n}\r\n");
}

/// A bulk string, or the nil bulk string for `None`.
pub fn bulk(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            let _ = write!(out, "${}\r\n", v.len());
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(b"$-1\r\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(packet: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
        let mut args = Vec::new();
        parse(packet, &mut args)?;
        Ok(args.into_iter().map(|r| &packet[r]).collect())
    }

    #[test]
    fn arrays_and_inline_lines_split_into_arguments() {
        let array = b"*3\r\n$3\r\nSET\r\n$3\r\na b\r\n$0\r\n\r\n";
        assert_eq!(words(array), Ok(vec![&b"SET"[..], b"a b", b""]));
        assert_eq!(words(b" ping\t hi \r\n"), Ok(vec![&b"ping"[..], b"hi"]));
        assert_eq!(words(b"PING\n"), Ok(vec![&b"PING"[..]]));
        assert_eq!(words(b"\r\n"), Ok(vec![]));
        assert_eq!(words(b"*0\r\n"), Ok(vec![]));
    }

    #[test]
    fn broken_requests_are_refused() {
        for packet in [
            &b"*x\r\n"[..],
            b"*1\r\n",
            b"*1\r\n:1\r\n",
            b"*1\r\n$5\r\nab\r\n",
            b"*1\r\n$-3\r\nab\r\n",
            b"*1\r\n$1\r\nab\r\n",
            b"*1\r\n$1\r\na\r\nextra",
            b"*99999999999999999999\r\n",
            b"PING",
            b"PING\r\nPING\r\n",
        ] {
            assert!(words(packet).is_err(), "{packet:?}");
        }
    }

    #[test]
    fn replies_are_encoded_as_resp2() {
        let mut out = Vec::new();
        simple(&mut out, "OK");
        error(&mut out, "ERR x");
        integer(&mut out, -2);
        array(&mut out, 2);
        bulk(&mut out, Some(b"ab"));
        bulk(&mut out, None);
        printable(b"a\r\nb", &mut out);
        assert_eq!(
            out,
            b"+OK\r\n-ERR x\r\n:-2\r\n*2\r\n$2\r\nab\r\n$-1\r\na??b"
        );
    }
}
