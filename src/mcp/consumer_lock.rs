//! One MCP per set of lanes: an exclusive `flock` on `{queues.dir}/{queues.name}.mcp.lock`, taken
//! before MCP attaches to any lane and held for as long as it consumes them.
//!
//! A lane has exactly one consumer: two MCPs reading the same request lanes would each take some
//! requests and both write into the one response lane, which corrupts it. The lock file holds the
//! holder's pid, so a second MCP can say who is in its way. The kernel releases the lock when the
//! holder dies, however it dies. `docs/protocol.md` ("One MCP at a time") gives the steps for an
//! MCP written in C; ccsd reads the pid in this file to tell a legitimate new MCP from a second
//! one ([`holder_pid`]).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::instance::{InstanceError, lock_with_pid};
use crate::settings::Settings;

use super::McpError;

/// The MCP lock file of the lanes `settings` name: `{queues.dir}/{queues.name}.mcp.lock`.
pub fn lock_path(settings: &Settings) -> PathBuf {
    settings
        .queues
        .dir
        .join(format!("{}.mcp.lock", settings.queues.name))
}

/// The pid the MCP that holds (or last held) the lock at `path` wrote into it, if readable.
pub fn holder_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The held lock; released when dropped or when the process exits.
#[derive(Debug)]
pub(super) struct ConsumerLock {
    _file: File,
}

impl ConsumerLock {
    /// Takes the lock at `path` without waiting and writes this process's pid into it.
    ///
    /// # Errors
    /// [`McpError::Busy`] when another process holds it; [`McpError::Lock`] when the file cannot
    /// be opened, locked or written.
    pub(super) fn acquire(path: &Path) -> Result<ConsumerLock, McpError> {
        match lock_with_pid(path, 0o600) {
            Ok(file) => Ok(ConsumerLock { _file: file }),
            Err(InstanceError::Taken { path, pid }) => Err(McpError::Busy { lock: path, pid }),
            Err(e) => Err(McpError::Lock(e)),
        }
    }
}
