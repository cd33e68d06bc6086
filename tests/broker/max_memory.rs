//! `limits.max_memory`: clients holding large unfinished packets take ccsd over the ceiling; it
//! closes the largest holders first (`closed_max_memory`), keeps every smaller client and keeps
//! serving, and reports the total in the stats file, admin `stats` and `/metrics`. A reload that
//! sets the ceiling under what is held has the same effect at once; while ccsd is still over the
//! ceiling (a round closes at most 64 connections, the next comes 100 ms later), new connections
//! are refused and clients are not read, and reading resumes once it is under.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;

use common::{TestEnv, WAIT, connect, read_n, round_trip};

const MIB: usize = 1 << 20;
const MAX_MEMORY: u64 = 64 << 20;
/// Clients that send part of a 1 MiB packet: each holds a 512 KiB receive buffer.
const SMALL: usize = 8;
const SMALL_PACKET: usize = MIB;
const SMALL_SENT: usize = 500 * 1024;
/// Clients that send 15 MiB of a 15 MiB + 1 packet: each holds a 16 MiB receive buffer, so four
/// of them and the small ones are over 64 MiB, three are not.
const LARGE: usize = 4;
const LARGE_PACKET: usize = 15 * MIB + 1;

fn header(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap().to_be_bytes()
}

/// The admin port's answer to `command`, up to its `END` line.
fn admin(addr: SocketAddr, command: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(command.as_bytes()).unwrap();
    let mut out = String::new();
    for line in BufReader::new(s).lines() {
        let line = line.unwrap();
        if line.trim_end() == "END" {
            break;
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The body of `GET /metrics`.
fn metrics(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn over_max_memory_the_largest_holders_are_closed_and_the_others_served() {
    let env = TestEnv::new(1, "", &format!("[limits]\nmax_memory = {MAX_MEMORY}\n"));
    // Lanes must hold the largest (16 MiB) packet.
    env.add_setting("queues", "capacity = \"32MiB\"");
    let mut ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let admin_addr = ccsd.admin.unwrap();

    let mut small: Vec<TcpStream> = (0..SMALL)
        .map(|_| {
            let mut c = connect(ccsd.addr());
            c.write_all(&header(SMALL_PACKET)).unwrap();
            c.write_all(&vec![b's'; SMALL_SENT]).unwrap();
            c
        })
        .collect();
    env.wait_stat("totals.buffered_bytes", |v| {
        v >= (SMALL * SMALL_SENT) as u64
    });

    let large: Vec<_> = (0..LARGE)
        .map(|_| {
            let mut c = connect(ccsd.addr());
            c.set_write_timeout(Some(WAIT)).unwrap();
            thread::spawn(move || {
                let mut packet = header(LARGE_PACKET).to_vec();
                packet.resize(4 + LARGE_PACKET - 1, b'L');
                // Fails once ccsd closes the connection; a survivor keeps it open, unfinished.
                let sent = c.write_all(&packet).is_ok();
                (sent, c)
            })
        })
        .collect();
    let large: Vec<_> = large.into_iter().map(|t| t.join().unwrap()).collect();

    let closed = env.wait_stat("totals.closed_max_memory", |v| v >= 1);
    env.wait_stat("memory_held_bytes", |v| v <= MAX_MEMORY);
    assert!(
        closed < LARGE as u64,
        "only some of the largest holders are closed"
    );
    assert!(
        large.iter().filter(|(sent, _)| !sent).count() <= closed as usize,
        "a large client failed without being closed for memory"
    );

    // Every small client is still there: its packet completes and comes back.
    for c in &mut small {
        c.write_all(&vec![b's'; SMALL_PACKET - SMALL_SENT]).unwrap();
    }
    for c in &mut small {
        let reply = read_n(c, 4 + SMALL_PACKET);
        assert_eq!(reply[..4], header(SMALL_PACKET));
    }
    // New connections are accepted again.
    let mut fresh = connect(ccsd.addr());
    assert_eq!(round_trip(&mut fresh, b"after"), common::packet(b"after"));

    let stats = env.stats();
    assert_eq!(common::stat(&stats, "max_memory_bytes"), Some(MAX_MEMORY));
    for counter in ["closed_error", "closed_protocol", "closed_oversize"] {
        assert_eq!(
            common::stat(&stats, &format!("totals.{counter}")),
            Some(0),
            "{counter}"
        );
    }
    let text = admin(admin_addr, "stats\r\n");
    assert!(
        text.contains(&format!("STAT closed_max_memory {closed}\n")),
        "{text}"
    );
    assert!(text.contains(&format!("STAT max_memory_bytes {MAX_MEMORY}\n")));
    assert!(text.contains("STAT memory_held_bytes "));
    assert!(text.contains("STAT acceptor_refused_max_memory "));
    let metrics = metrics(admin_addr);
    assert!(metrics.contains("# TYPE ccsd_memory_held_bytes gauge"));
    assert!(metrics.contains(&format!(
        "ccsd_closed_max_memory_total{{worker=\"0\"}} {closed}"
    )));
    drop(large);
    ccsd.kill();
}

#[test]
fn a_reload_that_sets_max_memory_under_what_is_held_closes_the_largest_holders() {
    let env = TestEnv::new(1, "", "[limits]\nmax_memory = 0\n");
    env.add_setting("queues", "capacity = \"32MiB\"");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();

    let mut small = connect(ccsd.addr());
    small.write_all(&header(SMALL_PACKET)).unwrap();
    small.write_all(&vec![b's'; SMALL_SENT]).unwrap();
    let large: Vec<TcpStream> = (0..LARGE)
        .map(|_| {
            let mut c = connect(ccsd.addr());
            let mut packet = header(LARGE_PACKET).to_vec();
            packet.resize(4 + LARGE_PACKET - 1, b'L');
            c.write_all(&packet).unwrap();
            c
        })
        .collect();
    // No ceiling: everything is held.
    env.wait_stat("memory_held_bytes", |v| v > MAX_MEMORY);
    assert_eq!(
        common::stat(&env.stats(), "totals.closed_max_memory"),
        Some(0)
    );

    let config = std::fs::read_to_string(&env.config).unwrap();
    let config = config.replace("max_memory = 0", &format!("max_memory = {MAX_MEMORY}"));
    std::fs::write(&env.config, config).unwrap();
    let answer = admin(ccsd.admin.unwrap(), "reload\r\n");
    assert!(
        answer.contains("changed limits.max_memory 0b -> 64mib"),
        "{answer}"
    );

    let closed = env.wait_stat("totals.closed_max_memory", |v| v >= 1);
    env.wait_stat("memory_held_bytes", |v| v <= MAX_MEMORY);
    assert!(
        closed < LARGE as u64,
        "only some of the largest holders are closed"
    );
    small
        .write_all(&vec![b's'; SMALL_PACKET - SMALL_SENT])
        .unwrap();
    let reply = read_n(&mut small, 4 + SMALL_PACKET);
    assert_eq!(reply[..4], header(SMALL_PACKET));
    drop(large);
}

#[test]
fn while_over_max_memory_clients_are_not_read_and_new_connections_are_refused() {
    /// More holders than four rounds close (64 each), so that ccsd stays over the ceiling for
    /// four rounds, 400 ms: time enough, on a loaded machine, for the test to see it refuse and
    /// pause.
    const HOLDERS: usize = 140 + 3 * 64;
    let env = TestEnv::new(1, "", "[limits]\nmax_memory = 0\n");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();

    // A client with nothing buffered: never a candidate for closing.
    let mut talker = connect(ccsd.addr());
    assert_eq!(
        round_trip(&mut talker, b"before"),
        common::packet(b"before")
    );
    // Each holds a 1 MiB receive buffer: 332 MiB in all.
    let holders: Vec<TcpStream> = (0..HOLDERS)
        .map(|_| {
            let mut c = connect(ccsd.addr());
            c.write_all(&header(SMALL_PACKET * 2)).unwrap();
            c.write_all(&vec![b'h'; 1000 * 1024]).unwrap();
            c
        })
        .collect();
    env.wait_stat("memory_held_bytes", |v| v >= (HOLDERS * 1000 * 1024) as u64);

    let config = std::fs::read_to_string(&env.config).unwrap();
    let config = config.replace("max_memory = 0", &format!("max_memory = {MAX_MEMORY}"));
    std::fs::write(&env.config, config).unwrap();
    let answer = admin(ccsd.admin.unwrap(), "reload\r\n");
    assert!(
        answer.contains("changed limits.max_memory 0b -> 64mib"),
        "{answer}"
    );
    // Over the ceiling from the reload on: each round frees 64 MiB, 76 MiB stay after the fourth
    // until the fifth brings the total down to 56 MiB.
    let mut refused = connect(ccsd.addr());
    common::assert_closed(&mut refused);
    talker.write_all(&common::packet(b"while over")).unwrap();

    // Then under it: the talker is read again and answered.
    let reply = read_n(&mut talker, 4 + b"while over".len());
    assert_eq!(reply, common::packet(b"while over"));
    env.wait_stat("memory_held_bytes", |v| v <= MAX_MEMORY);
    // Five rounds, not every holder.
    let closed = env.wait_stat("totals.closed_max_memory", |v| v > 64);
    assert!(closed < HOLDERS as u64, "{closed}");
    env.wait_stat("totals.memory_pauses", |v| v >= 1);
    let stats = env.stats();
    assert!(common::stat(&stats, "acceptor.refused_max_memory").unwrap() >= 1);
    let mut fresh = connect(ccsd.addr());
    assert_eq!(round_trip(&mut fresh, b"after"), common::packet(b"after"));
    drop(holders);
}
