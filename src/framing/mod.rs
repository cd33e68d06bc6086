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
//! Implement [`Framer`]. `check` is on the hot path (once per read of a connection, on every
//! worker thread at once): it only looks at bytes, never allocates, never logs, never panics, and
//! scans at most linearly. It keeps no state between calls, since the framer is shared by every
//! connection of the listener; a connection's unconsumed bytes are handed over again, from the
//! start of the packet, after every read. It must keep this contract, on which the worker relies:
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
//!
//! [`check_contract`] runs a framer over a byte stream and checks all of this; the fuzz targets
//! in `fuzz/` and the tests call it.
//!
//! Then give the framer a name in a [`FramerRegistry`] with a factory that builds it from a
//! listener's settings (its `max_packet` and whatever keys it reads):
//!
//! ```
//! use std::sync::Arc;
//! use ccsd::framing::{self, FrameCheck, FrameError, Framer, FramerRegistry};
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
//!         // Never look past max_packet bytes: a longer packet is refused, not awaited.
//!         let window = &buf[..buf.len().min(self.max_packet)];
//!         match window.iter().position(|&b| b == 0) {
//!             Some(end) => FrameCheck::Complete(end + 1),
//!             None if !buf.is_empty() && window.len() == self.max_packet => {
//!                 FrameCheck::Invalid(FrameError::Oversize {
//!                     declared: self.max_packet as u64 + 1,
//!                     max: self.max_packet,
//!                 })
//!             }
//!             None => FrameCheck::Incomplete,
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
//! [`build`], [`is_known`] and [`known_framings`] answer for the built-in framings: they are what
//! `ccsd` itself (settings validation and [`crate::runtime::Broker::start`]) uses.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Arc, LazyLock};

use crate::settings::ListenSettings;

mod contract;
mod http;
mod length;
mod line;
mod memcache;
mod resp;
mod scan;

#[doc(hidden)]
pub use contract::{check_contract, check_fuzz_input};
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

    /// The largest packet this framer accepts, in bytes.
    fn max_packet(&self) -> usize;
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

static BUILTIN_NAMES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| BUILTIN.iter().map(|&(name, _)| name).collect());

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

/// The names `listen[i].framing` accepts: the built-in framings, sorted.
pub fn known_framings() -> &'static [&'static str] {
    &BUILTIN_NAMES
}

/// Whether `name` is one of [`known_framings`].
pub fn is_known(name: &str) -> bool {
    known_framings().contains(&name)
}

/// The built-in framer a listener's settings ask for, by `listen.framing`:
/// [`FramerRegistry::builtin`]`().build(listen)`.
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`] if the framing is unknown or its settings are invalid.
pub fn build(listen: &ListenSettings) -> io::Result<Arc<dyn Framer>> {
    FramerRegistry::builtin().build(listen)
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
