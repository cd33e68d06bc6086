//! Lanes: single-producer/single-consumer byte rings in shared-memory files.
//!
//! ccsd and MCP (an external process, possibly written in C) exchange records through *lanes*.
//! A lane is a file (normally in `/dev/shm`) holding a 512-byte header and a power-of-two data
//! area used as a ring of 8-aligned frames, plus a FIFO at `{lane path}.fifo` that wakes a
//! sleeping consumer. Exactly one process produces into a lane and exactly one consumes from it.
//! The byte layout and the wake-up protocol are a public contract, specified in
//! `docs/protocol.md`; this module is ccsd's implementation of both sides.
//!
//! Shared memory is only ever touched through raw pointers and atomics, never through Rust
//! references to bytes the peer may write, and nothing the peer wrote is trusted: the consumer
//! checks every frame against the capacity and the published tail before it copies a byte.
//!
//! ```no_run
//! use ccsd::lane::Lane;
//! use std::path::Path;
//!
//! let path = Path::new("/dev/shm/example.req.0");
//! let mut producer = Lane::create_or_attach(path, 1 << 20)?.into_producer();
//! producer.try_push(&[b"header", b"payload"])?;
//! producer.publish()?;
//!
//! let mut consumer = Lane::attach(path, None)?.into_consumer();
//! let mut record = Vec::new();
//! while consumer.pop_into(&mut record)?.is_none() {
//!     consumer.wait(None)?;
//! }
//! assert_eq!(record, b"headerpayload");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::error::Error;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

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

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_HEADER_SIZE: usize = 12;
const OFF_CAPACITY: usize = 16;
const OFF_EPOCH: usize = 24;
const OFF_PRODUCER_PID: usize = 32;
const OFF_CONSUMER_PID: usize = 36;
const OFF_REQUEST_LANES: usize = 40;
const OFF_TAIL: usize = 128;
const OFF_HEAD: usize = 256;
const OFF_CONSUMER_WAITING: usize = 384;

const FLAG_RECORD: u32 = 0;
const FLAG_PAD: u32 = 1;

const MIN_CAPACITY: u64 = 4096;
const MAX_CAPACITY: u64 = 1 << 40;
const FRAME_HEADER: u64 = FRAME_HEADER_SIZE as u64;
const HEADER_SIZE: u64 = LANE_HEADER_SIZE as u64;

/// Why a lane could not be created or attached.
#[derive(Debug)]
pub enum LaneError {
    /// The lane file does not exist (yet).
    NotFound {
        /// The lane file.
        path: PathBuf,
    },
    /// The lane file exists but its creator has not finished writing the header.
    NotReady {
        /// The lane file.
        path: PathBuf,
    },
    /// A capacity (asked for, or found in a header) that is not a power of two in 4096..=2^40.
    InvalidCapacity {
        /// The lane file.
        path: PathBuf,
        /// The offending capacity.
        capacity: u64,
    },
    /// The file is not a ccsd lane (or the `.fifo` is not a FIFO).
    NotALane {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The header carries another layout version.
    VersionMismatch {
        /// The lane file.
        path: PathBuf,
        /// Version in the header.
        found: u32,
        /// [`LANE_VERSION`].
        expected: u32,
    },
    /// The header carries another header size.
    HeaderSizeMismatch {
        /// The lane file.
        path: PathBuf,
        /// Header size in the header.
        found: u32,
        /// [`LANE_HEADER_SIZE`].
        expected: u32,
    },
    /// The lane exists with another capacity than the configured one.
    CapacityMismatch {
        /// The lane file.
        path: PathBuf,
        /// Capacity in the header.
        found: u64,
        /// Capacity asked for.
        expected: u64,
    },
    /// The file size is not header size + capacity.
    SizeMismatch {
        /// The lane file.
        path: PathBuf,
        /// Size of the file.
        found: u64,
        /// 512 + capacity.
        expected: u64,
    },
    /// The file belongs to another user.
    WrongOwner {
        /// The offending file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        uid: u32,
    },
    /// The file lets group or others read or write it.
    UnsafeMode {
        /// The offending file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The head and tail in the header cannot belong to a valid ring.
    BadPositions {
        /// The lane file.
        path: PathBuf,
        /// Head in the header.
        head: u64,
        /// Tail in the header.
        tail: u64,
    },
    /// A system call failed.
    Io {
        /// The file it was about.
        path: PathBuf,
        /// What we were doing.
        op: &'static str,
        /// The error from the system.
        source: io::Error,
    },
}

impl LaneError {
    /// True when the lane is not there yet (the file is missing or its header is not yet
    /// written), so a caller may wait for its creator and try again.
    pub fn is_not_ready(&self) -> bool {
        matches!(
            self,
            LaneError::NotFound { .. } | LaneError::NotReady { .. }
        )
    }

    fn io(path: &Path, op: &'static str, source: impl Into<io::Error>) -> LaneError {
        LaneError::Io {
            path: path.to_path_buf(),
            op,
            source: source.into(),
        }
    }
}

impl fmt::Display for LaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaneError::NotFound { path } => write!(f, "lane {} does not exist", path.display()),
            LaneError::NotReady { path } => write!(
                f,
                "lane {} is being created (header not written yet)",
                path.display()
            ),
            LaneError::InvalidCapacity { path, capacity } => write!(
                f,
                "lane {}: capacity {capacity} is not a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}",
                path.display()
            ),
            LaneError::NotALane { path, reason } => {
                write!(f, "{} is not a ccsd lane: {reason}", path.display())
            }
            LaneError::VersionMismatch {
                path,
                found,
                expected,
            } => write!(
                f,
                "lane {} has layout version {found}, expected version {expected}",
                path.display()
            ),
            LaneError::HeaderSizeMismatch {
                path,
                found,
                expected,
            } => write!(
                f,
                "lane {} has a {found}-byte header, expected {expected}",
                path.display()
            ),
            LaneError::CapacityMismatch {
                path,
                found,
                expected,
            } => write!(
                f,
                "lane {} has capacity {found} but {expected} is configured: remove it or change queues.capacity",
                path.display()
            ),
            LaneError::SizeMismatch {
                path,
                found,
                expected,
            } => write!(
                f,
                "lane {} is {found} bytes long, expected {expected} (header + capacity)",
                path.display()
            ),
            LaneError::WrongOwner { path, owner, uid } => write!(
                f,
                "{} belongs to uid {owner}, not to us (uid {uid}): refusing to use it",
                path.display()
            ),
            LaneError::UnsafeMode { path, mode } => write!(
                f,
                "{} has mode {mode:04o}, open to group or others: refusing to use it (chmod 600)",
                path.display()
            ),
            LaneError::BadPositions { path, head, tail } => write!(
                f,
                "lane {} is corrupt: head {head} and tail {tail} do not fit its capacity",
                path.display()
            ),
            LaneError::Io { path, op, source } => {
                write!(f, "lane {}: {op} failed: {source}", path.display())
            }
        }
    }
}

impl Error for LaneError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            LaneError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The mapped lane file: header accessors and the data area pointer.
#[derive(Debug)]
struct Region {
    map: MmapRaw,
}

impl Region {
    /// The atomic `u64` at byte offset `off` of the mapping.
    ///
    /// # Panics
    /// If `off` is not 8-aligned or the word is not inside the mapping (a bug in this module).
    fn u64_at(&self, off: usize) -> &AtomicU64 {
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
    fn u32_at(&self, off: usize) -> &AtomicU32 {
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
    fn frame_word(&self, off: u64) -> &AtomicU64 {
        self.u64_at(LANE_HEADER_SIZE + off as usize)
    }

    /// Start of the data area. Only valid to dereference once the mapping is known to be
    /// LANE_HEADER_SIZE + capacity bytes long.
    fn data(&self) -> *mut u8 {
        self.map.as_mut_ptr().wrapping_add(LANE_HEADER_SIZE)
    }
}

/// One end of a lane before it becomes a [`Producer`] or a [`Consumer`]: the mapped file, its
/// wake-up FIFO and the header fields.
#[derive(Debug)]
pub struct Lane {
    region: Region,
    fifo: OwnedFd,
    path: PathBuf,
    capacity: u64,
}

impl Lane {
    /// Creates the lane file with `capacity` data bytes, or attaches to it if it already exists
    /// (keeping every unread record). Also creates the `.fifo` if missing.
    ///
    /// # Errors
    /// [`LaneError::InvalidCapacity`] unless `capacity` is a power of two in 4096..=2^40; every
    /// error of [`Lane::attach`] when the file exists (including `NotReady` while another
    /// process is still creating it); [`LaneError::Io`] when a system call fails.
    pub fn create_or_attach(path: &Path, capacity: u64) -> Result<Lane, LaneError> {
        check_capacity(path, capacity)?;
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        match rustix::fs::open(path, flags, Mode::RUSR | Mode::WUSR) {
            Ok(fd) => {
                let created = Lane::initialise(path, &fd, capacity);
                if created.is_err() {
                    // Nobody can have attached: the magic was never written.
                    let _ = std::fs::remove_file(path);
                }
                created
            }
            Err(Errno::EXIST) => Lane::attach(path, Some(capacity)),
            Err(e) => Err(LaneError::io(path, "create", e)),
        }
    }

    /// Sizes and fills the header of a lane file we just created; stores the magic last.
    fn initialise(path: &Path, fd: &OwnedFd, capacity: u64) -> Result<Lane, LaneError> {
        // The umask may have removed bits from 0600; make it exact.
        rustix::fs::fchmod(fd, Mode::RUSR | Mode::WUSR)
            .map_err(|e| LaneError::io(path, "fchmod", e))?;
        let size = HEADER_SIZE + capacity;
        rustix::fs::ftruncate(fd, size).map_err(|e| LaneError::io(path, "ftruncate", e))?;
        let region = map(path, fd, size)?;
        region
            .u32_at(OFF_VERSION)
            .store(LANE_VERSION, Ordering::Relaxed);
        region
            .u32_at(OFF_HEADER_SIZE)
            .store(LANE_HEADER_SIZE as u32, Ordering::Relaxed);
        region
            .u64_at(OFF_CAPACITY)
            .store(capacity, Ordering::Relaxed);
        let fifo = open_fifo(path)?;
        // SYNC POINT: Release store of the magic, last. An attacher that Acquire-loads the magic
        // sees every header field above.
        region
            .u64_at(OFF_MAGIC)
            .store(LANE_MAGIC, Ordering::Release);
        Ok(Lane {
            region,
            fifo,
            path: path.to_path_buf(),
            capacity,
        })
    }

    /// Attaches to an existing lane file (never creates it; creates the `.fifo` if missing).
    /// With `expected_capacity`, the lane must have exactly that capacity.
    ///
    /// # Errors
    /// `NotFound` / `NotReady` (see [`LaneError::is_not_ready`]) while the lane is not there
    /// yet; `WrongOwner` / `UnsafeMode` when the file or FIFO is not ours alone; `NotALane`,
    /// `VersionMismatch`, `HeaderSizeMismatch`, `InvalidCapacity`, `CapacityMismatch`,
    /// `SizeMismatch`, `BadPositions` when the header does not describe a valid lane;
    /// `Io` when a system call fails.
    pub fn attach(path: &Path, expected_capacity: Option<u64>) -> Result<Lane, LaneError> {
        let fd = match rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                return Err(LaneError::NotFound {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(LaneError::io(path, "open", e)),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| LaneError::io(path, "fstat", e))?;
        check_private(path, &stat, FileType::RegularFile, "not a regular file")?;
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size == 0 {
            // The creator has not called ftruncate yet.
            return Err(LaneError::NotReady {
                path: path.to_path_buf(),
            });
        }
        if size < HEADER_SIZE {
            return Err(LaneError::NotALane {
                path: path.to_path_buf(),
                reason: "file is smaller than the 512-byte header",
            });
        }
        let region = map(path, &fd, size)?;
        let capacity = validate_header(path, &region, size, expected_capacity)?;
        let fifo = open_fifo(path)?;
        Ok(Lane {
            region,
            fifo,
            path: path.to_path_buf(),
            capacity,
        })
    }

    /// The lane file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the data area.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The epoch ccsd wrote into the header (informational for MCP).
    pub fn epoch(&self) -> u64 {
        self.region.u64_at(OFF_EPOCH).load(Ordering::Relaxed)
    }

    /// Writes the epoch field.
    pub fn set_epoch(&self, epoch: u64) {
        self.region
            .u64_at(OFF_EPOCH)
            .store(epoch, Ordering::Relaxed);
    }

    /// The number of request lanes, as ccsd wrote it into the response lane (0 elsewhere).
    pub fn request_lanes(&self) -> u32 {
        self.region
            .u32_at(OFF_REQUEST_LANES)
            .load(Ordering::Relaxed)
    }

    /// Writes the number of request lanes (ccsd does this on the response lane).
    pub fn set_request_lanes(&self, n: u32) {
        self.region
            .u32_at(OFF_REQUEST_LANES)
            .store(n, Ordering::Relaxed);
    }

    /// Pid of the last process that made a [`Producer`] of this lane (0 if none).
    pub fn producer_pid(&self) -> u32 {
        self.region.u32_at(OFF_PRODUCER_PID).load(Ordering::Relaxed)
    }

    /// Pid of the last process that made a [`Consumer`] of this lane (0 if none).
    pub fn consumer_pid(&self) -> u32 {
        self.region.u32_at(OFF_CONSUMER_PID).load(Ordering::Relaxed)
    }

    /// Published bytes not yet released by the consumer (tail - head, frames and pads
    /// included), for statistics.
    pub fn used_bytes(&self) -> u64 {
        // Head first: both only grow, so the later tail is never behind the earlier head.
        let head = self.head().load(Ordering::Acquire);
        let tail = self.tail().load(Ordering::Acquire);
        tail.wrapping_sub(head).min(self.capacity)
    }

    /// Becomes the producing end: writes our pid into `producer_pid` and continues at the
    /// tail found in the header.
    pub fn into_producer(self) -> Producer {
        self.region
            .u32_at(OFF_PRODUCER_PID)
            .store(own_pid(), Ordering::Relaxed);
        // Only a producer writes the tail, and attach checked it is 8-aligned; rounding up keeps
        // every frame write aligned even if some other process broke that since.
        let tail = self.tail().load(Ordering::Acquire).wrapping_add(7) & !7;
        // SYNC POINT: Acquire load of head, pairs with the consumer's Release store: its reads
        // of the space before head are done.
        let head = self.head().load(Ordering::Acquire);
        Producer {
            mask: self.capacity - 1,
            lane: self,
            tail,
            published: tail,
            head,
        }
    }

    /// Becomes the consuming end: writes our pid into `consumer_pid` and continues at the head
    /// found in the header.
    pub fn into_consumer(self) -> Consumer {
        self.region
            .u32_at(OFF_CONSUMER_PID)
            .store(own_pid(), Ordering::Relaxed);
        let head = self.head().load(Ordering::Acquire);
        Consumer {
            mask: self.capacity - 1,
            lane: self,
            head,
            tail: head,
        }
    }

    /// Removes the lane file and its `.fifo`; files already gone are not an error.
    ///
    /// # Errors
    /// The first unlink error other than "not found".
    pub fn remove_files(path: &Path) -> io::Result<()> {
        for file in [path.to_path_buf(), fifo_path(path)] {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    fn tail(&self) -> &AtomicU64 {
        self.region.u64_at(OFF_TAIL)
    }

    fn head(&self) -> &AtomicU64 {
        self.region.u64_at(OFF_HEAD)
    }

    fn consumer_waiting(&self) -> &AtomicU32 {
        self.region.u32_at(OFF_CONSUMER_WAITING)
    }
}

fn check_capacity(path: &Path, capacity: u64) -> Result<(), LaneError> {
    if capacity.is_power_of_two() && (MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        Ok(())
    } else {
        Err(LaneError::InvalidCapacity {
            path: path.to_path_buf(),
            capacity,
        })
    }
}

/// Refuses a file of the wrong type, owned by another uid, or open to group/others.
fn check_private(
    path: &Path,
    stat: &Stat,
    file_type: FileType,
    wrong_type: &'static str,
) -> Result<(), LaneError> {
    if FileType::from_raw_mode(stat.st_mode) != file_type {
        return Err(LaneError::NotALane {
            path: path.to_path_buf(),
            reason: wrong_type,
        });
    }
    let uid = rustix::process::geteuid().as_raw();
    if stat.st_uid != uid {
        return Err(LaneError::WrongOwner {
            path: path.to_path_buf(),
            owner: stat.st_uid,
            uid,
        });
    }
    let mode = Mode::from_raw_mode(stat.st_mode);
    if mode.intersects(Mode::RWXG | Mode::RWXO) {
        return Err(LaneError::UnsafeMode {
            path: path.to_path_buf(),
            mode: mode.bits(),
        });
    }
    Ok(())
}

fn map(path: &Path, fd: &OwnedFd, size: u64) -> Result<Region, LaneError> {
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

/// Checks the header of a mapped lane file of `size` bytes; returns its capacity.
fn validate_header(
    path: &Path,
    region: &Region,
    size: u64,
    expected_capacity: Option<u64>,
) -> Result<u64, LaneError> {
    let path_buf = || path.to_path_buf();
    // SYNC POINT: Acquire load of the magic, pairs with the creator's Release store: once it is
    // there, so is the rest of the header.
    match region.u64_at(OFF_MAGIC).load(Ordering::Acquire) {
        LANE_MAGIC => {}
        0 => return Err(LaneError::NotReady { path: path_buf() }),
        _ => {
            return Err(LaneError::NotALane {
                path: path_buf(),
                reason: "wrong magic (expected \"CCSDLANE\")",
            });
        }
    }
    let version = region.u32_at(OFF_VERSION).load(Ordering::Relaxed);
    if version != LANE_VERSION {
        return Err(LaneError::VersionMismatch {
            path: path_buf(),
            found: version,
            expected: LANE_VERSION,
        });
    }
    let header_size = region.u32_at(OFF_HEADER_SIZE).load(Ordering::Relaxed);
    if header_size != LANE_HEADER_SIZE as u32 {
        return Err(LaneError::HeaderSizeMismatch {
            path: path_buf(),
            found: header_size,
            expected: LANE_HEADER_SIZE as u32,
        });
    }
    let capacity = region.u64_at(OFF_CAPACITY).load(Ordering::Relaxed);
    check_capacity(path, capacity)?;
    if let Some(expected) = expected_capacity
        && expected != capacity
    {
        return Err(LaneError::CapacityMismatch {
            path: path_buf(),
            found: capacity,
            expected,
        });
    }
    if size != HEADER_SIZE + capacity {
        return Err(LaneError::SizeMismatch {
            path: path_buf(),
            found: size,
            expected: HEADER_SIZE + capacity,
        });
    }
    // Head first: both only grow, so a live peer cannot make the pair look inverted.
    let head = region.u64_at(OFF_HEAD).load(Ordering::Acquire);
    let tail = region.u64_at(OFF_TAIL).load(Ordering::Acquire);
    if head % 8 != 0 || tail % 8 != 0 || tail.wrapping_sub(head) > capacity {
        return Err(LaneError::BadPositions {
            path: path_buf(),
            head,
            tail,
        });
    }
    Ok(capacity)
}

fn fifo_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".fifo");
    PathBuf::from(name)
}

/// Creates `{path}.fifo` if missing and opens it read-write, non-blocking.
fn open_fifo(path: &Path) -> Result<OwnedFd, LaneError> {
    let fifo = fifo_path(path);
    match rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::RUSR | Mode::WUSR) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(LaneError::io(&fifo, "mkfifo", e)),
    }
    let flags = OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let fd = rustix::fs::open(&fifo, flags, Mode::empty())
        .map_err(|e| LaneError::io(&fifo, "open", e))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| LaneError::io(&fifo, "fstat", e))?;
    check_private(&fifo, &stat, FileType::Fifo, "not a FIFO")?;
    Ok(fd)
}

fn own_pid() -> u32 {
    rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs()
}

/// Bytes a frame carrying `len` record bytes occupies: header + record rounded up to 8.
fn frame_size(len: u64) -> u64 {
    FRAME_HEADER + len.next_multiple_of(8)
}

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
    lane: Lane,
    /// Where the next frame goes (includes unpublished frames).
    tail: u64,
    /// The tail last stored in the header.
    published: u64,
    /// The head last seen; refreshed only when the ring looks full.
    head: u64,
    mask: u64,
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
    /// the consumer drained); publish either way.
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
        self.tail += frame;
        Ok(())
    }

    /// Free bytes as far as we know; 0 if the head read from the peer makes no sense.
    fn free(&self) -> u64 {
        self.lane
            .capacity
            .saturating_sub(self.tail.wrapping_sub(self.head))
    }

    /// Writes a PAD frame covering `pad` bytes from data offset `off` to the end of the area.
    fn write_pad(&mut self, off: u64, pad: u64) {
        let len = (pad - FRAME_HEADER) as u32;
        self.lane.region.frame_word(off).store(
            u64::from(len) | u64::from(FLAG_PAD) << 32,
            Ordering::Relaxed,
        );
        self.tail += pad;
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

/// A frame the consumer refused: the producer broke the protocol. The head stays in front of
/// the frame; [`Consumer::discard_all`] gets past it.
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

/// The consuming end of a lane: reads frames at its head and releases their space.
#[derive(Debug)]
pub struct Consumer {
    lane: Lane,
    /// Next frame to read; equal to the head in the header between calls.
    head: u64,
    /// The tail last loaded (checked); reloaded only when head reaches it.
    tail: u64,
    mask: u64,
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
        let capacity = self.lane.capacity;
        loop {
            if self.head == self.tail {
                // SYNC POINT: Acquire load of tail, pairs with the producer's Release store:
                // every frame before it is fully written.
                let tail = self.lane.tail().load(Ordering::Acquire);
                if tail.wrapping_sub(self.head) > capacity {
                    return Err(self.corrupt(tail, 0, 0, "tail is behind head or beyond capacity"));
                }
                self.tail = tail;
                if self.head == tail {
                    return Ok(None);
                }
            }
            let available = self.tail - self.head;
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
                    self.release(self.head + to_end);
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
                        let len = len as usize;
                        out.reserve(len);
                        // SAFETY: [off + 8, off + 8 + len) lies inside the data area (frame <=
                        // capacity - off) of a LANE_HEADER_SIZE + capacity byte mapping, and
                        // before the published tail, so the producer finished writing it and
                        // leaves it alone until we store a head past it. `out` has `len` spare
                        // bytes after reserve; heap memory cannot overlap the mapping.
                        unsafe {
                            let src = self
                                .lane
                                .region
                                .data()
                                .add(off as usize + FRAME_HEADER_SIZE);
                            ptr::copy_nonoverlapping(src, out.as_mut_ptr().add(out.len()), len);
                            out.set_len(out.len() + len);
                        }
                        self.release(self.head + frame);
                        return Ok(Some(len));
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

    /// Moves the head to `head`, handing the space before it back to the producer.
    fn release(&mut self, head: u64) {
        self.head = head;
        // SYNC POINT: Release store of head, pairs with the producer's Acquire load: our reads
        // of the released frames happen before it overwrites them.
        self.lane.head().store(head, Ordering::Release);
    }

    fn corrupt(&self, tail: u64, len: u32, flags: u32, problem: &'static str) -> LaneCorrupt {
        LaneCorrupt {
            path: self.lane.path.clone(),
            position: self.head,
            tail,
            len,
            flags,
            problem,
        }
    }

    /// Drops every published record (head = tail); returns bytes skipped. Used after
    /// LaneCorrupt so the lane stays usable.
    pub fn discard_all(&mut self) -> u64 {
        // SYNC POINT: Acquire load of tail, as in pop_into.
        let tail = self.lane.tail().load(Ordering::Acquire);
        let skipped = tail.wrapping_sub(self.head);
        self.tail = tail;
        self.release(tail);
        skipped
    }

    /// True when published records are waiting (Acquire load of tail vs our head).
    pub fn has_records(&self) -> bool {
        // SYNC POINT: Acquire load of tail, as in pop_into.
        self.lane.tail().load(Ordering::Acquire) != self.head
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
        // SYNC POINT: Acquire load of tail, as in pop_into.
        if self.lane.tail().load(Ordering::Acquire) != self.head {
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
                Ok(0) | Err(Errno::AGAIN) => return Ok(()),
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
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

    #[test]
    fn capacity_must_be_a_power_of_two_of_at_least_4096() {
        let path = Path::new("/nonexistent/lane");
        for bad in [0, 2048, 4095, 4097, 6144, MAX_CAPACITY * 2] {
            let err = check_capacity(path, bad).unwrap_err();
            assert!(matches!(err, LaneError::InvalidCapacity { capacity, .. } if capacity == bad));
            assert!(err.to_string().contains("/nonexistent/lane"));
        }
        for good in [4096, 8192, 1 << 20, MAX_CAPACITY] {
            check_capacity(path, good).unwrap();
        }
    }

    #[test]
    fn fifo_sits_next_to_the_lane_file() {
        assert_eq!(
            fifo_path(Path::new("/dev/shm/ccsd.req.0")),
            Path::new("/dev/shm/ccsd.req.0.fifo")
        );
    }

    #[test]
    fn lane_ends_can_move_to_other_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Lane>();
        assert_send::<Producer>();
        assert_send::<Consumer>();
    }

    #[test]
    fn only_missing_or_unfinished_lanes_are_not_ready() {
        let path = PathBuf::from("/dev/shm/x");
        assert!(LaneError::NotFound { path: path.clone() }.is_not_ready());
        assert!(LaneError::NotReady { path: path.clone() }.is_not_ready());
        assert!(
            !LaneError::NotALane {
                path,
                reason: "wrong magic"
            }
            .is_not_ready()
        );
    }
}
