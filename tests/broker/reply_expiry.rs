//! `mcp.reply_max_age`: a reply that MCP stamped too long ago is dropped and counted, and the
//! connection stays open for the next one. The test plays MCP on the real lanes, so it can write
//! the reply's `timestamp_ns` itself (`McpEndpoint::send` stamps the current time).

use crate::common;

use std::io::Write;
use std::time::{Duration, Instant};

use ccsd::clock::monotonic_ns;
use ccsd::lane::Lane;
use ccsd::record::{Kind, RecordHeader};
use common::{TestEnv, WAIT, connect, packet, read_n};

#[test]
fn a_reply_older_than_reply_max_age_is_dropped_and_the_connection_stays_open() {
    // 5s: the fresh reply is in time even after a stall on a loaded machine; the old one, stamped
    // 10 s ago, is not.
    let env = TestEnv::new(1, "", "[mcp]\nreply_max_age = \"5s\"\n");
    let ccsd = env.start_ccsd();
    let settings = env.settings();
    let mut requests = Lane::attach(&settings.request_lane_path(0), None)
        .unwrap()
        .into_consumer();
    let mut mcp = Lane::attach(&settings.response_lane_path(), None)
        .unwrap()
        .into_producer();

    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"ping")).unwrap();
    let mut record = Vec::new();
    let deadline = Instant::now() + WAIT;
    while requests.pop_into(&mut record).unwrap().is_none() {
        assert!(Instant::now() < deadline, "no request arrived");
        requests.wait(Some(WAIT)).unwrap();
    }
    let request = RecordHeader::decode(&record).unwrap();

    let mut old = RecordHeader::reply_to(&request, Kind::Data, 8);
    old.timestamp_ns = monotonic_ns() - Duration::from_secs(10).as_nanos() as u64;
    mcp.try_push(&[&old.encode(), &packet(b"late")]).unwrap();
    mcp.publish().unwrap();
    env.wait_stat("bridge.dropped_expired", |v| v == 1);

    let mut fresh = old;
    fresh.timestamp_ns = monotonic_ns();
    mcp.try_push(&[&fresh.encode(), &packet(b"pong")]).unwrap();
    mcp.publish().unwrap();
    assert_eq!(
        read_n(&mut client, 8),
        packet(b"pong"),
        "only the fresh reply"
    );
    assert_eq!(env.wait_stat("totals.connections_open", |v| v == 1), 1);
}
