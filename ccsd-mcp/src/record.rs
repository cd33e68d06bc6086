//! `ccsd_mcp_record`: a record's header fields and payload as C sees them, and the conversions
//! to and from the wire header ([`RecordHeader`]).

use std::net::IpAddr;

use ccsd::mcp::{HeldMessage, Message};
use ccsd::record::{
    Kind, RECORD_HEADER_SIZE, RECORD_MAGIC, RECORD_VERSION, RecordError, RecordHeader, offset,
};

use crate::error::{CCSD_MCP_E_INVALID, CallError};

/// `ccsd_mcp_record` (the header declares the same fields in the same order; a test compiles the
/// header and compares every offset).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CcsdMcpRecord {
    /// The connection the record is about.
    pub flow: u64,
    /// `CLOCK_MONOTONIC` nanoseconds when the record was written.
    pub timestamp_ns: u64,
    /// Values ccsd set in a request; a reply carries them back.
    pub echo: [u64; 2],
    /// The payload: for a received record, inside the handle's buffer (at most once) or the lane
    /// itself (at least once), valid until the next receive, commit, delivery change or detach.
    pub payload: *const u8,
    /// Bytes at `payload`.
    pub payload_len: u32,
    /// Local port of the listener.
    pub listen_port: u16,
    /// The client's port.
    pub peer_port: u16,
    /// The client's address: IPv6, or IPv4 mapped (`::ffff:a.b.c.d`).
    pub peer_addr: [u8; 16],
    /// `CCSD_MCP_DATA` ... `CCSD_MCP_CUSTOM`.
    pub kind: u8,
    /// Disconnect reason, close mode or custom operation, by kind.
    pub code: u8,
    /// `CCSD_MCP_TRANSPORT_NONE`, `_TCP` or `_UDP`.
    pub transport: u8,
    /// Zero.
    pub reserved: [u8; 5],
}

impl CcsdMcpRecord {
    /// The record in `msg`, its payload pointing into `msg`.
    pub(crate) fn from_message(msg: &Message) -> CcsdMcpRecord {
        let payload = msg.payload();
        CcsdMcpRecord::from_parts(msg.header(), payload.as_ptr(), payload.len())
    }

    /// A record taken without copying, its payload pointing into the lane.
    pub(crate) fn from_held(held: &HeldMessage) -> CcsdMcpRecord {
        CcsdMcpRecord::from_parts(held.header(), held.payload_ptr(), held.payload_len())
    }

    fn from_parts(h: &RecordHeader, payload: *const u8, len: usize) -> CcsdMcpRecord {
        let peer_addr = match h.peer.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        CcsdMcpRecord {
            flow: h.flow.0,
            timestamp_ns: h.timestamp_ns,
            echo: h.echo,
            payload,
            payload_len: len as u32,
            listen_port: h.listen_port,
            peer_port: h.peer.port(),
            peer_addr,
            kind: h.kind as u8,
            code: h.code,
            transport: h.transport as u8,
            reserved: [0; 5],
        }
    }

    /// The header of a record of `kind` about the same connection (flow, echo, peer, port,
    /// transport), with no payload and code 0.
    pub(crate) fn header_of_kind(&self, kind: Kind) -> Result<RecordHeader, CallError> {
        let mut b = self.wire_bytes();
        b[offset::KIND] = kind as u8;
        b[offset::CODE] = 0;
        decode(&b)
    }

    /// The header with this record's own kind and code, and no payload.
    pub(crate) fn own_header(&self) -> Result<RecordHeader, CallError> {
        decode(&self.wire_bytes())
    }

    /// The 64 wire bytes of these fields with `payload_len` 0 and no timestamp.
    fn wire_bytes(&self) -> [u8; RECORD_HEADER_SIZE] {
        let mut b = [0u8; RECORD_HEADER_SIZE];
        b[offset::MAGIC].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        b[offset::VERSION] = RECORD_VERSION;
        b[offset::KIND] = self.kind;
        b[offset::FLOW].copy_from_slice(&self.flow.to_le_bytes());
        b[offset::ECHO0].copy_from_slice(&self.echo[0].to_le_bytes());
        b[offset::ECHO1].copy_from_slice(&self.echo[1].to_le_bytes());
        b[offset::PEER_IP].copy_from_slice(&self.peer_addr);
        b[offset::PEER_PORT].copy_from_slice(&self.peer_port.to_le_bytes());
        b[offset::LISTEN_PORT].copy_from_slice(&self.listen_port.to_le_bytes());
        b[offset::TRANSPORT] = self.transport;
        b[offset::CODE] = self.code;
        b
    }
}

/// Validates the fields (kind, transport) as ccsd will.
fn decode(b: &[u8; RECORD_HEADER_SIZE]) -> Result<RecordHeader, CallError> {
    RecordHeader::decode(b).map_err(|e| {
        let what = match e {
            RecordError::UnknownKind(k) => format!("kind {k} is not a CCSD_MCP_* kind"),
            RecordError::UnknownTransport(t) => {
                format!("transport {t} is not a CCSD_MCP_TRANSPORT_* value")
            }
            other => other.to_string(),
        };
        CallError::new(CCSD_MCP_E_INVALID, what)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccsd::flow::FlowId;
    use ccsd::record::Transport;
    use std::net::{Ipv6Addr, SocketAddr};

    fn record(kind: u8, transport: u8) -> CcsdMcpRecord {
        CcsdMcpRecord {
            flow: FlowId::new(3, 1, 7, 9).0,
            timestamp_ns: 5,
            echo: [11, 22],
            payload: std::ptr::null(),
            payload_len: 0,
            listen_port: 7300,
            peer_port: 4567,
            peer_addr: Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, 0x0a01, 0x0203]).octets(),
            kind,
            code: 9,
            transport,
            reserved: [0; 5],
        }
    }

    #[test]
    fn a_reply_header_keeps_the_connection_fields_and_clears_the_code() {
        let h = record(Kind::Data as u8, Transport::Tcp as u8)
            .header_of_kind(Kind::Data)
            .unwrap();
        assert_eq!(h.flow, FlowId::new(3, 1, 7, 9));
        assert_eq!(h.echo, [11, 22]);
        assert_eq!(h.peer, "10.1.2.3:4567".parse::<SocketAddr>().unwrap());
        assert_eq!(
            (h.listen_port, h.transport, h.code),
            (7300, Transport::Tcp, 0)
        );
    }

    #[test]
    fn an_unknown_kind_or_transport_is_refused() {
        assert!(record(9, 1).own_header().is_err());
        assert!(record(1, 7).header_of_kind(Kind::Data).is_err());
        assert_eq!(record(Kind::Custom as u8, 0).own_header().unwrap().code, 9);
    }
}
