//! The `length` framing: a length field at a fixed offset says how long each packet is.

use std::io;

use super::{FrameCheck, FrameError, Framer, invalid_input, max_packet_of};
use crate::settings::{Endian, LengthIncludes, ListenSettings};

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
        LengthFramer::new(
            listen.length_offset,
            listen.length_size,
            listen.length_endian,
            listen.length_includes,
            listen.length_adjust,
            max_packet_of(listen)?,
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
