//! Why bytes are not a handover message: [`WireError`].

use std::fmt;

use super::MAJOR_VERSION;

/// Why bytes are not a handover message (or connection records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The input does not start with `CCSH` (or, for connection records, `CCSO`).
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A major version this reader does not know.
    UnsupportedVersion {
        /// The major version found.
        major: u16,
    },
    /// A message kind this reader does not know.
    UnknownKind {
        /// The kind found.
        kind: u16,
    },
    /// A message longer than the channel carries.
    Oversized {
        /// Its length.
        len: usize,
        /// The most a message holds.
        max: usize,
    },
    /// The input ends inside `what`.
    Truncated {
        /// The header, a field's header, the named field's value, a record.
        what: &'static str,
    },
    /// A field this reader does not know and may not skip.
    UnknownMandatoryField {
        /// The message or group it is in.
        within: &'static str,
        /// Its tag.
        tag: u16,
    },
    /// A field that may appear once appears twice.
    DuplicateField {
        /// Its name.
        field: &'static str,
    },
    /// A mandatory field is absent.
    MissingField {
        /// Its name.
        field: &'static str,
    },
    /// A field's length is not one its type allows.
    WrongLength {
        /// Its name.
        field: &'static str,
        /// The length found.
        len: u64,
    },
    /// A field's value is out of range.
    OutOfRange {
        /// Its name.
        field: &'static str,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// More connection records than the reader accepts.
    TooMany {
        /// The count declared.
        count: u64,
        /// The most accepted.
        max: usize,
    },
    /// Bytes follow the connection records' declared end.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("handover message: ")?;
        match self {
            WireError::BadMagic { found } => write!(f, "bad magic {found:02x?}"),
            WireError::UnsupportedVersion { major } => write!(
                f,
                "protocol version {major} (this ccsd speaks version {MAJOR_VERSION})"
            ),
            WireError::UnknownKind { kind } => write!(f, "unknown message kind {kind}"),
            WireError::Oversized { len, max } => write!(f, "{len} bytes (at most {max})"),
            WireError::Truncated { what } => write!(f, "the input ends inside {what}"),
            WireError::UnknownMandatoryField { within, tag } => write!(
                f,
                "{within}: unknown mandatory field {tag} (from a newer ccsd?)"
            ),
            WireError::DuplicateField { field } => write!(f, "{field} appears twice"),
            WireError::MissingField { field } => write!(f, "{field} is missing"),
            WireError::WrongLength { field, len } => write!(f, "{field}: wrong length {len}"),
            WireError::OutOfRange { field, reason } => write!(f, "{field}: {reason}"),
            WireError::TooMany { count, max } => {
                write!(f, "{count} connection records (at most {max})")
            }
            WireError::TrailingBytes { extra } => {
                write!(f, "{extra} bytes after the connection records")
            }
        }
    }
}

impl std::error::Error for WireError {}
