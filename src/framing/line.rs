//! The `line` framing: each packet is one line, ending in `\n`.

use std::io;

use super::scan::{line_end_resuming, within};
use super::{FrameCheck, Framer, Progress, max_packet_of};
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
        self.check_from(buf, &mut Progress::default())
    }

    /// Resumes the search for the `\n` where the last one stopped (`progress.scanned`).
    fn check_from(&self, buf: &[u8], progress: &mut Progress) -> FrameCheck {
        within(buf, self.max_packet, |line| {
            line_end_resuming(line, 0, &mut progress.scanned, self.max_packet).map(|end| end + 1)
        })
    }

    fn max_packet(&self) -> usize {
        self.max_packet
    }
}
