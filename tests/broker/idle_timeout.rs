//! `limits.idle_timeout`: a connection with neither a read nor a write for that long is closed and
//! MCP is told the reason (timeout), while a connection that keeps sending stays open.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, Reason};
use common::{TestEnv, WAIT, assert_closed, connect, packet};

/// Long beside the busy client's pace: a stall of most of a second on a loaded machine still
/// leaves the busy client active, while the idle one has nothing to keep it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the busy client sends.
const PACE: Duration = Duration::from_millis(50);

#[test]
fn idle_connection_is_closed_with_reason_timeout_while_a_busy_one_stays_open() {
    let env = TestEnv::new(
        1,
        "",
        &format!(
            "[limits]\nidle_timeout = \"{}ms\"\n",
            IDLE_TIMEOUT.as_millis()
        ),
    );
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();

    let connected = Instant::now();
    let mut idle = connect(ccsd.addr());
    let mut busy = connect(ccsd.addr());
    // The busy client's pace is the behaviour under test: one packet every PACE for three idle
    // timeouts.
    while connected.elapsed() < 3 * IDLE_TIMEOUT {
        busy.write_all(&packet(b"still here")).unwrap();
        std::thread::sleep(PACE);
    }

    assert_closed(&mut idle);
    assert!(connected.elapsed() >= IDLE_TIMEOUT);
    env.wait_stat("totals.closed_idle", |v| v == 1);

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
    assert!(data > 0, "the busy client's packets reached MCP");

    busy.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut byte = [0u8; 1];
    match busy.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the busy connection should be open and silent, got {other:?}"),
    }
    assert_eq!(common::stat(&env.stats(), "totals.closed_idle"), Some(1));
}
