//! `limits.max_send_buffer`: clients that send requests but never read their replies are closed
//! once their unwritten replies exceed the cap (reason overload), so ccsd's memory stays bounded.

use crate::common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ccsd::mcp::McpEndpoint;
use ccsd::mcp::service::{After, Service, serve};
use common::{TestEnv, WAIT, connect, packet, peak_rss};

const CLIENTS: usize = 200;
const REQUESTS_PER_CLIENT: usize = 96;
const REPLY: usize = 64 * 1024;
/// The bound `docs/operations.md` states for this test's settings: 200 connections x (2 x 1 MiB
/// send cap + 64 KiB max_packet + 64 KiB read) + 2 workers x (8 MiB in flight + 64 KiB batch + one
/// 64 KiB record) + 16 MiB + 2 x 64 KiB + one record held by the bridge + 2 workers x 64 x 128 KiB
/// recycled batch buffers + 3 lanes x 8 MiB mapped + 16 MiB for the process itself = 513 MiB.
const RSS_BOUND: u64 = (200 * (2048 + 64 + 64)
    + 2 * (8 * 1024 + 128)
    + (16 * 1024 + 2 * 64 + 64)
    + 2 * 64 * 128
    + 3 * 8 * 1024
    + 16 * 1024)
    << 10;

/// Answers every request with 64 KiB.
struct BigReplies;

impl Service for BigReplies {
    const NAME: &'static str = "big_replies";

    fn handle(&mut self, _packet: &[u8], reply: &mut Vec<u8>) -> After {
        reply.resize(REPLY, b'r');
        After::KeepOpen
    }
}

#[test]
fn clients_that_never_read_are_closed_at_the_send_buffer_cap_and_memory_stays_bounded() {
    let env = TestEnv::new(
        2,
        "max_packet = \"64KiB\"",
        "[limits]\nmax_send_buffer = \"1MiB\"\n",
    );
    env.add_setting("queues", "capacity = \"8MiB\"");
    // 512 messages take the burst of 200 connects.
    env.add_setting("broker", "mailbox_capacity = 512");
    let ccsd = env.start_ccsd();
    let stop = Arc::new(AtomicBool::new(false));
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mcp_stop = Arc::clone(&stop);
    let mcp_thread = std::thread::spawn(move || serve(&mut mcp, &mut BigReplies, &mcp_stop));

    let requests: Vec<u8> = (0..REQUESTS_PER_CLIENT)
        .flat_map(|_| packet(b"give me 64KiB"))
        .collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let mut c = connect(ccsd.addr());
            // A small receive buffer, so the replies pile up in ccsd rather than in the kernel.
            rustix::net::sockopt::set_socket_recv_buffer_size(&c, 4096).unwrap();
            c.write_all(&requests).unwrap();
            c
        })
        .collect();

    // Each client is closed at its send-buffer cap, and for nothing else.
    env.wait_stat("totals.connections_opened", |v| v == CLIENTS as u64);
    env.wait_stat("totals.connections_open", |v| v == 0);
    let stats = env.stats();
    let slow = common::stat(&stats, "totals.closed_slow_client").unwrap_or(0);
    assert_eq!(slow, CLIENTS as u64, "{}", stats["totals"]);
    let peak = peak_rss(&ccsd);
    assert!(peak < RSS_BOUND, "ccsd's peak RSS was {} MiB", peak >> 20);
    let stats = env.stats();
    assert_eq!(common::stat(&stats, "totals.closed_error"), Some(0));
    assert_eq!(common::stat(&stats, "totals.closed_idle"), Some(0));
    drop(clients);
    stop.store(true, Ordering::Relaxed);
    mcp_thread.join().unwrap().unwrap();
}
