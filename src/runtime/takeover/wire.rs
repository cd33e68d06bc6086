//! The handover messages, versioned (`docs/hot-restart.md`, "Messages"): what the new and the old
//! process say to each other over the handover channel, and the per-connection records of the
//! bulk.
//!
//! A message is a header (magic `CCSH`, major and minor version, kind) and tagged fields to its
//! end, by the rule of the connection state (`docs/connection-state.md`): tag `u16`, length
//! `u64`, value; bit 15 of a tag marks a field a reader that does not know it may skip; every
//! other unknown tag, an unknown kind, another major version, a cut or oversized message is
//! refused with a [`WireError`] naming what. Lists (listeners, lanes) are repeated fields whose
//! values are groups of tagged fields by the same rule, so fields can be added to an element
//! without a new major version.

use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::channel::MAX_MESSAGE;
use crate::conn_state::{AddrError, put_addr, read_addr};

#[cfg(test)]
mod tests;

/// The four bytes a handover message starts with.
pub(crate) const MAGIC: [u8; 4] = *b"CCSH";
/// The four bytes the connection records of a bulk start with.
pub(crate) const CONNS_MAGIC: [u8; 4] = *b"CCSO";
/// The major version this code writes and the only one it reads: it changes when the header,
/// the field framing or the meaning or encoding of an existing tag changes.
pub(crate) const MAJOR_VERSION: u16 = 1;
/// The minor version this code writes (one more for every new field); readers ignore it.
pub(crate) const MINOR_VERSION: u16 = 0;
/// Bit 15 of a tag: a reader that does not know the field may skip it.
pub(crate) const SKIPPABLE: u16 = 0x8000;

/// Bytes of a message header: magic, major, minor, kind.
const HEADER_LEN: usize = 10;
/// Bytes of the connection records' header: magic, major, minor, count `u64`.
const CONNS_HEADER_LEN: usize = 16;
/// Bytes before a field's value: tag `u16`, length `u64`.
const FIELD_HEADER_LEN: usize = 10;
/// Bytes before a connection record's fields: their length `u64`.
const RECORD_HEADER_LEN: usize = 8;
/// The fewest bytes a valid connection record takes (its length, `lane` and an empty `state`).
const MIN_RECORD_LEN: usize = RECORD_HEADER_LEN + FIELD_HEADER_LEN + 4 + FIELD_HEADER_LEN;

/// A handover message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// new → old: who is asking, and what must match.
    Hello {
        /// The new process's pid.
        pid: u32,
        /// The new binary's `CARGO_PKG_VERSION`.
        version: String,
        /// Its `queues.dir`.
        queue_dir: PathBuf,
        /// Its `queues.name`.
        queue_name: String,
        /// Its lane capacity in bytes.
        lane_capacity: u64,
    },
    /// old → new: the takeover cannot happen (the old one keeps serving).
    Refused {
        /// Why, for the new process's exit message.
        reason: String,
    },
    /// old → new: what is handed over; the descriptors travel with it in this order: the
    /// instance lock file, then one per listener in the order of `listeners`.
    Offer {
        /// The old process's pid.
        pid: u32,
        /// The flow id epoch the new process continues.
        epoch: u16,
        /// The listening sockets, in the order of their descriptors.
        listeners: Vec<ListenerOffer>,
        /// The lanes with their roles and positions.
        lanes: Vec<LaneOffer>,
        /// How many connections the bulk that follows carries.
        connections: u32,
    },
    /// new → old: everything adopted; the new process serves once it has `Commit`.
    Ready {
        /// How many connections the new process adopted.
        adopted: u32,
    },
    /// old → new: the old process lets go; the new one serves from now on.
    Commit,
    /// Either way: give up; the old process serves on.
    Abort {
        /// Why, for the other side's log.
        reason: String,
    },
}

/// A listening socket handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerOffer {
    /// TCP or UDP.
    pub proto: Proto,
    /// The address it is bound to.
    pub local: SocketAddr,
    /// The listener's name in the settings, if it has one.
    pub name: Option<String>,
}

/// A listener's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A TCP listening socket (on the wire: 1).
    Tcp,
    /// A UDP socket (on the wire: 2).
    Udp,
}

/// A lane handed over, with the position the new process continues at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneOffer {
    /// What the lane is for.
    pub role: LaneRole,
    /// Its file.
    pub path: PathBuf,
    /// The tail for a request lane (where the next record goes), the head for the response
    /// lane (the next record to read).
    pub position: u64,
}

/// What a lane is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneRole {
    /// A request lane ccsd produces into.
    Request {
        /// Its index among the request lanes.
        index: u32,
    },
    /// The response lane ccsd consumes.
    Response,
}

/// One connection of a bulk: its descriptor travels at the same position among the bulk's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnOffer {
    /// The request lane it last pushed into.
    pub lane: u32,
    /// Its `ConnState` bytes (`docs/connection-state.md`).
    pub state: Vec<u8>,
}

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

/// The message kinds; the discriminant is the kind on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
enum Kind {
    Hello = 1,
    Refused = 2,
    Offer = 3,
    Ready = 4,
    Commit = 5,
    Abort = 6,
}

impl Kind {
    fn from_wire(kind: u16) -> Option<Kind> {
        [
            Kind::Hello,
            Kind::Refused,
            Kind::Offer,
            Kind::Ready,
            Kind::Commit,
            Kind::Abort,
        ]
        .into_iter()
        .find(|k| *k as u16 == kind)
    }
}

/// How often a field may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    Once,
    Optional,
    Repeated,
}

/// The fields of a message or group: tag, name (as in errors and docs), presence.
struct Schema {
    within: &'static str,
    fields: &'static [(u16, &'static str, Presence)],
}

const HELLO: Schema = Schema {
    within: "hello",
    fields: &[
        (1, "hello.pid", Presence::Once),
        (2, "hello.version", Presence::Once),
        (3, "hello.queue_dir", Presence::Once),
        (4, "hello.queue_name", Presence::Once),
        (5, "hello.lane_capacity", Presence::Once),
    ],
};
const REFUSED: Schema = Schema {
    within: "refused",
    fields: &[(1, "refused.reason", Presence::Once)],
};
const OFFER: Schema = Schema {
    within: "offer",
    fields: &[
        (1, "offer.pid", Presence::Once),
        (2, "offer.epoch", Presence::Once),
        (3, "offer.listener", Presence::Repeated),
        (4, "offer.lane", Presence::Repeated),
        (5, "offer.connections", Presence::Once),
    ],
};
const LISTENER: Schema = Schema {
    within: "offer.listener",
    fields: &[
        (1, "offer.listener.proto", Presence::Once),
        (2, "offer.listener.local", Presence::Once),
        (3, "offer.listener.name", Presence::Optional),
    ],
};
const LANE: Schema = Schema {
    within: "offer.lane",
    fields: &[
        (1, "offer.lane.role", Presence::Once),
        (2, "offer.lane.path", Presence::Once),
        (3, "offer.lane.position", Presence::Once),
    ],
};
const READY: Schema = Schema {
    within: "ready",
    fields: &[(1, "ready.adopted", Presence::Once)],
};
const COMMIT: Schema = Schema {
    within: "commit",
    fields: &[],
};
const ABORT: Schema = Schema {
    within: "abort",
    fields: &[(1, "abort.reason", Presence::Once)],
};
const CONN: Schema = Schema {
    within: "connection record",
    fields: &[
        (1, "conn.lane", Presence::Once),
        (2, "conn.state", Presence::Once),
    ],
};

impl Handover {
    /// The message's kind, as logs and errors name it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Handover::Hello { .. } => "hello",
            Handover::Refused { .. } => "refused",
            Handover::Offer { .. } => "offer",
            Handover::Ready { .. } => "ready",
            Handover::Commit => "commit",
            Handover::Abort { .. } => "abort",
        }
    }

    /// The message's bytes (to be sent whole as one channel message).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let kind = match self {
            Handover::Hello { .. } => Kind::Hello,
            Handover::Refused { .. } => Kind::Refused,
            Handover::Offer { .. } => Kind::Offer,
            Handover::Ready { .. } => Kind::Ready,
            Handover::Commit => Kind::Commit,
            Handover::Abort { .. } => Kind::Abort,
        };
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&MAJOR_VERSION.to_le_bytes());
        out.extend_from_slice(&MINOR_VERSION.to_le_bytes());
        out.extend_from_slice(&(kind as u16).to_le_bytes());
        match self {
            Handover::Hello {
                pid,
                version,
                queue_dir,
                queue_name,
                lane_capacity,
            } => {
                put(&mut out, 1, &pid.to_le_bytes());
                put(&mut out, 2, version.as_bytes());
                put(&mut out, 3, queue_dir.as_os_str().as_bytes());
                put(&mut out, 4, queue_name.as_bytes());
                put(&mut out, 5, &lane_capacity.to_le_bytes());
            }
            Handover::Refused { reason } | Handover::Abort { reason } => {
                put(&mut out, 1, reason.as_bytes());
            }
            Handover::Offer {
                pid,
                epoch,
                listeners,
                lanes,
                connections,
            } => {
                put(&mut out, 1, &pid.to_le_bytes());
                put(&mut out, 2, &epoch.to_le_bytes());
                for listener in listeners {
                    put_with(&mut out, 3, |v| {
                        let proto = match listener.proto {
                            Proto::Tcp => 1u8,
                            Proto::Udp => 2,
                        };
                        put(v, 1, &[proto]);
                        put_with(v, 2, |a| put_addr(a, listener.local));
                        if let Some(name) = &listener.name {
                            put(v, 3, name.as_bytes());
                        }
                    });
                }
                for lane in lanes {
                    put_with(&mut out, 4, |v| {
                        put_with(v, 1, |r| match lane.role {
                            LaneRole::Request { index } => {
                                r.push(1);
                                r.extend_from_slice(&index.to_le_bytes());
                            }
                            LaneRole::Response => r.push(2),
                        });
                        put(v, 2, lane.path.as_os_str().as_bytes());
                        put(v, 3, &lane.position.to_le_bytes());
                    });
                }
                put(&mut out, 5, &connections.to_le_bytes());
            }
            Handover::Ready { adopted } => put(&mut out, 1, &adopted.to_le_bytes()),
            Handover::Commit => {}
        }
        out
    }

    /// Reads one message (`bytes` whole, as one channel message delivered it).
    ///
    /// # Errors
    ///
    /// A [`WireError`] naming the first thing refused.
    pub fn decode(bytes: &[u8]) -> Result<Handover, WireError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(WireError::Oversized {
                len: bytes.len(),
                max: MAX_MESSAGE,
            });
        }
        let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(WireError::Truncated {
                what: "the message header",
            });
        };
        check_magic_and_version(header, MAGIC)?;
        // Bytes 6-7, the minor version, are for people: unknown fields carry their own rule.
        let kind = u16::from_le_bytes([header[8], header[9]]);
        let kind = Kind::from_wire(kind).ok_or(WireError::UnknownKind { kind })?;
        Ok(match kind {
            Kind::Hello => decode_hello(body)?,
            Kind::Refused | Kind::Abort => {
                let schema = if kind == Kind::Refused {
                    &REFUSED
                } else {
                    &ABORT
                };
                let mut reason = String::new();
                walk(schema, body, |_, name, v| {
                    reason = text(name, v)?;
                    Ok(())
                })?;
                if kind == Kind::Refused {
                    Handover::Refused { reason }
                } else {
                    Handover::Abort { reason }
                }
            }
            Kind::Offer => decode_offer(body)?,
            Kind::Ready => {
                let mut adopted = 0;
                walk(&READY, body, |_, name, v| {
                    adopted = u32_value(name, v)?;
                    Ok(())
                })?;
                Handover::Ready { adopted }
            }
            Kind::Commit => {
                walk(&COMMIT, body, |_, _, _| Ok(()))?;
                Handover::Commit
            }
        })
    }
}

fn decode_hello(body: &[u8]) -> Result<Handover, WireError> {
    let (mut pid, mut lane_capacity) = (0, 0);
    let (mut version, mut queue_name) = (String::new(), String::new());
    let mut queue_dir = PathBuf::new();
    walk(&HELLO, body, |tag, name, v| {
        match tag {
            1 => pid = u32_value(name, v)?,
            2 => version = text(name, v)?,
            3 => queue_dir = path(name, v)?,
            4 => queue_name = text(name, v)?,
            _ => lane_capacity = u64_value(name, v)?,
        }
        Ok(())
    })?;
    Ok(Handover::Hello {
        pid,
        version,
        queue_dir,
        queue_name,
        lane_capacity,
    })
}

fn decode_offer(body: &[u8]) -> Result<Handover, WireError> {
    let (mut pid, mut epoch, mut connections) = (0, 0, 0);
    let mut listeners = Vec::new();
    let mut lanes = Vec::new();
    walk(&OFFER, body, |tag, name, v| {
        match tag {
            1 => pid = u32_value(name, v)?,
            2 => {
                let raw = <[u8; 2]>::try_from(v).map_err(|_| wrong_length(name, v))?;
                epoch = u16::from_le_bytes(raw);
            }
            3 => listeners.push(decode_listener(v)?),
            4 => lanes.push(decode_lane(v)?),
            _ => connections = u32_value(name, v)?,
        }
        Ok(())
    })?;
    Ok(Handover::Offer {
        pid,
        epoch,
        listeners,
        lanes,
        connections,
    })
}

fn decode_listener(group: &[u8]) -> Result<ListenerOffer, WireError> {
    let mut listener = ListenerOffer {
        proto: Proto::Tcp,
        local: SocketAddr::from(([0, 0, 0, 0], 0)),
        name: None,
    };
    walk(&LISTENER, group, |tag, name, v| {
        match tag {
            1 => {
                listener.proto = match v {
                    [1] => Proto::Tcp,
                    [2] => Proto::Udp,
                    [_] => {
                        return Err(out_of_range(
                            name,
                            "protocol is neither 1 (TCP) nor 2 (UDP)",
                        ));
                    }
                    _ => return Err(wrong_length(name, v)),
                }
            }
            2 => {
                listener.local = read_addr(v).map_err(|e| match e {
                    AddrError::WrongLength => wrong_length(name, v),
                    AddrError::UnknownFamily => {
                        out_of_range(name, "address family is neither 4 nor 6")
                    }
                })?;
            }
            _ => listener.name = Some(text(name, v)?),
        }
        Ok(())
    })?;
    Ok(listener)
}

fn decode_lane(group: &[u8]) -> Result<LaneOffer, WireError> {
    let mut lane = LaneOffer {
        role: LaneRole::Response,
        path: PathBuf::new(),
        position: 0,
    };
    walk(&LANE, group, |tag, name, v| {
        match tag {
            1 => {
                lane.role = match v {
                    [1, index @ ..] => {
                        let index =
                            <[u8; 4]>::try_from(index).map_err(|_| wrong_length(name, v))?;
                        LaneRole::Request {
                            index: u32::from_le_bytes(index),
                        }
                    }
                    [2] => LaneRole::Response,
                    [2, ..] => return Err(wrong_length(name, v)),
                    [] => return Err(wrong_length(name, v)),
                    _ => {
                        return Err(out_of_range(
                            name,
                            "role is neither 1 (request) nor 2 (response)",
                        ));
                    }
                }
            }
            2 => lane.path = path(name, v)?,
            _ => lane.position = u64_value(name, v)?,
        }
        Ok(())
    })?;
    Ok(lane)
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

/// Checks magic and major version of a header (its first 6 bytes).
fn check_magic_and_version(header: &[u8], magic: [u8; 4]) -> Result<(), WireError> {
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
fn walk<'a>(
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
fn put(out: &mut Vec<u8>, tag: u16, value: &[u8]) {
    put_with(out, tag, |v| v.extend_from_slice(value));
}

/// Appends a field whose value `write` appends.
fn put_with(out: &mut Vec<u8>, tag: u16, write: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(&tag.to_le_bytes());
    let len_at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    write(out);
    let len = (out.len() - len_at - 8) as u64;
    out[len_at..len_at + 8].copy_from_slice(&len.to_le_bytes());
}

fn wrong_length(field: &'static str, value: &[u8]) -> WireError {
    WireError::WrongLength {
        field,
        len: value.len() as u64,
    }
}

fn out_of_range(field: &'static str, reason: &'static str) -> WireError {
    WireError::OutOfRange { field, reason }
}

fn u32_value(field: &'static str, value: &[u8]) -> Result<u32, WireError> {
    <[u8; 4]>::try_from(value)
        .map(u32::from_le_bytes)
        .map_err(|_| wrong_length(field, value))
}

fn u64_value(field: &'static str, value: &[u8]) -> Result<u64, WireError> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_le_bytes)
        .map_err(|_| wrong_length(field, value))
}

fn text(field: &'static str, value: &[u8]) -> Result<String, WireError> {
    std::str::from_utf8(value)
        .map(str::to_owned)
        .map_err(|_| out_of_range(field, "not UTF-8"))
}

/// A path: its bytes, not empty, no NUL.
fn path(field: &'static str, value: &[u8]) -> Result<PathBuf, WireError> {
    if value.is_empty() {
        return Err(out_of_range(field, "an empty path"));
    }
    if value.contains(&0) {
        return Err(out_of_range(field, "a path holds a NUL byte"));
    }
    Ok(Path::new(OsStr::from_bytes(value)).to_owned())
}
