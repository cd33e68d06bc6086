//! The check behind the `lane` fuzz target, also run by `tests/framing/fuzz_corpus.rs` (both
//! include this file by path): a real lane file with both real ends attached, a [`Consumer`] (as
//! the MCP bridge reads the response lane) and a [`Producer`] (as a worker fills a request lane),
//! while the input also writes the file as a hostile peer would: any bytes in the data area, any
//! `head` or `tail`. Those writes are plain file writes, so the product code needs no test hook.
//!
//! Input: bytes 0–7 the initial `head` (little-endian), bytes 8–9 how far the initial `tail` is
//! ahead of it; then operations, each a byte choosing one (modulo 8) and its arguments: push a
//! record (`u16` length), publish, pop, discard everything, scribble on the data area (`u16`
//! offset, count, bytes), move `tail` or `head` (`i16`), attach a new consumer or producer.
//!
//! Checked, besides "nothing panics" (the fuzz build has overflow checks on): the consumer
//! returns only a record that is in the ring at its head, after nothing but PAD frames, never
//! consumes more than a ring's worth in one call, and refuses a frame only when the frame breaks
//! a rule of `docs/protocol.md`; a tail out of range (behind the head or more than a ring ahead)
//! never moves the head and is reported once per value; `discard_all` skips exactly to a tail in
//! range and leaves the head alone otherwise; attaching refuses only positions that cannot be;
//! the producer writes its frame, and a PAD before it, where the protocol puts them and nothing
//! else, reports "full" only when the frame does not fit, and moves its tail to the head only
//! when that head cannot follow it and everything is published; and while every write came from
//! the real ends, records come out exactly as they went in.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ccsd::lane::{
    Consumer, FRAME_HEADER_SIZE, LANE_HEADER_SIZE, Lane, LaneError, Producer, PushError,
};

/// The ring's data area: the smallest a lane takes, so that the input reaches every part of it.
const CAPACITY: u64 = 4096;
/// Byte offsets of `tail` and `head` in the lane header (`docs/protocol.md`).
const OFF_TAIL: u64 = 128;
const OFF_HEAD: u64 = 256;
const FRAME_HEADER: u64 = FRAME_HEADER_SIZE as u64;
const FLAG_RECORD: u32 = 0;
const FLAG_PAD: u32 = 1;

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// Runs one fuzz input against a lane at `path` (created, and removed again, by this call);
/// `Err` describes the first broken rule.
pub fn check_input(path: &Path, input: &[u8]) -> Result<(), String> {
    let mut input = Input(input);
    let head = input.u64();
    let tail = head.wrapping_add(u64::from(input.u16()));
    let files = LaneFiles::create(path)?;
    write_u64(&files.file, OFF_HEAD, head)?;
    write_u64(&files.file, OFF_TAIL, tail)?;
    let Some(consumer) = attach(path, head, tail)? else {
        return Ok(());
    };
    let producer = attach(path, head, tail)?
        .ok_or("a second attach refused positions the first accepted")?
        .into_producer();
    let mut ring = Ring {
        file: &files.file,
        consumer: consumer.into_consumer(),
        producer,
        consumer_head: head,
        producer_tail: next_frame_position(tail),
        producer_published: next_frame_position(tail),
        reported_bad_tail: None,
        honest: head == tail,
        unpublished: VecDeque::new(),
        published: VecDeque::new(),
        serial: 0,
    };
    while let Some(op) = input.byte() {
        match op % 8 {
            0 => ring.push(usize::from(input.u16()))?,
            1 => ring.publish()?,
            2 => ring.pop()?,
            3 => ring.discard()?,
            4 => {
                let offset = u64::from(input.u16()) % CAPACITY;
                let count = 1 + usize::from(input.byte().unwrap_or(0) % 16);
                let bytes = input.take(count);
                ring.scribble(offset, bytes)?;
            }
            5 => ring.shift(OFF_TAIL, input.i16())?,
            6 => ring.shift(OFF_HEAD, input.i16())?,
            _ => {
                if !ring.reattach(path, input.byte().unwrap_or(0) & 1 == 0)? {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// The fuzz input, read front to back; missing bytes read as zero.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let taken = self.take(N);
        out[..taken.len()].copy_from_slice(taken);
        out
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    fn i16(&mut self) -> i16 {
        i16::from_le_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
}

/// The lane file, open for the hostile writes, removed with its FIFO on drop.
struct LaneFiles {
    path: PathBuf,
    file: File,
}

impl LaneFiles {
    fn create(path: &Path) -> Result<LaneFiles, String> {
        // A lane left by an earlier run that crashed would not start empty.
        Lane::remove_files(path).map_err(|e| format!("{}: {e}", path.display()))?;
        drop(Lane::create_or_attach(path, CAPACITY).map_err(|e| e.to_string())?);
        let files = LaneFiles {
            path: path.to_path_buf(),
            file: OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?,
        };
        Ok(files)
    }
}

impl Drop for LaneFiles {
    fn drop(&mut self) {
        let _ = Lane::remove_files(&self.path);
    }
}

/// Attaches to the lane whose header holds `head` and `tail`: `None` when attaching refused
/// them, which must be because they cannot belong to a ring.
fn attach(path: &Path, head: u64, tail: u64) -> Result<Option<Lane>, String> {
    match Lane::attach(path, Some(CAPACITY)) {
        Ok(lane) => {
            ensure!(
                positions_can_be(head, tail),
                "attach accepted head {head} and tail {tail}"
            );
            Ok(Some(lane))
        }
        Err(LaneError::BadPositions {
            head: h, tail: t, ..
        }) => {
            ensure!(
                (h, t) == (head, tail) && !positions_can_be(head, tail),
                "attach refused head {h} and tail {t}; the header holds {head} and {tail}"
            );
            Ok(None)
        }
        Err(e) => Err(format!("attach failed: {e}")),
    }
}

/// Both 8-aligned, and no more than a ring apart (`docs/protocol.md`, "Lane file").
fn positions_can_be(head: u64, tail: u64) -> bool {
    head % 8 == 0 && tail % 8 == 0 && tail.wrapping_sub(head) <= CAPACITY
}

/// Where a producer attaching at `tail` writes its first frame.
fn next_frame_position(tail: u64) -> u64 {
    tail.wrapping_add(7) & !7
}

fn frame_size(len: u64) -> u64 {
    FRAME_HEADER + len.next_multiple_of(8)
}

fn offset(position: u64) -> usize {
    (position % CAPACITY) as usize
}

fn read_u64(file: &File, at: u64) -> Result<u64, String> {
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word, at)
        .map_err(|e| format!("reading the lane file: {e}"))?;
    Ok(u64::from_le_bytes(word))
}

fn write_u64(file: &File, at: u64, value: u64) -> Result<(), String> {
    file.write_all_at(&value.to_le_bytes(), at)
        .map_err(|e| format!("writing the lane file: {e}"))
}

/// The `(len, flags)` frame header at data-area offset `off`.
fn frame_header(data: &[u8], off: usize) -> (u32, u32) {
    let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
    (word(off), word(off + 4))
}

fn put_frame_header(data: &mut [u8], off: usize, len: u32, flags: u32) {
    data[off..off + 4].copy_from_slice(&len.to_le_bytes());
    data[off + 4..off + 8].copy_from_slice(&flags.to_le_bytes());
}

/// Whether the protocol lets a consumer at `position` take the frame there, with `tail`
/// published: the rules `docs/protocol.md` lists under "The consumer must not trust the producer".
fn frame_is_valid(data: &[u8], position: u64, tail: u64) -> bool {
    let available = tail.wrapping_sub(position);
    if available > CAPACITY || position % 8 != 0 || available < FRAME_HEADER {
        return false;
    }
    let to_end = CAPACITY - position % CAPACITY;
    let (len, flags) = frame_header(data, offset(position));
    let frame = frame_size(u64::from(len));
    match flags {
        FLAG_PAD => u64::from(len) == to_end - FRAME_HEADER && to_end <= available,
        FLAG_RECORD => {
            u64::from(len) <= CAPACITY - FRAME_HEADER && frame <= to_end && frame <= available
        }
        _ => false,
    }
}

/// Checks that the consumer went from `from` to `to` over PAD frames only.
fn skipped_only_pads(data: &[u8], from: u64, to: u64) -> Result<(), String> {
    let mut position = from;
    while position != to {
        let to_end = CAPACITY - position % CAPACITY;
        let pad = (to_end - FRAME_HEADER) as u32;
        ensure!(
            to.wrapping_sub(position) >= to_end
                && frame_header(data, offset(position)) == (pad, FLAG_PAD),
            "the consumer skipped from {from} to {to}, over something else than PAD frames at {position}"
        );
        position = position.wrapping_add(to_end);
    }
    Ok(())
}

/// Both ends of the lane and what the check knows about them.
struct Ring<'a> {
    file: &'a File,
    consumer: Consumer,
    producer: Producer,
    /// The consumer's own position (the header's `head` may hold a hostile value).
    consumer_head: u64,
    /// Where the producer writes its next frame.
    producer_tail: u64,
    /// The tail the producer last published (or attached at).
    producer_published: u64,
    /// The out-of-range tail the consumer reported last, until it reads a tail in range again.
    reported_bad_tail: Option<u64>,
    /// Every byte in the ring and both positions came from the real ends.
    honest: bool,
    /// Records pushed since the last publish, and the published ones not popped yet (both only
    /// tracked while `honest`).
    unpublished: VecDeque<Vec<u8>>,
    published: VecDeque<Vec<u8>>,
    serial: u8,
}

impl Ring<'_> {
    fn data(&self) -> Result<Vec<u8>, String> {
        let mut data = vec![0u8; CAPACITY as usize];
        self.file
            .read_exact_at(&mut data, LANE_HEADER_SIZE as u64)
            .map_err(|e| format!("reading the data area: {e}"))?;
        Ok(data)
    }

    fn push(&mut self, len: usize) -> Result<(), String> {
        let len = len % (CAPACITY as usize + 8);
        self.serial = self.serial.wrapping_add(1);
        let record: Vec<u8> = (0..len)
            .map(|i| self.serial.wrapping_add(i as u8))
            .collect();
        let before = self.data()?;
        let head = read_u64(self.file, OFF_HEAD)?;
        let (first, second) = record.split_at(len / 2);
        let resyncs = self.producer.resyncs();
        let pushed = self.producer.try_push(&[first, second]);
        let after = self.data()?;
        if self.producer.resyncs() != resyncs {
            ensure!(
                self.producer_tail.wrapping_sub(head) > CAPACITY
                    && self.producer_tail == self.producer_published
                    && head % 8 == 0,
                "the producer at {} (published {}) moved to head {head}",
                self.producer_tail,
                self.producer_published
            );
            self.producer_tail = head;
            self.producer_published = head;
        }

        let off = offset(self.producer_tail);
        let to_end = CAPACITY - off as u64;
        let frame = frame_size(len as u64);
        let pad = if frame > to_end { to_end } else { 0 };
        let free = CAPACITY.saturating_sub(self.producer_tail.wrapping_sub(head));
        let mut expected = before.clone();
        match pushed {
            Err(PushError::TooLarge { len: l, max }) => {
                ensure!(
                    l == len && max as u64 == CAPACITY - FRAME_HEADER && len > max,
                    "TooLarge {{ len: {l}, max: {max} }} for a {len}-byte record"
                );
            }
            Err(PushError::Full) => {
                ensure!(
                    len as u64 <= CAPACITY - FRAME_HEADER && pad + frame > free,
                    "full for a {len}-byte record at {} with head {head}",
                    self.producer_tail
                );
                if pad != 0 && pad <= free {
                    put_frame_header(&mut expected, off, (pad - FRAME_HEADER) as u32, FLAG_PAD);
                    self.producer_tail = self.producer_tail.wrapping_add(pad);
                }
            }
            Ok(()) => {
                ensure!(
                    len as u64 <= CAPACITY - FRAME_HEADER,
                    "a {len}-byte record was pushed"
                );
                // While the consumer is honest, its head only grows: the producer's older copy of
                // it can only understate the room.
                ensure!(
                    !self.honest || pad + frame <= free,
                    "a {len}-byte record was pushed at {} with head {head}",
                    self.producer_tail
                );
                let start = if pad == 0 {
                    off
                } else {
                    put_frame_header(&mut expected, off, (pad - FRAME_HEADER) as u32, FLAG_PAD);
                    0
                };
                put_frame_header(&mut expected, start, len as u32, FLAG_RECORD);
                let body = start + FRAME_HEADER_SIZE;
                expected[body..body + len].copy_from_slice(&record);
                expected[body + len..start + frame as usize].fill(0);
                self.producer_tail = self.producer_tail.wrapping_add(pad + frame);
                if self.honest {
                    self.unpublished.push_back(record);
                }
            }
        }
        if after != expected {
            let first = (0..after.len()).find(|&i| after[i] != expected[i]);
            return Err(format!(
                "push of {len} bytes ({pushed:?}) at {}: the data area differs from the \
                 protocol's from offset {first:?}",
                self.producer_tail
            ));
        }
        Ok(())
    }

    fn publish(&mut self) -> Result<(), String> {
        let pending = self.producer.has_unpublished();
        self.producer
            .publish()
            .map_err(|e| format!("publish failed: {e}"))?;
        let tail = read_u64(self.file, OFF_TAIL)?;
        ensure!(
            !pending || tail == self.producer_tail,
            "publish stored tail {tail}; the producer wrote up to {}",
            self.producer_tail
        );
        self.producer_published = self.producer_tail;
        self.published.append(&mut self.unpublished);
        Ok(())
    }

    fn pop(&mut self) -> Result<(), String> {
        let before = self.consumer_head;
        let mut out = Vec::new();
        let popped = self.consumer.pop_into(&mut out);
        let data = self.data()?;
        let tail = read_u64(self.file, OFF_TAIL)?;
        match popped {
            Ok(None) if tail.wrapping_sub(before) > CAPACITY => {
                ensure!(
                    out.is_empty() && self.reported_bad_tail == Some(tail),
                    "tail {tail} out of range of head {before} was not reported before"
                );
                ensure!(
                    !self.honest,
                    "an honest lane has tail {tail} and head {before}"
                );
            }
            Ok(None) => {
                ensure!(out.is_empty(), "an empty pop returned {} bytes", out.len());
                skipped_only_pads(&data, before, tail)?;
                self.consumer_head = tail;
                self.reported_bad_tail = None;
                ensure!(
                    !self.honest || self.published.is_empty(),
                    "the lane looks empty with {} published records unread",
                    self.published.len()
                );
            }
            Ok(Some(len)) => {
                let head = read_u64(self.file, OFF_HEAD)?;
                let frame = frame_size(len as u64);
                let start = head.wrapping_sub(frame);
                ensure!(
                    out.len() == len
                        && head.wrapping_sub(before) <= CAPACITY
                        && start.wrapping_sub(before) <= head.wrapping_sub(before),
                    "a pop from {before} returned {len} bytes ({} copied) and left head at {head}",
                    out.len()
                );
                skipped_only_pads(&data, before, start)?;
                let off = offset(start);
                ensure!(
                    off as u64 + frame <= CAPACITY
                        && frame_header(&data, off) == (len as u32, FLAG_RECORD)
                        && out[..] == data[off + FRAME_HEADER_SIZE..][..len],
                    "a pop returned {len} bytes that are not the record frame at {start}"
                );
                self.consumer_head = head;
                self.reported_bad_tail = None;
                if self.honest {
                    ensure!(
                        head.wrapping_sub(before) <= tail.wrapping_sub(before),
                        "the consumer read past the tail {tail} (head {head})"
                    );
                    let expected = self.published.pop_front();
                    ensure!(
                        expected.as_ref() == Some(&out),
                        "popped {len} bytes {out:02x?}; pushed {expected:02x?}"
                    );
                }
            }
            Err(corrupt) => {
                let at = corrupt.position;
                ensure!(
                    at.wrapping_sub(before) <= CAPACITY,
                    "the consumer at {before} stopped at {at}"
                );
                skipped_only_pads(&data, before, at)?;
                ensure!(
                    !frame_is_valid(&data, at, corrupt.tail),
                    "a valid frame was refused: {corrupt}"
                );
                ensure!(
                    (corrupt.len, corrupt.flags) == (0, 0)
                        || (corrupt.len, corrupt.flags) == frame_header(&data, offset(at)),
                    "the error names a frame header that is not there: {corrupt}"
                );
                ensure!(!self.honest, "an honest lane was refused: {corrupt}");
                ensure!(
                    corrupt.tail_out_of_range
                        == (corrupt.tail == tail && tail.wrapping_sub(at) > CAPACITY),
                    "tail_out_of_range is {} for tail {} at {at} (header tail {tail})",
                    corrupt.tail_out_of_range,
                    corrupt.tail
                );
                self.reported_bad_tail = corrupt.tail_out_of_range.then_some(tail);
                self.consumer_head = at;
            }
        }
        Ok(())
    }

    fn discard(&mut self) -> Result<(), String> {
        let tail = read_u64(self.file, OFF_TAIL)?;
        let head_before = read_u64(self.file, OFF_HEAD)?;
        let skipped = self.consumer.discard_all();
        let head = read_u64(self.file, OFF_HEAD)?;
        if tail.wrapping_sub(self.consumer_head) > CAPACITY {
            ensure!(
                skipped == 0 && head == head_before,
                "discard_all at {} with tail {tail} out of range skipped {skipped} bytes, head now {head}",
                self.consumer_head
            );
            return Ok(());
        }
        self.reported_bad_tail = None;
        ensure!(
            skipped == tail.wrapping_sub(self.consumer_head) && head == tail,
            "discard_all from {} to tail {tail} skipped {skipped} bytes, head now {head}",
            self.consumer_head
        );
        self.consumer_head = tail;
        self.published.clear();
        Ok(())
    }

    fn scribble(&mut self, offset: u64, bytes: &[u8]) -> Result<(), String> {
        let room = (CAPACITY - offset) as usize;
        let bytes = &bytes[..bytes.len().min(room)];
        self.file
            .write_all_at(bytes, LANE_HEADER_SIZE as u64 + offset)
            .map_err(|e| format!("writing the data area: {e}"))?;
        self.honest = false;
        Ok(())
    }

    /// Moves the header's `tail` or `head` by `by` bytes, as a hostile peer would.
    fn shift(&mut self, at: u64, by: i16) -> Result<(), String> {
        let value = read_u64(self.file, at)?;
        write_u64(self.file, at, value.wrapping_add_signed(i64::from(by)))?;
        self.honest = false;
        Ok(())
    }

    /// Replaces the consumer (or the producer) by a new attach; false when attaching refused
    /// the header's positions, which ends the input.
    fn reattach(&mut self, path: &Path, consumer: bool) -> Result<bool, String> {
        let head = read_u64(self.file, OFF_HEAD)?;
        let tail = read_u64(self.file, OFF_TAIL)?;
        let Some(lane) = attach(path, head, tail)? else {
            return Ok(false);
        };
        if consumer {
            self.consumer = lane.into_consumer();
            self.consumer_head = head;
            self.reported_bad_tail = None;
        } else {
            self.producer = lane.into_producer();
            self.producer_tail = next_frame_position(tail);
            self.producer_published = self.producer_tail;
            // What the old producer had not published is lost; the new one writes over it.
            self.unpublished.clear();
        }
        Ok(true)
    }
}
