//! `examples/custom_actor`: a binary of one's own built with `Broker::builder`, whose audit actor
//! watches its own port and timer on ccsd's main poller and receives `CustomMcp` and `NotifyStat`.
//! The test process is the MCP.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use ccsd::flow::FlowId;
use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, RecordHeader};
use common::{TestEnv, WAIT, connect, example_bin, packet, read_n};

/// Reads lines from the audit feed until one contains every word of `needles`.
fn line_with(feed: &mut BufReader<TcpStream>, needles: &[&str]) -> String {
    loop {
        let mut line = String::new();
        let n = feed.read_line(&mut line).expect("audit feed readable");
        assert!(n > 0, "the audit feed closed before {needles:?}");
        if needles.iter().all(|n| line.contains(n)) {
            return line;
        }
    }
}

#[test]
fn a_custom_actor_gets_custom_records_and_stats_and_serves_its_own_port() {
    let env = TestEnv::new(1, "", "");
    let mut cmd = Command::new(example_bin("custom_actor"));
    cmd.args(["--audit", "127.0.0.1:0", "--heartbeat", "50ms"]);
    let mut broker = env.start_broker(cmd, "custom_actor");
    let line = broker.wait_for_line("audit on tcp://");
    let audit: SocketAddr = line
        .split("audit on tcp://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("the audit address");

    let stream = TcpStream::connect(audit).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut feed = BufReader::new(stream);
    line_with(&mut feed, &["audit v1"]);

    // The broker still does its job: a packet goes to MCP (this test) and the reply comes back.
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();
    let mut client = connect(broker.addr());
    client.write_all(&packet(b"through the broker")).unwrap();
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    let request = *msg.header();
    mcp.reply(&request, &packet(b"answered")).unwrap();

    let payload = b"deploy 42 started";
    let mut custom = RecordHeader::new(Kind::Custom, FlowId(0));
    custom.code = 200;
    custom.payload_len = payload.len() as u32;
    mcp.send(&custom, payload).unwrap();
    mcp.flush().unwrap();
    assert_eq!(read_n(&mut client, 12), packet(b"answered"));

    let line = line_with(&mut feed, &["custom code=200"]);
    assert!(line.contains("payload=\"deploy 42 started\""), "{line}");
    assert!(line.contains("op=Some(Application)"), "{line}");
    // The heartbeat timer reports what the last NotifyStat said.
    let line = line_with(
        &mut feed,
        &["heartbeat", "packets_in=1", "custom_records=1"],
    );
    assert!(line.contains("replies_out=1"), "{line}");
}

#[test]
fn an_actor_that_cannot_start_stops_the_broker_with_its_name() {
    let env = TestEnv::new(1, "", "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = Command::new(example_bin("custom_actor"))
        .arg("--config")
        .arg(&env.config)
        .args(["--audit", &taken.local_addr().unwrap().to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("actor audit: "), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}
