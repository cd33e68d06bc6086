//! `libccsd_mcp`: ccsd's MCP endpoint ([`ccsd::mcp::McpEndpoint`]) behind a C ABI, for MCPs
//! written in C, C++ or any language that calls C (the Python module uses it through ctypes).
//!
//! `include/ccsd_mcp.h` declares every function and type here, with the rules a C caller must
//! follow (who owns what, how long a received payload stays valid, which thread may call what);
//! `docs/mcp.md` shows how to build against the library. Every function checks its pointers for
//! null, catches any panic before it reaches C (it becomes [`CCSD_MCP_E_INTERNAL`]), and reports
//! failures as a negative code plus a message ([`ccsd_mcp_last_error`]).

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod error;
mod record;

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use ccsd::flow::FlowId;
use ccsd::mcp::service::REPLY_CHUNK;
use ccsd::mcp::{Delivery, McpEndpoint, McpError, Message};
use ccsd::record::{CloseMode, Kind, RecordHeader, Transport};
use ccsd::settings::Settings;
use rustix::event::epoll;

pub use error::*;
pub use record::CcsdMcpRecord;

/// `CCSD_MCP_AT_MOST_ONCE`: a request taken is released at once (see [`Delivery`]).
pub const CCSD_MCP_AT_MOST_ONCE: c_int = 0;
/// `CCSD_MCP_AT_LEAST_ONCE`: a request is released once its replies are published.
pub const CCSD_MCP_AT_LEAST_ONCE: c_int = 1;
/// `CCSD_MCP_CLOSE_AFTER_FLUSH`: close once the replies queued before are written.
pub const CCSD_MCP_CLOSE_AFTER_FLUSH: c_int = 0;
/// `CCSD_MCP_CLOSE_FORCE`: close now, dropping unwritten replies.
pub const CCSD_MCP_CLOSE_FORCE: c_int = 1;

/// An attached endpoint: the opaque `ccsd_mcp` of the header.
#[derive(Debug)]
pub struct CcsdMcp {
    endpoint: McpEndpoint,
    /// The last record received; a `ccsd_mcp_record`'s payload points into it.
    msg: Message,
    /// The epoll descriptor over every wake-up FIFO, made at the first `ccsd_mcp_wait_fd`.
    wait_fd: Option<OwnedFd>,
    /// Wake-up FIFOs in `wait_fd` (request lanes added by a ccsd restart join later).
    watched: usize,
    /// `ccsd_mcp_prepare_wait` announced a sleep that no receive has ended yet.
    waiting: bool,
}

/// Runs `f`, turning a panic into [`CCSD_MCP_E_INTERNAL`] so that no unwind crosses into C.
fn guard(f: impl FnOnce() -> Result<c_int, CallError>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => e.report(),
        Err(_) => {
            CallError::new(CCSD_MCP_E_INTERNAL, "internal error (a bug in libccsd_mcp)").report()
        }
    }
}

/// `timeout_ms` as the library reads it: negative waits forever.
fn timeout(timeout_ms: c_int) -> Option<Duration> {
    u64::try_from(timeout_ms).ok().map(Duration::from_millis)
}

/// A C string argument as UTF-8.
///
/// # Safety
/// `s`, when not null, points to a NUL-terminated string that stays valid during the call.
unsafe fn c_str<'a>(s: *const c_char, what: &'static str) -> Result<&'a str, CallError> {
    if s.is_null() {
        return Err(CallError::null(what));
    }
    // SAFETY: not null, and the caller promises a NUL-terminated string valid for the call.
    let s = unsafe { CStr::from_ptr(s) };
    s.to_str()
        .map_err(|_| CallError::new(CCSD_MCP_E_INVALID, format!("{what} is not UTF-8")))
}

/// The endpoint behind a handle.
///
/// # Safety
/// `mcp`, when not null, is a handle from an attach function not yet detached, used by no other
/// thread during the call.
unsafe fn handle<'a>(mcp: *mut CcsdMcp) -> Result<&'a mut CcsdMcp, CallError> {
    // SAFETY: the caller promises a live handle used by this thread alone (header rules).
    unsafe { mcp.as_mut() }.ok_or_else(|| CallError::null("mcp"))
}

/// Attaches, retrying while the lanes are not ready and `wait` allows.
fn attach_until(
    wait: Option<Duration>,
    mut attach: impl FnMut() -> Result<McpEndpoint, McpError>,
) -> Result<McpEndpoint, CallError> {
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        match attach() {
            Err(e) if e.is_not_ready() && deadline.is_none_or(|d| Instant::now() < d) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.map_err(CallError::from),
        }
    }
}

/// Stores a new handle in `*out`.
///
/// # Safety
/// `out` is not null and writable.
unsafe fn hand_out(out: *mut *mut CcsdMcp, endpoint: McpEndpoint) -> c_int {
    let mcp = Box::new(CcsdMcp {
        endpoint,
        msg: Message::new(),
        wait_fd: None,
        watched: 0,
        waiting: false,
    });
    // SAFETY: the caller checked `out` is not null; C owns the box until ccsd_mcp_detach.
    unsafe { *out = Box::into_raw(mcp) };
    CCSD_MCP_OK
}

/// `int ccsd_mcp_attach(const char *settings_file, int timeout_ms, ccsd_mcp **out)`.
///
/// # Safety
/// As declared in the header: `settings_file` null or a C string, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_attach(
    settings_file: *const c_char,
    timeout_ms: c_int,
    out: *mut *mut CcsdMcp,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(CallError::null("out"));
        }
        let path = if settings_file.is_null() {
            None
        } else {
            // SAFETY: not null; the header asks for a NUL-terminated string.
            Some(Path::new(unsafe { c_str(settings_file, "settings_file") }?))
        };
        let settings = Settings::load(path)
            .map_err(|e| CallError::new(CCSD_MCP_E_SETTINGS, format!("invalid settings:\n{e}")))?;
        let mut endpoint = attach_until(timeout(timeout_ms), || McpEndpoint::attach(&settings))?;
        endpoint.set_idle_spin(settings.broker.idle_spin);
        // SAFETY: `out` checked above.
        Ok(unsafe { hand_out(out, endpoint) })
    })
}

/// `int ccsd_mcp_attach_dir(const char *dir, const char *name, int timeout_ms, ccsd_mcp **out)`.
///
/// # Safety
/// As declared in the header: `dir` and `name` C strings, `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_attach_dir(
    dir: *const c_char,
    name: *const c_char,
    timeout_ms: c_int,
    out: *mut *mut CcsdMcp,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(CallError::null("out"));
        }
        // SAFETY: the header asks for NUL-terminated strings; c_str checks for null.
        let (dir, name) = unsafe { (c_str(dir, "dir")?, c_str(name, "name")?) };
        if name.is_empty() || name.contains('/') {
            return Err(CallError::new(
                CCSD_MCP_E_INVALID,
                "name must be a queue name (queues.name), not a path",
            ));
        }
        let endpoint = attach_until(timeout(timeout_ms), || {
            McpEndpoint::attach_at(Path::new(dir), name, None)
        })?;
        // SAFETY: `out` checked above.
        Ok(unsafe { hand_out(out, endpoint) })
    })
}

/// `void ccsd_mcp_detach(ccsd_mcp *mcp)`.
///
/// # Safety
/// `mcp` null or a live handle, not used again after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_detach(mcp: *mut CcsdMcp) {
    guard(|| {
        if mcp.is_null() {
            return Ok(CCSD_MCP_OK);
        }
        // SAFETY: a handle from hand_out (Box::into_raw), given back exactly once.
        let mut mcp = unsafe { Box::from_raw(mcp) };
        // Replies queued so far are published; a request being answered stays unreleased.
        mcp.endpoint.flush()?;
        Ok(CCSD_MCP_OK)
    });
}

/// `int ccsd_mcp_recv(ccsd_mcp *mcp, ccsd_mcp_record *rec, int timeout_ms)`.
///
/// # Safety
/// `mcp` a live handle, `rec` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_recv(
    mcp: *mut CcsdMcp,
    rec: *mut CcsdMcpRecord,
    timeout_ms: c_int,
) -> c_int {
    guard(|| {
        // SAFETY: header rules: a live handle, this thread only.
        let mcp = unsafe { handle(mcp) }?;
        if rec.is_null() {
            return Err(CallError::null("rec"));
        }
        if mcp.waiting {
            mcp.waiting = false;
            mcp.endpoint.finish_wait()?;
        }
        // The previous request's replies are queued: publish them unless more requests wait
        // (then they go out with the next batch, at most 16 records later).
        if !mcp.endpoint.has_pending_requests() {
            mcp.endpoint.flush()?;
        }
        let wait = timeout(timeout_ms);
        let out = if mcp.endpoint.delivery() == Delivery::AtLeastOnce {
            // The request stays in the lane until it is answered: hand C its payload there.
            let held = match wait {
                Some(Duration::ZERO) => mcp.endpoint.try_recv_held(),
                wait => mcp.endpoint.recv_held(wait)?,
            };
            held.as_ref().map(CcsdMcpRecord::from_held)
        } else {
            let got = match wait {
                Some(Duration::ZERO) => mcp.endpoint.try_recv(&mut mcp.msg),
                wait => mcp.endpoint.recv(&mut mcp.msg, wait)?,
            };
            got.then(|| CcsdMcpRecord::from_message(&mcp.msg))
        };
        let Some(out) = out else {
            mcp.endpoint.flush()?;
            return Ok(0);
        };
        // SAFETY: `rec` checked for null; the header asks for a writable ccsd_mcp_record.
        unsafe { rec.write(out) };
        Ok(1)
    })
}

/// Queues `payload` as records built by `header_for(len)`, in chunks of at most `chunk` bytes,
/// each waiting for room in the response lane.
fn queue_chunks(
    endpoint: &mut McpEndpoint,
    payload: &[u8],
    chunk: usize,
    header_for: impl Fn(u32) -> RecordHeader,
) -> Result<(), McpError> {
    for part in payload.chunks(chunk.max(1)) {
        let header = header_for(part.len() as u32);
        endpoint.when_room(|ep| ep.send(&header, part))?;
    }
    Ok(())
}

/// Borrows `len` bytes at `data` (any pointer when `len` is 0).
///
/// # Safety
/// `data` points to `len` readable bytes when `len` > 0, valid during the call.
unsafe fn c_bytes<'a>(data: *const c_void, len: usize) -> Result<&'a [u8], CallError> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(CallError::null("data"));
    }
    // SAFETY: not null, and the caller promises `len` readable bytes for the call.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// `int ccsd_mcp_reply(ccsd_mcp *mcp, const ccsd_mcp_record *req, const void *data, size_t len)`.
///
/// # Safety
/// `mcp` a live handle, `req` a readable record, `data` `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_reply(
    mcp: *mut CcsdMcp,
    req: *const CcsdMcpRecord,
    data: *const c_void,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: header rules for each pointer; every one is checked for null.
        let (mcp, req, payload) = unsafe {
            (
                handle(mcp)?,
                req.as_ref().ok_or_else(|| CallError::null("req"))?,
                c_bytes(data, len)?,
            )
        };
        let request = req.header_of_kind(Kind::Data)?;
        // A TCP reply may be cut: ccsd writes the records back to back. A datagram may not.
        let chunk = if request.transport == Transport::Udp {
            payload.len()
        } else {
            REPLY_CHUNK
        };
        if payload.is_empty() {
            return Ok(CCSD_MCP_OK);
        }
        queue_chunks(&mut mcp.endpoint, payload, chunk, |n| {
            RecordHeader::reply_to(&request, Kind::Data, n)
        })?;
        Ok(CCSD_MCP_OK)
    })
}

/// `int ccsd_mcp_close(ccsd_mcp *mcp, uint64_t flow, int mode)`.
///
/// # Safety
/// `mcp` a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_close(mcp: *mut CcsdMcp, flow: u64, mode: c_int) -> c_int {
    guard(|| {
        // SAFETY: header rules: a live handle, this thread only.
        let mcp = unsafe { handle(mcp) }?;
        let mode = match mode {
            CCSD_MCP_CLOSE_AFTER_FLUSH => CloseMode::AfterFlush,
            CCSD_MCP_CLOSE_FORCE => CloseMode::Force,
            other => {
                return Err(CallError::new(
                    CCSD_MCP_E_INVALID,
                    format!(
                        "close mode {other} is neither CCSD_MCP_CLOSE_AFTER_FLUSH nor CCSD_MCP_CLOSE_FORCE"
                    ),
                ));
            }
        };
        mcp.endpoint.when_room(|ep| ep.close(FlowId(flow), mode))?;
        Ok(CCSD_MCP_OK)
    })
}

/// `int ccsd_mcp_send(ccsd_mcp *mcp, const ccsd_mcp_record *rec)`.
///
/// # Safety
/// `mcp` a live handle, `rec` a readable record whose payload is `payload_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_send(mcp: *mut CcsdMcp, rec: *const CcsdMcpRecord) -> c_int {
    guard(|| {
        // SAFETY: header rules for each pointer; every one is checked for null.
        let (mcp, rec) = unsafe {
            (
                handle(mcp)?,
                rec.as_ref().ok_or_else(|| CallError::null("rec"))?,
            )
        };
        let header = rec.own_header()?;
        // SAFETY: the header asks for payload_len readable bytes at payload.
        let payload = unsafe { c_bytes(rec.payload.cast(), rec.payload_len as usize) }?;
        let header = RecordHeader {
            payload_len: rec.payload_len,
            ..header
        };
        mcp.endpoint.when_room(|ep| ep.send(&header, payload))?;
        Ok(CCSD_MCP_OK)
    })
}

/// `int ccsd_mcp_flush(ccsd_mcp *mcp)`.
///
/// # Safety
/// `mcp` a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_flush(mcp: *mut CcsdMcp) -> c_int {
    guard(|| {
        // SAFETY: header rules: a live handle, this thread only.
        unsafe { handle(mcp) }?.endpoint.flush()?;
        Ok(CCSD_MCP_OK)
    })
}

/// `int ccsd_mcp_commit(ccsd_mcp *mcp)`.
///
/// # Safety
/// `mcp` a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_commit(mcp: *mut CcsdMcp) -> c_int {
    guard(|| {
        // SAFETY: header rules: a live handle, this thread only.
        unsafe { handle(mcp) }?.endpoint.commit()?;
        Ok(CCSD_MCP_OK)
    })
}

/// `int ccsd_mcp_set_delivery(ccsd_mcp *mcp, int delivery)`.
///
/// # Safety
/// `mcp` a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_set_delivery(mcp: *mut CcsdMcp, delivery: c_int) -> c_int {
    guard(|| {
        // SAFETY: header rules: a live handle, this thread only.
        let mcp = unsafe { handle(mcp) }?;
        let delivery = match delivery {
            CCSD_MCP_AT_MOST_ONCE => Delivery::AtMostOnce,
            CCSD_MCP_AT_LEAST_ONCE => Delivery::AtLeastOnce,
            other => {
                return Err(CallError::new(
                    CCSD_MCP_E_INVALID,
                    format!(
                        "delivery {other} is neither CCSD_MCP_AT_MOST_ONCE nor CCSD_MCP_AT_LEAST_ONCE"
                    ),
                ));
            }
        };
        mcp.endpoint.set_delivery(delivery);
        Ok(CCSD_MCP_OK)
    })
}

/// `int ccsd_mcp_wait_fd(ccsd_mcp *mcp)`.
///
/// # Safety
/// `mcp` a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_wait_fd(mcp: *mut CcsdMcp) -> c_int {
    guard(|| {
        // SAFETY: header rules: a live handle, this thread only.
        let mcp = unsafe { handle(mcp) }?;
        if mcp.wait_fd.is_none() {
            let epfd = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(io("epoll_create"))?;
            mcp.wait_fd = Some(epfd);
        }
        mcp.watch_new_lanes()?;
        Ok(mcp.wait_fd.as_ref().map_or(-1, |fd| fd.as_fd().as_raw_fd()))
    })
}

/// A failed system call of the wait descriptor.
fn io(op: &'static str) -> impl Fn(rustix::io::Errno) -> CallError {
    move |e| CallError::new(CCSD_MCP_E_IO, format!("wait descriptor: {op}: {e}"))
}

impl CcsdMcp {
    /// Adds the wake-up FIFOs of request lanes not in the wait descriptor yet (all of them at
    /// first; later the lanes a ccsd restarted with more workers created).
    fn watch_new_lanes(&mut self) -> Result<(), CallError> {
        let Some(epfd) = &self.wait_fd else {
            return Ok(());
        };
        for (i, fd) in self.endpoint.wake_fds().enumerate().skip(self.watched) {
            let data = epoll::EventData::new_u64(i as u64);
            epoll::add(epfd, fd, data, epoll::EventFlags::IN).map_err(io("epoll_ctl"))?;
            self.watched = i + 1;
        }
        Ok(())
    }
}

/// `int ccsd_mcp_prepare_wait(ccsd_mcp *mcp)`.
///
/// # Safety
/// `mcp` a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_prepare_wait(mcp: *mut CcsdMcp) -> c_int {
    guard(|| {
        // SAFETY: header rules: a live handle, this thread only.
        let mcp = unsafe { handle(mcp) }?;
        if mcp.waiting {
            mcp.endpoint.finish_wait()?;
        }
        mcp.waiting = mcp.endpoint.prepare_wait()?;
        // prepare_wait may have attached new request lanes: a wake-up byte their producer
        // writes from now on stays in the FIFO until the caller polls.
        mcp.watch_new_lanes()?;
        Ok(c_int::from(mcp.waiting))
    })
}

/// `unsigned ccsd_mcp_request_lanes(const ccsd_mcp *mcp)`: 0 for a null handle.
///
/// # Safety
/// `mcp` null or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_request_lanes(mcp: *const CcsdMcp) -> c_uint {
    // SAFETY: header rules: null or a live handle not written by another thread meanwhile.
    let mcp = unsafe { mcp.as_ref() };
    mcp.map_or(0, |m| m.endpoint.request_lanes() as c_uint)
}

/// `uint64_t ccsd_mcp_epoch(const ccsd_mcp *mcp)`: 0 for a null handle.
///
/// # Safety
/// `mcp` null or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ccsd_mcp_epoch(mcp: *const CcsdMcp) -> u64 {
    // SAFETY: header rules: null or a live handle not written by another thread meanwhile.
    let mcp = unsafe { mcp.as_ref() };
    mcp.map_or(0, |m| m.endpoint.epoch())
}
