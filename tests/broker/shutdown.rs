//! Stopping on SIGTERM/SIGINT: listeners close at once, connections close once their requests
//! are answered (or when the grace period ends), MCP hears why, and ccsd exits 0.

use crate::common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, Reason, RecordHeader};
use common::{Proc, TestEnv, WAIT, assert_closed, connect, packet, read_n};
use rustix::process::{Pid, Signal, kill_process};

fn signal(p: &Proc, sig: Signal) {
    let pid = Pid::from_child(&p.child);
    kill_process(pid, sig).expect("send signal");
}

/// Waits until new connections are refused (the listener is closed).
fn wait_refused(p: &Proc) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(p.addr()).is_ok() {
        assert!(Instant::now() < deadline, "the listener stayed open");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn next(mcp: &mut McpEndpoint, msg: &mut Message, kind: Kind) -> RecordHeader {
    assert!(mcp.recv(msg, Some(WAIT)).unwrap(), "no {kind:?} record");
    assert_eq!(msg.header().kind, kind);
    *msg.header()
}

#[test]
fn sigterm_waits_for_the_outstanding_reply_then_closes_and_exits_zero() {
    let env = TestEnv::new(2, "", "");
    let mut ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut msg = Message::new();

    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"question")).unwrap();
    let req = next(&mut mcp, &mut msg, Kind::Data);

    signal(&ccsd, Signal::TERM);
    wait_refused(&ccsd);
    assert_eq!(
        ccsd.child.try_wait().unwrap(),
        None,
        "still waiting for the reply"
    );

    mcp.reply(&req, b"answer").unwrap();
    mcp.flush().unwrap();
    assert_eq!(read_n(&mut client, 6), b"answer");
    assert_closed(&mut client);
    // Probe connections of `wait_refused` have their own notices; find this flow's.
    let notice = loop {
        let n = next(&mut mcp, &mut msg, Kind::Disconnect);
        if n.flow == req.flow {
            break n;
        }
    };
    assert_eq!(
        (notice.flow, Reason::from_u8(notice.code)),
        (req.flow, Some(Reason::Shutdown))
    );
    assert_eq!(ccsd.exit_code(), Some(0));
    // A probe of `wait_refused` accepted just before the listener closed is closed by the
    // shutdown too, so this client's close is at least one of them.
    let closed = common::stat(&env.stats(), "totals.closed_shutdown").unwrap_or(0);
    assert!(closed >= 1, "closed_shutdown = {closed}");
}

/// A ccsd with `shutdown_grace`, and a client whose request MCP has taken and will never answer.
/// The MCP endpoint is returned so that it stays attached.
fn unanswered_request(grace: &str) -> (Proc, McpEndpoint, TcpStream, TestEnv) {
    let env = TestEnv::new(1, "", "");
    env.add_setting("broker", &format!("shutdown_grace = \"{grace}\""));
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"never answered")).unwrap();
    next(&mut mcp, &mut Message::new(), Kind::Data);
    (ccsd, mcp, client, env)
}

#[test]
fn unanswered_connections_close_when_the_grace_period_ends() {
    let (mut ccsd, _mcp, mut client, _env) = unanswered_request("300ms");
    signal(&ccsd, Signal::INT);
    assert_closed(&mut client);
    assert_eq!(ccsd.exit_code(), Some(0));
}

#[test]
fn a_second_signal_closes_everything_at_once() {
    let (mut ccsd, _mcp, mut client, _env) = unanswered_request("10m");
    signal(&ccsd, Signal::TERM);
    wait_refused(&ccsd);
    signal(&ccsd, Signal::TERM);
    assert_closed(&mut client);
    assert_eq!(ccsd.exit_code(), Some(0));
}
