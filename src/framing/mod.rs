//! Framing: finding packet boundaries in a connection's byte stream.
//!
//! Each listener has one [`Framer`], chosen by name in its settings (`listen[i].framing`) and
//! shared by every worker. A worker hands the framer the unconsumed bytes of a connection; the
//! framer says whether they start with a whole packet, need more bytes, or break the protocol (the
//! connection is then closed). Each complete packet becomes one record for the business process.
//!
//! The built-in framings (`docs/configuration.md` describes each one's limits):
//!
//! | name | framer | a packet is |
//! |---|---|---|
//! | `"length"` | [`LengthFramer`] | a length field at a fixed offset, and the bytes it counts |
//! | `"line"` | [`LineFramer`] | one line ending in `\n` |
//! | `"memcache"` | [`MemcacheFramer`] | a memcached text command, with the data block of a storage command |
//! | `"resp"` | [`RespFramer`] | a Redis RESP2 request: an array of bulk strings, or an inline command |
//! | `"http"` | [`HttpFramer`] | an HTTP/1.1 request: head, then a `Content-Length` or chunked body |
//!
//! # Writing a framer
//!
//! Implement [`Framer`]. `check` and `check_from` are on the hot path (once per read of a
//! connection, on every worker thread at once): each only looks at bytes, never allocates, never
//! logs, never panics, and scans at most linearly. The framer itself keeps no state between calls,
//! since it is shared by every connection of the listener; a connection's unconsumed bytes are
//! handed over again, from the start of the packet, after every read. The worker calls
//! [`Framer::check_from`] with the connection's [`Progress`]: a framer that searches for a
//! terminator (a line end, an empty line) records there how far it got and resumes from it, so a
//! packet arriving one byte per read still costs O(its length) in all, not O(length²). A stateless
//! framer implements `check` alone (the default `check_from` calls it), and works the same, only
//! rescanning. It must keep this contract, on which the worker relies:
//!
//! - `check(&[])` is [`FrameCheck::Incomplete`] (the worker asks again after every packet).
//! - [`FrameCheck::Complete`]`(n)`: `1 <= n <= buf.len()` and `n <= max_packet()`. Every longer
//!   buffer with the same first `n` bytes is `Complete(n)` too, and every shorter prefix of those
//!   `n` bytes is `Incomplete`: where reads happen to split the stream never changes the packets.
//! - `Incomplete`: every prefix is `Incomplete` too, and `buf.len() <= max_packet()`: a framer that
//!   has seen `max_packet` bytes without finding the end reports [`FrameError::Oversize`] instead
//!   of waiting (never buffer without bound for a terminator). Report `Oversize` as soon as a
//!   declared length, or the least length the bytes so far allow, exceeds the limit.
//! - [`FrameCheck::Invalid`]: once a prefix is invalid, every longer buffer gives the same error.
//!   [`FrameError::Oversize`] is counted as `closed_oversize`, [`FrameError::Malformed`] as
//!   `closed_protocol`.
//! - `check_from(buf, progress)`, with the `progress` an earlier `check_from` left for a shorter
//!   buffer of the same packet (or the default), answers exactly what `check(buf)` answers, however
//!   the packet's bytes were split between the calls.
//!
//! [`check_contract`] runs a framer over a byte stream and checks all of this; the fuzz targets
//! in `fuzz/` and the tests call it.
//!
//! Then give the framer a name in a [`FramerRegistry`] with a factory that builds it from a
//! listener's settings (its `max_packet` and whatever keys it reads):
//!
//! ```
//! use std::sync::Arc;
//! use ccsd::framing::{self, FrameCheck, FrameError, Framer, FramerRegistry, Progress};
//! use ccsd::settings::{ByteSize, ListenSettings};
//!
//! /// Packets end with a NUL byte, which belongs to the packet.
//! #[derive(Debug)]
//! struct NulFramer {
//!     max_packet: usize,
//! }
//!
//! impl Framer for NulFramer {
//!     fn name(&self) -> &'static str {
//!         "nul"
//!     }
//!
//!     fn check(&self, buf: &[u8]) -> FrameCheck {
//!         self.check_from(buf, &mut Progress::default())
//!     }
//!
//!     /// Searches for the NUL from where the last search of this packet stopped.
//!     fn check_from(&self, buf: &[u8], progress: &mut Progress) -> FrameCheck {
//!         // Never look past max_packet bytes: a longer packet is refused, not awaited.
//!         let window = &buf[..buf.len().min(self.max_packet)];
//!         let from = progress.scanned.min(window.len());
//!         match window[from..].iter().position(|&b| b == 0) {
//!             Some(end) => FrameCheck::Complete(from + end + 1),
//!             None if !buf.is_empty() && window.len() == self.max_packet => {
//!                 FrameCheck::Invalid(FrameError::Oversize {
//!                     declared: self.max_packet as u64 + 1,
//!                     max: self.max_packet,
//!                 })
//!             }
//!             None => {
//!                 progress.scanned = window.len();
//!                 FrameCheck::Incomplete
//!             }
//!         }
//!     }
//!
//!     fn max_packet(&self) -> usize {
//!         self.max_packet
//!     }
//! }
//!
//! let mut registry = FramerRegistry::builtin();
//! registry.register(
//!     "nul",
//!     Arc::new(|listen: &ListenSettings| {
//!         let max_packet = usize::try_from(listen.max_packet.bytes()).unwrap_or(usize::MAX);
//!         Ok(Arc::new(NulFramer { max_packet }) as Arc<dyn Framer>)
//!     }),
//! );
//! assert_eq!(registry.names(), ["http", "length", "line", "memcache", "nul", "resp"]);
//!
//! let listen = ListenSettings {
//!     framing: "nul".to_owned(),
//!     max_packet: ByteSize(8),
//!     ..ListenSettings::default()
//! };
//! let framer = registry.build(&listen)?;
//! assert_eq!(framer.check(b"ab\0cd"), FrameCheck::Complete(3));
//! assert_eq!(framer.check(b"ab"), FrameCheck::Incomplete);
//! assert!(matches!(framer.check(b"12345678"), FrameCheck::Invalid(FrameError::Oversize { .. })));
//! framing::check_contract(&*framer, b"ab\0\0cdefg\0hij").expect("keeps the contract");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! To make ccsd use it, add it to the process-wide registry with [`register`] before the settings
//! are loaded: settings validation ([`is_known`]) and [`crate::runtime::Broker::start`]
//! ([`build`]) consult that registry, which starts with the built-in framings.
//! `examples/custom_framer.rs` is a whole program doing this.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use once_cell::sync::Lazy;

use crate::settings::ListenSettings;

mod contract;
mod http;
mod length;
mod line;
mod memcache;
mod resp;
mod scan;
mod settings_entry;

pub use contract::check_contract;
// For the fuzz targets (`fuzz/`) and the corpus replay (`tests/framing/fuzz_corpus.rs`).
#[doc(hidden)]
pub use contract::check_fuzz_input;
pub use http::HttpFramer;
pub use length::LengthFramer;
pub use line::LineFramer;
pub use memcache::{MEMCACHE_MAX_LINE, MemcacheFramer};
pub use resp::{RESP_MAX_ELEMENTS, RESP_MAX_INLINE, RespFramer};

/// What a [`Framer`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameCheck {
    /// The first `n` bytes (`n >= 1`) are one whole packet.
    Complete(usize),
    /// More bytes are needed to find the end of the first packet.
    Incomplete,
    /// The bytes break the protocol; the connection should be closed.
    Invalid(FrameError),
}

/// Why bytes break the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The packet, or a part of it that has its own limit, is longer than allowed.
    Oversize {
        /// The length the bytes declare, or the least it can be when the end is not known yet
        /// (a line that has not ended within `max` bytes is at least `max + 1`); saturated at
        /// `u64::MAX`.
        declared: u64,
        /// The limit exceeded: the listener's `max_packet`, or a framing's own limit on part of a
        /// packet (a memcache command line, an HTTP request head, a RESP inline command).
        max: usize,
    },
    /// The bytes cannot be a packet, for the reason given.
    Malformed(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversize { declared, max } => write!(
                f,
                "packet of {declared} bytes exceeds the maximum of {max} bytes"
            ),
            FrameError::Malformed(reason) => write!(f, "malformed packet: {reason}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Finds packet boundaries in a connection's byte stream. One framer per listener, shared by every
/// worker; the [module documentation](self) gives the contract every implementation keeps.
pub trait Framer: Send + Sync + fmt::Debug {
    /// The framing's name, as written in `listen[i].framing`.
    fn name(&self) -> &'static str;

    /// Examines the start of `buf` (the unconsumed bytes of one connection):
    /// [`FrameCheck::Complete`]`(n)` = the first `n` bytes are one whole packet (`n >= 1`);
    /// [`FrameCheck::Incomplete`] = need more bytes; [`FrameCheck::Invalid`] = protocol error
    /// (the connection is closed). Must report [`FrameError::Oversize`] as soon as the declared
    /// or accumulated length exceeds [`Framer::max_packet`], before the rest has arrived.
    fn check(&self, buf: &[u8]) -> FrameCheck;

    /// [`Framer::check`], resumed: `progress` is what this framer left in it when it last
    /// answered [`FrameCheck::Incomplete`] for a shorter buffer holding the start of the same
    /// packet ([`Progress::default`] for a packet not examined yet), and the answer is the one
    /// `check(buf)` gives. A resumable framer goes on from where it stopped, so that a packet
    /// arriving in many reads is scanned once in all rather than once per read. After
    /// `Complete` or `Invalid` the contents of `progress` mean nothing; the worker starts the next
    /// packet from [`Progress::default`].
    ///
    /// The default ignores `progress` and calls `check`, which suits a stateless framer whose
    /// `check` costs little per call (a length field at a fixed offset). A framer that searches
    /// for a terminator should resume, or a client dripping bytes onto a large unfinished packet
    /// costs a full rescan per read.
    fn check_from(&self, buf: &[u8], progress: &mut Progress) -> FrameCheck {
        let _ = progress;
        self.check(buf)
    }

    /// The largest packet this framer accepts, in bytes.
    fn max_packet(&self) -> usize;
}

/// How far a [`Framer`] got in a connection's unfinished packet: kept by the worker between
/// reads and handed back to [`Framer::check_from`] with the same packet's bytes.
///
/// The fields are the framer's own notes (each framer decides what they mean); a framer keeps no
/// state of its own, so one framer serves every connection of its listener. A `Progress` is a
/// few words, stored in each connection and never allocated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes from the start of the packet already scanned (what was learned from them is in
    /// `notes`).
    pub scanned: usize,
    /// What the framer learned from the bytes scanned so far, in its own encoding.
    pub notes: [u64; 3],
    /// Bytes the framer asks ccsd to send the client at once, before the packet is complete:
    /// an interim response such as HTTP's `100 Continue`. The worker sends them (when the client
    /// has no request waiting for a reply, so they cannot overtake one) and clears this.
    pub interim: Option<&'static [u8]>,
}

/// Builds a framer from a listener's settings; registered under a name in a [`FramerRegistry`].
pub type FramerFactory = Arc<dyn Fn(&ListenSettings) -> io::Result<Arc<dyn Framer>> + Send + Sync>;

/// Framings by name: what `listen[i].framing` may say, and how to build each one.
///
/// # Examples
///
/// ```
/// use ccsd::framing::FramerRegistry;
/// use ccsd::settings::ListenSettings;
///
/// let registry = FramerRegistry::builtin();
/// assert!(registry.contains("resp"));
/// let listen = ListenSettings { framing: "resp".to_owned(), ..ListenSettings::default() };
/// assert_eq!(registry.build(&listen)?.name(), "resp");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct FramerRegistry {
    factories: BTreeMap<String, FramerFactory>,
}

impl fmt::Debug for FramerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramerRegistry")
            .field("names", &self.names())
            .finish()
    }
}

/// How a built-in framing is built.
type BuildFn = fn(&ListenSettings) -> io::Result<Arc<dyn Framer>>;

/// The built-in framings, sorted by name.
const BUILTIN: [(&str, BuildFn); 5] = [
    ("http", |listen| {
        Ok(Arc::new(HttpFramer::from_listen(listen)?))
    }),
    ("length", |listen| {
        Ok(Arc::new(LengthFramer::from_listen(listen)?))
    }),
    ("line", |listen| {
        Ok(Arc::new(LineFramer::from_listen(listen)?))
    }),
    ("memcache", |listen| {
        Ok(Arc::new(MemcacheFramer::from_listen(listen)?))
    }),
    ("resp", |listen| {
        Ok(Arc::new(RespFramer::from_listen(listen)?))
    }),
];

/// The process-wide registry: what settings validation and `Broker::start` consult. Locked only
/// when settings are validated and when a broker starts, never on the data path.
static PROCESS_REGISTRY: Lazy<RwLock<FramerRegistry>> =
    Lazy::new(|| RwLock::new(FramerRegistry::builtin()));

/// The process-wide registry, read-locked (a panic while it was locked cannot leave it half
/// written: `register` is one map insert).
fn process_registry() -> RwLockReadGuard<'static, FramerRegistry> {
    PROCESS_REGISTRY
        .read()
        .unwrap_or_else(PoisonError::into_inner)
}

impl FramerRegistry {
    /// A registry that knows no framing.
    pub fn empty() -> Self {
        FramerRegistry {
            factories: BTreeMap::new(),
        }
    }

    /// A registry of the built-in framings: `http`, `length`, `line`, `memcache` and `resp`.
    pub fn builtin() -> Self {
        let mut registry = FramerRegistry::empty();
        for (name, build) in BUILTIN {
            registry.register(name, Arc::new(build));
        }
        registry
    }

    /// Registers `factory` under `name`, replacing the factory registered under that name before.
    pub fn register(&mut self, name: &str, factory: FramerFactory) {
        self.factories.insert(name.to_owned(), factory);
    }

    /// Whether a framing named `name` is registered (names are case-sensitive).
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// Builds the framer `listen.framing` names, from `listen`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] naming the framing and the registered ones if it is not
    /// registered; otherwise whatever its factory returns (invalid settings for that framing).
    pub fn build(&self, listen: &ListenSettings) -> io::Result<Arc<dyn Framer>> {
        match self.factories.get(&listen.framing) {
            Some(factory) => factory(listen),
            None => Err(invalid_input(format!(
                "unknown framing {:?}, known framings: {}",
                listen.framing,
                self.names().join(", ")
            ))),
        }
    }
}

/// Adds a framing under `name` to the process-wide registry, so that settings naming it are
/// valid and [`Broker::start`](crate::runtime::Broker::start) builds it. A binary that brings its
/// own framers calls this before loading its settings. Replaces a framing of the same name.
pub fn register(name: &str, factory: FramerFactory) {
    PROCESS_REGISTRY
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .register(name, factory);
}

/// The names `listen[i].framing` accepts: the built-in framings and those added with
/// [`register`], sorted.
pub fn known_framings() -> Vec<String> {
    process_registry()
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Whether `name` is one of [`known_framings`].
pub fn is_known(name: &str) -> bool {
    process_registry().contains(name)
}

/// The framer a listener's settings ask for, by `listen.framing`, from the process-wide
/// registry (the built-in framings and those added with [`register`]).
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`] if the framing is unknown or its settings are invalid.
pub fn build(listen: &ListenSettings) -> io::Result<Arc<dyn Framer>> {
    process_registry().build(listen)
}

/// `listen.max_packet` as a `usize`.
fn max_packet_of(listen: &ListenSettings) -> io::Result<usize> {
    usize::try_from(listen.max_packet.bytes()).map_err(|_| {
        invalid_input(format!(
            "max_packet {} does not fit in memory",
            listen.max_packet
        ))
    })
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
