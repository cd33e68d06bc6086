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
//!
//! This file holds the messages; `fields.rs` the field framing and the value types, `conns.rs`
//! the bulk's connection records, `error.rs` the [`WireError`].

use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::channel::MAX_MESSAGE;
use crate::conn_state::{AddrError, put_addr, read_addr};
use fields::{
    Presence, Schema, check_magic_and_version, out_of_range, path, put, put_with, text, u32_value,
    u64_value, walk, wrong_length,
};

mod conns;
mod error;
mod fields;
#[cfg(test)]
mod tests;

pub use conns::{ConnOffer, decode_conns, encode_conns};
pub use error::WireError;

/// The four bytes a handover message starts with.
pub(crate) const MAGIC: [u8; 4] = *b"CCSH";
/// The major version this code writes and the only one it reads: it changes when the header,
/// the field framing or the meaning or encoding of an existing tag changes.
pub(crate) const MAJOR_VERSION: u16 = 1;
/// The minor version this code writes (one more for every new field); readers ignore it.
pub(crate) const MINOR_VERSION: u16 = 0;
/// Bit 15 of a tag: a reader that does not know the field may skip it.
pub(crate) const SKIPPABLE: u16 = 0x8000;

/// Bytes of a message header: magic, major, minor, kind.
const HEADER_LEN: usize = 10;

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
    /// instance lock file, then one per listener in the order of `listeners`, then the pid file
    /// if the old process has one.
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
