//! One ccsd per queue name: an exclusive lock on `{queues.dir}/{queues.name}.lock`, held for the
//! life of the process.
//!
//! Two ccsd processes on the same lanes would both produce into the request lanes and both
//! consume the response lane, which corrupts them. The lock file also holds the owner's pid, so
//! the refusal can say who holds it. The kernel releases the lock when the process dies, however
//! it dies, so a crash never leaves a stale lock behind.
//!
//! The lock file and the pid file (`pid_file.rs`, same code) often live in a directory other
//! users can write to (`/dev/shm`). ccsd, maybe running as root, truncates and writes them, so it
//! only does so to a file that is unmistakably its own: opened without following a symbolic link
//! (`O_NOFOLLOW`), a regular file with one name (a hard link planted by another user would point
//! at a file of theirs choosing), owned by ccsd's effective uid, and with no permission bits beyond
//! the documented mode (0600 for the lock, 0644 for the pid file). Anything else refuses the start
//! with a message naming the file and what is wrong with it.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, FlockOperation, Mode, OFlags, Stat, flock};
use rustix::io::Errno;

/// Why the instance lock (or the pid file, which uses the same code) could not be taken.
#[derive(Debug)]
pub enum InstanceError {
    /// Another process of ours holds it.
    Taken {
        /// The lock file.
        path: PathBuf,
        /// The pid written by the holder, if readable.
        pid: Option<u32>,
    },
    /// The file belongs to another user, or a process of another user holds the lock on it.
    OtherUser {
        /// The lock file.
        path: PathBuf,
        /// The file's owner.
        owner: u32,
        /// The process holding the lock and its effective uid, when `/proc/locks` shows one.
        holder: Option<(u32, Option<u32>)>,
        /// Our effective uid.
        uid: u32,
    },
    /// The path names something ccsd must not write to: a symbolic link, not a regular file, a
    /// file with several hard links, or one with more permissions than documented.
    Unsafe {
        /// The lock file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
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
            InstanceError::OtherUser { path, .. } => {
                write!(f, "{}: {}", path.display(), self.other_user_reason())
            }
            InstanceError::Unsafe { path, reason } => {
                write!(f, "{}: {reason}; refusing to use it", path.display())
            }
            InstanceError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl InstanceError {
    /// For [`InstanceError::OtherUser`]: who holds or owns the file, without its path.
    pub(crate) fn other_user_reason(&self) -> String {
        let InstanceError::OtherUser {
            owner, holder, uid, ..
        } = self
        else {
            return String::new();
        };
        match holder {
            Some((pid, Some(holder_uid))) => format!(
                "locked by pid {pid}, a process of another user (uid {holder_uid}; the file belongs to uid {owner}, ccsd runs as uid {uid})"
            ),
            Some((pid, None)) => format!(
                "locked by pid {pid} (the file belongs to uid {owner}, another user; ccsd runs as uid {uid})"
            ),
            None => format!(
                "belongs to another user (uid {owner}; ccsd runs as uid {uid}); refusing to use it"
            ),
        }
    }
}

impl std::error::Error for InstanceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InstanceError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The held lock; released when dropped or when the process exits.
#[derive(Debug)]
pub(super) struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Takes the lock at `path` (mode 0600) without waiting and writes this process's pid into it.
    ///
    /// # Errors
    /// [`InstanceError::Taken`] when another process of ours holds it;
    /// [`InstanceError::OtherUser`] when the file or the lock belongs to another user;
    /// [`InstanceError::Unsafe`] when `path` is not a file ccsd may write (see the module
    /// documentation); [`InstanceError::Io`] otherwise.
    pub(super) fn acquire(path: &Path) -> Result<InstanceLock, InstanceError> {
        let file = lock_with_pid(path, 0o600)?;
        Ok(InstanceLock { _file: file })
    }

    /// The lock the process this one took over from held, handed over as its open file: the
    /// `flock` belongs to that open file, so it was never released. It still holds the old
    /// process's pid until [`claim`](InstanceLock::claim).
    pub(super) fn adopt(file: File) -> InstanceLock {
        InstanceLock { _file: file }
    }

    /// Writes this process's pid into an adopted lock file (once the old process let go).
    ///
    /// # Errors
    /// Writing failed.
    pub(super) fn claim(&mut self) -> io::Result<()> {
        rewrite_pid(&mut self._file)
    }

    /// The open lock file, to hand to a process taking over (this process keeps its own copy
    /// until it exits; the lock stays held as long as either copy is open).
    pub(super) fn file(&self) -> &File {
        &self._file
    }
}

/// Replaces the contents of `file` with this process's pid, in one write.
pub(super) fn rewrite_pid(file: &mut File) -> io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
}

/// Opens (or creates, with `mode`) the file at `path` without following a symbolic link, checks
/// that it is ccsd's own (see the module documentation), takes an exclusive `flock` on it without
/// waiting and replaces its contents with this process's pid. The lock lives as long as the
/// returned file.
///
/// # Errors
/// As for [`InstanceLock::acquire`].
pub(crate) fn lock_with_pid(path: &Path, mode: u32) -> Result<File, InstanceError> {
    let io_err = |source: io::Error| InstanceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let uid = rustix::process::geteuid().as_raw();
    // NONBLOCK and NOCTTY: whatever the path turns out to be, opening it must not hang or make
    // it our terminal; it is refused right after.
    let flags = OFlags::RDWR
        | OFlags::CREATE
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NOCTTY
        | OFlags::NONBLOCK;
    let fd = match rustix::fs::open(path, flags, Mode::from_raw_mode(mode)) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => {
            return Err(unsafe_file(path, "is a symbolic link".to_owned()));
        }
        Err(e @ (Errno::ACCESS | Errno::PERM)) => {
            // Not ours to open: say whose it is. O_NOFOLLOW passed, so lstat sees the file itself.
            return Err(match rustix::fs::lstat(path) {
                Ok(stat) if stat.st_uid != uid => other_user(path, &stat, uid),
                _ => io_err(e.into()),
            });
        }
        Err(e) => return Err(io_err(e.into())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| io_err(e.into()))?;
    check_own_file(path, &stat, mode, uid)?;
    match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => return Err(taken(path, fd, &stat, uid)),
        Err(e) => return Err(io_err(e.into())),
    }
    // Exactly the documented mode, whatever the umask took away when the file was created.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| io_err(e.into()))?;
    let mut file = File::from(fd);
    file.set_len(0).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    // One write: a reader sees the whole line or an empty file, never half a number.
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(io_err)?;
    Ok(file)
}

fn unsafe_file(path: &Path, reason: String) -> InstanceError {
    InstanceError::Unsafe {
        path: path.to_path_buf(),
        reason,
    }
}

fn other_user(path: &Path, stat: &Stat, uid: u32) -> InstanceError {
    InstanceError::OtherUser {
        path: path.to_path_buf(),
        owner: stat.st_uid,
        holder: lock_holder(stat),
        uid,
    }
}

/// Refuses anything but a regular file with one name, owned by `uid`, with no permission bits
/// beyond `mode`.
fn check_own_file(path: &Path, stat: &Stat, mode: u32, uid: u32) -> Result<(), InstanceError> {
    let file_type = FileType::from_raw_mode(stat.st_mode);
    if file_type != FileType::RegularFile {
        return Err(unsafe_file(
            path,
            format!("is not a regular file (it is a {file_type:?})"),
        ));
    }
    if stat.st_uid != uid {
        return Err(other_user(path, stat, uid));
    }
    if stat.st_nlink != 1 {
        return Err(unsafe_file(
            path,
            format!(
                "has {} hard links (ccsd's own file has exactly one)",
                stat.st_nlink
            ),
        ));
    }
    let bits = stat.st_mode & 0o7777;
    if bits & !mode != 0 {
        return Err(unsafe_file(
            path,
            format!("has mode {bits:04o}, which allows more than the documented {mode:04o}"),
        ));
    }
    Ok(())
}

/// The refusal when the lock on our own file is held: by another user's process if `/proc/locks`
/// says so, otherwise by another ccsd of ours, whose pid the file holds.
fn taken(path: &Path, fd: OwnedFd, stat: &Stat, uid: u32) -> InstanceError {
    if let Some((pid, Some(holder_uid))) = lock_holder(stat)
        && holder_uid != uid
    {
        return InstanceError::OtherUser {
            path: path.to_path_buf(),
            owner: stat.st_uid,
            holder: Some((pid, Some(holder_uid))),
            uid,
        };
    }
    let mut text = String::new();
    let pid = File::from(fd)
        .read_to_string(&mut text)
        .ok()
        .and_then(|_| text.trim().parse().ok());
    InstanceError::Taken {
        path: path.to_path_buf(),
        pid,
    }
}

/// The pid holding a `flock` on the file `stat` describes, and that process's effective uid, as
/// `/proc/locks` and `/proc/PID/status` tell (`None` where they cannot be read).
fn lock_holder(stat: &Stat) -> Option<(u32, Option<u32>)> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = holder_in_proc_locks(&locks, stat.st_dev, stat.st_ino)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok();
    let uid = status.as_deref().and_then(effective_uid);
    Some((pid, uid))
}

/// Finds the pid of the granted `FLOCK` on device `dev`, inode `ino` in the text of `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 4242 00:1a:5678 0 EOF`: major and minor in hex, inode in decimal;
/// waiters are marked `->` and skipped).
fn holder_in_proc_locks(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let wanted = format!(
        "{:02x}:{:02x}:{ino}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, file, ..] if *file == wanted => pid.parse().ok(),
            _ => None,
        }
    })
}

/// The effective uid from the text of `/proc/PID/status` (`Uid:` real, effective, saved, fs).
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(test: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ccsd-locktest-{}-{test}.lock", std::process::id()))
    }

    #[test]
    fn second_holder_is_refused_with_the_first_ones_pid_and_can_take_it_after() {
        let path = temp_path("second");
        let first = InstanceLock::acquire(&path).unwrap();
        match InstanceLock::acquire(&path) {
            Err(InstanceError::Taken { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Taken, got {other:?}"),
        }
        drop(first);
        let again = InstanceLock::acquire(&path).unwrap();
        drop(again);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_left_alone() {
        let target = temp_path("symlink-target");
        let path = temp_path("symlink");
        std::fs::write(&target, "precious\n").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = InstanceLock::acquire(&path).unwrap_err();
        assert!(matches!(err, InstanceError::Unsafe { .. }), "{err:?}");
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&target).unwrap();
    }

    #[test]
    fn a_hard_link_is_refused_and_its_other_name_left_alone() {
        let target = temp_path("hardlink-target");
        let path = temp_path("hardlink");
        std::fs::write(&target, "precious\n").unwrap();
        std::fs::hard_link(&target, &path).unwrap();
        let err = InstanceLock::acquire(&path).unwrap_err();
        assert!(err.to_string().contains("has 2 hard links"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&target).unwrap();
    }

    #[test]
    fn more_permissions_than_documented_are_refused_and_fewer_are_fixed() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_path("mode");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = InstanceLock::acquire(&path).unwrap_err();
        assert!(err.to_string().contains("has mode 0666"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        let lock = InstanceLock::acquire(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
        drop(lock);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_directory_is_refused() {
        let path = temp_path("dir");
        std::fs::create_dir(&path).unwrap();
        let err = InstanceLock::acquire(&path).unwrap_err();
        // Opening a directory read-write fails before fstat: either answer names the path.
        assert!(
            err.to_string().starts_with(&path.display().to_string()),
            "{err}"
        );
        std::fs::remove_dir(&path).unwrap();
    }

    #[test]
    fn proc_locks_lines_name_the_holder_of_a_granted_flock() {
        let locks = "1: POSIX  ADVISORY  WRITE 10 00:1a:77 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 00:1a:77 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 4343 00:1a:77 0 EOF\n";
        let dev = rustix::fs::makedev(0, 0x1a);
        assert_eq!(holder_in_proc_locks(locks, dev, 77), Some(4242));
        assert_eq!(holder_in_proc_locks(locks, dev, 78), None);
    }

    #[test]
    fn the_effective_uid_is_the_second_uid_field() {
        let status = "Name:\tx\nUid:\t1000\t65534\t1000\t1000\nGid:\t0\t0\t0\t0\n";
        assert_eq!(effective_uid(status), Some(65534));
    }
}
