//! Why bytes are not a connection state: [`StateError`].

use std::fmt;

use super::encoding::MAJOR_VERSION;

/// Why bytes are not a connection state (or a list of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The input does not start with `CCSC` (or, for a list, `CCSL`).
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A major format version this reader does not know.
    UnsupportedVersion {
        /// The major version found.
        major: u16,
    },
    /// The input ends inside `what` (the header, a field's header, the named field's value, a
    /// state of a list).
    Truncated {
        /// What was cut short.
        what: &'static str,
    },
    /// Bytes follow the state's (or list's) declared end.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A field this reader does not know and may not skip.
    UnknownMandatoryField {
        /// Its tag.
        tag: u16,
    },
    /// A field appears twice.
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
    /// A field's value (or a header value) is out of range.
    OutOfRange {
        /// Its name.
        field: &'static str,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A state of a list is refused.
    InList {
        /// Its position in the list, from 0.
        index: usize,
        /// Why.
        source: Box<StateError>,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::BadMagic { found } => {
                write!(f, "connection state: bad magic {found:02x?}")
            }
            StateError::UnsupportedVersion { major } => write!(
                f,
                "connection state: format version {major} (this ccsd reads version {MAJOR_VERSION})"
            ),
            StateError::Truncated { what } => {
                write!(f, "connection state: the input ends inside {what}")
            }
            StateError::TrailingBytes { extra } => {
                write!(f, "connection state: {extra} bytes after its end")
            }
            StateError::UnknownMandatoryField { tag } => {
                write!(f, "connection state: unknown mandatory field {tag:#06x}")
            }
            StateError::DuplicateField { field } => {
                write!(f, "connection state: field `{field}` appears twice")
            }
            StateError::MissingField { field } => {
                write!(f, "connection state: mandatory field `{field}` is missing")
            }
            StateError::WrongLength { field, len } => {
                write!(
                    f,
                    "connection state: field `{field}` has wrong length {len}"
                )
            }
            StateError::OutOfRange { field, reason } => {
                write!(f, "connection state: field `{field}`: {reason}")
            }
            StateError::InList { index, .. } => {
                write!(f, "connection state {index} of the list is refused")
            }
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::InList { source, .. } => Some(&**source),
            _ => None,
        }
    }
}
