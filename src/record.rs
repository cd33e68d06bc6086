//! The record header: the fixed 64-byte prefix of every record ccsd and MCP exchange.
//!
//! Every lane frame carries one record: this header, then `payload_len` bytes. The layout is
//! explicit little-endian and independent of any C ABI (no `time_t`, no padding rules, one
//! address format for IPv4 and IPv6); `docs/protocol.md` describes it byte by byte, and
//! [`offset`] names where each field lies. This module is the only place that reads or writes
//! header bytes: everything else handles a [`RecordHeader`].

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use crate::flow::FlowId;

/// First two bytes of every record (`5D CC` on the wire).
pub const RECORD_MAGIC: u16 = 0xCC5D;
/// The header version this build writes and accepts.
pub const RECORD_VERSION: u8 = 1;
/// Bytes in a record header; the payload follows at this offset.
pub const RECORD_HEADER_SIZE: usize = 64;

/// Where each field of the header lies: byte ranges (or single bytes) from the start of the
/// record, every multi-byte field little-endian. Bytes 62–63 are reserved and written as zero.
pub mod offset {
    use std::ops::Range;

    /// [`RECORD_MAGIC`](super::RECORD_MAGIC).
    pub const MAGIC: Range<usize> = 0..2;
    /// [`RECORD_VERSION`](super::RECORD_VERSION).
    pub const VERSION: usize = 2;
    /// The [`Kind`](super::Kind).
    pub const KIND: usize = 3;
    /// Bytes after the header (`u32`).
    pub const PAYLOAD_LEN: Range<usize> = 4..8;
    /// The [`FlowId`](crate::flow::FlowId) (`u64`).
    pub const FLOW: Range<usize> = 8..16;
    /// `CLOCK_MONOTONIC` nanoseconds when the record was written (`u64`).
    pub const TIMESTAMP_NS: Range<usize> = 16..24;
    /// `echo[0]` (`u64`): in a request, when its first byte was read.
    pub const ECHO0: Range<usize> = 24..32;
    /// `echo[1]` (`u64`).
    pub const ECHO1: Range<usize> = 32..40;
    /// The client's IP address, IPv4 as IPv4-mapped IPv6 (16 bytes, network order).
    pub const PEER_IP: Range<usize> = 40..56;
    /// The client's port (`u16`).
    pub const PEER_PORT: Range<usize> = 56..58;
    /// The local port of the listener (`u16`).
    pub const LISTEN_PORT: Range<usize> = 58..60;
    /// The [`Transport`](super::Transport).
    pub const TRANSPORT: usize = 60;
    /// The disconnect [`Reason`](super::Reason) or [`CloseMode`](super::CloseMode); 0 otherwise.
    pub const CODE: usize = 61;
}

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A packet (ccsd → MCP) or a reply to write to the client (MCP → ccsd).
    Data = 1,
    /// ccsd → MCP: a connection opened (optional event).
    Connect = 2,
    /// ccsd → MCP: a connection closed; `code` holds the [`Reason`].
    Disconnect = 3,
    /// MCP → ccsd: close the connection; `code` holds the [`CloseMode`].
    Close = 4,
    /// Either way: a control message for main-thread actors; the payload is application defined.
    Custom = 5,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Data,
            2 => Kind::Connect,
            3 => Kind::Disconnect,
            4 => Kind::Close,
            5 => Kind::Custom,
            _ => return None,
        })
    }
}

/// Transport of the connection a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Transport {
    /// Not about a connection (custom records).
    None = 0,
    /// A TCP connection.
    Tcp = 1,
    /// A UDP peer.
    Udp = 2,
}

impl Transport {
    fn from_u8(v: u8) -> Option<Transport> {
        Some(match v {
            0 => Transport::None,
            1 => Transport::Tcp,
            2 => Transport::Udp,
            _ => return None,
        })
    }
}

/// Why a connection closed (the `code` of a [`Kind::Disconnect`] record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// The client closed its side.
    PeerClosed = 1,
    /// A socket error (reset, broken pipe, ...).
    Error = 2,
    /// Idle for too long.
    Timeout = 3,
    /// ccsd could not keep up (full queue or mailbox, connection limit).
    Overload = 4,
    /// MCP asked for the close.
    Local = 5,
    /// The client broke the framing protocol (malformed or oversized packet).
    Protocol = 6,
    /// ccsd is stopping.
    Shutdown = 7,
}

impl Reason {
    /// Every reason, in code order.
    pub const ALL: [Reason; 7] = [
        Reason::PeerClosed,
        Reason::Error,
        Reason::Timeout,
        Reason::Overload,
        Reason::Local,
        Reason::Protocol,
        Reason::Shutdown,
    ];

    /// Decodes a `code` byte.
    pub fn from_u8(v: u8) -> Option<Reason> {
        Reason::ALL.get(usize::from(v).checked_sub(1)?).copied()
    }

    /// A short snake_case name, used in counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            Reason::PeerClosed => "peer_closed",
            Reason::Error => "error",
            Reason::Timeout => "timeout",
            Reason::Overload => "overload",
            Reason::Local => "local",
            Reason::Protocol => "protocol",
            Reason::Shutdown => "shutdown",
        }
    }
}

/// How MCP wants a connection closed (the `code` of a [`Kind::Close`] record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseMode {
    /// Close once every reply already queued for the connection has been written.
    AfterFlush = 0,
    /// Close now, discarding unwritten replies.
    Force = 1,
}

/// What a custom record from MCP asks ccsd itself to do: its `code`. Codes 0 and 128–255 are
/// the application's (ccsd only hands those to custom actors); 4–127 are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomOp {
    /// For custom actors only (code 0 or 128–255).
    Application,
    /// Close every connection of `listen_port` once its queued replies are written (code 1).
    ClosePort,
    /// Close every connection of `listen_port` at once (code 2).
    ClosePortNow,
    /// Write the payload to every connection of `listen_port` (code 3).
    Broadcast,
    /// Move connection `flow` to the worker the payload names (a little-endian `u32`), unless
    /// it is pinned (code 4).
    MigrateFlow,
    /// Pin connection `flow`: never moved automatically (code 5).
    PinFlow,
    /// Unpin connection `flow` (code 6).
    UnpinFlow,
}

impl CustomOp {
    /// The operation a custom record's `code` names; `None` for a reserved code this build does
    /// not know.
    pub fn from_code(code: u8) -> Option<CustomOp> {
        Some(match code {
            0 | 128..=255 => CustomOp::Application,
            1 => CustomOp::ClosePort,
            2 => CustomOp::ClosePortNow,
            3 => CustomOp::Broadcast,
            4 => CustomOp::MigrateFlow,
            5 => CustomOp::PinFlow,
            6 => CustomOp::UnpinFlow,
            _ => return None,
        })
    }

    /// The `code` byte for this operation (0 for [`CustomOp::Application`]).
    pub fn code(self) -> u8 {
        match self {
            CustomOp::Application => 0,
            CustomOp::ClosePort => 1,
            CustomOp::ClosePortNow => 2,
            CustomOp::Broadcast => 3,
            CustomOp::MigrateFlow => 4,
            CustomOp::PinFlow => 5,
            CustomOp::UnpinFlow => 6,
        }
    }
}

/// A record header that failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than a header.
    TooShort(usize),
    /// The first two bytes are not [`RECORD_MAGIC`].
    BadMagic(u16),
    /// A header version this build does not speak.
    BadVersion(u8),
    /// An unknown `kind` byte.
    UnknownKind(u8),
    /// An unknown `transport` byte.
    UnknownTransport(u8),
    /// `payload_len` disagrees with the size of the record that carried the header.
    LengthMismatch {
        /// The header's `payload_len`.
        payload_len: u32,
        /// Bytes in the record, header included.
        record_len: usize,
    },
}

impl RecordError {
    /// A short snake_case name, used in counters and logs.
    pub fn name(&self) -> &'static str {
        match self {
            RecordError::TooShort(_) => "too_short",
            RecordError::BadMagic(_) => "bad_magic",
            RecordError::BadVersion(_) => "bad_version",
            RecordError::UnknownKind(_) => "unknown_kind",
            RecordError::UnknownTransport(_) => "unknown_transport",
            RecordError::LengthMismatch { .. } => "length_mismatch",
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::TooShort(n) => write!(f, "record of {n} bytes is shorter than a header"),
            RecordError::BadMagic(m) => write!(f, "bad record magic {m:#06x}"),
            RecordError::BadVersion(v) => {
                write!(f, "record version {v}, expected {RECORD_VERSION}")
            }
            RecordError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            RecordError::UnknownTransport(t) => write!(f, "unknown transport {t}"),
            RecordError::LengthMismatch {
                payload_len,
                record_len,
            } => write!(
                f,
                "payload_len {payload_len} does not match a record of {record_len} bytes"
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// The decoded form of a record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the record is about.
    pub kind: Kind,
    /// Disconnect reason or close mode, depending on `kind`; 0 otherwise.
    pub code: u8,
    /// Bytes after the header.
    pub payload_len: u32,
    /// The connection the record is about.
    pub flow: FlowId,
    /// `CLOCK_MONOTONIC` nanoseconds when the record was written.
    pub timestamp_ns: u64,
    /// Opaque values ccsd sets in a request; MCP copies them unchanged into its replies.
    pub echo: [u64; 2],
    /// The client's address (IPv4 peers as IPv4-mapped IPv6 on the wire).
    pub peer: SocketAddr,
    /// Local port of the listener that accepted the connection.
    pub listen_port: u16,
    /// TCP, UDP or none.
    pub transport: Transport,
}

impl RecordHeader {
    /// A header of `kind` about `flow` with every other field zero.
    pub fn new(kind: Kind, flow: FlowId) -> RecordHeader {
        RecordHeader {
            kind,
            code: 0,
            payload_len: 0,
            flow,
            timestamp_ns: 0,
            echo: [0; 2],
            peer: SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
            listen_port: 0,
            transport: Transport::None,
        }
    }

    /// The reply header for a request: same flow, echo, peer, ports and transport.
    pub fn reply_to(request: &RecordHeader, kind: Kind, payload_len: u32) -> RecordHeader {
        RecordHeader {
            kind,
            code: 0,
            payload_len,
            ..*request
        }
    }

    /// The 64 wire bytes of this header.
    pub fn encode(&self) -> [u8; RECORD_HEADER_SIZE] {
        let mut b = [0u8; RECORD_HEADER_SIZE];
        b[offset::MAGIC].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        b[offset::VERSION] = RECORD_VERSION;
        b[offset::KIND] = self.kind as u8;
        b[offset::PAYLOAD_LEN].copy_from_slice(&self.payload_len.to_le_bytes());
        b[offset::FLOW].copy_from_slice(&self.flow.0.to_le_bytes());
        b[offset::TIMESTAMP_NS].copy_from_slice(&self.timestamp_ns.to_le_bytes());
        b[offset::ECHO0].copy_from_slice(&self.echo[0].to_le_bytes());
        b[offset::ECHO1].copy_from_slice(&self.echo[1].to_le_bytes());
        let ip = match self.peer.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        b[offset::PEER_IP].copy_from_slice(&ip.octets());
        b[offset::PEER_PORT].copy_from_slice(&self.peer.port().to_le_bytes());
        b[offset::LISTEN_PORT].copy_from_slice(&self.listen_port.to_le_bytes());
        b[offset::TRANSPORT] = self.transport as u8;
        b[offset::CODE] = self.code;
        b
    }

    /// Decodes and validates the header at the start of `record`, a whole record (header and
    /// payload), so that `payload_len` is checked against the record's real size.
    ///
    /// # Errors
    /// A [`RecordError`] naming the first field that is wrong.
    pub fn decode(record: &[u8]) -> Result<RecordHeader, RecordError> {
        let Some(b) = record.first_chunk::<RECORD_HEADER_SIZE>() else {
            return Err(RecordError::TooShort(record.len()));
        };
        RecordHeader::decode_with_len(b, record.len())
    }

    /// Decodes and validates the header `b` of a record of `record_len` bytes (header and
    /// payload) whose payload is elsewhere (say, still in a lane).
    ///
    /// # Errors
    /// A [`RecordError`] naming the first field that is wrong.
    pub fn decode_with_len(
        b: &[u8; RECORD_HEADER_SIZE],
        record_len: usize,
    ) -> Result<RecordHeader, RecordError> {
        let magic = u16::from_le_bytes(field(b, offset::MAGIC));
        if magic != RECORD_MAGIC {
            return Err(RecordError::BadMagic(magic));
        }
        let version = b[offset::VERSION];
        if version != RECORD_VERSION {
            return Err(RecordError::BadVersion(version));
        }
        let kind = b[offset::KIND];
        let kind = Kind::from_u8(kind).ok_or(RecordError::UnknownKind(kind))?;
        let transport = b[offset::TRANSPORT];
        let transport =
            Transport::from_u8(transport).ok_or(RecordError::UnknownTransport(transport))?;
        let payload_len = u32::from_le_bytes(field(b, offset::PAYLOAD_LEN));
        if RECORD_HEADER_SIZE as u64 + u64::from(payload_len) != record_len as u64 {
            return Err(RecordError::LengthMismatch {
                payload_len,
                record_len,
            });
        }
        let ip = Ipv6Addr::from(field::<16>(b, offset::PEER_IP));
        let ip = match ip.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(ip),
        };
        Ok(RecordHeader {
            kind,
            code: b[offset::CODE],
            payload_len,
            flow: FlowId(u64::from_le_bytes(field(b, offset::FLOW))),
            timestamp_ns: u64::from_le_bytes(field(b, offset::TIMESTAMP_NS)),
            echo: [
                u64::from_le_bytes(field(b, offset::ECHO0)),
                u64::from_le_bytes(field(b, offset::ECHO1)),
            ],
            peer: SocketAddr::new(ip, u16::from_le_bytes(field(b, offset::PEER_PORT))),
            listen_port: u16::from_le_bytes(field(b, offset::LISTEN_PORT)),
            transport,
        })
    }
}

/// The `N` bytes of `b` at `at` (one of the [`offset`] ranges, `N` bytes long).
fn field<const N: usize>(b: &[u8; RECORD_HEADER_SIZE], at: Range<usize>) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordHeader {
        RecordHeader {
            kind: Kind::Data,
            code: 0,
            payload_len: 3,
            flow: FlowId::new(9, 1, 2, 3),
            timestamp_ns: 123_456_789,
            echo: [11, 22],
            peer: "10.1.2.3:4567".parse().unwrap(),
            listen_port: 7300,
            transport: Transport::Tcp,
        }
    }

    fn record(h: &RecordHeader, payload: &[u8]) -> Vec<u8> {
        let mut r = h.encode().to_vec();
        r.extend_from_slice(payload);
        r
    }

    #[test]
    fn ipv4_and_ipv6_headers_round_trip() {
        let h = sample();
        assert_eq!(RecordHeader::decode(&record(&h, b"abc")), Ok(h));
        let h6 = RecordHeader {
            peer: "[2001:db8::7]:65535".parse().unwrap(),
            ..h
        };
        assert_eq!(RecordHeader::decode(&record(&h6, b"abc")), Ok(h6));
    }

    #[test]
    fn wire_bytes_are_little_endian_at_documented_offsets() {
        let b = sample().encode();
        assert_eq!(&b[0..4], &[0x5D, 0xCC, 1, 1]);
        assert_eq!(&b[4..8], &3u32.to_le_bytes());
        assert_eq!(&b[40..50], &[0; 10]);
        assert_eq!(
            &b[50..52],
            &[0xFF, 0xFF],
            "IPv4 is mapped as ::ffff:a.b.c.d"
        );
        assert_eq!(&b[52..56], &[10, 1, 2, 3]);
        assert_eq!(&b[56..58], &4567u16.to_le_bytes());
        assert_eq!(&b[58..60], &7300u16.to_le_bytes());
        assert_eq!(b[60], Transport::Tcp as u8);
    }

    #[test]
    fn the_named_offsets_tile_the_header_up_to_the_reserved_bytes() {
        let mut fields = vec![
            offset::MAGIC,
            offset::VERSION..offset::VERSION + 1,
            offset::KIND..offset::KIND + 1,
            offset::PAYLOAD_LEN,
            offset::FLOW,
            offset::TIMESTAMP_NS,
            offset::ECHO0,
            offset::ECHO1,
            offset::PEER_IP,
            offset::PEER_PORT,
            offset::LISTEN_PORT,
            offset::TRANSPORT..offset::TRANSPORT + 1,
            offset::CODE..offset::CODE + 1,
        ];
        fields.sort_by_key(|r| r.start);
        let end = fields.iter().fold(0, |at, r| {
            assert_eq!(
                r.start, at,
                "{r:?} does not start where the previous field ends"
            );
            r.end
        });
        assert_eq!(
            end,
            RECORD_HEADER_SIZE - 2,
            "two reserved bytes end the header"
        );
    }

    #[test]
    fn garbage_headers_are_rejected_by_field() {
        let good = record(&sample(), b"abc");
        assert_eq!(
            RecordHeader::decode(&good[..10]),
            Err(RecordError::TooShort(10))
        );
        let mut r = good.clone();
        r[0] = 0;
        assert!(matches!(
            RecordHeader::decode(&r),
            Err(RecordError::BadMagic(_))
        ));
        let mut r = good.clone();
        r[2] = 2;
        assert_eq!(RecordHeader::decode(&r), Err(RecordError::BadVersion(2)));
        let mut r = good.clone();
        r[3] = 99;
        assert_eq!(RecordHeader::decode(&r), Err(RecordError::UnknownKind(99)));
        let mut r = good.clone();
        r[60] = 9;
        assert_eq!(
            RecordHeader::decode(&r),
            Err(RecordError::UnknownTransport(9))
        );
        let mut r = good;
        r.push(0);
        assert!(matches!(
            RecordHeader::decode(&r),
            Err(RecordError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn reason_codes_decode_to_their_names() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_u8(r as u8), Some(r));
        }
        assert_eq!(Reason::from_u8(0), None);
        assert_eq!(Reason::from_u8(8), None);
    }
}
