//! `limits.packet_timeout`: a client that trickles an unfinished packet in, one byte at a time
//! (each byte is activity, so `limits.idle_timeout` never fires), is closed once the packet is
//! older than the timeout, counted in `closed_packet_timeout`; a client whose packets complete in
//! time stays open and gets every reply. The timeout can be turned on by an admin `reload`.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, Reason};
use common::{TestEnv, WAIT, assert_closed, connect, packet};

/// Long beside the 50 ms between the prompt client's two halves: a stall of most of a second on
/// a loaded machine still completes its packet in time, while the dripped packet (a byte every
/// 50 ms, 100 bytes) cannot complete before the timeout.
const PACKET_TIMEOUT: Duration = Duration::from_secs(1);
/// How long both clients keep sending.
const SENDING: Duration = Duration::from_millis(2500);

#[test]
fn a_packet_trickled_in_past_the_timeout_closes_its_connection_and_a_prompt_one_does_not() {
    let env = TestEnv::new(
        1,
        "",
        &format!(
            "[limits]\nidle_timeout = \"5s\"\npacket_timeout = \"{}ms\"\n",
            PACKET_TIMEOUT.as_millis()
        ),
    );
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();

    let started = Instant::now();
    let mut drip = connect(ccsd.addr());
    let mut prompt = connect(ccsd.addr());
    // A 100-byte packet announced, its bytes sent one every 50 ms: activity all the time, so only
    // the packet timeout can close it while the clients send.
    drip.write_all(&100u32.to_be_bytes()).unwrap();
    let mut sent = 0;
    let mut prompt_packets = 0;
    // The pace is the behaviour under test: both clients keep sending for SENDING.
    while started.elapsed() < SENDING {
        if drip.write_all(b"d").is_ok() {
            sent += 1;
        }
        // Each of the prompt client's packets arrives in two parts 50 ms apart: unfinished for
        // a while, but never for long.
        let p = packet(b"on time");
        if prompt_packets % 2 == 0 {
            prompt.write_all(&p[..5]).unwrap();
        } else {
            prompt.write_all(&p[5..]).unwrap();
        }
        prompt_packets += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(sent < 100, "the dripped packet never completed");
    assert_closed(&mut drip);
    env.wait_stat("totals.closed_packet_timeout", |v| v == 1);

    let mut msg = Message::new();
    let mut data = 0;
    let notice = loop {
        assert!(
            mcp.recv(&mut msg, Some(WAIT)).unwrap(),
            "no disconnect notice"
        );
        match msg.header().kind {
            Kind::Data => data += 1,
            Kind::Disconnect => break *msg.header(),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(notice.code, Reason::Timeout as u8);
    assert!(data > 0, "the prompt client's packets reached MCP");
    let stats = env.stats();
    assert_eq!(
        common::stat(&stats, "totals.closed_packet_timeout"),
        Some(1)
    );
    assert_eq!(common::stat(&stats, "totals.closed_idle"), Some(0));
    assert_eq!(common::stat(&stats, "totals.connections_open"), Some(1));
    common::assert_open_and_silent(&mut prompt);
}

#[test]
fn a_packet_timeout_turned_on_by_reload_closes_a_packet_left_unfinished() {
    let env = TestEnv::new(1, "", "[limits]\npacket_timeout = \"0s\"\n");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut stalled = connect(ccsd.addr());
    stalled.write_all(&100u32.to_be_bytes()).unwrap();
    stalled.write_all(b"only the start").unwrap();
    env.wait_stat("totals.buffered_bytes", |v| v > 0);

    let config = std::fs::read_to_string(&env.config).unwrap();
    let config = config.replace("packet_timeout = \"0s\"", "packet_timeout = \"200ms\"");
    std::fs::write(&env.config, config).unwrap();
    let mut admin = TcpStream::connect(ccsd.admin.unwrap()).unwrap();
    admin.set_read_timeout(Some(WAIT)).unwrap();
    admin.write_all(b"reload\r\n").unwrap();
    let answer: Vec<String> = BufReader::new(admin)
        .lines()
        .map(Result::unwrap)
        .take_while(|l| l != "END")
        .collect();
    assert!(
        answer.contains(&"changed limits.packet_timeout 0ns -> 200ms".to_owned()),
        "{answer:?}"
    );

    assert_closed(&mut stalled);
    env.wait_stat("totals.closed_packet_timeout", |v| v == 1);
    let mut fresh = connect(ccsd.addr());
    assert_eq!(
        common::round_trip(&mut fresh, b"whole"),
        packet(b"whole"),
        "a whole packet is not held to it"
    );
}
