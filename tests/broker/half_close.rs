//! Half-close: after a client's FIN, the requests it already sent still reach MCP and their
//! replies are written before the connection closes; a client that closed fully is not kept
//! longer than `limits.half_close_timeout`, and not even that long once a reply finds it gone.

use crate::common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, Reason, RecordHeader};
use common::{TestEnv, WAIT, connect, packet};

const REQUESTS: usize = 50;

fn body(i: usize) -> Vec<u8> {
    format!("request {i:03}").into_bytes()
}

/// Receives `n` DATA records and returns their headers and payloads, in order.
fn receive(mcp: &mut McpEndpoint, n: usize) -> Vec<(RecordHeader, Vec<u8>)> {
    let mut msg = Message::new();
    (0..n)
        .map(|_| {
            assert!(
                mcp.recv(&mut msg, Some(WAIT)).unwrap(),
                "a request is missing"
            );
            assert_eq!(msg.header().kind, Kind::Data);
            (*msg.header(), msg.payload().to_vec())
        })
        .collect()
}

fn next_notice(mcp: &mut McpEndpoint) -> RecordHeader {
    let mut msg = Message::new();
    assert!(
        mcp.recv(&mut msg, Some(WAIT)).unwrap(),
        "no disconnect notice"
    );
    assert_eq!(msg.header().kind, Kind::Disconnect);
    *msg.header()
}

#[test]
fn pipelined_requests_sent_before_the_clients_fin_are_all_answered_before_the_close() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();

    let mut client = connect(ccsd.addr());
    let sent: Vec<u8> = (0..REQUESTS).flat_map(|i| packet(&body(i))).collect();
    client.write_all(&sent).unwrap();
    client.shutdown(Shutdown::Write).unwrap();

    // MCP answers only once ccsd has seen the FIN: every reply is written after it.
    let requests = receive(&mut mcp, REQUESTS);
    env.wait_stat("totals.half_closes", |v| v == 1);
    for (header, payload) in &requests {
        mcp.reply(header, payload).unwrap();
    }
    mcp.flush().unwrap();

    let mut replies = Vec::new();
    client.read_to_end(&mut replies).unwrap();
    assert_eq!(replies, sent, "every reply, in order, then end of stream");
    let notice = next_notice(&mut mcp);
    assert_eq!(notice.flow, requests[0].0.flow);
    assert_eq!(notice.code, Reason::PeerClosed as u8);
    env.wait_stat("totals.connections_open", |v| v == 0);
    let stats = env.stats();
    assert_eq!(common::stat(&stats, "totals.closed_peer"), Some(1));
    assert_eq!(
        common::stat(&stats, "totals.replies_out"),
        Some(REQUESTS as u64)
    );
    assert_eq!(common::stat(&stats, "totals.half_close_timeouts"), Some(0));
}

#[test]
fn a_client_that_closed_fully_is_not_kept_past_the_half_close_timeout() {
    let timeout = Duration::from_millis(300);
    let env = TestEnv::new(1, "", "[limits]\nhalf_close_timeout = \"300ms\"\n");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();

    // Fire and forget: MCP takes the request and never answers.
    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"no answer")).unwrap();
    receive(&mut mcp, 1);
    drop(client);
    let closed_by_client = Instant::now();
    env.wait_stat("totals.half_closes", |v| v == 1);
    env.wait_stat("totals.connections_open", |v| v == 0);
    let kept = closed_by_client.elapsed();
    assert!(kept >= timeout, "closed after {kept:?}");
    // Far below limits.idle_timeout (60s), which would close it otherwise.
    assert!(kept < timeout + Duration::from_secs(10), "kept {kept:?}");
    assert_eq!(next_notice(&mut mcp).code, Reason::PeerClosed as u8);
    let stats = env.stats();
    assert_eq!(common::stat(&stats, "totals.half_close_timeouts"), Some(1));
    assert_eq!(common::stat(&stats, "totals.closed_peer"), Some(1));
}

#[test]
fn a_client_that_closed_fully_is_closed_as_soon_as_a_reply_finds_it_gone() {
    let env = TestEnv::new(1, "", "[limits]\nhalf_close_timeout = \"10m\"\n");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();

    let mut client = connect(ccsd.addr());
    client
        .write_all(&[packet(b"first"), packet(b"second")].concat())
        .unwrap();
    let requests = receive(&mut mcp, 2);
    drop(client);
    env.wait_stat("totals.half_closes", |v| v == 1);
    // One reply of two: the client's kernel answers it with a reset, which ends the wait.
    mcp.reply(&requests[0].0, &requests[0].1).unwrap();
    mcp.flush().unwrap();
    env.wait_stat("totals.connections_open", |v| v == 0);
    assert_eq!(next_notice(&mut mcp).code, Reason::PeerClosed as u8);
    let stats = env.stats();
    assert_eq!(common::stat(&stats, "totals.closed_peer"), Some(1));
    assert_eq!(common::stat(&stats, "totals.half_close_timeouts"), Some(0));
}

#[test]
fn a_fin_with_every_request_answered_closes_at_once() {
    let env = TestEnv::new(1, "", "[limits]\nhalf_close_timeout = \"10m\"\n");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();

    let mut client = connect(ccsd.addr());
    assert_eq!(common::round_trip(&mut client, b"done"), packet(b"done"));
    client.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    env.wait_stat("totals.closed_peer", |v| v == 1);
    assert_eq!(common::stat(&env.stats(), "totals.half_closes"), Some(0));
}
