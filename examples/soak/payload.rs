//! The soak's requests, and what a reply says about them.
//!
//! A request is a `length`-framed packet (ccsd's default framing: a 4-byte big-endian body
//! length, then the body) whose body names the connection that sent it and its sequence number
//! on that connection, carries random bytes, and ends in a checksum:
//!
//! ```text
//! conn: u64 LE | seq: u64 LE | random bytes | checksum: u64 LE (FNV-1a of everything before it)
//! ```
//!
//! The echo MCP sends the body back unchanged, so a reply is either the exact echo of a request
//! this connection has in flight, an intact request of another connection (misrouted), or
//! damaged bytes (corrupted).

use std::collections::VecDeque;

use crate::rng::Rng;

/// Bytes of the length prefix.
pub const PREFIX: usize = 4;
/// The smallest body: connection, sequence number and checksum, no random bytes.
pub const MIN_BODY: usize = 24;
/// The largest body a request may have; a reply announcing more means the stream is broken.
pub const MAX_BODY: usize = 1 << 20;

/// What a connection remembers of a request it sent, to recognise its echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Its sequence number on its connection.
    pub seq: u64,
    /// Its body's length.
    pub len: usize,
    /// Its body's checksum.
    pub checksum: u64,
}

/// Appends to `out` the framed request `seq` of connection `conn`, with a body of `body_len`
/// bytes (at least [`MIN_BODY`]) filled from `rng`.
pub fn encode(out: &mut Vec<u8>, conn: u64, seq: u64, body_len: usize, rng: &mut Rng) -> Sent {
    debug_assert!((MIN_BODY..=MAX_BODY).contains(&body_len));
    let len = u32::try_from(body_len).expect("bodies are below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    let body = out.len();
    out.extend_from_slice(&conn.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let mut random = body_len - MIN_BODY;
    while random > 0 {
        let n = random.min(8);
        out.extend_from_slice(&rng.next().to_le_bytes()[..n]);
        random -= n;
    }
    let checksum = fnv1a(&out[body..]);
    out.extend_from_slice(&checksum.to_le_bytes());
    Sent {
        seq,
        len: body_len,
        checksum,
    }
}

/// What one reply body turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The exact echo of the oldest request in flight, which is retired.
    Echo,
    /// The exact echo of a later request in flight: the `lost` requests before it got no reply.
    /// All of them and the echoed one are retired.
    EchoAfterLost {
        /// Requests skipped.
        lost: u64,
    },
    /// An intact request of connection `conn`, another connection. Nothing is retired.
    Misrouted {
        /// The connection that sent it.
        conn: u64,
    },
    /// Not an intact request (wrong checksum, too short), or one of this connection that is not
    /// in flight or has other bytes than the one sent. The oldest request in flight, if any, is
    /// retired as unanswered: `retired` says whether there was one.
    Corrupted {
        /// Whether a request was retired.
        retired: bool,
    },
}

/// Judges `body`, a reply that arrived on connection `conn`, against the requests it has in
/// flight (oldest first), retiring what the reply answers.
pub fn check(in_flight: &mut VecDeque<Sent>, conn: u64, body: &[u8]) -> Verdict {
    let corrupted = |in_flight: &mut VecDeque<Sent>| Verdict::Corrupted {
        retired: in_flight.pop_front().is_some(),
    };
    let Some(intact) = parse(body) else {
        return corrupted(in_flight);
    };
    if intact.conn != conn {
        return Verdict::Misrouted { conn: intact.conn };
    }
    let Some(pos) = in_flight.iter().position(|s| s.seq == intact.seq) else {
        return corrupted(in_flight);
    };
    let sent = in_flight[pos];
    if sent.len != body.len() || sent.checksum != intact.checksum {
        return corrupted(in_flight);
    }
    in_flight.drain(..=pos);
    match pos {
        0 => Verdict::Echo,
        lost => Verdict::EchoAfterLost { lost: lost as u64 },
    }
}

/// The fields of an intact body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Intact {
    conn: u64,
    seq: u64,
    checksum: u64,
}

/// The fields of `body` if its checksum holds.
fn parse(body: &[u8]) -> Option<Intact> {
    if body.len() < MIN_BODY {
        return None;
    }
    let (content, tail) = body.split_at(body.len() - 8);
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let checksum = word(tail);
    (fnv1a(content) == checksum).then(|| Intact {
        conn: word(&content[..8]),
        seq: word(&content[8..16]),
        checksum,
    })
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `n` requests on connection `conn`; returns their frames and what was remembered.
    fn requests(conn: u64, n: u64, rng: &mut Rng) -> (Vec<Vec<u8>>, VecDeque<Sent>) {
        (0..n)
            .map(|seq| {
                let mut frame = Vec::new();
                let sent = encode(&mut frame, conn, seq, MIN_BODY + 3 * seq as usize, rng);
                (frame, sent)
            })
            .unzip()
    }

    fn body(frame: &[u8]) -> &[u8] {
        &frame[PREFIX..]
    }

    #[test]
    fn an_echo_retires_its_request_and_frames_carry_their_length() {
        let mut rng = Rng::new(1, 0);
        let (frames, mut in_flight) = requests(7, 2, &mut rng);
        assert_eq!(frames[1][..PREFIX], 27u32.to_be_bytes());
        assert_eq!(frames[1].len(), PREFIX + 27);
        assert_eq!(check(&mut in_flight, 7, body(&frames[0])), Verdict::Echo);
        assert_eq!(check(&mut in_flight, 7, body(&frames[1])), Verdict::Echo);
        assert!(in_flight.is_empty());
    }

    #[test]
    fn a_skipped_request_is_lost() {
        let mut rng = Rng::new(1, 0);
        let (frames, mut in_flight) = requests(7, 4, &mut rng);
        let verdict = check(&mut in_flight, 7, body(&frames[2]));
        assert_eq!(verdict, Verdict::EchoAfterLost { lost: 2 });
        assert_eq!(in_flight.front().map(|s| s.seq), Some(3));
    }

    #[test]
    fn another_connections_request_is_misrouted() {
        let mut rng = Rng::new(1, 0);
        let (_, mut mine) = requests(7, 1, &mut rng);
        let (theirs, _) = requests(8, 1, &mut rng);
        let verdict = check(&mut mine, 7, body(&theirs[0]));
        assert_eq!(verdict, Verdict::Misrouted { conn: 8 });
        assert_eq!(mine.len(), 1, "a misrouted reply answers nothing");
    }

    #[test]
    fn damaged_duplicated_or_altered_replies_are_corrupted() {
        let mut rng = Rng::new(1, 0);
        let (frames, in_flight) = requests(7, 2, &mut rng);
        let mut flipped = body(&frames[0]).to_vec();
        flipped[17] ^= 1;
        assert_eq!(
            check(&mut in_flight.clone(), 7, &flipped),
            Verdict::Corrupted { retired: true }
        );
        assert_eq!(
            check(&mut in_flight.clone(), 7, &body(&frames[0])[..20]),
            Verdict::Corrupted { retired: true }
        );
        // Same connection and sequence number, other random bytes: an intact body, but not the
        // one sent.
        let mut other = Vec::new();
        encode(&mut other, 7, 0, MIN_BODY + 8, &mut rng);
        let mut q = in_flight.clone();
        q[0].len = MIN_BODY + 8;
        assert_eq!(
            check(&mut q, 7, body(&other)),
            Verdict::Corrupted { retired: true }
        );
        // A second echo of a request already answered.
        let mut q = in_flight.clone();
        assert_eq!(check(&mut q, 7, body(&frames[0])), Verdict::Echo);
        assert_eq!(
            check(&mut q, 7, body(&frames[0])),
            Verdict::Corrupted { retired: true }
        );
        assert_eq!(
            check(&mut q, 7, body(&frames[0])),
            Verdict::Corrupted { retired: false }
        );
    }
}
