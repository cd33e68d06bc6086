//! [`Lane`]: creating, attaching to and validating a lane file and its wake-up FIFO.
//!
//! Attaching trusts nothing in the file: its type, owner, mode, size and every header field are
//! checked before a [`Lane`] exists. Every byte of a lane has its storage reserved (`fallocate`)
//! before it is mapped, by the creator and again by each process that attaches, so a full file
//! system (a small `/dev/shm`) is an error at creation or attach, never a SIGBUS under load.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rustix::fs::{FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::layout::{
    HEADER_SIZE, LANE_HEADER_SIZE, LANE_MAGIC, LANE_VERSION, MAX_CAPACITY, MIN_CAPACITY,
    OFF_CAPACITY, OFF_CONSUMER_PID, OFF_CONSUMER_WAITING, OFF_EPOCH, OFF_HEAD, OFF_HEADER_SIZE,
    OFF_MAGIC, OFF_PRODUCER_PID, OFF_REQUEST_LANES, OFF_TAIL, OFF_VERSION, Region, map,
};
use super::{Consumer, LaneError, Producer};

/// One end of a lane before it becomes a [`Producer`] or a [`Consumer`]: the mapped file, its
/// wake-up FIFO and the header fields.
#[derive(Debug)]
pub struct Lane {
    /// Shared with the [`HeadWatch`]es handed out, which keep the mapping alive.
    pub(super) region: Arc<Region>,
    pub(super) fifo: OwnedFd,
    pub(super) path: PathBuf,
    pub(super) capacity: u64,
}

impl Lane {
    /// Creates the lane file with `capacity` data bytes, its every byte reserved, or attaches to
    /// it if it already exists (keeping every unread record). Also creates the `.fifo` if
    /// missing.
    ///
    /// # Errors
    /// [`LaneError::InvalidCapacity`] unless `capacity` is a power of two in 4096..=2^40;
    /// [`LaneError::NoSpace`] when the directory cannot hold the lane (the new file is removed);
    /// every error of [`Lane::attach`] when the file exists (including `NotReady` while another
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
        reserve(path, fd, size)?;
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
            region: Arc::new(region),
            fifo,
            path: path.to_path_buf(),
            capacity,
        })
    }

    /// Attaches to an existing lane file (never creates it; creates the `.fifo` if missing).
    /// With `expected_capacity`, the lane must have exactly that capacity. Storage is reserved
    /// for any byte of the file that has none yet (a sparse lane), so that no access through the
    /// mapping can fault later.
    ///
    /// # Errors
    /// `NotFound` / `NotReady` (see [`LaneError::is_not_ready`]) while the lane is not there
    /// yet; `WrongOwner` / `UnsafeMode` when the file or FIFO is not ours alone; `NotALane`,
    /// `VersionMismatch`, `HeaderSizeMismatch`, `InvalidCapacity`, `CapacityMismatch`,
    /// `SizeMismatch`, `BadPositions` when the header does not describe a valid lane;
    /// `NoSpace` when a sparse lane cannot get its storage; `Io` when a system call fails.
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
        // A lane made sparse (by an older ccsd, or a copy) gets its space now or not at all.
        reserve(path, &fd, size)?;
        let fifo = open_fifo(path)?;
        Ok(Lane {
            region: Arc::new(region),
            fifo,
            path: path.to_path_buf(),
            capacity,
        })
    }

    /// Checks, before any lane is created, that `dir` has room for the lanes at `paths` of
    /// `capacity` data bytes each: a lane that exists counts only for the bytes not yet allocated to
    /// it.
    ///
    /// # Errors
    /// [`LaneError::NoSpace`] naming the directory, the bytes needed and the bytes free;
    /// [`LaneError::Io`] when `statvfs` fails.
    pub fn check_space(dir: &Path, paths: &[PathBuf], capacity: u64) -> Result<(), LaneError> {
        let size = HEADER_SIZE.saturating_add(capacity);
        let needed = paths
            .iter()
            .map(|path| match rustix::fs::lstat(path) {
                Ok(stat) => size.saturating_sub(allocated_bytes(&stat)),
                Err(_) => size,
            })
            .fold(0u64, u64::saturating_add);
        let free = free_bytes(dir)?;
        if needed > free {
            return Err(LaneError::NoSpace {
                dir: dir.to_path_buf(),
                needed,
                free,
            });
        }
        Ok(())
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

    /// The consumer's `head`: how far it has read, in bytes since the lane was created. It only
    /// grows; a watcher that sees it stand still while records wait knows the consumer is stuck.
    pub fn head_position(&self) -> u64 {
        self.head().load(Ordering::Acquire)
    }

    /// The tail the producer last published: where the next record goes.
    pub fn tail_position(&self) -> u64 {
        // SYNC POINT: Acquire, pairs with the producer's Release store of the tail; only the
        // position is used (as a fence for a connection handed over).
        self.tail().load(Ordering::Acquire)
    }

    /// A handle on this lane's consumer head that another thread can keep and read: how a
    /// worker learns that MCP has read a request lane past a position (see [`HeadWatch`]).
    pub fn head_watch(&self) -> HeadWatch {
        HeadWatch {
            region: Arc::clone(&self.region),
        }
    }

    /// Published bytes not yet released by the consumer (tail - head, frames and pads
    /// included), for statistics.
    pub fn used_bytes(&self) -> u64 {
        // Head first: both only grow, so the later tail is never behind the earlier head.
        let head = self.head().load(Ordering::Acquire);
        let tail = self.tail().load(Ordering::Acquire);
        tail.wrapping_sub(head).min(self.capacity)
    }

    /// Writes our pid into `producer_pid` again: a process that took this lane over and gave it
    /// back (a hot restart that rolled back) left its own there.
    pub fn claim_producer(&self) {
        // SYNC POINT: Relaxed: an informational pid; nothing is read through it.
        self.region
            .u32_at(OFF_PRODUCER_PID)
            .store(own_pid(), Ordering::Relaxed);
    }

    /// Writes our pid into `consumer_pid` again (see [`claim_producer`](Lane::claim_producer)).
    pub fn claim_consumer(&self) {
        // SYNC POINT: Relaxed: an informational pid; nothing is read through it.
        self.region
            .u32_at(OFF_CONSUMER_PID)
            .store(own_pid(), Ordering::Relaxed);
    }

    /// Becomes the producing end: writes our pid into `producer_pid` and continues at the
    /// tail found in the header.
    pub fn into_producer(self) -> Producer {
        self.claim_producer();
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
            resyncs: 0,
        }
    }

    /// Becomes the consuming end: writes our pid into `consumer_pid` and continues at the head
    /// found in the header.
    pub fn into_consumer(self) -> Consumer {
        self.claim_consumer();
        let head = self.head().load(Ordering::Acquire);
        Consumer {
            mask: self.capacity - 1,
            lane: self,
            head,
            tail: head,
            bad_tail: None,
            hold_release: false,
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

    pub(super) fn tail(&self) -> &AtomicU64 {
        self.region.u64_at(OFF_TAIL)
    }

    pub(super) fn head(&self) -> &AtomicU64 {
        self.region.u64_at(OFF_HEAD)
    }

    pub(super) fn consumer_waiting(&self) -> &AtomicU32 {
        self.region.u32_at(OFF_CONSUMER_WAITING)
    }
}

/// Bytes of storage a file holds (`st_blocks` counts 512-byte units whatever the block size).
fn allocated_bytes(stat: &Stat) -> u64 {
    u64::try_from(stat.st_blocks)
        .unwrap_or(0)
        .saturating_mul(512)
}

/// Bytes an unprivileged user may still allocate in the file system holding `dir`.
fn free_bytes(dir: &Path) -> Result<u64, LaneError> {
    let vfs = rustix::fs::statvfs(dir).map_err(|e| LaneError::io(dir, "statvfs", e))?;
    Ok(vfs.f_bavail.saturating_mul(vfs.f_frsize))
}

/// Gives every byte of the lane file at `path` its storage now (`fallocate`, like
/// `posix_fallocate`), so that no access through a mapping, ours or the peer's, can fault for
/// want of space: a write to a sparse page of a full tmpfs is a SIGBUS. Allocated bytes keep
/// their contents.
fn reserve(path: &Path, fd: &OwnedFd, size: u64) -> Result<(), LaneError> {
    // A file whose every byte already has storage needs nothing (an attach after the creator's
    // reservation, or after a restart): fallocate would walk the whole file again.
    if rustix::fs::fstat(fd).is_ok_and(|stat| allocated_bytes(&stat) >= size) {
        return Ok(());
    }
    match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(Errno::NOSPC) => {
            let allocated = rustix::fs::fstat(fd)
                .map(|stat| allocated_bytes(&stat))
                .unwrap_or(0);
            let dir = path.parent().unwrap_or(Path::new("."));
            Err(LaneError::NoSpace {
                dir: dir.to_path_buf(),
                needed: size.saturating_sub(allocated),
                free: free_bytes(dir)?,
            })
        }
        Err(e) => Err(LaneError::io(path, "fallocate (reserving its space)", e)),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

/// A lane's consumer head, readable from any thread for as long as the handle lives (it keeps the
/// mapping). A worker that adopts a moved connection waits, with one atomic load per check, until
/// MCP has read the old worker's lane past the connection's last record there, so that the
/// connection's next packet, pushed into the new worker's lane, cannot overtake it.
#[derive(Debug, Clone)]
pub struct HeadWatch {
    region: Arc<Region>,
}

impl HeadWatch {
    /// Whether the consumer has released every byte before `position` (a producer's tail):
    /// the head, a monotonic byte position, is at or past it.
    pub fn passed(&self, position: u64) -> bool {
        // SYNC POINT: Acquire, pairs with the consumer's Release store of the head; nothing is
        // read through it, only compared, so the ordering only keeps the answer no older than
        // the caller's earlier reads. Positions wrap: a head ahead of `position` by less than
        // half the space is past it.
        let head = self.region.u64_at(OFF_HEAD).load(Ordering::Acquire);
        (head.wrapping_sub(position) as i64) >= 0
    }
}
