//! A full request lane (no MCP reading, a 64 KiB lane): each `queues.on_full` policy has its
//! counted outcome, and back-pressure loses nothing.

use crate::common;

use std::io::Write;
use std::thread;

use common::{TestEnv, assert_closed, connect, packet, read_n};

const PACKETS: usize = 200;
const BODY: usize = 1000;

fn env(on_full: &str) -> TestEnv {
    let env = TestEnv::new(1, "max_packet = \"1KiB\"", "");
    env.add_setting("queues", "capacity = \"64KiB\"");
    env.add_setting("queues", &format!("on_full = \"{on_full}\""));
    env
}

fn bodies() -> Vec<Vec<u8>> {
    (0..PACKETS).map(|i| vec![i as u8; BODY - 4]).collect()
}

/// Writes every packet from another thread (the writes may block while ccsd holds back).
fn send_all(stream: &std::net::TcpStream) -> thread::JoinHandle<()> {
    let mut s = stream.try_clone().unwrap();
    thread::spawn(move || {
        for b in bodies() {
            if s.write_all(&packet(&b)).is_err() {
                return;
            }
        }
    })
}

#[test]
fn backpressure_pauses_the_client_and_loses_nothing() {
    let env = env("backpressure");
    let ccsd = env.start_ccsd();
    let mut client = connect(ccsd.addr());
    let writer = send_all(&client);
    env.wait_stat("totals.backpressure_pauses", |v| v >= 1);
    let queued = common::stat(&env.stats(), "totals.packets_in").unwrap();
    assert!(
        queued < PACKETS as u64,
        "a 64 KiB lane cannot hold {PACKETS} KiB"
    );

    let _mcp = env.start_echo_mcp();
    for b in bodies() {
        assert_eq!(read_n(&mut client, 4 + b.len()), packet(&b));
    }
    writer.join().unwrap();
    assert_eq!(
        common::stat(&env.stats(), "totals.dropped_queue_full"),
        Some(0)
    );
}

#[test]
fn drop_policy_counts_every_dropped_packet_and_keeps_the_connection() {
    let env = env("drop");
    let ccsd = env.start_ccsd();
    let client = connect(ccsd.addr());
    send_all(&client).join().unwrap();
    let dropped = env.wait_stat("totals.dropped_queue_full", |v| v > 0);
    let queued = env.wait_stat("totals.packets_in", |v| v + dropped == PACKETS as u64);
    assert!(queued > 0);

    let _mcp = env.start_echo_mcp();
    let mut client = client;
    // The packets that fit are answered, in order, starting with the first.
    let first = bodies().remove(0);
    assert_eq!(read_n(&mut client, 4 + first.len()), packet(&first));
}

#[test]
fn close_policy_closes_the_connection_and_counts_it() {
    let env = env("close");
    let ccsd = env.start_ccsd();
    let mut client = connect(ccsd.addr());
    let writer = send_all(&client);
    env.wait_stat("totals.closed_queue_full", |v| v == 1);
    writer.join().unwrap();
    // Whatever fit in the lane may still be answered; what matters is that the stream ends.
    let _mcp = env.start_echo_mcp();
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut client, &mut sink);
    assert_closed(&mut client);
}
