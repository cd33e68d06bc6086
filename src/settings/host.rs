//! What `--check-config` checks on the machine it runs on, beyond [`Settings::validate`]: the
//! files ccsd will write and the room its lanes need. Kept out of validation so that settings
//! stay valid on a machine other than the one they are for (and a `reload` does not depend on
//! them); a start meets the same problems when it opens the files and creates the lanes.

use std::fs;
use std::path::Path;

use super::Settings;
use crate::lane::Lane;

/// Adds a problem for each of: `queues.dir` without room for the lanes; a directory of
/// `broker.pid_file`, `log.file` or `stats.file` that does not exist, or where ccsd's effective
/// user cannot write what it writes.
pub(super) fn check_files(settings: &Settings, problems: &mut Vec<String>) {
    let mut lanes: Vec<_> = (0..settings.request_lane_count())
        .map(|lane| settings.request_lane_path(lane))
        .collect();
    lanes.push(settings.response_lane_path());
    let capacity = settings.queues.capacity.bytes();
    if let Err(e) = Lane::check_space(&settings.queues.dir, &lanes, capacity) {
        problems.push(format!("queues.dir: {e}"));
    }
    if let Some(pid_file) = &settings.broker.pid_file {
        check_output_file("broker.pid_file", pid_file, Written::InPlace, problems);
    }
    if let Some(file) = &settings.log.file {
        check_output_file("log.file", file, Written::InPlace, problems);
    }
    if let Some(file) = &settings.stats.file {
        check_output_file("stats.file", file, Written::ByRename, problems);
    }
}

/// How ccsd writes a file it is given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Opened and written in place (`log.file`, `broker.pid_file`).
    InPlace,
    /// Written beside and renamed over it (`stats.file`).
    ByRename,
}

/// A file ccsd writes: its directory must exist, and what ccsd's effective user writes must be
/// writable: the file, or the directory while the file does not exist or when it is replaced by a
/// rename.
fn check_output_file(key: &str, path: &Path, written: Written, problems: &mut Vec<String>) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            problems.push(format!("{key}: {} is not a directory", dir.display()));
            return;
        }
        Err(err) => {
            problems.push(format!("{key}: directory {}: {err}", dir.display()));
            return;
        }
    }
    let target = match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            problems.push(format!("{key}: {} is a directory", path.display()));
            return;
        }
        Ok(_) if written == Written::InPlace => path,
        _ => dir,
    };
    let writable = rustix::fs::accessat(
        rustix::fs::CWD,
        target,
        rustix::fs::Access::WRITE_OK,
        rustix::fs::AtFlags::EACCESS,
    );
    if let Err(err) = writable {
        problems.push(format!(
            "{key}: {} is not writable: {}",
            target.display(),
            std::io::Error::from(err)
        ));
    }
}
