//! The PROXY protocol header (versions 1 and 2, HAProxy's `proxy-protocol.txt`) a load balancer
//! sends first on a connection to name the client it is relaying, and the source networks a
//! listener accepts it from (`listen[i].proxy_protocol`, `listen[i].proxy_from`).
//!
//! [`parse`] looks at the bytes a connection sent so far and says whether they hold a whole
//! header (and how long it is), need more bytes, or cannot be a valid header. It never reads more
//! than [`MAX_HEADER`] bytes, allocates nothing and walks a version 2 header's TLVs once, so its
//! cost is bounded whatever a client sends. It is public because the fuzz target
//! (`fuzz/fuzz_targets/proxy_header.rs`) calls it; the worker is its only user in ccsd.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// The longest version 1 header, `\r\n` included (the specification's bound).
pub const MAX_V1_HEADER: usize = 107;
/// The longest address-and-TLV block of a version 2 header ccsd accepts. The 16-bit length field
/// allows 64 KiB; addresses take at most 216 bytes and the TLVs load balancers add (unique id,
/// TLS details, cloud endpoint ids) fit well within this.
pub const MAX_V2_BODY: usize = 4096;
/// The fixed part of a version 2 header: signature, version and command, family, length.
pub const V2_FIXED: usize = 16;
/// The longest header of either version [`parse`] accepts.
pub const MAX_HEADER: usize = V2_FIXED + MAX_V2_BODY;

/// The 12 bytes a version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What a version 1 header starts with.
const V1_PREFIX: &[u8] = b"PROXY ";

/// Which versions a listener accepts (`listen[i].proxy_protocol`, when not `"off"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// `"v1"`: the text header only.
    V1,
    /// `"v2"`: the binary header only.
    V2,
    /// `"any"`: either, told apart by the first byte.
    Any,
}

/// A whole header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes: what follows is the client's own stream.
    pub len: usize,
    /// The client the balancer relays; `None` when the header does not name one (v1 `UNKNOWN`,
    /// v2 `LOCAL`, v2 `AF_UNSPEC` or `AF_UNIX`): the connection's own peer stands.
    pub source: Option<SocketAddr>,
}

/// What [`parse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The bytes so far are a valid beginning: read more.
    Incomplete,
    /// A whole header.
    Complete(Header),
}

/// Why the bytes cannot be a valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// They do not begin with the signature of an accepted version: the connection was not sent
    /// a header at all (or one of a version the listener does not accept).
    Missing,
    /// A version 1 line longer than [`MAX_V1_HEADER`] without its `\r\n`.
    V1TooLong,
    /// A version 1 line that breaks the grammar (the step named).
    V1Syntax(&'static str),
    /// A version 2 header whose version nibble is not 2.
    V2Version,
    /// A version 2 command other than `LOCAL` (0) or `PROXY` (1).
    V2Command,
    /// A version 2 address family or transport byte with an undefined value.
    V2Family,
    /// A version 2 length over [`MAX_V2_BODY`].
    V2TooLong,
    /// A version 2 length too short for the addresses its family carries.
    V2AddressTruncated,
    /// A version 2 TLV that runs past the end of the header.
    V2TlvTruncated,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Missing => f.write_str("no PROXY protocol header"),
            HeaderError::V1TooLong => write!(f, "v1 header longer than {MAX_V1_HEADER} bytes"),
            HeaderError::V1Syntax(step) => write!(f, "v1 header: {step}"),
            HeaderError::V2Version => f.write_str("v2 header: version is not 2"),
            HeaderError::V2Command => f.write_str("v2 header: unknown command"),
            HeaderError::V2Family => f.write_str("v2 header: unknown family or transport"),
            HeaderError::V2TooLong => write!(f, "v2 header: length over {MAX_V2_BODY}"),
            HeaderError::V2AddressTruncated => {
                f.write_str("v2 header: length too short for its addresses")
            }
            HeaderError::V2TlvTruncated => f.write_str("v2 header: a TLV runs past the header"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Looks for a header of an `accepted` version at the start of `bytes` (everything the
/// connection sent so far, or at least the first [`MAX_HEADER`] bytes of it).
pub fn parse(bytes: &[u8], accepted: Accepted) -> Result<Parsed, HeaderError> {
    let Some(&first) = bytes.first() else {
        return Ok(Parsed::Incomplete);
    };
    match (accepted, first) {
        (Accepted::V1 | Accepted::Any, b'P') => parse_v1(bytes),
        (Accepted::V2 | Accepted::Any, b'\r') => parse_v2(bytes),
        _ => Err(HeaderError::Missing),
    }
}

/// `bytes[..n]` agrees with `expected[..n]` for `n` the shorter length.
fn starts_like(bytes: &[u8], expected: &[u8]) -> bool {
    let n = bytes.len().min(expected.len());
    bytes[..n] == expected[..n]
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, HeaderError> {
    if !starts_like(bytes, V1_PREFIX) {
        return Err(HeaderError::Missing);
    }
    let window = &bytes[..bytes.len().min(MAX_V1_HEADER)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if bytes.len() >= MAX_V1_HEADER {
            Err(HeaderError::V1TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(HeaderError::V1Syntax("line does not end in \\r\\n"));
    }
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..lf - 1])
        .map_err(|_| HeaderError::V1Syntax("not ASCII"))?;
    let mut fields = line.split(' ');
    let source = match fields.next() {
        // The rest of an UNKNOWN line is to be ignored.
        Some("UNKNOWN") => None,
        Some(family @ ("TCP4" | "TCP6")) => {
            let v6 = family == "TCP6";
            let src = v1_ip(fields.next(), v6)?;
            let _dst = v1_ip(fields.next(), v6)?;
            let src_port = v1_port(fields.next())?;
            let _dst_port = v1_port(fields.next())?;
            if fields.next().is_some() {
                return Err(HeaderError::V1Syntax("fields after the destination port"));
            }
            Some(SocketAddr::new(src, src_port))
        }
        _ => return Err(HeaderError::V1Syntax("unknown protocol family")),
    };
    Ok(Parsed::Complete(Header {
        len: lf + 1,
        source,
    }))
}

fn v1_ip(field: Option<&str>, v6: bool) -> Result<IpAddr, HeaderError> {
    let field = field.ok_or(HeaderError::V1Syntax("missing address"))?;
    let ip = if v6 {
        Ipv6Addr::from_str(field).map(IpAddr::V6)
    } else {
        Ipv4Addr::from_str(field).map(IpAddr::V4)
    };
    ip.map_err(|_| HeaderError::V1Syntax("bad address"))
}

fn v1_port(field: Option<&str>) -> Result<u16, HeaderError> {
    let field = field.ok_or(HeaderError::V1Syntax("missing port"))?;
    let digits = !field.is_empty() && field.len() <= 5 && field.bytes().all(|b| b.is_ascii_digit());
    // The specification forbids leading zeros ("0" itself is a port).
    if !digits || (field.len() > 1 && field.starts_with('0')) {
        return Err(HeaderError::V1Syntax("bad port"));
    }
    field
        .parse()
        .map_err(|_| HeaderError::V1Syntax("port over 65535"))
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, HeaderError> {
    if !starts_like(bytes, &V2_SIGNATURE) {
        return Err(HeaderError::Missing);
    }
    let Some(fixed) = bytes.first_chunk::<V2_FIXED>() else {
        return Ok(Parsed::Incomplete);
    };
    let (version_command, family, len) = (
        fixed[12],
        fixed[13],
        usize::from(u16::from_be_bytes([fixed[14], fixed[15]])),
    );
    if version_command >> 4 != 2 {
        return Err(HeaderError::V2Version);
    }
    let proxy = match version_command & 0x0f {
        0 => false,
        1 => true,
        _ => return Err(HeaderError::V2Command),
    };
    // Address family: 0 unspec, 1 inet, 2 inet6, 3 unix; transport: 0 unspec, 1 stream, 2 dgram.
    let (af, transport) = (family >> 4, family & 0x0f);
    if af > 3 || transport > 2 {
        return Err(HeaderError::V2Family);
    }
    if len > MAX_V2_BODY {
        return Err(HeaderError::V2TooLong);
    }
    let Some(body) = bytes.get(V2_FIXED..V2_FIXED + len) else {
        return Ok(Parsed::Incomplete);
    };
    let header = |source| {
        Ok(Parsed::Complete(Header {
            len: V2_FIXED + len,
            source,
        }))
    };
    if !proxy {
        // LOCAL: the balancer's own connection (a health check); the body is to be skipped.
        return header(None);
    }
    let (addresses, source) = match af {
        1 => {
            let a = body
                .first_chunk::<12>()
                .ok_or(HeaderError::V2AddressTruncated)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[8], a[9]]);
            (12, Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 => {
            let a = body
                .first_chunk::<36>()
                .ok_or(HeaderError::V2AddressTruncated)?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            (
                36,
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
            )
        }
        3 if body.len() < 216 => return Err(HeaderError::V2AddressTruncated),
        // AF_UNIX: no IP to report; the connection's own peer stands.
        3 => (216, None),
        // AF_UNSPEC: the body is to be skipped.
        _ => return header(None),
    };
    skip_tlvs(&body[addresses..])?;
    header(source)
}

/// Walks the TLVs (type, 16-bit big-endian length, value) after the addresses, checking each one
/// ends within the header. Their values are not used.
fn skip_tlvs(mut tlvs: &[u8]) -> Result<(), HeaderError> {
    while !tlvs.is_empty() {
        let Some(&[_, hi, lo]) = tlvs.first_chunk::<3>() else {
            return Err(HeaderError::V2TlvTruncated);
        };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = tlvs.get(end..).ok_or(HeaderError::V2TlvTruncated)?;
    }
    Ok(())
}

/// An IP network written `ADDRESS/PREFIX` (or a lone address, a network of one), as in
/// `listen[i].proxy_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl SourceNetwork {
    /// Whether `ip` is in this network; an IPv4-mapped IPv6 address (a dual-stack listener's
    /// IPv4 client) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(net.to_bits()),
                u128::from(ip.to_bits()),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(net.to_bits(), ip.to_bits(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of `width` bits of `a` and `b` agree.
fn prefix_eq(a: u128, b: u128, width: u32, prefix: u8) -> bool {
    let shift = width - u32::from(prefix);
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

impl FromStr for SourceNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= width)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {width}"))?,
        };
        Ok(SourceNetwork { addr, prefix })
    }
}

impl fmt::Display for SourceNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8], accepted: Accepted) -> Header {
        match parse(bytes, accepted) {
            Ok(Parsed::Complete(h)) => h,
            other => panic!("{other:?} for {bytes:?}"),
        }
    }

    /// A version 2 header: command, family byte, then `body`.
    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn inet4_body(tlvs: &[u8]) -> Vec<u8> {
        let mut b = vec![192, 0, 2, 7, 10, 0, 0, 1];
        b.extend_from_slice(&51234u16.to_be_bytes());
        b.extend_from_slice(&7300u16.to_be_bytes());
        b.extend_from_slice(tlvs);
        b
    }

    #[test]
    fn a_v1_tcp4_header_names_the_client_and_its_length() {
        let bytes = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 7300\r\nhello\n";
        let h = complete(bytes, Accepted::V1);
        assert_eq!(h.source, Some("192.0.2.7:51234".parse().unwrap()));
        assert_eq!(&bytes[h.len..], b"hello\n");
        assert_eq!(complete(bytes, Accepted::Any), h);
    }

    #[test]
    fn a_v1_tcp6_header_names_the_client() {
        let h = complete(b"PROXY TCP6 2001:db8::7 ::1 65535 0\r\n", Accepted::V1);
        assert_eq!(h.source, Some("[2001:db8::7]:65535".parse().unwrap()));
    }

    #[test]
    fn a_v1_unknown_header_keeps_the_real_peer() {
        let h = complete(b"PROXY UNKNOWN whatever follows\r\nx", Accepted::V1);
        assert_eq!((h.source, h.len), (None, 32));
        assert_eq!(complete(b"PROXY UNKNOWN\r\n", Accepted::V1).source, None);
    }

    #[test]
    fn a_v1_header_of_the_longest_allowed_length_is_accepted() {
        let ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY TCP6 {ip} {ip} 65535 65535\r\n");
        assert_eq!(complete(line.as_bytes(), Accepted::V1).len, line.len());
        let unknown = format!("PROXY UNKNOWN {}\r\n", "x".repeat(MAX_V1_HEADER - 16));
        assert_eq!(unknown.len(), MAX_V1_HEADER);
        assert_eq!(
            complete(unknown.as_bytes(), Accepted::V1).len,
            MAX_V1_HEADER
        );
    }

    #[test]
    fn a_v1_header_split_anywhere_is_incomplete_until_its_last_byte() {
        let bytes = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 7300\r\n";
        for cut in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..cut], Accepted::Any),
                Ok(Parsed::Incomplete),
                "{cut}"
            );
        }
        assert_eq!(complete(bytes, Accepted::Any).len, bytes.len());
    }

    #[test]
    fn every_malformed_v1_header_is_refused() {
        let cases: &[(&[u8], HeaderError)] = &[
            (b"GET / HTTP/1.1\r\n", HeaderError::Missing),
            (b"PROXZ", HeaderError::Missing),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
                HeaderError::V1Syntax("line does not end in \\r\\n"),
            ),
            (
                b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
                HeaderError::V1Syntax("unknown protocol family"),
            ),
            (
                b"PROXY TCP4 1.2.3.4\r\n",
                HeaderError::V1Syntax("missing address"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                HeaderError::V1Syntax("missing port"),
            ),
            (
                b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
                HeaderError::V1Syntax("bad address"),
            ),
            (
                b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
                HeaderError::V1Syntax("bad address"),
            ),
            (
                b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
                HeaderError::V1Syntax("bad address"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
                HeaderError::V1Syntax("port over 65535"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",
                HeaderError::V1Syntax("bad port"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
                HeaderError::V1Syntax("bad port"),
            ),
            (
                b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
                HeaderError::V1Syntax("bad address"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
                HeaderError::V1Syntax("fields after the destination port"),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
                HeaderError::V1Syntax("fields after the destination port"),
            ),
            (b"PROXY \xff\r\n", HeaderError::V1Syntax("not ASCII")),
        ];
        for (bytes, error) in cases {
            assert_eq!(parse(bytes, Accepted::V1), Err(*error), "{bytes:?}");
        }
        let endless = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat();
        assert_eq!(parse(&endless, Accepted::V1), Err(HeaderError::V1TooLong));
        assert_eq!(
            parse(&endless[..MAX_V1_HEADER - 1], Accepted::V1),
            Ok(Parsed::Incomplete),
            "one byte short of the bound may still end in \\r\\n"
        );
    }

    #[test]
    fn a_version_the_listener_does_not_accept_counts_as_missing() {
        let v1 = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        let v2 = v2(1, 0x11, &inet4_body(&[]));
        assert_eq!(parse(v1, Accepted::V2), Err(HeaderError::Missing));
        assert_eq!(parse(&v2, Accepted::V1), Err(HeaderError::Missing));
        assert_eq!(parse(b"\r\n\r\nX", Accepted::V2), Err(HeaderError::Missing));
    }

    #[test]
    fn a_v2_inet_header_names_the_client_and_skips_its_tlvs() {
        // Two TLVs: PP2_TYPE_ALPN "h2" and an empty PP2_TYPE_NOOP.
        let tlvs = [0x01, 0, 2, b'h', b'2', 0x04, 0, 0];
        let mut bytes = v2(1, 0x11, &inet4_body(&tlvs));
        let len = bytes.len();
        bytes.extend_from_slice(b"after");
        let h = complete(&bytes, Accepted::V2);
        assert_eq!(h.source, Some("192.0.2.7:51234".parse().unwrap()));
        assert_eq!(h.len, len);
        assert_eq!(complete(&bytes, Accepted::Any), h);
    }

    #[test]
    fn a_v2_inet6_header_names_the_client() {
        let mut body = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0xc8, 0x22, 0x1c, 0x84]);
        let h = complete(&v2(1, 0x21, &body), Accepted::V2);
        assert_eq!(h.source, Some("[2001:db8::7]:51234".parse().unwrap()));
    }

    #[test]
    fn v2_local_unspec_and_unix_headers_keep_the_real_peer() {
        let local = v2(0, 0x11, &inet4_body(&[]));
        assert_eq!(complete(&local, Accepted::V2).source, None);
        let unspec = v2(1, 0x00, &[1, 2, 3]);
        assert_eq!(complete(&unspec, Accepted::V2).len, V2_FIXED + 3);
        assert_eq!(complete(&unspec, Accepted::V2).source, None);
        let unix = v2(1, 0x31, &[0; 216]);
        assert_eq!(complete(&unix, Accepted::V2).source, None);
    }

    #[test]
    fn a_v2_header_split_anywhere_is_incomplete_until_its_last_byte() {
        let bytes = v2(1, 0x11, &inet4_body(&[0x01, 0, 1, b'x']));
        for cut in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..cut], Accepted::Any),
                Ok(Parsed::Incomplete),
                "{cut}"
            );
        }
        assert_eq!(complete(&bytes, Accepted::Any).len, bytes.len());
    }

    #[test]
    fn every_malformed_v2_header_is_refused() {
        let mut bad_version = v2(1, 0x11, &inet4_body(&[]));
        bad_version[12] = 0x11;
        let cases: Vec<(Vec<u8>, HeaderError)> = vec![
            (bad_version, HeaderError::V2Version),
            (v2(2, 0x11, &inet4_body(&[])), HeaderError::V2Command),
            (v2(1, 0x41, &inet4_body(&[])), HeaderError::V2Family),
            (v2(1, 0x13, &inet4_body(&[])), HeaderError::V2Family),
            (v2(1, 0x11, &[0; 11]), HeaderError::V2AddressTruncated),
            (v2(1, 0x21, &[0; 35]), HeaderError::V2AddressTruncated),
            (v2(1, 0x31, &[0; 215]), HeaderError::V2AddressTruncated),
            (
                v2(1, 0x11, &inet4_body(&[0x01, 0, 5, b'x'])),
                HeaderError::V2TlvTruncated,
            ),
            (
                v2(1, 0x11, &inet4_body(&[0x01, 0])),
                HeaderError::V2TlvTruncated,
            ),
            (v2(1, 0x11, &[0; MAX_V2_BODY + 1]), HeaderError::V2TooLong),
        ];
        for (bytes, error) in &cases {
            assert_eq!(parse(bytes, Accepted::V2), Err(*error), "{bytes:?}");
        }
        // The length is judged from the fixed part alone, before the body is buffered.
        let fixed = &cases.last().unwrap().0[..V2_FIXED];
        assert_eq!(parse(fixed, Accepted::V2), Err(HeaderError::V2TooLong));
        let longest = v2(0, 0x00, &[0; MAX_V2_BODY]);
        assert_eq!(complete(&longest, Accepted::V2).len, MAX_HEADER);
    }

    #[test]
    fn source_networks_match_by_prefix_and_ipv4_mapped_clients_as_ipv4() {
        let net: SourceNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.255.1.2".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let one: SourceNetwork = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: SourceNetwork = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()));
        assert!(!all.contains("1.2.3.4".parse().unwrap()));
        let v6: SourceNetwork = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<SourceNetwork>().is_err(), "{bad}");
        }
    }
}
