//! ccsd's counters, read through its admin port (`stats`: `STAT name value` lines, then `END`),
//! and what they must say after a soak.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Counters by name, as the admin port names them (`acceptor_*`, `bridge_*` for those actors).
pub type Stats = BTreeMap<String, u64>;

/// Counters that count a close, a refusal or a drop that a soak must never cause. A reply for a
/// connection the client closed is dropped (`dropped_stale_flow`) as it should be, so that one
/// is not here.
pub const MUST_BE_ZERO: &[&str] = &[
    "closed_protocol",
    "closed_oversize",
    "closed_by_mcp",
    "closed_queue_full",
    "closed_table_full",
    "closed_shutdown",
    "closed_idle",
    "closed_slow_client",
    "closed_rate_limited",
    "closed_packet_timeout",
    "closed_max_memory",
    "dropped_queue_full",
    "dropped_disconnect_notices",
    "dropped_unexpected_kind",
    "acceptor_refused_mailbox_full",
    "acceptor_refused_max_connections",
    "acceptor_refused_max_memory",
    "acceptor_accept_errors",
    "bridge_dropped_stale_epoch",
    "bridge_dropped_bad_worker",
    "bridge_dropped_malformed",
    "bridge_dropped_unexpected_kind",
    "bridge_dropped_expired",
    "bridge_lane_corruptions",
];

/// Reads every counter once.
pub fn fetch(admin: SocketAddr) -> Result<Stats, String> {
    let mut stream = TcpStream::connect(admin).map_err(|e| format!("admin {admin}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"stats\n")
        .map_err(|e| format!("admin: {e}"))?;
    let mut stats = Stats::new();
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| format!("admin: {e}"))?;
        let line = line.trim_end();
        if line == "END" {
            return Ok(stats);
        }
        let mut words = line.split(' ');
        if let (Some("STAT"), Some(name), Some(value)) = (words.next(), words.next(), words.next())
            && let Ok(value) = value.parse()
        {
            stats.insert(name.to_owned(), value);
        }
    }
    Err("admin: the stats ended without END".into())
}

/// Reads the counters until `done` holds for them, or until `patience` has passed; returns the
/// last reading. The worker counters reach the admin port once per `stats.interval`.
pub fn fetch_when(
    admin: SocketAddr,
    patience: Duration,
    done: impl Fn(&Stats) -> bool,
) -> Result<Stats, String> {
    let deadline = Instant::now() + patience;
    loop {
        let stats = fetch(admin)?;
        if done(&stats) || Instant::now() >= deadline {
            return Ok(stats);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A counter, 0 when ccsd does not report it.
pub fn get(stats: &Stats, name: &str) -> u64 {
    stats.get(name).copied().unwrap_or(0)
}
