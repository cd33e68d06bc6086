//! Error codes and the per-thread last error message: how a failure reaches C.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};

use ccsd::mcp::McpError;

/// Success.
pub const CCSD_MCP_OK: c_int = 0;
/// A null pointer or an argument out of range.
pub const CCSD_MCP_E_INVALID: c_int = -1;
/// The lanes are not there (yet): ccsd has not created them within the timeout.
pub const CCSD_MCP_E_NOT_READY: c_int = -2;
/// Another MCP consumes these lanes (it holds `{name}.mcp.lock`).
pub const CCSD_MCP_E_BUSY: c_int = -3;
/// A lane or the MCP lock file exists but cannot be used (version, capacity, owner, mode).
pub const CCSD_MCP_E_LANE: c_int = -4;
/// A record larger than the response lane can ever carry.
pub const CCSD_MCP_E_TOO_LARGE: c_int = -5;
/// A system call failed (waiting, waking ccsd, the lock file).
pub const CCSD_MCP_E_IO: c_int = -6;
/// The settings file could not be read or is invalid.
pub const CCSD_MCP_E_SETTINGS: c_int = -7;
/// A bug inside the library (a caught panic); the handle should be detached.
pub const CCSD_MCP_E_INTERNAL: c_int = -8;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A failed call: its code and message.
#[derive(Debug)]
pub(crate) struct CallError {
    code: c_int,
    message: String,
}

impl CallError {
    pub(crate) fn new(code: c_int, message: impl Into<String>) -> CallError {
        CallError {
            code,
            message: message.into(),
        }
    }

    /// A null pointer where `what` was needed.
    pub(crate) fn null(what: &str) -> CallError {
        CallError::new(CCSD_MCP_E_INVALID, format!("{what} is a null pointer"))
    }

    /// Stores the message as this thread's last error and returns the code.
    pub(crate) fn report(self) -> c_int {
        // An interior NUL cannot come from our messages, but must not lose the message either.
        let text = CString::new(self.message.replace('\0', " ")).unwrap_or_default();
        // try_with: a call from a thread being torn down must not panic outside catch_unwind.
        let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = text);
        self.code
    }
}

impl From<McpError> for CallError {
    fn from(e: McpError) -> CallError {
        let code = match &e {
            _ if e.is_not_ready() => CCSD_MCP_E_NOT_READY,
            McpError::Busy { .. } => CCSD_MCP_E_BUSY,
            McpError::Lane(_) | McpError::UnsafeLock { .. } => CCSD_MCP_E_LANE,
            McpError::TooLarge(_) => CCSD_MCP_E_TOO_LARGE,
            _ => CCSD_MCP_E_IO,
        };
        CallError::new(code, e.to_string())
    }
}

/// `const char *ccsd_mcp_last_error(void)`: the message of the last call that failed on this
/// thread ("" before any); valid until the next failing call on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn ccsd_mcp_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|last| last.borrow().as_ptr())
        .unwrap_or(c"thread is exiting".as_ptr())
}

/// `const char *ccsd_mcp_strerror(int code)`: a static description of a code.
#[unsafe(no_mangle)]
pub extern "C" fn ccsd_mcp_strerror(code: c_int) -> *const c_char {
    let text = match code {
        CCSD_MCP_OK => c"success",
        CCSD_MCP_E_INVALID => c"invalid argument",
        CCSD_MCP_E_NOT_READY => c"ccsd has not created the lanes",
        CCSD_MCP_E_BUSY => c"another MCP consumes these lanes",
        CCSD_MCP_E_LANE => c"a lane or the MCP lock cannot be used",
        CCSD_MCP_E_TOO_LARGE => c"record too large for the response lane",
        CCSD_MCP_E_IO => c"system call failed",
        CCSD_MCP_E_SETTINGS => c"invalid settings",
        CCSD_MCP_E_INTERNAL => c"internal error in libccsd_mcp",
        _ => c"unknown error code",
    };
    text.as_ptr()
}
