//! Garbage from MCP: the test plays MCP on the real lanes and writes into the response lane
//! records and frames no honest MCP would, then checks that ccsd counts and drops each one and
//! that the lane still carries a valid reply to its client afterwards. A tail published behind
//! the consumer's head, in either direction, makes neither side read anything twice.

use crate::common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use ccsd::flow::FlowId;
use ccsd::lane::{LANE_HEADER_SIZE, Lane, Producer};
use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, RecordHeader};
use common::{TestEnv, WAIT, connect, packet, read_n};

/// Byte offset of `tail` in a lane header (`docs/protocol.md`, "Lane layout").
const OFF_TAIL: u64 = 128;

fn push(mcp: &mut Producer, record: &[&[u8]]) {
    mcp.try_push(record).expect("room in the response lane");
    mcp.publish().expect("publish");
}

#[test]
fn garbage_in_the_response_lane_is_counted_and_the_lane_stays_usable() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let settings = env.settings();
    let mut requests = Lane::attach(&settings.request_lane_path(0), None)
        .unwrap()
        .into_consumer();
    let response = Lane::attach(&settings.response_lane_path(), None).unwrap();
    let epoch = response.epoch() as u16;
    let capacity = response.capacity();
    let mut mcp = response.into_producer();

    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"ping")).unwrap();
    let mut record = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while requests.pop_into(&mut record).unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "no request arrived");
        requests.wait(Some(WAIT)).unwrap();
    }
    let request = RecordHeader::decode(&record).unwrap();
    let reply = RecordHeader::reply_to(&request, Kind::Data, 8);

    let mut bad_version = reply.encode();
    bad_version[2] = 99;
    push(&mut mcp, &[&bad_version, &packet(b"vers")]);
    let mut unknown_kind = reply.encode();
    unknown_kind[3] = 200;
    push(&mut mcp, &[&unknown_kind, &packet(b"kind")]);
    // The header claims 8 payload bytes, the frame carries 3.
    push(&mut mcp, &[&reply.encode(), b"len"]);
    env.wait_stat("bridge.dropped_malformed", |v| v == 3);

    let mut stale = reply;
    // The epoch is the top 16 bits of a flow id.
    stale.flow = FlowId(request.flow.0 ^ (1 << 48));
    assert_ne!(stale.flow.epoch(), epoch);
    push(&mut mcp, &[&stale.encode(), &packet(b"old!")]);
    env.wait_stat("bridge.dropped_stale_epoch", |v| v == 1);

    // A frame whose length exceeds the lane, written straight into the file as a broken MCP
    // might. The bridge drains the lane every main-loop turn, so no wake-up is needed.
    drop(mcp);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(settings.response_lane_path())
        .unwrap();
    let mut tail = [0u8; 8];
    file.read_exact_at(&mut tail, OFF_TAIL).unwrap();
    let tail = u64::from_le_bytes(tail);
    let mut frame = [0u8; 16];
    frame[..4].copy_from_slice(&(capacity as u32).to_le_bytes());
    file.write_all_at(&frame, LANE_HEADER_SIZE as u64 + (tail & (capacity - 1)))
        .unwrap();
    file.write_all_at(&(tail + 16).to_le_bytes(), OFF_TAIL)
        .unwrap();
    env.wait_stat("bridge.lane_corruptions", |v| v == 1);
    env.wait_stat("bridge.lane_corrupt_bytes", |v| v == 16);

    let mut mcp = Lane::attach(&settings.response_lane_path(), None)
        .unwrap()
        .into_producer();
    push(&mut mcp, &[&reply.encode(), &packet(b"pong")]);
    assert_eq!(read_n(&mut client, 8), packet(b"pong"));
    env.wait_stat("bridge.records_routed", |v| v == 1);
}

#[test]
fn a_response_tail_behind_the_head_never_replays_delivered_replies() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let settings = env.settings();
    let mut client = connect(ccsd.addr());
    for i in 0..5u8 {
        let body = [b'a' + i; 4];
        client.write_all(&packet(&body)).unwrap();
        assert_eq!(read_n(&mut client, 8), packet(&body));
    }

    // A corrupt writer publishes a tail behind the bridge's head, which is past the five replies.
    let file = OpenOptions::new()
        .write(true)
        .open(settings.response_lane_path())
        .unwrap();
    file.write_all_at(&0u64.to_le_bytes(), OFF_TAIL).unwrap();
    env.wait_stat("bridge.lane_bad_tails", |v| v == 1);

    // Echo MCP's next publish puts its own tail back: only the new reply is delivered.
    client.write_all(&packet(b"last")).unwrap();
    assert_eq!(read_n(&mut client, 8), packet(b"last"));
    common::assert_open_and_silent(&mut client);
    let stats = env.stats();
    assert_eq!(common::stat(&stats, "bridge.records_in"), Some(6));
    assert_eq!(common::stat(&stats, "bridge.lane_corrupt_bytes"), Some(0));
    assert_eq!(common::stat(&stats, "bridge.lane_bad_tails"), Some(1));
}

#[test]
fn a_request_tail_behind_mcps_head_never_hands_mcp_a_request_twice() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let settings = env.settings();
    let mut mcp = McpEndpoint::attach_wait(&settings, WAIT).expect("attach");
    let mut msg = Message::new();
    let mut client = connect(ccsd.addr());
    for body in [b"one", b"two", b"six"] {
        client.write_all(&packet(body)).unwrap();
        assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
        assert_eq!(msg.payload(), packet(body));
    }

    // A corrupt writer publishes a tail behind MCP's head in the worker's request lane.
    let file = OpenOptions::new()
        .write(true)
        .open(settings.request_lane_path(0))
        .unwrap();
    file.write_all_at(&0u64.to_le_bytes(), OFF_TAIL).unwrap();
    assert!(
        !mcp.try_recv(&mut msg),
        "nothing to read, nothing read again"
    );
    assert!(!mcp.try_recv(&mut msg));
    assert_eq!(mcp.counters().lane_bad_tails, 1, "reported once");

    // ccsd's next publish puts its own tail back: MCP gets the new request only.
    client.write_all(&packet(b"new")).unwrap();
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    assert_eq!(msg.payload(), packet(b"new"));
    assert!(
        !mcp.recv(&mut msg, Some(Duration::from_millis(100)))
            .unwrap()
    );
    assert_eq!(mcp.counters().lane_corruptions, 0);
}

/// Byte offset of `head` in a lane header (`docs/protocol.md`, "Lane layout").
const OFF_HEAD: u64 = 256;

#[test]
fn a_worker_continues_its_request_lane_at_a_head_its_tail_cannot_follow_and_counts_it() {
    let env = TestEnv::new(1, "max_packet = \"1KiB\"", "");
    env.add_setting("queues", "capacity = \"64KiB\"");
    env.add_setting("queues", "on_full = \"backpressure\"");
    let ccsd = env.start_ccsd();
    let path = env.settings().request_lane_path(0);
    let capacity = Lane::attach(&path, None).unwrap().capacity();
    // A broken MCP stores a head far ahead of everything ccsd wrote: once the worker needs the
    // space, the lane would look full forever.
    let ahead = 2 * capacity + 1000;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&ahead.to_le_bytes(), OFF_HEAD)
        .unwrap();

    let body = [b'r'; 1000];
    let mut client = connect(ccsd.addr());
    for _ in 0..(capacity as usize / body.len() + 8) {
        client.write_all(&packet(&body)).unwrap();
    }
    env.wait_stat("totals.lane_resyncs", |v| v == 1);

    // The worker went on writing at that head: an MCP reading from it finds whole requests.
    let mut requests = Lane::attach(&path, None).unwrap().into_consumer();
    assert_eq!(requests.lane().head_position(), ahead);
    let mut record = Vec::new();
    assert!(requests.pop_into(&mut record).unwrap().is_some());
    let request = RecordHeader::decode(&record).unwrap();
    assert_eq!(request.kind, Kind::Data);
    assert_eq!(&record[ccsd::record::RECORD_HEADER_SIZE..], packet(&body));
}
