//! Clients that send large requests and never read their replies must not get well-behaved
//! clients closed: each connection is closed only for its own behaviour (here: its unread replies
//! over `limits.max_send_buffer`), while the MCP bridge holds replies a busy worker cannot take yet
//! and pushes back on MCP instead of dropping them. ccsd's memory stays under the bound
//! `docs/operations.md` states ("What bounds ccsd's memory").
//!
//! The figures (well-behaved clients closed, closes by cause, replies the bridge held, peak and
//! final RSS) are printed: `cargo test --test non_reading_clients -- --nocapture`.

use crate::common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::{TestEnv, WAIT, connect, packet, peak_rss};

/// Clients that send 64 KiB requests and never read.
const HOGS: usize = 100;
/// Clients that send a request and read its reply, again and again.
const GOOD: usize = 8;
const REQUEST_BODY: usize = 64 * 1024;
/// The bound `docs/operations.md` states for this test's settings (108 connections, 1 MiB send
/// cap, 128 KiB `max_packet`, 2 workers, 8 MiB lanes): connections x (2 x 1 MiB + 128 KiB +
/// 64 KiB) + workers x (8 MiB in flight + 64 KiB + one 64 KiB record) + 16 MiB, workers x 64 KiB
/// and one record held by the bridge + workers x 64 x 128 KiB recycled batch buffers + 3 lanes x
/// 8 MiB + 16 MiB for the process itself = 324 MiB.
const RSS_BOUND: u64 = (108 * (2048 + 128 + 64)
    + 2 * (8 * 1024 + 128)
    + (16 * 1024 + 2 * 64 + 64)
    + 2 * 64 * 128
    + 3 * 8 * 1024
    + 16 * 1024)
    << 10;

/// The resident set now (`VmRSS`), in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn clients_that_never_read_get_only_themselves_closed_and_memory_stays_bounded() {
    let env = TestEnv::new(
        2,
        "max_packet = \"128KiB\"",
        "[limits]\nmax_send_buffer = \"1MiB\"\n",
    );
    env.add_setting("queues", "capacity = \"8MiB\"");
    // A small mailbox, so that replies for the hogs fill it quickly: the scenario at CI scale.
    env.add_setting("broker", "mailbox_capacity = 64");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();

    let stop = Arc::new(AtomicBool::new(false));
    let good: Vec<_> = (0..GOOD)
        .map(|i| {
            let mut c = connect(ccsd.addr());
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let body = vec![b'a' + i as u8; 1024];
                let request = packet(&body);
                let mut reply = vec![0; request.len()];
                let mut round_trips = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = c
                        .write_all(&request)
                        .and_then(|()| c.read_exact(&mut reply))
                    {
                        return Err(format!("closed after {round_trips} round trips: {e}"));
                    }
                    if reply != request {
                        return Err(format!("wrong reply after {round_trips} round trips"));
                    }
                    round_trips += 1;
                }
                Ok(round_trips)
            })
        })
        .collect();

    let request = packet(&vec![b'h'; REQUEST_BODY]);
    let hogs: Vec<_> = (0..HOGS)
        .map(|_| {
            let c = connect(ccsd.addr());
            // A small receive buffer, so the replies pile up in ccsd rather than in the kernel.
            rustix::net::sockopt::set_socket_recv_buffer_size(&c, 4096).unwrap();
            c.set_write_timeout(Some(WAIT)).unwrap();
            c
        })
        .collect();
    env.wait_stat("totals.connections_opened", |v| v == (HOGS + GOOD) as u64);
    let hogs: Vec<_> = hogs
        .into_iter()
        .map(|mut c| {
            let request = request.clone();
            // Writes until ccsd closes the connection (or stops reading it for WAIT).
            thread::spawn(move || while c.write_all(&request).is_ok() {})
        })
        .collect();
    for hog in hogs {
        hog.join().unwrap();
    }
    env.wait_stat("totals.connections_open", |v| v <= GOOD as u64);
    // The well-behaved clients go on for a while once the hogs are gone.
    let before = env.wait_stat("totals.replies_out", |_| true);
    env.wait_stat("totals.replies_out", |v| v >= before + 100);
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<_> = good.into_iter().map(|g| g.join().unwrap()).collect();

    let stats = env.stats();
    let peak = peak_rss(&ccsd);
    // With the hogs gone, the workers return the freed memory to the system (at most once a
    // second each, `actors/worker/memory.rs`).
    let deadline = std::time::Instant::now() + WAIT;
    let mut now = rss(ccsd.child.id());
    while now > peak / 2 && std::time::Instant::now() < deadline {
        thread::sleep(std::time::Duration::from_millis(20));
        now = rss(ccsd.child.id());
    }
    let counter = |path: &str| common::stat(&stats, path).unwrap_or(0);
    let closed_good = outcomes.iter().filter(|o| o.is_err()).count();
    println!(
        "non_reading_clients: {HOGS} hogs, {GOOD} well-behaved: well-behaved closed {closed_good}, \
         closed_slow_client {}, bridge replies_held {}, bridge lane_pauses {}, \
         peak RSS {} MiB, RSS after {} MiB (bound {} MiB)",
        counter("totals.closed_slow_client"),
        counter("bridge.replies_held"),
        counter("bridge.lane_pauses"),
        peak >> 20,
        now >> 20,
        RSS_BOUND >> 20,
    );
    assert_eq!(closed_good, 0, "{outcomes:?}");
    assert_eq!(
        counter("totals.closed_slow_client"),
        HOGS as u64,
        "{}",
        stats["totals"]
    );
    assert_eq!(counter("totals.connections_open"), GOOD as u64);
    assert!(peak < RSS_BOUND, "ccsd's peak RSS was {} MiB", peak >> 20);
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(
            now <= peak / 2,
            "ccsd kept {} MiB of its {} MiB peak after the hogs left",
            now >> 20,
            peak >> 20
        );
    }
}
