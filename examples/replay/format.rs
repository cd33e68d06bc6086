//! The recording file: every chunk of bytes that crossed a recorded connection, in order.
//!
//! Text, one chunk per line, so a recording can be read and diffed:
//!
//! ```text
//! # ccsd-replay v1
//! <connection> <direction> <microseconds> <hex bytes>
//! ```
//!
//! `connection` numbers connections from 0 in the order they were accepted; `direction` is `C`
//! (client to server) or `S` (server to client); `microseconds` counts from the start of the
//! recording; the bytes are lowercase hex, at least one byte per line. Lines starting with `#`
//! are comments. Chunks of one connection appear in the order they crossed it.

use std::fmt::Write as _;
use std::io::{self, BufRead};

/// The first line of every recording.
pub const MAGIC: &str = "# ccsd-replay v1";

/// Which way a chunk went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Client,
    /// Server to client.
    Server,
}

/// One recorded chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub connection: usize,
    pub direction: Direction,
    pub micros: u64,
    pub bytes: Vec<u8>,
}

/// One line of the file for `chunk`, newline included.
pub fn format_chunk(chunk: &Chunk) -> String {
    let dir = match chunk.direction {
        Direction::Client => 'C',
        Direction::Server => 'S',
    };
    let mut line = format!("{} {dir} {} ", chunk.connection, chunk.micros);
    for b in &chunk.bytes {
        let _ = write!(line, "{b:02x}");
    }
    line.push('\n');
    line
}

/// Reads a whole recording.
///
/// # Errors
/// I/O errors, a missing header, or a malformed line (named by its number).
pub fn read_recording(input: impl BufRead) -> io::Result<Vec<Chunk>> {
    let bad = |n: usize, why: &str| {
        io::Error::new(io::ErrorKind::InvalidData, format!("line {n}: {why}"))
    };
    let mut lines = input.lines();
    match lines.next() {
        Some(Ok(first)) if first.trim_end() == MAGIC => {}
        Some(Err(e)) => return Err(e),
        _ => return Err(bad(1, &format!("expected {MAGIC:?}"))),
    }
    let mut chunks = Vec::new();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let line = line?;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(' ');
        let mut next = |what: &str| {
            fields
                .next()
                .ok_or_else(|| bad(n, &format!("missing {what}")))
        };
        let connection = next("connection")?
            .parse()
            .map_err(|_| bad(n, "bad connection number"))?;
        let direction = match next("direction")? {
            "C" => Direction::Client,
            "S" => Direction::Server,
            _ => return Err(bad(n, "direction must be C or S")),
        };
        let micros = next("time")?.parse().map_err(|_| bad(n, "bad time"))?;
        let hex = next("bytes")?;
        if hex.is_empty() || hex.len() % 2 != 0 {
            return Err(bad(n, "bytes must be a nonempty even number of hex digits"));
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex[at..at + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad(n, "bytes are not hex"))?;
        chunks.push(Chunk {
            connection,
            direction,
            micros,
            bytes,
        });
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_through_the_text_format() {
        let chunks = vec![
            Chunk {
                connection: 0,
                direction: Direction::Client,
                micros: 5,
                bytes: vec![0, 1, 0xff],
            },
            Chunk {
                connection: 3,
                direction: Direction::Server,
                micros: 99,
                bytes: b"ok".to_vec(),
            },
        ];
        let text: String = std::iter::once(format!("{MAGIC}\n# a comment\n"))
            .chain(chunks.iter().map(format_chunk))
            .collect();
        assert_eq!(read_recording(text.as_bytes()).unwrap(), chunks);
    }

    #[test]
    fn malformed_lines_are_named_by_number() {
        for (body, why) in [
            ("0 X 1 00", "line 2: direction must be C or S"),
            (
                "0 C 1 0",
                "line 2: bytes must be a nonempty even number of hex digits",
            ),
            ("0 C 1 zz", "line 2: bytes are not hex"),
            ("0 C", "line 2: missing time"),
        ] {
            let err = read_recording(format!("{MAGIC}\n{body}\n").as_bytes()).unwrap_err();
            assert_eq!(err.to_string(), why);
        }
        let err = read_recording("not a recording\n".as_bytes()).unwrap_err();
        assert!(err.to_string().starts_with("line 1: expected"));
    }
}
