//! The byte form of a [`ConnState`] and of a list of them, as `docs/connection-state.md`
//! specifies it: header, tagged fields (mandatory unless bit 15 of the tag is set), ages instead
//! of timestamps.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::{ConnState, RateWindow, ReplyTiming, StateError, UnsentTiming};
use crate::flow::FlowId;
use crate::proxy_protocol::MAX_HEADER;

#[cfg(test)]
mod tests;

/// The four bytes a connection state starts with.
pub(crate) const MAGIC: [u8; 4] = *b"CCSC";
/// The four bytes a list of connection states starts with.
pub(crate) const LIST_MAGIC: [u8; 4] = *b"CCSL";
/// The major format version this code writes and the only one it reads: it changes when the
/// header, the field framing or the meaning or encoding of an existing tag changes.
pub(crate) const MAJOR_VERSION: u16 = 1;
/// The minor format version this code writes: it counts the field sets (one more for every new
/// tag). Readers ignore it; unknown fields are handled by their skippable bit.
pub(crate) const MINOR_VERSION: u16 = 0;
/// Bit 15 of a tag: a reader that does not know the field may skip it.
pub(crate) const SKIPPABLE: u16 = 0x8000;
/// The most reply timing entries a decoded state holds, as a worker keeps at most that many per
/// connection (`MAX_ENTRIES` in `actors/worker/reply_timing.rs`): entries past it join the last
/// one, as the worker joins replies past its bound.
pub(crate) const MAX_TIMING_ENTRIES: usize = 32;

/// Bytes of the state header and of the list header: magic, major, minor, a `u64`.
const HEADER_LEN: usize = 16;
/// Bytes before a field's value: tag `u16`, length `u64`.
const FIELD_HEADER_LEN: usize = 10;
/// Bytes of one reply timing entry: end `u64`, echo0 age `u64`, replies `u32`.
const TIMING_ENTRY_LEN: usize = 20;

/// The fields of format version 1; the discriminant is the tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
enum Field {
    Flow = 1,
    Peer = 2,
    ListenerIndex = 3,
    ListenerFraming = 4,
    ListenerLocal = 5,
    Opened = 6,
    LastActive = 7,
    Unfinished = 8,
    UnfinishedSince = 9,
    Unsent = 10,
    Outstanding = 11,
    Paused = 12,
    CloseAfterFlush = 13,
    RateWindow = 14,
    ListenerRatePaid = 15,
    HalfClosedSince = 16,
    AwaitsProxyHeader = 17,
    Pinned = 18,
    UnsentTiming = SKIPPABLE | 1,
    Load = SKIPPABLE | 2,
}

/// Every field, in the order a writer writes them.
const FIELDS: [Field; 20] = [
    Field::Flow,
    Field::Peer,
    Field::ListenerIndex,
    Field::ListenerFraming,
    Field::ListenerLocal,
    Field::Opened,
    Field::LastActive,
    Field::Unfinished,
    Field::UnfinishedSince,
    Field::Unsent,
    Field::Outstanding,
    Field::Paused,
    Field::CloseAfterFlush,
    Field::RateWindow,
    Field::ListenerRatePaid,
    Field::HalfClosedSince,
    Field::AwaitsProxyHeader,
    Field::Pinned,
    Field::UnsentTiming,
    Field::Load,
];

impl Field {
    fn from_tag(tag: u16) -> Option<Field> {
        FIELDS.into_iter().find(|f| f.tag() == tag)
    }

    fn tag(self) -> u16 {
        self as u16
    }

    fn skippable(self) -> bool {
        self.tag() & SKIPPABLE != 0
    }

    /// Its bit in the set of fields seen.
    fn bit(self) -> u32 {
        let index = FIELDS.iter().position(|f| *f == self).unwrap_or(0);
        1 << index
    }

    /// Its name in errors and in `docs/connection-state.md`.
    fn name(self) -> &'static str {
        match self {
            Field::Flow => "flow",
            Field::Peer => "peer",
            Field::ListenerIndex => "listener_index",
            Field::ListenerFraming => "listener_framing",
            Field::ListenerLocal => "listener_local",
            Field::Opened => "opened",
            Field::LastActive => "last_active",
            Field::Unfinished => "unfinished",
            Field::UnfinishedSince => "unfinished_since",
            Field::Unsent => "unsent",
            Field::Outstanding => "outstanding",
            Field::Paused => "paused",
            Field::CloseAfterFlush => "close_after_flush",
            Field::RateWindow => "rate_window",
            Field::ListenerRatePaid => "listener_rate_paid",
            Field::HalfClosedSince => "half_closed_since",
            Field::AwaitsProxyHeader => "awaits_proxy_header",
            Field::Pinned => "pinned",
            Field::UnsentTiming => "unsent_timing",
            Field::Load => "load",
        }
    }
}

impl ConnState {
    /// Appends the byte form of the state to `out`, its timestamps as ages at `now_ns` (the
    /// writer's `CLOCK_MONOTONIC` now; a timestamp after it travels as age 0). The framer's
    /// progress is not written. Nothing is checked here: a state that breaks a rule of
    /// `docs/connection-state.md` (a timing entry past `queued`, say) is
    /// written as it is and refused by the reader.
    pub fn encode(&self, now_ns: u64, out: &mut Vec<u8>) {
        let age = |t: u64| now_ns.saturating_sub(t).to_le_bytes();
        let start = out.len();
        put_header(out, MAGIC);
        put(out, Field::Flow, &self.flow.0.to_le_bytes());
        put_with(out, Field::Peer, |v| put_addr(v, self.peer));
        put(
            out,
            Field::ListenerIndex,
            &(self.listener.index as u64).to_le_bytes(),
        );
        put(
            out,
            Field::ListenerFraming,
            self.listener.framing.as_bytes(),
        );
        put_with(out, Field::ListenerLocal, |v| {
            put_addr(v, self.listener.local)
        });
        put(out, Field::Opened, &age(self.opened_ns));
        put_with(out, Field::LastActive, |v| {
            v.extend(self.last_active_ns.map(age).into_iter().flatten());
        });
        put(out, Field::Unfinished, &self.unfinished);
        put(out, Field::UnfinishedSince, &age(self.unfinished_since_ns));
        put(out, Field::Unsent, &self.unsent);
        put(out, Field::Outstanding, &self.outstanding.to_le_bytes());
        put(out, Field::Paused, &[u8::from(self.paused)]);
        put(
            out,
            Field::CloseAfterFlush,
            &[u8::from(self.close_after_flush)],
        );
        put_with(out, Field::RateWindow, |v| {
            v.extend_from_slice(&age(self.rate_window.start_ns));
            v.extend_from_slice(&self.rate_window.count.to_le_bytes());
        });
        put(
            out,
            Field::ListenerRatePaid,
            &[u8::from(self.listener_rate_paid)],
        );
        put_with(out, Field::HalfClosedSince, |v| {
            v.extend(self.half_closed_since_ns.map(age).into_iter().flatten());
        });
        put(
            out,
            Field::AwaitsProxyHeader,
            &[u8::from(self.awaits_proxy_header)],
        );
        put(out, Field::Pinned, &[u8::from(self.pinned)]);
        put_with(out, Field::UnsentTiming, |v| {
            v.extend_from_slice(&self.unsent_timing.queued.to_le_bytes());
            for entry in &self.unsent_timing.entries {
                v.extend_from_slice(&entry.end.to_le_bytes());
                v.extend_from_slice(&age(entry.echo0_ns));
                v.extend_from_slice(&entry.replies.to_le_bytes());
            }
        });
        put_with(out, Field::Load, |v| {
            v.extend_from_slice(&self.packets_in.to_le_bytes());
            v.extend_from_slice(&self.bytes_in.to_le_bytes());
        });
        let total = (out.len() - start) as u64;
        out[start + 8..start + HEADER_LEN].copy_from_slice(&total.to_le_bytes());
    }

    /// Reads a state written by [`encode`](ConnState::encode) (by this or another ccsd version),
    /// turning its ages into timestamps at `now_ns` (the reader's `CLOCK_MONOTONIC` now,
    /// saturating at 0). `bytes` must hold exactly one state.
    ///
    /// # Errors
    ///
    /// A [`StateError`] naming the first thing refused; see the module documentation.
    pub fn decode(bytes: &[u8], now_ns: u64) -> Result<ConnState, StateError> {
        let (state, rest) = split_state(bytes)?;
        if !rest.is_empty() {
            return Err(StateError::TrailingBytes { extra: rest.len() });
        }
        decode_fields(&state[HEADER_LEN..], now_ns)
    }
}

/// Appends a list of states (what a hot restart sends): a list header with their count, then
/// each state as [`ConnState::encode`] writes it, ages at `now_ns`.
pub fn encode_list<'a>(
    states: impl IntoIterator<Item = &'a ConnState>,
    now_ns: u64,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    put_header(out, LIST_MAGIC);
    let mut count: u64 = 0;
    for state in states {
        state.encode(now_ns, out);
        count += 1;
    }
    out[start + 8..start + HEADER_LEN].copy_from_slice(&count.to_le_bytes());
}

/// Reads a list written by [`encode_list`]: checks the list header and that exactly the declared
/// number of states, each framed by its own header, fill the input; the states are decoded one
/// by one as the returned iterator is advanced (so a refused state can be told apart from the
/// others, and nothing is allocated for the list itself).
///
/// # Errors
///
/// The list's framing is refused ([`StateError::BadMagic`], [`StateError::UnsupportedVersion`],
/// [`StateError::Truncated`], [`StateError::TrailingBytes`], or [`StateError::InList`] for a
/// state whose header is refused); a state's fields are refused as its item
/// ([`StateError::InList`]).
pub fn decode_list(bytes: &[u8], now_ns: u64) -> Result<StateList<'_>, StateError> {
    let (count, states) = read_header(bytes, LIST_MAGIC, "list header")?;
    let mut rest = states;
    let mut found: u64 = 0;
    while found < count {
        let index = found as usize;
        let (_, after) = split_state(rest).map_err(|e| in_list(index, e))?;
        rest = after;
        found += 1;
    }
    if !rest.is_empty() {
        return Err(StateError::TrailingBytes { extra: rest.len() });
    }
    Ok(StateList {
        rest: states,
        index: 0,
        left: found as usize,
        now_ns,
    })
}

/// The states of a list ([`decode_list`]), decoded as they are taken.
#[derive(Debug)]
pub struct StateList<'a> {
    rest: &'a [u8],
    index: usize,
    left: usize,
    now_ns: u64,
}

impl Iterator for StateList<'_> {
    type Item = Result<ConnState, StateError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let index = self.index;
        self.index += 1;
        self.left -= 1;
        // decode_list checked every state's framing.
        let decoded = split_state(self.rest).and_then(|(state, rest)| {
            self.rest = rest;
            decode_fields(&state[HEADER_LEN..], self.now_ns)
        });
        Some(decoded.map_err(|e| in_list(index, e)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for StateList<'_> {}

fn in_list(index: usize, error: StateError) -> StateError {
    StateError::InList {
        index,
        source: Box::new(error),
    }
}

/// Appends a header with `magic`, this version and a zero `u64` the caller fills in.
fn put_header(out: &mut Vec<u8>, magic: [u8; 4]) {
    out.extend_from_slice(&magic);
    out.extend_from_slice(&MAJOR_VERSION.to_le_bytes());
    out.extend_from_slice(&MINOR_VERSION.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
}

/// Appends a field with `value`.
fn put(out: &mut Vec<u8>, field: Field, value: &[u8]) {
    put_with(out, field, |v| v.extend_from_slice(value));
}

/// Appends a field whose value `write` appends.
fn put_with(out: &mut Vec<u8>, field: Field, write: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(&field.tag().to_le_bytes());
    let len_at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    write(out);
    let len = (out.len() - len_at - 8) as u64;
    out[len_at..len_at + 8].copy_from_slice(&len.to_le_bytes());
}

/// An address: family 4 or 6, the address bytes in network order, the port (little-endian, as
/// every integer here), and for IPv6 the flow info and scope id. Also the handover messages'
/// address form (`src/runtime/takeover/wire.rs`).
pub(crate) fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_le_bytes());
        }
        SocketAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_le_bytes());
            out.extend_from_slice(&a.flowinfo().to_le_bytes());
            out.extend_from_slice(&a.scope_id().to_le_bytes());
        }
    }
}

/// Checks a header with `magic` at the start of `bytes`: its `u64` and what follows it.
fn read_header<'a>(
    bytes: &'a [u8],
    magic: [u8; 4],
    what: &'static str,
) -> Result<(u64, &'a [u8]), StateError> {
    let Some((header, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(StateError::Truncated { what });
    };
    let found = [header[0], header[1], header[2], header[3]];
    if found != magic {
        return Err(StateError::BadMagic { found });
    }
    let major = u16::from_le_bytes([header[4], header[5]]);
    if major != MAJOR_VERSION {
        return Err(StateError::UnsupportedVersion { major });
    }
    // Bytes 6-7, the minor version, are for people: unknown fields carry their own rule.
    let mut value = [0; 8];
    value.copy_from_slice(&header[8..]);
    Ok((u64::from_le_bytes(value), rest))
}

/// Splits the state at the start of `bytes` (header included) from what follows it.
fn split_state(bytes: &[u8]) -> Result<(&[u8], &[u8]), StateError> {
    let (total, _) = read_header(bytes, MAGIC, "state header")?;
    if total < HEADER_LEN as u64 {
        return Err(StateError::OutOfRange {
            field: "header",
            reason: "total length is shorter than the header",
        });
    }
    match usize::try_from(total) {
        Ok(total) if total <= bytes.len() => Ok(bytes.split_at(total)),
        _ => Err(StateError::Truncated { what: "state" }),
    }
}

/// Reads the fields of one state (the bytes after its header, exactly).
fn decode_fields(mut fields: &[u8], now_ns: u64) -> Result<ConnState, StateError> {
    let mut state = ConnState::blank();
    let mut seen: u32 = 0;
    while !fields.is_empty() {
        let Some((head, rest)) = fields.split_first_chunk::<FIELD_HEADER_LEN>() else {
            return Err(StateError::Truncated {
                what: "a field header",
            });
        };
        let tag = u16::from_le_bytes([head[0], head[1]]);
        let mut len = [0; 8];
        len.copy_from_slice(&head[2..]);
        let len = u64::from_le_bytes(len);
        let field = Field::from_tag(tag);
        let Some(value) = usize::try_from(len).ok().and_then(|n| rest.get(..n)) else {
            let what = field.map_or("an unknown field", Field::name);
            return Err(StateError::Truncated { what });
        };
        fields = &rest[value.len()..];
        let Some(field) = field else {
            if tag & SKIPPABLE != 0 {
                continue;
            }
            return Err(StateError::UnknownMandatoryField { tag });
        };
        if seen & field.bit() != 0 {
            return Err(StateError::DuplicateField {
                field: field.name(),
            });
        }
        seen |= field.bit();
        read_field(&mut state, field, value, now_ns)?;
    }
    if let Some(missing) = FIELDS
        .into_iter()
        .find(|f| !f.skippable() && seen & f.bit() == 0)
    {
        return Err(StateError::MissingField {
            field: missing.name(),
        });
    }
    if seen & Field::UnsentTiming.bit() == 0 {
        // Without timing: the unsent bytes are all the stream has queued, none a timed reply.
        state.unsent_timing.queued = state.unsent.len() as u64;
    }
    check_consistent(&state)?;
    Ok(state)
}

/// Reads one field's value into `state`.
fn read_field(
    state: &mut ConnState,
    field: Field,
    value: &[u8],
    now_ns: u64,
) -> Result<(), StateError> {
    let timestamp = |age: u64| now_ns.saturating_sub(age);
    match field {
        Field::Flow => {
            state.flow = FlowId(u64_value(field, value)?);
            if state.flow.0 == 0 {
                return Err(out_of_range(field, "flow 0 names no connection"));
            }
        }
        Field::Peer => state.peer = addr_value(field, value)?,
        Field::ListenerIndex => {
            state.listener.index = usize::try_from(u64_value(field, value)?)
                .map_err(|_| out_of_range(field, "index does not fit this machine's usize"))?;
        }
        Field::ListenerFraming => {
            let name = std::str::from_utf8(value)
                .map_err(|_| out_of_range(field, "framing name is not UTF-8"))?;
            if name.is_empty() {
                return Err(out_of_range(field, "framing name is empty"));
            }
            state.listener.framing = name.to_owned();
        }
        Field::ListenerLocal => state.listener.local = addr_value(field, value)?,
        Field::Opened => state.opened_ns = timestamp(u64_value(field, value)?),
        Field::LastActive => state.last_active_ns = optional_u64(field, value)?.map(timestamp),
        Field::Unfinished => state.unfinished = value.to_vec(),
        Field::UnfinishedSince => {
            state.unfinished_since_ns = timestamp(u64_value(field, value)?);
        }
        Field::Unsent => state.unsent = value.to_vec(),
        Field::Outstanding => state.outstanding = u64_value(field, value)?,
        Field::Paused => state.paused = bool_value(field, value)?,
        Field::CloseAfterFlush => state.close_after_flush = bool_value(field, value)?,
        Field::RateWindow => {
            let [start, count] = u64_pair(field, value)?;
            state.rate_window = RateWindow {
                start_ns: timestamp(start),
                count,
            };
        }
        Field::ListenerRatePaid => state.listener_rate_paid = bool_value(field, value)?,
        Field::HalfClosedSince => {
            state.half_closed_since_ns = optional_u64(field, value)?.map(timestamp);
        }
        Field::AwaitsProxyHeader => state.awaits_proxy_header = bool_value(field, value)?,
        Field::Pinned => state.pinned = bool_value(field, value)?,
        Field::UnsentTiming => {
            let wrong = || StateError::WrongLength {
                field: field.name(),
                len: value.len() as u64,
            };
            let (queued, entries) = value.split_first_chunk::<8>().ok_or_else(wrong)?;
            if entries.len() % TIMING_ENTRY_LEN != 0 {
                return Err(wrong());
            }
            let queued = u64::from_le_bytes(*queued);
            let count = entries.len() / TIMING_ENTRY_LEN;
            let mut list: Vec<ReplyTiming> = Vec::with_capacity(count.min(MAX_TIMING_ENTRIES));
            for entry in entries.chunks_exact(TIMING_ENTRY_LEN) {
                let mut end = [0; 8];
                let mut echo0_age = [0; 8];
                let mut replies = [0; 4];
                end.copy_from_slice(&entry[..8]);
                echo0_age.copy_from_slice(&entry[8..16]);
                replies.copy_from_slice(&entry[16..]);
                let entry = ReplyTiming {
                    end: u64::from_le_bytes(end),
                    echo0_ns: timestamp(u64::from_le_bytes(echo0_age)),
                    replies: u32::from_le_bytes(replies),
                };
                if entry.replies == 0 {
                    return Err(out_of_range(field, "an entry stands for no reply"));
                }
                let previous_end = list.last().map_or(0, |last| last.end);
                if entry.end < previous_end || entry.end > queued {
                    return Err(out_of_range(
                        field,
                        "an entry ends out of stream order or past what was queued",
                    ));
                }
                let full = list.len() == MAX_TIMING_ENTRIES;
                match list.last_mut() {
                    // A longer list (from a version that keeps more) joins the last entry, as
                    // the worker joins replies past its bound.
                    Some(last) if full => {
                        last.end = entry.end;
                        last.echo0_ns = last.echo0_ns.min(entry.echo0_ns);
                        last.replies = last.replies.saturating_add(entry.replies);
                    }
                    _ => list.push(entry),
                }
            }
            state.unsent_timing = UnsentTiming {
                queued,
                entries: list,
            };
        }
        Field::Load => [state.packets_in, state.bytes_in] = u64_pair(field, value)?,
    }
    Ok(())
}

/// Refuses what no worker could hold: rules between fields.
fn check_consistent(state: &ConnState) -> Result<(), StateError> {
    let timing = &state.unsent_timing;
    if (state.unsent.len() as u64) > timing.queued {
        return Err(out_of_range(
            Field::UnsentTiming,
            "fewer bytes queued than are unsent",
        ));
    }
    if state.awaits_proxy_header && state.unfinished.len() > MAX_HEADER {
        return Err(out_of_range(
            Field::Unfinished,
            "longer than a PROXY protocol header while awaiting one",
        ));
    }
    Ok(())
}

fn out_of_range(field: Field, reason: &'static str) -> StateError {
    StateError::OutOfRange {
        field: field.name(),
        reason,
    }
}

fn wrong_length(field: Field, value: &[u8]) -> StateError {
    StateError::WrongLength {
        field: field.name(),
        len: value.len() as u64,
    }
}

fn u64_value(field: Field, value: &[u8]) -> Result<u64, StateError> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_le_bytes)
        .map_err(|_| wrong_length(field, value))
}

fn u64_pair(field: Field, value: &[u8]) -> Result<[u64; 2], StateError> {
    let pair = <&[u8; 16]>::try_from(value).map_err(|_| wrong_length(field, value))?;
    let (first, second) = pair.split_at(8);
    Ok([u64_value(field, first)?, u64_value(field, second)?])
}

/// Length 0: `None`; length 8: `Some`.
fn optional_u64(field: Field, value: &[u8]) -> Result<Option<u64>, StateError> {
    if value.is_empty() {
        Ok(None)
    } else {
        u64_value(field, value).map(Some)
    }
}

fn bool_value(field: Field, value: &[u8]) -> Result<bool, StateError> {
    match value {
        [0] => Ok(false),
        [1] => Ok(true),
        [_] => Err(out_of_range(field, "a flag is neither 0 nor 1")),
        _ => Err(wrong_length(field, value)),
    }
}

fn addr_value(field: Field, value: &[u8]) -> Result<SocketAddr, StateError> {
    read_addr(value).map_err(|e| match e {
        AddrError::WrongLength => wrong_length(field, value),
        AddrError::UnknownFamily => out_of_range(field, "address family is neither 4 nor 6"),
    })
}

/// Why bytes are not an address as [`put_addr`] writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrError {
    /// Not the length its family has.
    WrongLength,
    /// A family byte other than 4 or 6.
    UnknownFamily,
}

/// Reads an address written by [`put_addr`] (the whole of `value`); also the handover
/// messages' address form (`src/runtime/takeover/wire.rs`).
pub(crate) fn read_addr(value: &[u8]) -> Result<SocketAddr, AddrError> {
    let Some((&family, rest)) = value.split_first() else {
        return Err(AddrError::WrongLength);
    };
    match family {
        4 => {
            let v4 = <&[u8; 6]>::try_from(rest).map_err(|_| AddrError::WrongLength)?;
            let ip = Ipv4Addr::new(v4[0], v4[1], v4[2], v4[3]);
            let port = u16::from_le_bytes([v4[4], v4[5]]);
            Ok(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        6 => {
            let v6 = <&[u8; 26]>::try_from(rest).map_err(|_| AddrError::WrongLength)?;
            let mut ip = [0; 16];
            ip.copy_from_slice(&v6[..16]);
            let port = u16::from_le_bytes([v6[16], v6[17]]);
            let flowinfo = u32::from_le_bytes([v6[18], v6[19], v6[20], v6[21]]);
            let scope_id = u32::from_le_bytes([v6[22], v6[23], v6[24], v6[25]]);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flowinfo,
                scope_id,
            )))
        }
        _ => Err(AddrError::UnknownFamily),
    }
}
