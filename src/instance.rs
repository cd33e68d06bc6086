//! One ccsd per queue name: an exclusive lock on `{queues.dir}/{queues.name}.lock`, held for the
//! life of the process.
//!
//! Two ccsd processes on the same lanes would both produce into the request lanes and both
//! consume the response lane, which corrupts them. The lock file also holds the owner's pid, so
//! the refusal can say who holds it. The kernel releases the lock when the process dies, however
//! it dies, so a crash never leaves a stale lock behind.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

/// Why the instance lock could not be taken.
#[derive(Debug)]
pub enum InstanceError {
    /// Another process holds it.
    Taken {
        /// The lock file.
        path: PathBuf,
        /// The pid written by the holder, if readable.
        pid: Option<u32>,
    },
    /// The lock file could not be opened, locked or written.
    Io {
        /// The lock file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

impl fmt::Display for InstanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceError::Taken {
                path,
                pid: Some(pid),
            } => write!(
                f,
                "another ccsd (pid {pid}) already uses these queues ({} is locked)",
                path.display()
            ),
            InstanceError::Taken { path, pid: None } => write!(
                f,
                "another ccsd already uses these queues ({} is locked)",
                path.display()
            ),
            InstanceError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for InstanceError {}

/// The held lock; released when dropped or when the process exits.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock at `path` without waiting and writes this process's pid into it.
    ///
    /// # Errors
    /// [`InstanceError::Taken`] when another process holds it; [`InstanceError::Io`] otherwise.
    pub fn acquire(path: &Path) -> Result<InstanceLock, InstanceError> {
        let file = lock_with_pid(path, 0o600)?;
        Ok(InstanceLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens (or creates, with `mode`) the file at `path`, takes an exclusive `flock` on it without
/// waiting and replaces its contents with this process's pid. The lock lives as long as the
/// returned file.
///
/// # Errors
/// [`InstanceError::Taken`] when another process holds the lock; [`InstanceError::Io`] otherwise.
pub(crate) fn lock_with_pid(path: &Path, mode: u32) -> Result<File, InstanceError> {
    let io_err = |source| InstanceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(path)
        .map_err(io_err)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(InstanceError::Taken {
                path: path.to_path_buf(),
                pid,
            });
        }
        Err(e) => return Err(io_err(e.into())),
    }
    file.set_len(0).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    // One write: a reader sees the whole line or an empty file, never half a number.
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(io_err)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_ones_pid_and_can_take_it_after() {
        let path = std::env::temp_dir().join(format!("ccsd-locktest-{}.lock", std::process::id()));
        let first = InstanceLock::acquire(&path).unwrap();
        match InstanceLock::acquire(&path) {
            Err(InstanceError::Taken { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Taken, got {other:?}"),
        }
        drop(first);
        let again = InstanceLock::acquire(&path).unwrap();
        assert_eq!(again.path(), path);
        drop(again);
        std::fs::remove_file(&path).unwrap();
    }
}
