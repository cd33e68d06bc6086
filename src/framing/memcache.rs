//! The `memcache` framing: the memcached text protocol as clients send it.
//!
//! A packet is one command line; for a storage command it is the line followed by the data block
//! the line announces and the block's `\r\n`. Tokens are separated by spaces and command words are
//! case-sensitive, as in memcached.

use std::io;

use super::scan::{
    Step, add, crlf_at, decimal, line_end_resuming, malformed, oversize, strip_cr, within,
};
use super::{FrameCheck, Framer, Progress, max_packet_of};
use crate::settings::ListenSettings;

/// The longest command line accepted, its `\r\n` included.
///
/// memcached gives up on a command when 1024 bytes arrive without a newline (2048 on its SASL
/// authentication path), except for `get`/`gets` multigets, whose key lists it lets grow; ccsd
/// allows 2048 bytes for every command line, multigets included.
pub const MEMCACHE_MAX_LINE: usize = 2048;

/// A memcached text-protocol command: its line (ending in `\r\n`, or a bare `\n`), and for the
/// storage commands the data block the line announces, followed by `\r\n`.
///
/// | command | line | data block |
/// |---|---|---|
/// | `set`, `add`, `replace`, `append`, `prepend` | `<cmd> <key> <flags> <exptime> <bytes> [noreply]` | `<bytes>` bytes |
/// | `cas` | `cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]` | `<bytes>` bytes |
/// | `ms` (meta set) | `ms <key> <datalen> <flag>*` | `<datalen>` bytes |
/// | any other word, or none | the line alone | none |
///
/// Unknown commands are one line each (the business process answers `ERROR`), as are the
/// retrieval, delete, arithmetic, touch and administrative commands. A storage line without its
/// byte count, with a byte count that is not a decimal number, or with too few or too many tokens
/// is [malformed](super::FrameError::Malformed), and so is a data block not followed by `\r\n`.
/// A command line longer than [`MEMCACHE_MAX_LINE`] (or `max_packet`, if smaller) and a packet
/// longer than `max_packet` are [`Oversize`](super::FrameError::Oversize); a storage command is
/// refused as soon as its line is complete, before the data block arrives.
///
/// # Examples
///
/// ```
/// use ccsd::framing::{FrameCheck, Framer, MemcacheFramer};
///
/// let framer = MemcacheFramer::new(1 << 20);
/// assert_eq!(framer.check(b"get a b\r\nset"), FrameCheck::Complete(9));
/// assert_eq!(framer.check(b"set k 0 0 2\r\nhi\r\nget k\r\n"), FrameCheck::Complete(17));
/// assert_eq!(framer.check(b"set k 0 0 2\r\nh"), FrameCheck::Incomplete);
/// ```
#[derive(Debug, Clone)]
pub struct MemcacheFramer {
    max_packet: usize,
}

impl MemcacheFramer {
    /// A framer for packets of at most `max_packet` bytes.
    pub fn new(max_packet: usize) -> MemcacheFramer {
        MemcacheFramer { max_packet }
    }

    /// A framer for a listener's `max_packet`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `max_packet` does not fit in `usize`.
    pub fn from_listen(listen: &ListenSettings) -> io::Result<MemcacheFramer> {
        Ok(MemcacheFramer::new(max_packet_of(listen)?))
    }

    /// Parses the packet at the start of `buf`, resuming from `progress`: the search for the
    /// command line's end goes on from `progress.scanned`; once a storage command's line is
    /// read, `notes[0]` holds the line's length and `notes[1]` its data block's, so the line is
    /// not parsed again while the block arrives.
    fn parse(&self, buf: &[u8], progress: &mut Progress) -> Step<usize> {
        let (line_len, data_len) = match progress.notes {
            [0, ..] => {
                let line_limit = MEMCACHE_MAX_LINE.min(self.max_packet);
                let newline = line_end_resuming(buf, 0, &mut progress.scanned, line_limit)?;
                let line_len = newline + 1;
                let Some(data_len) = data_block_len(strip_cr(&buf[..newline]))? else {
                    return Ok(line_len);
                };
                let total = add(line_len, data_len).saturating_add(2);
                if total > self.max_packet as u64 {
                    return Err(oversize(total, self.max_packet));
                }
                progress.notes = [line_len as u64, data_len, 0];
                (line_len, data_len)
            }
            // Set above from a line length and a data length whose sum fits in max_packet.
            [line_len, data_len, _] => (line_len as usize, data_len),
        };
        // line_len + data_len + 2 <= max_packet, a usize.
        let data_end = line_len + data_len as usize;
        crlf_at(buf, data_end, "data block not followed by \\r\\n")
    }
}

impl Framer for MemcacheFramer {
    fn name(&self) -> &'static str {
        "memcache"
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

/// Where a storage command's line says how long its data block is.
struct Storage {
    /// Index of the byte-count token (the command word is token 0).
    bytes_token: usize,
    /// Fewest and most tokens the line may have, command word included.
    tokens: (usize, usize),
}

/// The storage command named `word`, if it is one.
fn storage(word: &[u8]) -> Option<Storage> {
    let (bytes_token, tokens) = match word {
        b"set" | b"add" | b"replace" | b"append" | b"prepend" => (4, (5, 6)),
        b"cas" => (4, (6, 7)),
        b"ms" => (2, (3, usize::MAX)),
        _ => return None,
    };
    Some(Storage {
        bytes_token,
        tokens,
    })
}

/// The length of the data block that follows `line` (without its line ending): `None` when the
/// line is not a storage command.
fn data_block_len(line: &[u8]) -> Step<Option<u64>> {
    let mut tokens = line.split(|&b| b == b' ').filter(|token| !token.is_empty());
    let Some(command) = tokens.next().and_then(storage) else {
        return Ok(None);
    };
    let mut count = 1;
    let mut bytes = None;
    for token in tokens {
        if count == command.bytes_token {
            bytes = Some(token);
        }
        count += 1;
    }
    let Some(bytes) = bytes else {
        return malformed("storage command without a byte count");
    };
    let Some(bytes) = decimal(bytes) else {
        return malformed("storage command with a byte count that is not a decimal number");
    };
    let (fewest, most) = command.tokens;
    if count < fewest {
        return malformed("storage command with too few arguments");
    }
    if count > most {
        return malformed("storage command with too many arguments");
    }
    Ok(Some(bytes))
}
