//! The field framing every handover message, group and connection record uses (the rule of
//! `docs/connection-state.md`: tag `u16` with bit 15 = skippable, length `u64`, value), and the
//! value types' readers.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{MAJOR_VERSION, SKIPPABLE, WireError};

/// Bytes before a field's value: tag `u16`, length `u64`.
pub(super) const FIELD_HEADER_LEN: usize = 10;

/// How often a field may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Presence {
    Once,
    Optional,
    Repeated,
}

/// The fields of a message or group: tag, name (as in errors and docs), presence.
pub(super) struct Schema {
    pub(super) within: &'static str,
    pub(super) fields: &'static [(u16, &'static str, Presence)],
}

/// Checks magic and major version of a header (its first 6 bytes).
pub(super) fn check_magic_and_version(header: &[u8], magic: [u8; 4]) -> Result<(), WireError> {
    let found = [header[0], header[1], header[2], header[3]];
    if found != magic {
        return Err(WireError::BadMagic { found });
    }
    let major = u16::from_le_bytes([header[4], header[5]]);
    if major != MAJOR_VERSION {
        return Err(WireError::UnsupportedVersion { major });
    }
    Ok(())
}

/// Walks the tagged fields of `bytes` by `schema`: skips unknown skippable ones, refuses
/// unknown mandatory ones and repeats of fields that may appear once, hands each known field's
/// tag, name and value to `each`, and at the end refuses a missing mandatory field.
pub(super) fn walk<'a>(
    schema: &Schema,
    mut bytes: &'a [u8],
    mut each: impl FnMut(u16, &'static str, &'a [u8]) -> Result<(), WireError>,
) -> Result<(), WireError> {
    // Schemas have at most a handful of fields.
    let mut seen: u32 = 0;
    while !bytes.is_empty() {
        let Some((head, rest)) = bytes.split_first_chunk::<FIELD_HEADER_LEN>() else {
            return Err(WireError::Truncated {
                what: "a field header",
            });
        };
        let tag = u16::from_le_bytes([head[0], head[1]]);
        let mut len = [0; 8];
        len.copy_from_slice(&head[2..]);
        let known = schema.fields.iter().position(|(t, _, _)| *t == tag);
        let Some(value) = usize::try_from(u64::from_le_bytes(len))
            .ok()
            .and_then(|n| rest.get(..n))
        else {
            let what = known.map_or("an unknown field", |i| schema.fields[i].1);
            return Err(WireError::Truncated { what });
        };
        bytes = &rest[value.len()..];
        let Some(index) = known else {
            if tag & SKIPPABLE != 0 {
                continue;
            }
            return Err(WireError::UnknownMandatoryField {
                within: schema.within,
                tag,
            });
        };
        let (_, name, presence) = schema.fields[index];
        if presence != Presence::Repeated && seen & (1 << index) != 0 {
            return Err(WireError::DuplicateField { field: name });
        }
        seen |= 1 << index;
        each(tag, name, value)?;
    }
    for (index, (_, name, presence)) in schema.fields.iter().enumerate() {
        if *presence == Presence::Once && seen & (1 << index) == 0 {
            return Err(WireError::MissingField { field: name });
        }
    }
    Ok(())
}

/// Appends a field with `value`.
pub(super) fn put(out: &mut Vec<u8>, tag: u16, value: &[u8]) {
    put_with(out, tag, |v| v.extend_from_slice(value));
}

/// Appends a field whose value `write` appends.
pub(super) fn put_with(out: &mut Vec<u8>, tag: u16, write: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(&tag.to_le_bytes());
    let len_at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    write(out);
    let len = (out.len() - len_at - 8) as u64;
    out[len_at..len_at + 8].copy_from_slice(&len.to_le_bytes());
}

pub(super) fn wrong_length(field: &'static str, value: &[u8]) -> WireError {
    WireError::WrongLength {
        field,
        len: value.len() as u64,
    }
}

pub(super) fn out_of_range(field: &'static str, reason: &'static str) -> WireError {
    WireError::OutOfRange { field, reason }
}

pub(super) fn u32_value(field: &'static str, value: &[u8]) -> Result<u32, WireError> {
    <[u8; 4]>::try_from(value)
        .map(u32::from_le_bytes)
        .map_err(|_| wrong_length(field, value))
}

pub(super) fn u64_value(field: &'static str, value: &[u8]) -> Result<u64, WireError> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_le_bytes)
        .map_err(|_| wrong_length(field, value))
}

pub(super) fn text(field: &'static str, value: &[u8]) -> Result<String, WireError> {
    std::str::from_utf8(value)
        .map(str::to_owned)
        .map_err(|_| out_of_range(field, "not UTF-8"))
}

/// A path: its bytes, not empty, no NUL.
pub(super) fn path(field: &'static str, value: &[u8]) -> Result<PathBuf, WireError> {
    if value.is_empty() {
        return Err(out_of_range(field, "an empty path"));
    }
    if value.contains(&0) {
        return Err(out_of_range(field, "a path holds a NUL byte"));
    }
    Ok(Path::new(OsStr::from_bytes(value)).to_owned())
}
