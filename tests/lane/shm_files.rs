//! Shared by the lane integration tests: unique lane paths in /dev/shm whose files are removed
//! when the guard drops, also when the test panics.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use ccsd::lane::Lane;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A lane path no other test (or test process) uses; removes the lane file and its `.fifo` on
/// drop.
pub struct ShmFiles {
    path: PathBuf,
}

impl ShmFiles {
    pub fn new() -> ShmFiles {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        ShmFiles {
            path: PathBuf::from(format!("/dev/shm/ccsd-lanetest-{}-{n}", std::process::id())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ShmFiles {
    fn drop(&mut self) {
        if let Err(e) = Lane::remove_files(&self.path) {
            eprintln!("could not remove {}: {e}", self.path.display());
        }
    }
}
