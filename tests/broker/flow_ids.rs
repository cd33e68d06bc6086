//! No flow id is issued twice within the life of the lane files: a slot whose generations are
//! used up is retired, not wrapped, and a start past the last epoch a flow id carries is refused.
//! The MCP here is the test itself, attached to the real lanes through `ccsd::mcp`; ccsd runs with
//! the test-only `CCSDTEST_SLOT_GENERATIONS`, so that the wrap is reachable with a few
//! connections instead of a million.

use crate::common;

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::process::Command;

use ccsd::flow::{GENERATIONS_ENV, MAX_EPOCH};
use ccsd::lane::Lane;
use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, RecordHeader};
use common::{Proc, TestEnv, WAIT, assert_open_and_silent, connect, packet, read_n};

/// Byte offset of the `epoch` field in a lane header (docs/protocol.md, "Lane layout").
const EPOCH_OFFSET: u64 = 24;

/// Generations per slot in these tests.
const GENERATIONS: u32 = 3;

fn start_ccsd(env: &TestEnv) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.env(GENERATIONS_ENV, GENERATIONS.to_string());
    env.start_broker(cmd, "ccsd")
}

/// The next record from ccsd, which must be of `kind`.
fn expect(mcp: &mut McpEndpoint, msg: &mut Message, kind: Kind) -> RecordHeader {
    assert!(mcp.recv(msg, Some(WAIT)).unwrap(), "no {kind:?} from ccsd");
    assert_eq!(msg.header().kind, kind, "unexpected {:?}", msg.header());
    *msg.header()
}

/// Connects, sends one packet, and returns the client with the header MCP got for it.
fn open(
    ccsd: &Proc,
    mcp: &mut McpEndpoint,
    msg: &mut Message,
    body: &[u8],
) -> (TcpStream, RecordHeader) {
    let mut client = connect(ccsd.addr());
    client.write_all(&packet(body)).unwrap();
    (client, expect(mcp, msg, Kind::Data))
}

/// A connection that asks, gets its answer and leaves; its flow.
fn short_connection(ccsd: &Proc, mcp: &mut McpEndpoint, msg: &mut Message) -> RecordHeader {
    let (mut c, req) = open(ccsd, mcp, msg, b"short");
    mcp.reply(&req, b"answer").unwrap();
    mcp.flush().unwrap();
    assert_eq!(read_n(&mut c, 6), b"answer");
    drop(c);
    expect(mcp, msg, Kind::Disconnect);
    req
}

#[test]
fn a_held_reply_is_dropped_as_stale_after_its_slot_used_up_its_generations() {
    let env = TestEnv::new(1, "", "");
    let ccsd = start_ccsd(&env);
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).expect("attach");
    let mut msg = Message::new();

    // A asks, MCP holds the reply, A leaves.
    let (a, req_a) = open(&ccsd, &mut mcp, &mut msg, b"from a");
    drop(a);
    expect(&mut mcp, &mut msg, Kind::Disconnect);
    let mut issued = HashSet::from([req_a.flow]);

    // Short connections, one at a time: with wrapping generations the next one after these
    // would be handed A's slot and generation, and A's reply.
    for i in 1..GENERATIONS {
        let req = short_connection(&ccsd, &mut mcp, &mut msg);
        assert_eq!(
            (req.flow.slot(), req.flow.generation()),
            (req_a.flow.slot(), i),
            "the free slot is reused with the next generation"
        );
        assert!(issued.insert(req.flow), "{:?} issued twice", req.flow);
    }

    let (mut b, req_b) = open(&ccsd, &mut mcp, &mut msg, b"from b");
    mcp.reply(&req_a, b"HELD FOR A").unwrap();
    mcp.reply(&req_b, b"for b").unwrap();
    mcp.flush().unwrap();
    assert_eq!(read_n(&mut b, 5), b"for b", "B gets its own reply only");
    env.wait_stat("totals.dropped_stale_flow", |v| v == 1);
    assert_open_and_silent(&mut b);
    assert!(issued.insert(req_b.flow), "B got an earlier flow id");
    assert_ne!(req_b.flow.slot(), req_a.flow.slot(), "A's slot is retired");

    // More rounds through several retirements: still no id comes back.
    drop(b);
    expect(&mut mcp, &mut msg, Kind::Disconnect);
    for _ in 0..4 * GENERATIONS {
        let req = short_connection(&ccsd, &mut mcp, &mut msg);
        assert!(issued.insert(req.flow), "{:?} issued twice", req.flow);
    }
    drop(ccsd);
}

#[test]
fn a_start_past_the_last_epoch_a_flow_id_carries_is_refused() {
    let env = TestEnv::new(1, "", "");
    let response_lane = env.settings().response_lane_path();
    let mut first = env.start_ccsd();
    assert!(first.lines.iter().any(|l| l.contains("ready: epoch 1,")));
    first.kill();

    // Pretend these lane files have served all starts but the last.
    let header = OpenOptions::new()
        .write(true)
        .open(&response_lane)
        .expect("open the response lane");
    let before_last = u64::from(MAX_EPOCH) - 1;
    header
        .write_all_at(&before_last.to_le_bytes(), EPOCH_OFFSET)
        .unwrap();

    let mut last = env.start_ccsd();
    assert!(
        last.lines.iter().any(|l| l.contains("0 ccsd starts left")),
        "ccsd warns that the lane files are almost used up: {:?}",
        last.lines
    );
    let ready = format!("ready: epoch {MAX_EPOCH},");
    assert!(last.lines.iter().any(|l| l.contains(&ready)));
    last.kill();

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.arg("--config").arg(&env.config);
    let mut refused = Proc::spawn(cmd, "ccsd");
    let line = refused.wait_for_line("every epoch a flow id can carry");
    assert!(
        line.contains(&*response_lane.to_string_lossy()),
        "the message names the lane: {line}"
    );
    assert_eq!(refused.exit_code(), Some(2));
}

#[test]
fn a_lane_file_recreated_alone_does_not_reset_the_epoch() {
    let env = TestEnv::new(1, "", "");
    for epoch in 1..=2 {
        let mut ccsd = env.start_ccsd();
        let ready = format!("ready: epoch {epoch},");
        assert!(ccsd.lines.iter().any(|l| l.contains(&ready)), "{ready}");
        ccsd.kill();
    }
    // The response lane is removed; the request lanes still count two starts.
    Lane::remove_files(&env.settings().response_lane_path()).unwrap();
    let ccsd = env.start_ccsd();
    assert!(
        ccsd.lines.iter().any(|l| l.contains("ready: epoch 3,")),
        "{:?}",
        ccsd.lines
    );
}
