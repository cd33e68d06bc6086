//! The `line` framing: each packet is one line, ending in `\n`.

use std::io;

use super::scan::within;
use super::{FrameCheck, Framer, max_packet_of};
use crate::settings::ListenSettings;

/// A packet is one line ending in `\n`; the `\n`, and a `\r` before it, belong to the packet.
///
/// A line is at most `max_packet` bytes, its `\n` included: once `max_packet` bytes are there
/// without a `\n`, the line is [`Oversize`](super::FrameError::Oversize). Any bytes are accepted
/// otherwise, so a line is never malformed.
///
/// # Examples
///
/// ```
/// use ccsd::framing::{FrameCheck, Framer, LineFramer};
///
/// let framer = LineFramer::new(64);
/// assert_eq!(framer.check(b"PING\r\nPI"), FrameCheck::Complete(6));
/// assert_eq!(framer.check(b"PI"), FrameCheck::Incomplete);
/// ```
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_packet: usize,
}

impl LineFramer {
    /// A framer for lines of at most `max_packet` bytes.
    pub fn new(max_packet: usize) -> LineFramer {
        LineFramer { max_packet }
    }

    /// A framer for a listener's `max_packet`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `max_packet` does not fit in `usize`.
    pub fn from_listen(listen: &ListenSettings) -> io::Result<LineFramer> {
        Ok(LineFramer::new(max_packet_of(listen)?))
    }
}

impl Framer for LineFramer {
    fn name(&self) -> &'static str {
        "line"
    }

    fn check(&self, buf: &[u8]) -> FrameCheck {
        within(buf, self.max_packet, |line| {
            line.iter()
                .position(|&b| b == b'\n')
                .map(|end| end + 1)
                .ok_or(FrameCheck::Incomplete)
        })
    }

    fn max_packet(&self) -> usize {
        self.max_packet
    }
}
