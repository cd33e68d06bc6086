//! `limits.max_send_buffer`: clients that send requests but never read their replies are closed
//! once their unwritten replies exceed the cap (reason overload), so ccsd's memory stays bounded.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ccsd::mcp::McpEndpoint;
use ccsd::service::{After, Service, serve};
use common::{TestEnv, WAIT, connect, packet, peak_rss};

const CLIENTS: usize = 200;
const REQUESTS_PER_CLIENT: usize = 96;
const REPLY: usize = 64 * 1024;
/// The bound `docs/operations.md` states for this case.
/// The documented bound for this test's settings: 200 connections x (2 x 1 MiB send cap +
/// 64 KiB max_packet + 64 KiB read) + 2 workers x 512 batches x 64 KiB + 3 lanes x 8 MiB mapped
/// + 16 MiB for the process itself = 529 MiB.
const RSS_BOUND: u64 = (200 * (2048 + 64 + 64) + 2 * 512 * 64 + 3 * 8 * 1024 + 16 * 1024) << 10;

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
    // Replies waiting in a worker's mailbox are bounded by the mailbox, not by the send-buffer
    // cap (docs/operations.md, "What bounds ccsd's memory"); 512 messages still take the burst of
    // 200 connects.
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

    // Each client is closed either at its send-buffer cap or, when its replies found the small
    // mailbox full, as overload: both bound memory, both are counted.
    env.wait_stat("totals.connections_opened", |v| v == CLIENTS as u64);
    env.wait_stat("totals.connections_open", |v| v == 0);
    let stats = env.stats();
    let slow = common::stat(&stats, "totals.closed_slow_client").unwrap_or(0);
    let overload = common::stat(&stats, "totals.closed_overload").unwrap_or(0);
    assert_eq!(slow + overload, CLIENTS as u64, "{}", stats["totals"]);
    assert!(slow > 0, "the send-buffer cap closed none");
    let peak = peak_rss(&ccsd);
    assert!(peak < RSS_BOUND, "ccsd's peak RSS was {} MiB", peak >> 20);
    let stats = env.stats();
    assert_eq!(common::stat(&stats, "totals.closed_error"), Some(0));
    assert_eq!(common::stat(&stats, "totals.closed_idle"), Some(0));
    drop(clients);
    stop.store(true, Ordering::Relaxed);
    mcp_thread.join().unwrap().unwrap();
}
