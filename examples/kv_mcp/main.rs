//! Key-value MCP: an in-memory store answering memcached text-protocol and Redis RESP2 clients.
//!
//! ```text
//! cargo run --example kv_mcp -- --config my.toml
//! ```
//!
//! It reads the same settings file as ccsd; give ccsd a listener with `framing = "memcache"`
//! and/or one with `framing = "resp"`. Both protocols share one map: a value written by
//! `set` is read by `GET` and the other way round.
//!
//! # Which protocol a packet speaks
//!
//! Decided per packet, by its content alone (not by the listener it came through):
//! 1. a packet starting with `*` is a RESP array;
//! 2. otherwise its first word decides: a memcached command word (`get`, `set`, ... — exact,
//!    lower case, as memcached requires) makes it memcached; a RESP command name this MCP knows
//!    (in any letter case) makes it a RESP inline command;
//! 3. anything else is memcached, and gets `ERROR`.
//!
//! So `get k` is memcached and `GET k` is RESP; clients of either protocol send what they
//! should. Commands and their limits are listed in `memcache.rs` and `resp.rs`. Nothing
//! expires: expiration times are accepted and ignored.

#[path = "../common/mod.rs"]
mod common;
mod memcache;
mod resp;
mod resp_wire;
mod store;

use std::ops::Range;
use std::process::ExitCode;

use ccsd::mcp::service::{After, Service};
use store::Store;

/// The store and the scratch space for parsing requests.
#[derive(Debug, Default)]
struct KeyValue {
    store: Store,
    resp_args: Vec<Range<usize>>,
}

impl Service for KeyValue {
    const NAME: &'static str = "kv_mcp";

    fn handle(&mut self, packet: &[u8], reply: &mut Vec<u8>) -> After {
        if is_resp(packet) {
            resp::handle(&mut self.store, packet, &mut self.resp_args, reply)
        } else {
            memcache::handle(&mut self.store, packet, reply)
        }
    }
}

/// The rule in the module header: does `packet` speak RESP (rather than memcached)?
fn is_resp(packet: &[u8]) -> bool {
    if packet.first() == Some(&b'*') {
        return true;
    }
    let first_word = packet
        .split(|b| b" \t\r\n".contains(b))
        .next()
        .unwrap_or_default();
    !memcache::is_command(first_word) && resp::is_command(first_word)
}

fn main() -> ExitCode {
    common::run(&mut KeyValue::default())
}

#[cfg(test)]
mod tests {
    use super::is_resp;

    #[test]
    fn protocol_is_decided_by_the_first_byte_then_the_first_word() {
        assert!(is_resp(b"*1\r\n$4\r\nPING\r\n"));
        assert!(is_resp(b"PING\r\n"));
        assert!(is_resp(b"GET k\r\n"));
        assert!(is_resp(b"dbsize\n"));
        assert!(!is_resp(b"get k\r\n"));
        assert!(!is_resp(b"set k 0 0 1\r\nx\r\n"));
        assert!(!is_resp(b"bogus\r\n"));
        assert!(!is_resp(b""));
    }
}
