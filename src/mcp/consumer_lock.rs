//! One MCP per set of lanes: an exclusive `flock` on `{queues.dir}/{queues.name}.mcp.lock`, taken
//! before MCP attaches to any lane and held for as long as it consumes them.
//!
//! A lane has exactly one consumer: two MCPs reading the same request lanes would each take some
//! requests and both write into the one response lane, which corrupts it. The lock file holds the
//! holder's pid, so a second MCP can say who is in its way. The kernel releases the lock when the
//! holder dies, however it dies. `docs/protocol.md` ("One MCP at a time") gives the steps for an
//! MCP written in C; ccsd reads the pid in this file to tell a legitimate new MCP from a second
//! one ([`holder_pid`]).

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::settings::Settings;

use super::McpError;

/// The MCP lock file of the lanes `settings` name: `{queues.dir}/{queues.name}.mcp.lock`.
pub(crate) fn lock_path(settings: &Settings) -> PathBuf {
    lock_path_in(&settings.queues.dir, &settings.queues.name)
}

/// The MCP lock file of the lanes named `name` in `dir`: `{dir}/{name}.mcp.lock`.
pub(crate) fn lock_path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.mcp.lock"))
}

/// The pid the MCP that holds (or last held) the lock at `path` wrote into it, if readable.
pub(crate) fn holder_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Characters of the pid in the lock file: every `u32` fits.
const PID_WIDTH: usize = 10;

/// The held lock; released when dropped or when the process exits.
#[derive(Debug)]
pub(super) struct ConsumerLock {
    _fd: OwnedFd,
}

impl ConsumerLock {
    /// Opens (or creates, mode 0600) the lock file at `path` without following a symlink, checks
    /// that it is a regular file of our own, takes the lock without waiting and writes this
    /// process's pid into it.
    ///
    /// # Errors
    /// [`McpError::Busy`] when another process holds it; [`McpError::UnsafeLock`] when the file is
    /// not a regular file of ours; [`McpError::Lock`] when a system call fails.
    pub(super) fn acquire(path: &Path) -> Result<ConsumerLock, McpError> {
        let failed = |op: &'static str| {
            move |e: Errno| McpError::Lock {
                path: path.to_path_buf(),
                op,
                source: io::Error::from(e),
            }
        };
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = rustix::fs::open(path, flags, Mode::RUSR | Mode::WUSR).map_err(failed("open"))?;
        let stat = rustix::fs::fstat(&fd).map_err(failed("fstat"))?;
        let unsafe_lock = |reason| McpError::UnsafeLock {
            path: path.to_path_buf(),
            reason,
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(unsafe_lock("not a regular file"));
        }
        if stat.st_uid != rustix::process::geteuid().as_raw() {
            return Err(unsafe_lock("owned by another user"));
        }
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                return Err(McpError::Busy {
                    lock: path.to_path_buf(),
                    pid: read_pid(&fd),
                });
            }
            Err(e) => return Err(failed("flock")(e)),
        }
        // The pid right-aligned in a fixed width: every holder writes the same 11 bytes over the
        // last one's in one write, so a reader never sees half a number nor a longer earlier pid's
        // tail, and a file that exists needs no new space (a full lanes directory must still let
        // the MCP reach the lanes' own, clearer, space check).
        let line = format!("{:>PID_WIDTH$}\n", std::process::id());
        rustix::io::pwrite(&fd, line.as_bytes(), 0).map_err(failed("write"))?;
        rustix::fs::ftruncate(&fd, line.len() as u64).map_err(failed("ftruncate"))?;
        Ok(ConsumerLock { _fd: fd })
    }
}

/// The pid in the open lock file, if it holds one.
fn read_pid(fd: &OwnedFd) -> Option<u32> {
    let mut text = [0u8; 24];
    let n = rustix::io::pread(fd, &mut text, 0).ok()?;
    std::str::from_utf8(&text[..n]).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(what: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ccsd-mcplock-{what}-{}", std::process::id()))
    }

    #[test]
    fn a_second_holder_is_told_the_first_ones_pid_and_can_take_it_after() {
        let path = temp_path("twice");
        let first = ConsumerLock::acquire(&path).unwrap();
        assert_eq!(holder_pid(&path), Some(std::process::id()));
        match ConsumerLock::acquire(&path) {
            Err(McpError::Busy { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        drop(ConsumerLock::acquire(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_symlink_in_place_of_the_lock_is_refused() {
        let target = temp_path("target");
        let link = temp_path("link");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let refused = ConsumerLock::acquire(&link);
        assert!(
            matches!(refused, Err(McpError::Lock { op: "open", .. })),
            "{refused:?}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_file(&target).unwrap();
    }
}
