//! Many clients through ccsd and the echo MCP: every reply arrives byte-exact and in order.

use crate::common;

use std::io::{Read, Write};
use std::thread;

use common::{Rng, TestEnv, connect, packet};

const CLIENTS: usize = 32;
const PACKETS: usize = 1000;
const MAX_BODY: u64 = 64 * 1024;

/// Body lengths spread evenly over orders of magnitude from 1 B to 64 KiB.
fn body_len(rng: &mut Rng) -> usize {
    let bits = rng.below(17); // 2^0 ..= 2^16
    let top = (1u64 << bits).min(MAX_BODY);
    (1 + rng.below(top)) as usize
}

fn body(client: usize, seq: usize, len: usize) -> Vec<u8> {
    let mut rng = Rng(((client as u64) << 32 | seq as u64) | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

#[test]
fn thirty_two_clients_get_every_reply_byte_exact_and_in_order() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let bytes = run_clients(ccsd.addr(), CLIENTS, PACKETS);
    let total = (CLIENTS * PACKETS) as u64;
    env.wait_stat("totals.packets_in", |v| v == total);
    env.wait_stat("totals.bytes_in", |v| v == bytes);
    env.wait_stat("totals.bytes_out", |v| v == bytes);
    let stats = env.stats();
    assert_eq!(common::stat(&stats, "totals.dropped_queue_full"), Some(0));
    assert_eq!(common::stat(&stats, "totals.dropped_stale_flow"), Some(0));
}

#[test]
fn spinning_threads_deliver_every_reply_too() {
    let env = TestEnv::new(2, "", "");
    env.add_setting("broker", "idle_spin = \"50us\"");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let bytes = run_clients(ccsd.addr(), 4, 200);
    env.wait_stat("totals.bytes_out", |v| v == bytes);
}

/// `clients` connections each send `packets` packets (pipelined, split at random) and check
/// every reply byte for byte, in order. Returns the bytes sent (and so received) in all.
fn run_clients(addr: std::net::SocketAddr, clients: usize, packets: usize) -> u64 {
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            thread::spawn(move || {
                let stream = connect(addr);
                let mut reader = stream.try_clone().unwrap();
                let writer = thread::spawn(move || {
                    let mut stream = stream;
                    let mut rng = Rng(0x9E37_79B9 + c as u64);
                    let mut pending = Vec::new();
                    for seq in 0..packets {
                        let len = body_len(&mut Rng((c * packets + seq) as u64 + 1));
                        pending.extend_from_slice(&packet(&body(c, seq, len)));
                        // Several packets per write, and writes that split packets anywhere.
                        if rng.below(3) == 0 || seq == packets - 1 {
                            while !pending.is_empty() {
                                let cut = 1 + rng.below(pending.len() as u64) as usize;
                                stream.write_all(&pending[..cut]).unwrap();
                                pending.drain(..cut);
                            }
                        }
                    }
                });
                for seq in 0..packets {
                    let len = body_len(&mut Rng((c * packets + seq) as u64 + 1));
                    let mut got = vec![0; 4 + len];
                    reader
                        .read_exact(&mut got)
                        .unwrap_or_else(|e| panic!("client {c} reply {seq}: {e}"));
                    assert_eq!(
                        got,
                        packet(&body(c, seq, len)),
                        "client {c} reply {seq} differs"
                    );
                }
                writer.join().unwrap();
            })
        })
        .collect();
    for c in handles {
        c.join().unwrap();
    }
    (0..clients)
        .flat_map(|c| (0..packets).map(move |seq| (c, seq)))
        .map(|(c, seq)| 4 + body_len(&mut Rng((c * packets + seq) as u64 + 1)) as u64)
        .sum()
}
