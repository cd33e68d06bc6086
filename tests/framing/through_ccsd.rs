//! Each text framing through the real binary and the echo MCP: pipelined packets written in cuts
//! at random points from several connections at once come back whole and in order (the echo of a
//! stream is the stream itself only if every packet was cut at its real boundaries), and a bad
//! request closes its own connection and is counted.

use crate::common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::thread;

use common::{Rng, TestEnv, assert_closed, connect};

/// Connections sending at the same time.
const CONNECTIONS: u64 = 4;
/// Packets each connection sends.
const PACKETS: usize = 300;

/// Builds packet `i` of a connection's stream.
type MakePacket = fn(&mut Rng, usize) -> Vec<u8>;

/// Starts ccsd with `framing` and the echo MCP, streams pipelined packets from every connection
/// and checks their echo, then sends `bad` on another connection and checks that it is closed and
/// that `counter` counts it.
fn echo_then_refuse(
    framing: &str,
    listen_extra: &str,
    make: MakePacket,
    bad: &[u8],
    counter: &str,
) {
    let env = TestEnv::new(2, &format!("framing = \"{framing}\"\n{listen_extra}"), "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let addr = ccsd.addr();

    let senders: Vec<_> = (1..=CONNECTIONS)
        .map(|seed| thread::spawn(move || stream_and_compare_echo(addr, seed, make)))
        .collect();
    for sender in senders {
        sender.join().expect("connection thread");
    }

    let mut bad_conn = connect(addr);
    bad_conn.write_all(bad).expect("write bad request");
    assert_closed(&mut bad_conn);
    env.wait_stat(counter, |closed| closed == 1);
    // The echo alone would not notice two packets taken as one: the count does.
    let packets = CONNECTIONS * PACKETS as u64;
    env.wait_stat("totals.packets_in", |n| n == packets);
}

/// Sends `PACKETS` packets on one connection in writes cut at random points while a reader
/// collects the echo, then checks the echo is the stream sent.
fn stream_and_compare_echo(addr: SocketAddr, seed: u64, make: MakePacket) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
    let stream: Vec<u8> = (0..PACKETS).flat_map(|i| make(&mut rng, i)).collect();
    let mut conn = connect(addr);
    let mut reader = conn.try_clone().expect("clone socket");
    let expected_len = stream.len();
    let echo = thread::spawn(move || {
        let mut echoed = vec![0; expected_len];
        reader.read_exact(&mut echoed).map(|()| echoed)
    });
    let mut sent = 0;
    while sent < stream.len() {
        let cut = 1 + rng.below(2048) as usize;
        let end = stream.len().min(sent + cut);
        conn.write_all(&stream[sent..end]).expect("write");
        sent = end;
    }
    let echoed = echo.join().expect("reader").expect("read the echo");
    if let Some(at) = (0..stream.len()).find(|&i| echoed[i] != stream[i]) {
        panic!(
            "connection {seed}: echo differs from byte {at}: sent {:?}, got {:?}",
            String::from_utf8_lossy(&stream[at..stream.len().min(at + 80)]),
            String::from_utf8_lossy(&echoed[at..echoed.len().min(at + 80)])
        );
    }
}

/// `len` random bytes drawn from `alphabet`.
fn bytes_from(rng: &mut Rng, alphabet: &[u8], len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
        .collect()
}

/// Any byte at all, newlines and NULs included.
fn binary(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next() as u8).collect()
}

const TEXT: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 \t\r:;*$-";

fn line_packet(rng: &mut Rng, _: usize) -> Vec<u8> {
    let len = rng.below(300) as usize;
    let mut line = bytes_from(rng, TEXT, len);
    line.extend_from_slice(if rng.below(2) == 0 { b"\r\n" } else { b"\n" });
    line
}

fn memcache_packet(rng: &mut Rng, i: usize) -> Vec<u8> {
    let data_len = rng.below(1500) as usize;
    let mut packet = match rng.below(6) {
        0 => format!("set key{i} 0 0 {data_len}\r\n").into_bytes(),
        1 => format!("cas key{i} 5 60 {data_len} 77 noreply\r\n").into_bytes(),
        2 => format!("ms key{i} {data_len} T60\r\n").into_bytes(),
        3 => return format!("get key{i} key{} other\r\n", i + 1).into_bytes(),
        4 => return format!("delete key{i}\n").into_bytes(),
        _ => return b"bogus command\r\n".to_vec(),
    };
    packet.extend_from_slice(&binary(rng, data_len));
    packet.extend_from_slice(b"\r\n");
    packet
}

fn resp_packet(rng: &mut Rng, i: usize) -> Vec<u8> {
    if rng.below(5) == 0 {
        return format!("GET key{i}\r\n").into_bytes();
    }
    let args = 1 + rng.below(5);
    let mut packet = format!("*{args}\r\n").into_bytes();
    for _ in 0..args {
        let len = rng.below(700) as usize;
        packet.extend_from_slice(format!("${len}\r\n").as_bytes());
        packet.extend_from_slice(&binary(rng, len));
        packet.extend_from_slice(b"\r\n");
    }
    packet
}

fn http_packet(rng: &mut Rng, i: usize) -> Vec<u8> {
    match rng.below(3) {
        0 => format!("GET /item/{i} HTTP/1.1\r\nHost: test\r\nAccept: */*\r\n\r\n").into_bytes(),
        1 => {
            let len = rng.below(2000) as usize;
            let mut packet =
                format!("POST /item/{i} HTTP/1.1\r\nHost: test\r\ncontent-length: {len}\r\n\r\n")
                    .into_bytes();
            packet.extend_from_slice(&binary(rng, len));
            packet
        }
        _ => {
            let mut packet =
                format!("PUT /item/{i} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .into_bytes();
            for _ in 0..rng.below(4) {
                let len = 1 + rng.below(600) as usize;
                packet.extend_from_slice(format!("{len:x};n=v\r\n").as_bytes());
                packet.extend_from_slice(&binary(rng, len));
                packet.extend_from_slice(b"\r\n");
            }
            packet.extend_from_slice(b"0\r\nChecksum: 1\r\n\r\n");
            packet
        }
    }
}

#[test]
fn line_framing_echoes_pipelined_lines_and_closes_a_line_over_max_packet() {
    echo_then_refuse(
        "line",
        "max_packet = \"4KiB\"",
        line_packet,
        &[b'x'; 5000],
        "totals.closed_oversize",
    );
}

#[test]
fn memcache_framing_echoes_pipelined_commands_and_closes_a_malformed_storage_line() {
    echo_then_refuse(
        "memcache",
        "",
        memcache_packet,
        b"set k 0 0 abc\r\nhello\r\n",
        "totals.closed_protocol",
    );
}

#[test]
fn resp_framing_echoes_pipelined_requests_and_closes_a_non_bulk_element() {
    echo_then_refuse(
        "resp",
        "",
        resp_packet,
        b"*1\r\n:1\r\n",
        "totals.closed_protocol",
    );
}

#[test]
fn http_framing_echoes_pipelined_requests_and_closes_a_smuggling_attempt() {
    echo_then_refuse(
        "http",
        "http_max_header = \"1KiB\"",
        http_packet,
        b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "totals.closed_protocol",
    );
}
