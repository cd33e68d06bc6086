//! The length framer's `max_packet` bound: exactly the maximum passes, one byte more closes that
//! connection only, and the close is counted.

use crate::common;

use std::io::Write;

use common::{TestEnv, assert_closed, connect, packet, round_trip};

#[test]
fn packet_of_exactly_max_packet_passes_and_one_byte_more_closes_only_that_connection() {
    let env = TestEnv::new(2, "max_packet = 1024", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();

    let mut bystander = connect(ccsd.addr());
    assert_eq!(round_trip(&mut bystander, b"before"), packet(b"before"));

    let mut exact = connect(ccsd.addr());
    let body = vec![7u8; 1024 - 4];
    assert_eq!(round_trip(&mut exact, &body), packet(&body));

    let mut over = connect(ccsd.addr());
    // Only the 4-byte header: the declared length alone is enough to refuse the packet.
    over.write_all(&(1021u32).to_be_bytes()).unwrap();
    assert_closed(&mut over);

    assert_eq!(round_trip(&mut bystander, b"after"), packet(b"after"));
    assert_eq!(round_trip(&mut exact, b"still open"), packet(b"still open"));
    env.wait_stat("totals.closed_oversize", |v| v == 1);
    assert_eq!(
        common::stat(&env.stats(), "totals.closed_protocol"),
        Some(0)
    );
}

#[test]
fn malformed_length_prefix_is_a_counted_protocol_close() {
    // With `length_includes = "all"` a declared length smaller than the prefix itself is invalid.
    let env = TestEnv::new(1, "length_includes = \"all\"", "");
    let ccsd = env.start_ccsd();
    let mut bad = connect(ccsd.addr());
    bad.write_all(&2u32.to_be_bytes()).unwrap();
    assert_closed(&mut bad);
    env.wait_stat("totals.closed_protocol", |v| v == 1);
}

#[test]
fn huge_declared_packet_is_closed_at_its_header_without_buffering_the_body() {
    let env = TestEnv::new(1, "max_packet = \"1MiB\"", "");
    let ccsd = env.start_ccsd();
    let mut client = connect(ccsd.addr());
    client.write_all(&(16u32 << 20).to_be_bytes()).unwrap();
    let mut writer = client.try_clone().unwrap();
    // 8 MiB of the declared 16 MiB body; ccsd has closed the connection before most of it lands,
    // so the write fails part-way (reset or broken pipe).
    let body = std::thread::spawn(move || writer.write_all(&vec![0u8; 8 << 20]));
    assert_closed(&mut client);
    let _ = body.join().unwrap();
    env.wait_stat("totals.closed_oversize", |v| v == 1);
    assert!(common::peak_rss(&ccsd) < 64 << 20);
}

#[test]
fn text_packet_without_an_end_is_closed_once_it_passes_max_packet() {
    let env = TestEnv::new(1, "framing = \"line\"\nmax_packet = \"1MiB\"", "");
    let ccsd = env.start_ccsd();
    let mut client = connect(ccsd.addr());
    let mut writer = client.try_clone().unwrap();
    // 8 MiB without a newline: ccsd keeps at most 1 MiB plus one 64 KiB read of it.
    let body = std::thread::spawn(move || writer.write_all(&vec![b'x'; 8 << 20]));
    assert_closed(&mut client);
    let _ = body.join().unwrap();
    env.wait_stat("totals.closed_oversize", |v| v == 1);
    assert!(common::peak_rss(&ccsd) < 64 << 20);
}
