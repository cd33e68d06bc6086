//! The file of a Unix socket ccsd binds (the admin Unix socket, the handover socket): a stale
//! one, left by a process that died, is removed before binding; a live one, or a file of another
//! kind, never is.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use rustix::process::Uid;

/// Removes the socket file at `path` if nobody listens on it (a connection of type `kind` is
/// refused) and, when `owner` is given, it belongs to that uid. Nothing there is fine; a live
/// socket (`AddrInUse`), another user's (`PermissionDenied`) or a file that is not a socket
/// (`AlreadyExists`) is an error and is left alone.
pub(crate) fn remove_if_stale(path: &Path, kind: SocketType, owner: Option<Uid>) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "not a socket; remove it or choose another path",
        ));
    }
    if owner.is_some_and(|uid| meta.uid() != uid.as_raw()) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("a socket of uid {}, not ours; left alone", meta.uid()),
        ));
    }
    let probe = rustix::net::socket_with(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC, None)?;
    match rustix::net::connect(&probe, &SocketAddrUnix::new(path)?) {
        Err(Errno::CONNREFUSED) => std::fs::remove_file(path),
        // Connected, or a listener of another socket type, or one whose queue is full.
        Ok(()) | Err(Errno::PROTOTYPE | Errno::AGAIN) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "a running process (another ccsd?) listens on it",
        )),
        Err(e) => Err(e.into()),
    }
}
