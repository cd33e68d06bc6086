//! The byte layout of a lane file and the mapping that reads it.
//!
//! `docs/protocol.md` specifies the layout; the constants here are its numbers. `Region` turns
//! header and frame-header offsets into atomics, checking each against the mapping, and hands out
//! the data-area pointer that `producer.rs` and `consumer.rs` copy records through.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::{MmapOptions, MmapRaw};

use super::LaneError;

// The layout is little-endian and both sides use native atomics on it.
#[cfg(target_endian = "big")]
compile_error!("ccsd lanes are little-endian; big-endian targets are not supported");

/// The first 8 bytes of every lane file: the ASCII bytes `CCSDLANE`.
pub const LANE_MAGIC: u64 = u64::from_le_bytes(*b"CCSDLANE");
/// The layout version this implementation reads and writes.
pub const LANE_VERSION: u32 = 1;
/// Bytes before the data area.
pub const LANE_HEADER_SIZE: usize = 512;
/// Bytes of the `u32 len, u32 flags` header in front of every frame.
pub const FRAME_HEADER_SIZE: usize = 8;

pub(super) const OFF_MAGIC: usize = 0;
pub(super) const OFF_VERSION: usize = 8;
pub(super) const OFF_HEADER_SIZE: usize = 12;
pub(super) const OFF_CAPACITY: usize = 16;
pub(super) const OFF_EPOCH: usize = 24;
pub(super) const OFF_PRODUCER_PID: usize = 32;
pub(super) const OFF_CONSUMER_PID: usize = 36;
pub(super) const OFF_REQUEST_LANES: usize = 40;
pub(super) const OFF_TAIL: usize = 128;
pub(super) const OFF_HEAD: usize = 256;
pub(super) const OFF_CONSUMER_WAITING: usize = 384;

pub(super) const FLAG_RECORD: u32 = 0;
pub(super) const FLAG_PAD: u32 = 1;

pub(super) const MIN_CAPACITY: u64 = 4096;
pub(super) const MAX_CAPACITY: u64 = 1 << 40;
pub(super) const FRAME_HEADER: u64 = FRAME_HEADER_SIZE as u64;
pub(super) const HEADER_SIZE: u64 = LANE_HEADER_SIZE as u64;

/// The mapped lane file: header accessors and the data area pointer.
#[derive(Debug)]
pub(super) struct Region {
    map: MmapRaw,
}

impl Region {
    /// The atomic `u64` at byte offset `off` of the mapping.
    ///
    /// # Panics
    /// If `off` is not 8-aligned or the word is not inside the mapping (a bug in this module).
    pub(super) fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(
            off % 8 == 0 && off + 8 <= self.map.len(),
            "bad lane offset {off}"
        );
        // SAFETY: the assert keeps the word inside the mapping, which is page-aligned, so the
        // pointer is in bounds and aligned for AtomicU64 for as long as `self.map` lives (the
        // reference borrows self). AtomicU64 allows the peer process to read and write the
        // same bytes concurrently.
        unsafe { &*self.map.as_mut_ptr().add(off).cast::<AtomicU64>() }
    }

    /// The atomic `u32` at byte offset `off` of the mapping.
    ///
    /// # Panics
    /// If `off` is not 4-aligned or the word is not inside the mapping (a bug in this module).
    pub(super) fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(
            off % 4 == 0 && off + 4 <= self.map.len(),
            "bad lane offset {off}"
        );
        // SAFETY: as in `u64_at`, with 4-byte alignment.
        unsafe { &*self.map.as_mut_ptr().add(off).cast::<AtomicU32>() }
    }

    /// The frame header word at data-area offset `off`. Reading it as an atomic gives one
    /// single fetch even if a buggy peer writes it concurrently, so a length that was checked
    /// cannot change under us.
    pub(super) fn frame_word(&self, off: u64) -> &AtomicU64 {
        self.u64_at(LANE_HEADER_SIZE + off as usize)
    }

    /// Start of the data area. Only valid to dereference once the mapping is known to be
    /// LANE_HEADER_SIZE + capacity bytes long.
    pub(super) fn data(&self) -> *mut u8 {
        self.map.as_mut_ptr().wrapping_add(LANE_HEADER_SIZE)
    }
}

pub(super) fn map(path: &Path, fd: &OwnedFd, size: u64) -> Result<Region, LaneError> {
    let len = usize::try_from(size).map_err(|_| LaneError::SizeMismatch {
        path: path.to_path_buf(),
        found: size,
        expected: HEADER_SIZE + MAX_CAPACITY,
    })?;
    let map = MmapOptions::new()
        .len(len)
        .map_raw(fd)
        .map_err(|e| LaneError::io(path, "mmap", e))?;
    Ok(Region { map })
}

/// Bytes a frame carrying `len` record bytes occupies: header + record rounded up to 8.
pub(super) fn frame_size(len: u64) -> u64 {
    FRAME_HEADER + len.next_multiple_of(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_header_plus_record_rounded_to_eight() {
        assert_eq!(frame_size(0), 8);
        assert_eq!(frame_size(1), 16);
        assert_eq!(frame_size(8), 16);
        assert_eq!(frame_size(9), 24);
        assert_eq!(frame_size(4088), 4096);
    }

    #[test]
    fn magic_is_the_ascii_bytes_ccsdlane() {
        assert_eq!(LANE_MAGIC.to_le_bytes(), *b"CCSDLANE");
    }
}
