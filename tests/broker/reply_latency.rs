//! The request→reply latency histogram: a reply counts when its last byte is written to the
//! client, also when a slow reader keeps it in the send buffer for a while.

use crate::common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ccsd::mcp::service::REPLY_CHUNK;
use common::{TestEnv, connect, packet, stat};

const REQUESTS: usize = 8;
const BODY: usize = 1 << 20;
/// The echo MCP answers each request in chunks of at most `REPLY_CHUNK` bytes, each its own reply.
const REPLIES: u64 = (REQUESTS * (4 + BODY).div_ceil(REPLY_CHUNK)) as u64;
/// How long the client waits before it reads anything.
const CLIENT_DELAY: Duration = Duration::from_millis(300);

#[test]
fn a_reply_left_in_the_send_buffer_counts_when_written_in_full() {
    let env = TestEnv::new(1, "", "[limits]\nmax_send_buffer = \"16MiB\"\n");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    // 8 MiB of replies cannot all fit in the kernel's buffers while the client reads nothing (at
    // most 4 MiB on ccsd's side, and the client's receive buffer only grows as it reads), so some
    // wait in ccsd's send buffer until the client reads.
    let body = vec![b'x'; BODY];
    for _ in 0..REQUESTS {
        client.write_all(&packet(&body)).unwrap();
    }
    env.wait_stat("totals.replies_out", |v| v == REPLIES);
    let written_before_reading = stat(&env.stats(), "request_latency.count").unwrap();
    assert!(
        written_before_reading < REPLIES,
        "{written_before_reading} replies written in full to a client that read nothing"
    );

    std::thread::sleep(CLIENT_DELAY);
    let started_reading = Instant::now();
    let mut reply = vec![0; 4 + BODY];
    for _ in 0..REQUESTS {
        client.read_exact(&mut reply).unwrap();
        assert_eq!(reply, packet(&body));
    }
    let reading = started_reading.elapsed();

    env.wait_stat("request_latency.count", |v| v == REPLIES);
    let doc = env.stats();
    let max_us = stat(&doc, "request_latency.max_us").unwrap();
    assert!(
        max_us >= CLIENT_DELAY.as_micros() as u64,
        "the last reply was written after the client's delay, yet its latency is {max_us} µs"
    );
    // Neither is a reply counted twice nor later than its writing could have ended.
    let ceiling = (CLIENT_DELAY + reading + Duration::from_secs(5)).as_micros() as u64;
    assert!(max_us < ceiling, "{max_us} µs: {}", doc["request_latency"]);
    assert_eq!(stat(&doc, "totals.replies_out"), Some(REPLIES));
}
