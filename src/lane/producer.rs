//! [`Producer`]: the end of a lane that writes records and wakes the consumer.

use std::error::Error;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::ptr;
use std::sync::atomic::{Ordering, fence};

use rustix::io::Errno;

use super::Lane;
use super::layout::{FLAG_PAD, FLAG_RECORD, FRAME_HEADER, FRAME_HEADER_SIZE, frame_size};

/// Why [`Producer::try_push`] refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Not enough free space now; publish, let the consumer drain, and retry.
    Full,
    /// The record can never fit this lane.
    TooLarge {
        /// Length of the record.
        len: usize,
        /// Largest record the lane takes (capacity - 8).
        max: usize,
    },
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full => f.write_str("lane is full"),
            PushError::TooLarge { len, max } => {
                write!(f, "record of {len} bytes exceeds the lane maximum of {max}")
            }
        }
    }
}

impl Error for PushError {}

/// The producing end of a lane: writes frames at its private tail and publishes them.
#[derive(Debug)]
pub struct Producer {
    pub(super) lane: Lane,
    /// Where the next frame goes (includes unpublished frames).
    pub(super) tail: u64,
    /// The tail last stored in the header.
    pub(super) published: u64,
    /// The head last seen; refreshed only when the ring looks full.
    pub(super) head: u64,
    pub(super) mask: u64,
    /// Times the tail was moved to a head that could not follow it.
    pub(super) resyncs: u64,
}

impl Producer {
    /// The lane this produces into.
    pub fn lane(&self) -> &Lane {
        &self.lane
    }

    /// The largest record this lane takes: capacity - 8.
    pub fn max_record(&self) -> usize {
        (self.lane.capacity - FRAME_HEADER) as usize
    }

    /// Writes one record = concatenation of `parts` (gather, so callers pass header + payload
    /// without joining). Not visible until publish().
    ///
    /// # Errors
    /// [`PushError::TooLarge`] when the record exceeds [`Producer::max_record`];
    /// [`PushError::Full`] when it does not fit the free space now. A `Full` may still have
    /// written a PAD frame to the end of the data area (so the record can go at offset 0 once
    /// the consumer drained); publish either way. A head in the header that cannot follow our
    /// tail (behind it by more than the capacity, or ahead of it) moves our tail to it once
    /// everything pushed is published.
    pub fn try_push(&mut self, parts: &[&[u8]]) -> Result<(), PushError> {
        let len = parts
            .iter()
            .fold(0usize, |n, part| n.saturating_add(part.len()));
        let max = self.max_record();
        if len > max {
            return Err(PushError::TooLarge { len, max });
        }
        let frame = frame_size(len as u64);
        let off = self.tail & self.mask;
        let to_end = self.lane.capacity - off;
        let pad = if frame > to_end { to_end } else { 0 };
        if pad + frame > self.free() {
            // SYNC POINT: Acquire load of head, pairs with the consumer's Release store: its
            // reads of the space we are about to reuse are done.
            self.head = self.lane.head().load(Ordering::Acquire);
            if self.resync_if_head_out_of_range() {
                // Offsets and the PAD depend on the tail: start over (once: the pair is valid now).
                return self.try_push(parts);
            }
            let free = self.free();
            if pad + frame > free {
                if pad != 0 && pad <= free {
                    self.write_pad(off, pad);
                }
                return Err(PushError::Full);
            }
        }
        if pad != 0 {
            self.write_pad(off, pad);
        }
        let off = self.tail & self.mask;
        let base = self.lane.region.data().wrapping_add(off as usize);
        self.lane.region.frame_word(off).store(
            u64::from(len as u32) | u64::from(FLAG_RECORD) << 32,
            Ordering::Relaxed,
        );
        // SAFETY: the frame [off, off + frame) lies inside the data area (frame <= capacity - off
        // after the pad) of a mapping that is LANE_HEADER_SIZE + capacity bytes long. The
        // consumer released it (frame <= free, head Acquire-loaded) and will not read it before
        // we publish a tail past it, so nobody else touches it. `parts` are caller memory, not
        // the mapping, so the copies do not overlap.
        unsafe {
            let mut dst = base.add(FRAME_HEADER_SIZE);
            for part in parts {
                ptr::copy_nonoverlapping(part.as_ptr(), dst, part.len());
                dst = dst.add(part.len());
            }
            ptr::write_bytes(dst, 0, (frame - FRAME_HEADER) as usize - len);
        }
        // Positions are counted modulo 2^64, as the consumer counts them.
        self.tail = self.tail.wrapping_add(frame);
        Ok(())
    }

    /// Free bytes as far as we know; 0 if the head read from the peer makes no sense.
    fn free(&self) -> u64 {
        self.lane
            .capacity
            .saturating_sub(self.tail.wrapping_sub(self.head))
    }

    /// When the consumer's head cannot follow our tail (it is ahead of the tail, or more than the
    /// capacity behind it: a consumer or another writer broke the protocol), the ring would stay
    /// full forever. The consumer's head is where reading continues, and a consumer never moves
    /// it backwards, so continue writing there: nothing already read is offered again. Done only
    /// when every pushed frame is published (a caller that gets `Full` publishes, then retries)
    /// and the head is 8-aligned, as frames must be; counted in [`Producer::resyncs`]. Returns
    /// whether it moved the tail.
    fn resync_if_head_out_of_range(&mut self) -> bool {
        let out_of_range = self.tail.wrapping_sub(self.head) > self.lane.capacity;
        if !(out_of_range && self.tail == self.published && self.head % 8 == 0) {
            return false;
        }
        self.tail = self.head;
        self.published = self.head;
        self.resyncs += 1;
        true
    }

    /// The position after the last record written, published or not: once the consumer's head
    /// is past it ([`HeadWatch::passed`](super::HeadWatch::passed)), MCP has read every record
    /// written so far.
    pub fn tail_position(&self) -> u64 {
        self.tail
    }

    /// Times the tail was moved to a consumer's head that could not follow it (see
    /// [`Producer::try_push`]).
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Writes a PAD frame covering `pad` bytes from data offset `off` to the end of the area.
    fn write_pad(&mut self, off: u64, pad: u64) {
        let len = (pad - FRAME_HEADER) as u32;
        self.lane.region.frame_word(off).store(
            u64::from(len) | u64::from(FLAG_PAD) << 32,
            Ordering::Relaxed,
        );
        self.tail = self.tail.wrapping_add(pad);
    }

    /// Makes pushed records visible and wakes a sleeping consumer. Ok(true) if it wrote to the
    /// FIFO (false when nobody was waiting, nothing was new, or a wake-up byte was already
    /// pending in the FIFO).
    ///
    /// # Errors
    /// Writing the wake-up byte failed (other than the FIFO being full).
    pub fn publish(&mut self) -> io::Result<bool> {
        if self.tail == self.published {
            return Ok(false);
        }
        // SYNC POINT: Release store of tail, pairs with the consumer's Acquire load: every frame
        // written above is visible to it once it sees this tail.
        self.lane.tail().store(self.tail, Ordering::Release);
        self.published = self.tail;
        // SYNC POINT: SeqCst fence between storing tail and loading consumer_waiting, paired with
        // the fence in Consumer::prepare_sleep (Dekker): either the consumer sees our tail, or we
        // see its waiting flag. A wake-up cannot be lost.
        fence(Ordering::SeqCst);
        let waiting = self.lane.consumer_waiting();
        // SYNC POINT: Relaxed peek first (no cache-line write when nobody sleeps); the AcqRel
        // swap makes exactly one producer-side write claim the wake-up.
        if waiting.load(Ordering::Relaxed) == 1 && waiting.swap(0, Ordering::AcqRel) == 1 {
            return signal(self.lane.fifo.as_fd());
        }
        Ok(false)
    }

    /// True when records were pushed (or a PAD written) since the last publish.
    pub fn has_unpublished(&self) -> bool {
        self.tail != self.published
    }
}

/// Writes one wake-up byte; a full FIFO already holds a pending wake-up.
fn signal(fifo: BorrowedFd<'_>) -> io::Result<bool> {
    loop {
        match rustix::io::write(fifo, &[1]) {
            Ok(n) => return Ok(n == 1),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}
