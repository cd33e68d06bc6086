//! A client that uploads most of a large packet and then drips the rest one byte per read costs
//! ccsd work in proportion to the bytes it sends, not a rescan of the whole unfinished packet per
//! read: checked through the real binary by the CPU time ccsd spends while a healthy client's
//! round trips pace the drip.
//!
//! The bound is on work, not on speed: rescanning an 8 MiB packet for each of 2,000 dripped bytes
//! is 16 GiB of scanning (seconds of CPU on any machine), while resuming costs each dripped byte
//! one read and the healthy client's round trip (well under a millisecond of CPU each). The limit
//! sits between the two with a wide margin on either side.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{Proc, TestEnv, WAIT, connect, read_n};

/// Bytes of the unfinished packet uploaded before the drip.
const UPLOADED: usize = 8 << 20;
/// Bytes dripped one by one, each followed by a healthy client's round trip.
const DRIPPED: usize = 2000;
/// Most CPU ccsd may spend (user + system, in clock ticks of 10 ms) over the drip.
const MOST_TICKS: u64 = 150;

/// CPU time used so far by `p`, user and system, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(p: &Proc) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.child.id())).expect("stat");
    // Fields after the command name (in parentheses, which may hold spaces): state is field 3,
    // utime field 14, stime field 15.
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// One request/reply on the healthy connection: the echo MCP sends the request back.
fn round_trip(healthy: &mut TcpStream, request: &[u8]) {
    healthy.write_all(request).expect("write request");
    assert_eq!(read_n(healthy, request.len()), request);
}

/// Uploads `head` then `UPLOADED` bytes of `filler` on one connection, then drips `DRIPPED`
/// bytes of `filler`, each followed by a round trip of `probe` on a healthy connection to the
/// same worker (its reply shows the worker has read the dripped byte: the byte was in the socket
/// before the probe was sent); then sends `tail` and expects the whole packet back. Returns the
/// CPU ticks ccsd spent over the drip.
fn drip(framing: &str, head: &[u8], filler: &[u8], tail: &[u8], probe: &[u8]) -> u64 {
    // The 8 MiB echo waits in ccsd's send buffer until this test reads it: room for all of it, so
    // a test thread slow to start reading on a loaded machine is not closed as a slow client.
    let env = TestEnv::new(
        1,
        &format!("framing = \"{framing}\""),
        "[limits]\nmax_send_buffer = \"16MiB\"\n",
    );
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut healthy = connect(ccsd.addr());
    let mut dripper = connect(ccsd.addr());
    let mut packet = head.to_vec();
    while packet.len() < head.len() + UPLOADED {
        packet.extend_from_slice(filler);
    }
    dripper.write_all(&packet).expect("upload");
    round_trip(&mut healthy, probe);
    let before = cpu_ticks(&ccsd);
    for i in 0..DRIPPED {
        let byte = filler[i % filler.len()];
        dripper.write_all(&[byte]).expect("drip");
        packet.push(byte);
        round_trip(&mut healthy, probe);
    }
    let spent = cpu_ticks(&ccsd) - before;
    // Finish the packet where the filler's pattern ends, so that it is well-formed.
    let dripped_in_pattern = (packet.len() - head.len()) % filler.len();
    if dripped_in_pattern != 0 {
        let rest = &filler[dripped_in_pattern..];
        dripper.write_all(rest).expect("write");
        packet.extend_from_slice(rest);
    }
    dripper.write_all(tail).expect("write tail");
    packet.extend_from_slice(tail);
    dripper.set_read_timeout(Some(WAIT)).unwrap();
    let mut echoed = vec![0; packet.len()];
    dripper
        .read_exact(&mut echoed)
        .expect("the whole packet echoed");
    assert!(echoed == packet, "the dripped packet came back changed");
    env.wait_stat("totals.closed_protocol", |n| n == 0);
    spent
}

#[test]
fn dripping_onto_a_large_unfinished_line_costs_ccsd_work_per_byte_not_per_packet() {
    let spent = drip("line", b"", b"abcdefgh", b"\n", b"ping\n");
    assert!(
        spent < MOST_TICKS,
        "ccsd spent {spent} ticks of CPU over {DRIPPED} dripped bytes (most {MOST_TICKS})"
    );
}

#[test]
fn dripping_onto_a_large_unfinished_chunked_request_costs_ccsd_work_per_byte_not_per_packet() {
    let spent = drip(
        "http",
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"10\r\n0123456789abcdef\r\n",
        b"0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    assert!(
        spent < MOST_TICKS,
        "ccsd spent {spent} ticks of CPU over {DRIPPED} dripped bytes (most {MOST_TICKS})"
    );
}

#[test]
fn dripping_onto_a_large_unfinished_resp_array_costs_ccsd_work_per_byte_not_per_packet() {
    let element = b"$10\r\n0123456789\r\n";
    // The elements uploaded, then those the drip and the completion of the last one add.
    let count = UPLOADED.div_ceil(element.len()) + DRIPPED.div_ceil(element.len());
    let head = format!("*{count}\r\n");
    let spent = drip(
        "resp",
        head.as_bytes(),
        element,
        b"",
        b"*1\r\n$4\r\nPING\r\n",
    );
    assert!(
        spent < MOST_TICKS,
        "ccsd spent {spent} ticks of CPU over {DRIPPED} dripped bytes (most {MOST_TICKS})"
    );
}
