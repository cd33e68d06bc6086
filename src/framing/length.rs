//! Framing: finding packet boundaries in a connection's byte stream.
//!
//! Each listener has one [`Framer`], chosen by name in its settings (`listen[i].framing`) and
//! shared by every worker. A worker hands the framer the unconsumed bytes of a connection; the
//! framer says whether they start with a whole packet, need more bytes, or break the protocol (the
//! connection is then closed). Framers run once per read on the hot path: they only look at bytes,
//! never allocate and never log.
//!
//! The one framing so far is `"length"` ([`LengthFramer`]): a length field at a fixed offset.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use ccsd::framing::{self, FrameCheck, Framer};
//! use ccsd::settings::ListenSettings;
//!
//! // The default protocol: a 4-byte big-endian length N, then N bytes.
//! let framer: Arc<dyn Framer> = framing::build(&ListenSettings::default())?;
//! assert_eq!(framer.check(&[0, 0, 0, 2, b'h', b'i', 0]), FrameCheck::Complete(6));
//! assert_eq!(framer.check(&[0, 0, 0, 2, b'h']), FrameCheck::Incomplete);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::settings::{Endian, LengthIncludes, ListenSettings};

/// What a [`Framer`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCheck {
    /// The first `n` bytes (`n >= 1`) are one whole packet.
    Complete(usize),
    /// More bytes are needed to find the end of the first packet.
    Incomplete,
    /// The bytes break the protocol; the connection should be closed.
    Invalid(FrameError),
}

/// Why bytes break the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The packet declares a length (`declared`, saturated at `u64::MAX`) above the maximum.
    Oversize {
        /// The total packet length the header declares.
        declared: u64,
        /// The largest packet the listener accepts.
        max: usize,
    },
    /// The bytes cannot be a packet, for the reason given.
    Malformed(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversize { declared, max } => write!(
                f,
                "packet of {declared} bytes exceeds the maximum of {max} bytes"
            ),
            FrameError::Malformed(reason) => write!(f, "malformed packet: {reason}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Finds packet boundaries in a connection's byte stream. One framer per listener, shared by every
/// worker.
pub trait Framer: Send + Sync + fmt::Debug {
    /// The framing's name, as written in `listen[i].framing`.
    fn name(&self) -> &'static str;

    /// Examines the start of `buf` (the unconsumed bytes of one connection):
    /// [`FrameCheck::Complete`]`(n)` = the first `n` bytes are one whole packet (`n >= 1`);
    /// [`FrameCheck::Incomplete`] = need more bytes; [`FrameCheck::Invalid`] = protocol error
    /// (the connection is closed). Must report [`FrameError::Oversize`] as soon as the declared
    /// length exceeds [`Framer::max_packet`], before the body has arrived.
    fn check(&self, buf: &[u8]) -> FrameCheck;

    /// The largest packet this framer accepts, in bytes.
    fn max_packet(&self) -> usize;
}

/// A packet that starts with `offset` bytes of anything, then an unsigned length field of `size`
/// bytes, then the rest; the whole packet, prefix included, is handed on.
///
/// With field value `V`, the total packet length is `offset + size + V` when the field counts the
/// body ([`LengthIncludes::Body`]), `offset + V` when it counts itself and what follows
/// ([`LengthIncludes::Field`]), or `V` when it counts the whole packet ([`LengthIncludes::All`]);
/// then `adjust` is added.
#[derive(Debug, Clone)]
pub struct LengthFramer {
    offset: usize,
    endian: Endian,
    includes: LengthIncludes,
    adjust: i64,
    max_packet: usize,
    /// `offset + size`: the bytes needed before the length is known.
    header: usize,
}

impl LengthFramer {
    /// A framer for a `size`-byte length field at byte `offset`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `size` is not 1, 2, 4 or 8, or if `max_packet` is smaller
    /// than `offset + size` (no packet could ever pass).
    pub fn new(
        offset: usize,
        size: u8,
        endian: Endian,
        includes: LengthIncludes,
        adjust: i64,
        max_packet: usize,
    ) -> io::Result<LengthFramer> {
        if ![1, 2, 4, 8].contains(&size) {
            return Err(invalid_input(format!(
                "length field size must be 1, 2, 4 or 8 bytes, got {size}"
            )));
        }
        let header = offset
            .checked_add(usize::from(size))
            .filter(|&header| header <= max_packet)
            .ok_or_else(|| {
                invalid_input(format!(
                    "max_packet {max_packet} is smaller than the length header ({offset} + {size} bytes)"
                ))
            })?;
        Ok(LengthFramer {
            offset,
            endian,
            includes,
            adjust,
            max_packet,
            header,
        })
    }

    /// A framer for the `length_*` and `max_packet` keys of a listener's settings.
    ///
    /// # Errors
    ///
    /// As for [`LengthFramer::new`], and [`io::ErrorKind::InvalidInput`] if `max_packet` does not
    /// fit in `usize`.
    pub fn from_listen(listen: &ListenSettings) -> io::Result<LengthFramer> {
        let max_packet = usize::try_from(listen.max_packet.bytes()).map_err(|_| {
            invalid_input(format!(
                "max_packet {} does not fit in memory",
                listen.max_packet
            ))
        })?;
        LengthFramer::new(
            listen.length_offset,
            listen.length_size,
            listen.length_endian,
            listen.length_includes,
            listen.length_adjust,
            max_packet,
        )
    }

    /// The value of the length field, which `field` holds exactly.
    fn field_value(&self, field: &[u8]) -> u64 {
        let fold = |value: u64, &byte: &u8| (value << 8) | u64::from(byte);
        match self.endian {
            Endian::Big => field.iter().fold(0, fold),
            Endian::Little => field.iter().rev().fold(0, fold),
        }
    }
}

impl Framer for LengthFramer {
    fn name(&self) -> &'static str {
        "length"
    }

    fn check(&self, buf: &[u8]) -> FrameCheck {
        let Some(field) = buf.get(self.offset..self.header) else {
            return FrameCheck::Incomplete;
        };
        let value = i128::from(self.field_value(field));
        let counted_before = match self.includes {
            LengthIncludes::Body => self.header,
            LengthIncludes::Field => self.offset,
            LengthIncludes::All => 0,
        };
        // Every term is below 2^64 in magnitude, so the sum cannot overflow an i128.
        let total = counted_before as i128 + value + i128::from(self.adjust);
        if total < self.header as i128 {
            return FrameCheck::Invalid(FrameError::Malformed(
                "length field smaller than its own header",
            ));
        }
        if total > self.max_packet as i128 {
            return FrameCheck::Invalid(FrameError::Oversize {
                declared: u64::try_from(total).unwrap_or(u64::MAX),
                max: self.max_packet,
            });
        }
        // total <= max_packet, a usize.
        let total = total as usize;
        if buf.len() >= total {
            FrameCheck::Complete(total)
        } else {
            FrameCheck::Incomplete
        }
    }

    fn max_packet(&self) -> usize {
        self.max_packet
    }
}

/// The names `listen[i].framing` accepts.
pub fn known_framings() -> &'static [&'static str] {
    &["length"]
}

/// Whether `name` is one of [`known_framings`].
pub fn is_known(name: &str) -> bool {
    known_framings().contains(&name)
}

/// The framer a listener's settings ask for, by `listen.framing`.
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`] if the framing is unknown or its settings are invalid.
pub fn build(listen: &ListenSettings) -> io::Result<Arc<dyn Framer>> {
    match listen.framing.as_str() {
        "length" => Ok(Arc::new(LengthFramer::from_listen(listen)?)),
        other => Err(invalid_input(format!(
            "unknown framing {other:?}, known framings: {}",
            known_framings().join(", ")
        ))),
    }
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
