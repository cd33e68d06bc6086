//! [`LaneError`]: why a lane could not be created or attached.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::layout::{MAX_CAPACITY, MIN_CAPACITY};

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
        /// [`LANE_VERSION`](super::LANE_VERSION).
        expected: u32,
    },
    /// The header carries another header size.
    HeaderSizeMismatch {
        /// The lane file.
        path: PathBuf,
        /// Header size in the header.
        found: u32,
        /// [`LANE_HEADER_SIZE`](super::LANE_HEADER_SIZE).
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
    /// The lane files have served every epoch a flow id can carry: another start would issue
    /// flow ids of an earlier one.
    EpochsExhausted {
        /// The lane whose header counts the starts.
        path: PathBuf,
        /// The epoch count in its header.
        starts: u64,
    },
    /// The lanes' directory has less free space than the lanes need: every byte of a lane is
    /// reserved when it is created, so a full `/dev/shm` is found at start, never by a SIGBUS.
    NoSpace {
        /// The directory holding the lanes (`queues.dir`).
        dir: PathBuf,
        /// Bytes the lanes still need there.
        needed: u64,
        /// Bytes free there.
        free: u64,
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

    pub(super) fn io(path: &Path, op: &'static str, source: impl Into<io::Error>) -> LaneError {
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
            LaneError::EpochsExhausted { path, starts } => write!(
                f,
                "lane {} has served {starts} ccsd starts, every epoch a flow id can carry: another \
                 start would reuse flow ids of an earlier one. Stop MCP, remove the lane files \
                 (ccsd creates them anew, at epoch 1) and start again",
                path.display()
            ),
            LaneError::NoSpace { dir, needed, free } => write!(
                f,
                "{}: not enough space for the lanes: {} needed, {} free (enlarge it, e.g. docker run --shm-size, or lower queues.capacity; docs/operations.md, \"Sizing the lanes' directory\")",
                dir.display(),
                mebibytes(*needed),
                mebibytes(*free)
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

/// `"160.0 MiB (167774720 bytes)"`: readable, and exact for whoever computes with it.
fn mebibytes(bytes: u64) -> String {
    format!(
        "{:.1} MiB ({bytes} bytes)",
        bytes as f64 / f64::from(1 << 20)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
