//! The pid file (`broker.pid_file`): this process's pid, for init scripts and monitoring.
//!
//! It is written at start, right after the instance lock is taken (`instance.rs`), and removed
//! when the broker ends (a clean stop, or a failure the process reports). ccsd keeps an exclusive
//! `flock` on it while it runs, so a file left behind by a process that died (SIGKILL, a crash) is
//! told apart from one in use without trusting the pid inside, which the system may have given to
//! another process since: an unlocked file is stale and is replaced; a locked one belongs to a
//! running ccsd (one with other queues but the same `pid_file`) and the start is refused.
//!
//! It is opened with the instance lock's checks: never through a symbolic link, only a regular
//! file with one name, owned by ccsd's uid, mode 0644 at most.

use std::fmt;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use log::warn;

use super::instance::{InstanceError, lock_with_pid, rewrite_pid};

/// Why the pid file could not be written.
#[derive(Debug)]
pub struct PidFileError(InstanceError);

impl fmt::Display for PidFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            InstanceError::Taken { path, pid } => {
                write!(f, "broker.pid_file: {} is in use by ", path.display())?;
                match pid {
                    Some(pid) => write!(f, "another running ccsd (pid {pid})"),
                    None => write!(f, "another running ccsd"),
                }
            }
            other => write!(f, "broker.pid_file: {other}"),
        }
    }
}

impl std::error::Error for PidFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// A written pid file, locked while it lives and removed when dropped.
#[derive(Debug)]
pub(super) struct PidFile {
    file: File,
    path: PathBuf,
    /// Not this process's to remove: a process that took over adopted it, or this one adopted
    /// it and has not claimed it yet.
    handed_over: bool,
}

impl PidFile {
    /// Writes this process's pid to `path` (mode 0644), replacing a stale file.
    ///
    /// # Errors
    /// The file is locked by another live process, is not a file ccsd may write (a symbolic
    /// link, not a regular file, several hard links, another owner, more than mode 0644; see
    /// `instance.rs`), or cannot be created or written.
    pub(super) fn write(path: &Path) -> Result<PidFile, PidFileError> {
        let file = lock_with_pid(path, 0o644).map_err(PidFileError)?;
        Ok(PidFile {
            file,
            path: path.to_path_buf(),
            handed_over: false,
        })
    }

    /// The pid file the process this one took over from held (`file`, handed over open and
    /// locked), if `path` still names it; it holds the old pid until
    /// [`claim`](PidFile::claim), and is not removed on drop before that (a takeover that
    /// fails leaves it to the old process). `None` when `path` names another file (the setting changed):
    /// write a new one.
    pub(super) fn adopt(file: File, path: &Path) -> Option<PidFile> {
        let same = match (fs::symlink_metadata(path), file.metadata()) {
            (Ok(there), Ok(ours)) => there.dev() == ours.dev() && there.ino() == ours.ino(),
            _ => false,
        };
        // The old process's until claimed: if this one gives up before, the file stays.
        same.then(|| PidFile {
            file,
            path: path.to_path_buf(),
            handed_over: true,
        })
    }

    /// Writes this process's pid into an adopted pid file (once the old process let go).
    ///
    /// # Errors
    /// Writing failed.
    pub(super) fn claim(&mut self) -> Result<(), PidFileError> {
        self.handed_over = false;
        rewrite_pid(&mut self.file).map_err(|source| {
            PidFileError(InstanceError::Io {
                path: self.path.clone(),
                source,
            })
        })
    }

    /// The open, locked file, to hand to a process taking over.
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// A process took over and adopted this file: it is not removed when this one ends.
    pub(super) fn handed_over(&mut self) {
        self.handed_over = true;
    }

    /// Whether `path` still names the file this process wrote (not one put there since).
    fn still_ours(&self) -> bool {
        match (fs::symlink_metadata(&self.path), self.file.metadata()) {
            (Ok(there), Ok(ours)) => there.dev() == ours.dev() && there.ino() == ours.ino(),
            _ => false,
        }
    }
}

impl Drop for PidFile {
    /// Removes the file, unless someone replaced or removed it meanwhile. The lock goes with the
    /// open file, after the removal, so no other process can take over a file about to vanish.
    fn drop(&mut self) {
        if !self.handed_over && self.still_ours() {
            if let Err(e) = fs::remove_file(&self.path) {
                warn!("cannot remove the pid file {}: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(test: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ccsd-pidtest-{}-{test}.pid", std::process::id()))
    }

    #[test]
    fn holds_our_pid_and_is_removed_when_dropped() {
        let path = temp_path("drop");
        let pid_file = PidFile::write(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(pid_file);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_put_in_its_place_is_left_alone() {
        let path = temp_path("replaced");
        let pid_file = PidFile::write(&path).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, "1\n").unwrap();
        drop(pid_file);
        assert_eq!(fs::read_to_string(&path).unwrap(), "1\n");
        fs::remove_file(&path).unwrap();
    }
}
