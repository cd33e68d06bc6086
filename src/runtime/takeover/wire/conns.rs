//! The connection records of a bulk (`docs/hot-restart.md`, "Connection records"): one per
//! connection handed over, in the order of the bulk's descriptors.

use super::fields::{
    FIELD_HEADER_LEN, Presence, Schema, check_magic_and_version, put, u32_value, walk,
};
use super::{MAJOR_VERSION, MINOR_VERSION, WireError};

/// The four bytes the connection records of a bulk start with.
pub(crate) const CONNS_MAGIC: [u8; 4] = *b"CCSO";
/// Bytes of the connection records' header: magic, major, minor, count `u64`.
const CONNS_HEADER_LEN: usize = 16;
/// Bytes before a connection record's fields: their length `u64`.
const RECORD_HEADER_LEN: usize = 8;
/// The fewest bytes a valid connection record takes (its length, `lane` and an empty `state`).
const MIN_RECORD_LEN: usize = RECORD_HEADER_LEN + FIELD_HEADER_LEN + 4 + FIELD_HEADER_LEN;

const CONN: Schema = Schema {
    within: "connection record",
    fields: &[
        (1, "conn.lane", Presence::Once),
        (2, "conn.state", Presence::Once),
    ],
};

/// One connection of a bulk: its descriptor travels at the same position among the bulk's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnOffer {
    /// The request lane it last pushed into.
    pub lane: u32,
    /// Its `ConnState` bytes (`docs/connection-state.md`).
    pub state: Vec<u8>,
}

/// The bytes of a bulk's connection records: a header with their count, then each record (its
/// length, then its fields).
pub fn encode_conns(conns: &[ConnOffer]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        CONNS_HEADER_LEN
            + conns
                .iter()
                .map(|c| MIN_RECORD_LEN + c.state.len())
                .sum::<usize>(),
    );
    out.extend_from_slice(&CONNS_MAGIC);
    out.extend_from_slice(&MAJOR_VERSION.to_le_bytes());
    out.extend_from_slice(&MINOR_VERSION.to_le_bytes());
    out.extend_from_slice(&(conns.len() as u64).to_le_bytes());
    for conn in conns {
        let len_at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        put(&mut out, 1, &conn.lane.to_le_bytes());
        put(&mut out, 2, &conn.state);
        let len = (out.len() - len_at - RECORD_HEADER_LEN) as u64;
        out[len_at..len_at + RECORD_HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    }
    out
}

/// Reads connection records written by [`encode_conns`], at most `max` of them.
///
/// # Errors
///
/// A [`WireError`]: the header refused, more than `max` records, a record cut short or with
/// fields refused, bytes after the last record.
pub fn decode_conns(bytes: &[u8], max: usize) -> Result<Vec<ConnOffer>, WireError> {
    let Some((header, mut rest)) = bytes.split_first_chunk::<CONNS_HEADER_LEN>() else {
        return Err(WireError::Truncated {
            what: "the connection records' header",
        });
    };
    check_magic_and_version(header, CONNS_MAGIC)?;
    let mut count = [0; 8];
    count.copy_from_slice(&header[8..]);
    let count = u64::from_le_bytes(count);
    if count > max as u64 {
        return Err(WireError::TooMany { count, max });
    }
    // Never more room than the input can fill, whatever the count says.
    let mut conns = Vec::with_capacity((count as usize).min(rest.len() / MIN_RECORD_LEN));
    for _ in 0..count {
        let Some((len, after)) = rest.split_first_chunk::<RECORD_HEADER_LEN>() else {
            return Err(WireError::Truncated {
                what: "a connection record's length",
            });
        };
        let Some(record) = usize::try_from(u64::from_le_bytes(*len))
            .ok()
            .and_then(|n| after.get(..n))
        else {
            return Err(WireError::Truncated {
                what: "a connection record",
            });
        };
        rest = &after[record.len()..];
        let mut conn = ConnOffer {
            lane: 0,
            state: Vec::new(),
        };
        walk(&CONN, record, |tag, name, v| {
            match tag {
                1 => conn.lane = u32_value(name, v)?,
                _ => conn.state = v.to_vec(),
            }
            Ok(())
        })?;
        conns.push(conn);
    }
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes { extra: rest.len() });
    }
    Ok(conns)
}
