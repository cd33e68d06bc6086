//! [`Consumer`]: the end of a lane that reads records, checking every frame, and sleeps until the
//! producer publishes more.

use std::error::Error;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::Lane;
use super::layout::{FLAG_PAD, FLAG_RECORD, FRAME_HEADER, FRAME_HEADER_SIZE, frame_size};

/// A frame or tail the consumer refused: the producer broke the protocol. The head stays in
/// front of the frame; [`Consumer::discard_all`] gets past it. A published tail that is behind
/// the head, or more than the capacity ahead of it, is reported once per value: the head never
/// moves backwards (that would deliver records again) nor jumps past the data area, so nothing is
/// read until the producer publishes a tail in range again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneCorrupt {
    /// The lane file.
    pub path: PathBuf,
    /// Monotonic position (head) of the offending frame.
    pub position: u64,
    /// The published tail at the time.
    pub tail: u64,
    /// The frame's `len` field (0 if the frame header was not read).
    pub len: u32,
    /// The frame's `flags` field (0 if the frame header was not read).
    pub flags: u32,
    /// What is wrong.
    pub problem: &'static str,
    /// True when the published tail itself is out of range (behind the head or more than the
    /// capacity ahead): nothing can be discarded, the head stays.
    pub tail_out_of_range: bool,
}

impl fmt::Display for LaneCorrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lane {} corrupt at position {} (tail {}): frame len {} flags {}: {}",
            self.path.display(),
            self.position,
            self.tail,
            self.len,
            self.flags,
            self.problem
        )
    }
}

impl Error for LaneCorrupt {}

/// A record [`Consumer::pop_held`] left in the lane: where its bytes are. They are shared
/// memory: read them through the raw pointer (copy them out), never through a Rust reference.
#[derive(Debug, Clone, Copy)]
pub struct HeldRecord {
    ptr: *const u8,
    len: usize,
}

impl HeldRecord {
    /// The first byte of the record, inside the lane's mapping.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// Bytes in the record.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a record of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The consuming end of a lane: reads frames at its head and releases their space.
#[derive(Debug)]
pub struct Consumer {
    pub(super) lane: Lane,
    /// Next frame to read; equal to the head in the header between calls.
    pub(super) head: u64,
    /// The tail last loaded (checked); reloaded only when head reaches it.
    pub(super) tail: u64,
    pub(super) mask: u64,
    /// The out-of-range tail last reported, so that a producer that leaves it there is reported
    /// once, not at every look.
    pub(super) bad_tail: Option<u64>,
    /// While true, reading moves only our private head: the head in the header (which the
    /// producer and a later consumer see) moves at [`Consumer::release_to`].
    pub(super) hold_release: bool,
}

impl Consumer {
    /// The lane this consumes from.
    pub fn lane(&self) -> &Lane {
        &self.lane
    }

    /// Appends the next record's bytes to `out` (copied out of shared memory with
    /// ptr::copy_nonoverlapping into out's spare capacity; reserve as needed) and releases its
    /// space (store head, Release). Skips PAD frames. Ok(None) when empty.
    ///
    /// # Errors
    /// [`LaneCorrupt`] when the published tail or the next frame breaks the protocol; the head
    /// is left in front of the offending frame.
    pub fn pop_into(&mut self, out: &mut Vec<u8>) -> Result<Option<usize>, LaneCorrupt> {
        let Some((off, len, frame)) = self.next_record()? else {
            return Ok(None);
        };
        out.reserve(len);
        // SAFETY: next_record checked that [off + 8, off + 8 + len) lies inside the data area of
        // a LANE_HEADER_SIZE + capacity byte mapping, and before the published tail, so the
        // producer finished writing it and leaves it alone until we store a head past it (below).
        // `out` has `len` spare bytes after reserve; heap memory cannot overlap the mapping.
        unsafe {
            let src = self
                .lane
                .region
                .data()
                .add(off as usize + FRAME_HEADER_SIZE);
            ptr::copy_nonoverlapping(src, out.as_mut_ptr().add(out.len()), len);
            out.set_len(out.len() + len);
        }
        self.release(self.head.wrapping_add(frame));
        Ok(Some(len))
    }

    /// Takes the next record without copying it (except its first `prefix.len()` bytes, or
    /// fewer if it is shorter, copied into `prefix`, for its header): its bytes stay in the lane,
    /// where the producer leaves them alone until a [`release_to`](Consumer::release_to) passes
    /// them. Only while releases are held ([`hold_release`](Consumer::hold_release)); None
    /// otherwise, and when empty. Skips PAD frames.
    ///
    /// # Errors
    /// As [`pop_into`](Consumer::pop_into).
    pub fn pop_held(&mut self, prefix: &mut [u8]) -> Result<Option<HeldRecord>, LaneCorrupt> {
        if !self.hold_release {
            return Ok(None);
        }
        let Some((off, len, frame)) = self.next_record()? else {
            return Ok(None);
        };
        let record = HeldRecord {
            ptr: self
                .lane
                .region
                .data()
                .wrapping_add(off as usize + FRAME_HEADER_SIZE),
            len,
        };
        let copied = len.min(prefix.len());
        // SAFETY: as in pop_into, [off + 8, off + 8 + len) is inside the data area and before the
        // published tail, and `copied <= len`; `prefix` is caller memory, not the mapping.
        unsafe { ptr::copy_nonoverlapping(record.ptr, prefix.as_mut_ptr(), copied) };
        // Releases are held: only our private head moves.
        self.release(self.head.wrapping_add(frame));
        Ok(Some(record))
    }

    /// Finds the next record at the head, checking its frame against the capacity and the
    /// published tail and releasing the PAD frames before it: its data-area offset, its length
    /// and its frame size. The head stays in front of the record.
    fn next_record(&mut self) -> Result<Option<(u64, usize, u64)>, LaneCorrupt> {
        let capacity = self.lane.capacity;
        loop {
            if self.head == self.tail {
                // SYNC POINT: Acquire load of tail, pairs with the producer's Release store:
                // every frame before it is fully written.
                let tail = self.lane.tail().load(Ordering::Acquire);
                if !self.in_range(tail) {
                    if self.bad_tail.replace(tail) == Some(tail) {
                        return Ok(None);
                    }
                    return Err(LaneCorrupt {
                        tail_out_of_range: true,
                        ..self.corrupt(
                            tail,
                            0,
                            0,
                            "tail is behind head or more than capacity ahead",
                        )
                    });
                }
                self.bad_tail = None;
                self.tail = tail;
                if self.head == tail {
                    return Ok(None);
                }
            }
            // Positions are counted modulo 2^64: a peer may have left them anywhere.
            let available = self.tail.wrapping_sub(self.head);
            if self.head % 8 != 0 || available < FRAME_HEADER {
                return Err(self.corrupt(self.tail, 0, 0, "frame boundary is not 8-aligned"));
            }
            let off = self.head & self.mask;
            let to_end = capacity - off;
            let word = self.lane.region.frame_word(off).load(Ordering::Relaxed);
            let (len, flags) = (word as u32, (word >> 32) as u32);
            match flags {
                FLAG_PAD => {
                    if u64::from(len) != to_end - FRAME_HEADER {
                        return Err(self.corrupt(
                            self.tail,
                            len,
                            flags,
                            "PAD does not end at the end of the data area",
                        ));
                    }
                    if to_end > available {
                        return Err(self.corrupt(self.tail, len, flags, "frame extends past tail"));
                    }
                    self.release(self.head.wrapping_add(to_end));
                }
                FLAG_RECORD => {
                    let frame = frame_size(u64::from(len));
                    let problem = if u64::from(len) > capacity - FRAME_HEADER {
                        "len exceeds capacity - 8"
                    } else if frame > to_end {
                        "frame crosses the end of the data area"
                    } else if frame > available {
                        "frame extends past tail"
                    } else {
                        return Ok(Some((off, len as usize, frame)));
                    };
                    return Err(self.corrupt(self.tail, len, flags, problem));
                }
                _ => {
                    return Err(self.corrupt(
                        self.tail,
                        len,
                        flags,
                        "flags is neither 0 (record) nor 1 (PAD)",
                    ));
                }
            }
        }
    }

    /// Moves the head to `head`, handing the space before it back to the producer (unless
    /// releases are held, see [`Consumer::hold_release`]).
    fn release(&mut self, head: u64) {
        self.head = head;
        if !self.hold_release {
            self.store_head(head);
        }
    }

    /// Stores `head` into the header.
    fn store_head(&mut self, head: u64) {
        // SYNC POINT: Release store of head, pairs with the producer's Acquire load: our reads
        // of the released frames happen before it overwrites them.
        self.lane.head().store(head, Ordering::Release);
    }

    /// Holds releases (`true`): records read from now on stay in the lane, for the producer and
    /// for any consumer that attaches after us, until [`Consumer::release_to`] hands them back.
    /// An MCP that must not lose a request it took uses this to release a request only once its
    /// replies are published. `false` releases everything read so far at once.
    pub fn hold_release(&mut self, hold: bool) {
        self.hold_release = hold;
        if !hold {
            self.store_head(self.head);
        }
    }

    /// Our private head: the position of the next frame to read. With releases held it may be
    /// ahead of the head in the header.
    pub fn position(&self) -> u64 {
        self.head
    }

    /// Stores `position` (a value [`Consumer::position`] returned, not behind one released
    /// before) as the head in the header: the space of every record before it goes back to the
    /// producer, and a consumer attaching later starts there.
    pub fn release_to(&mut self, position: u64) {
        debug_assert!(
            self.head.wrapping_sub(position) <= self.lane.capacity,
            "release_to({position}) is not at or behind our head {}",
            self.head
        );
        self.store_head(position);
    }

    fn corrupt(&self, tail: u64, len: u32, flags: u32, problem: &'static str) -> LaneCorrupt {
        LaneCorrupt {
            path: self.lane.path.clone(),
            position: self.head,
            tail,
            len,
            flags,
            problem,
            tail_out_of_range: false,
        }
    }

    /// Whether `tail` can follow our head: at most `capacity` bytes ahead of it. Positions are
    /// counted modulo 2^64, so a tail behind the head is far ahead and out of range too.
    fn in_range(&self, tail: u64) -> bool {
        tail.wrapping_sub(self.head) <= self.lane.capacity
    }

    /// Drops every published record (head = tail) and returns the bytes skipped (at most the
    /// capacity). Used after LaneCorrupt so the lane stays usable. A tail out of range (behind
    /// the head or more than the capacity ahead) is left alone: the head never moves backwards
    /// and never past bytes the data area cannot hold; 0 is returned.
    pub fn discard_all(&mut self) -> u64 {
        // SYNC POINT: Acquire load of tail, as in pop_into.
        let tail = self.lane.tail().load(Ordering::Acquire);
        if !self.in_range(tail) {
            return 0;
        }
        let skipped = tail.wrapping_sub(self.head);
        self.tail = tail;
        self.bad_tail = None;
        self.release(tail);
        skipped
    }

    /// True when published records are waiting (Acquire load of tail vs our head); a tail out of
    /// range holds nothing to read.
    pub fn has_records(&self) -> bool {
        // SYNC POINT: Acquire load of tail, as in pop_into.
        let tail = self.lane.tail().load(Ordering::Acquire);
        tail != self.head && self.in_range(tail)
    }

    /// Announces that we are about to sleep. Returns false when records arrived meanwhile (do
    /// not sleep, pop them); true when the caller may block on [`Consumer::wake_fd`]: a
    /// producer that publishes from now on writes a wake-up byte. Call
    /// [`Consumer::after_wake`] after blocking.
    pub fn prepare_sleep(&mut self) -> bool {
        if self.head != self.tail {
            return false;
        }
        let waiting = self.lane.consumer_waiting();
        waiting.store(1, Ordering::Relaxed);
        // SYNC POINT: SeqCst fence between storing consumer_waiting and loading tail, paired
        // with the fence in Producer::publish (Dekker): either we see its new tail here, or it
        // sees our flag and writes the FIFO.
        fence(Ordering::SeqCst);
        if self.has_records() {
            waiting.store(0, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Ends a sleep: clears consumer_waiting and drains the FIFO.
    ///
    /// # Errors
    /// Reading the FIFO failed (other than it being empty).
    pub fn after_wake(&mut self) -> io::Result<()> {
        // A stale wake-up byte written after this store costs one spurious wake-up, never a lost one.
        self.lane.consumer_waiting().store(0, Ordering::Relaxed);
        let mut buf = [0u8; 64];
        loop {
            match rustix::io::read(self.lane.fifo.as_fd(), &mut buf) {
                // A short read emptied the FIFO: no need for a read that says so.
                Ok(n) if n < buf.len() => return Ok(()),
                Err(Errno::AGAIN) => return Ok(()),
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Withdraws a [`prepare_sleep`](Consumer::prepare_sleep) when the caller woke for another
    /// reason and its FIFO did not fire: clears the waiting flag without touching the FIFO, so the
    /// producer stops signalling. Costs no syscall.
    pub fn cancel_sleep(&mut self) {
        // SYNC POINT: the caller pops records after this; a record published before this store
        // is found by that pop, one published after it needs no wake-up.
        self.lane.consumer_waiting().store(0, Ordering::Relaxed);
    }

    /// The FIFO, to register in a polling::Poller by the caller (readable = wake up).
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.lane.fifo.as_fd()
    }

    /// Convenience for simple consumers: if empty, prepare_sleep and block in poll(2) on the
    /// FIFO up to `timeout` (None = forever), then after_wake. Returns when records may be
    /// available or on timeout.
    ///
    /// # Errors
    /// poll(2) or draining the FIFO failed.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.has_records() || !self.prepare_sleep() {
            return Ok(());
        }
        // A timeout too large for a timespec is as good as forever.
        let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
        let mut fds = [PollFd::from_borrowed_fd(self.wake_fd(), PollFlags::IN)];
        let polled = rustix::event::poll(&mut fds, timeout.as_ref());
        self.after_wake()?;
        match polled {
            Ok(_) | Err(Errno::INTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
