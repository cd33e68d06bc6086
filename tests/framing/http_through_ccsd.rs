//! The `http` framing's answers of its own through the real binary and the echo MCP: the interim
//! `100 Continue` for a request that expects it, and the close of a request whose header name
//! breaks RFC 9110 (counted and logged).

use crate::common;

use std::io::Write;

use common::{TestEnv, assert_closed, connect, read_n};

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
const HEAD: &[u8] =
    b"POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
const BODY: &[u8] = b"hello";

#[test]
fn a_request_expecting_100_continue_gets_it_before_sending_its_body() {
    let env = TestEnv::new(1, "framing = \"http\"", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    client.write_all(HEAD).expect("write head");
    assert_eq!(read_n(&mut client, CONTINUE.len()), CONTINUE);
    client.write_all(BODY).expect("write body");
    assert_eq!(
        read_n(&mut client, HEAD.len() + BODY.len()),
        [HEAD, BODY].concat()
    );
    env.wait_stat("totals.interim_responses_sent", |n| n == 1);
}

#[test]
fn http_continue_off_sends_no_interim_response() {
    let env = TestEnv::new(1, "framing = \"http\"\nhttp_continue = false", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    client.write_all(HEAD).expect("write head");
    client.write_all(BODY).expect("write body");
    // The first bytes back are the echo of the request, not a 100 Continue.
    assert_eq!(
        read_n(&mut client, HEAD.len() + BODY.len()),
        [HEAD, BODY].concat()
    );
    env.wait_stat("totals.interim_responses_sent", |n| n == 0);
}

#[test]
fn an_interim_response_never_overtakes_the_reply_to_an_earlier_request() {
    let env = TestEnv::new(1, "framing = \"http\"", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut client = connect(ccsd.addr());
    let first = b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n";
    client
        .write_all(&[&first[..], HEAD].concat())
        .expect("write");
    // Whether the 100 Continue was sent (after the reply) or skipped depends on when the reply
    // came; either way the reply to the first request comes first.
    assert_eq!(read_n(&mut client, first.len()), first);
}

#[test]
fn a_header_name_with_a_nul_closes_the_connection_counted_as_a_protocol_error() {
    let env = TestEnv::new(1, "framing = \"http\"", "");
    let mut ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut bad = connect(ccsd.addr());
    bad.write_all(b"GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n")
        .expect("write");
    assert_closed(&mut bad);
    env.wait_stat("totals.closed_protocol", |n| n == 1);
    let logged = ccsd.wait_for_line("header name with a byte that is not an RFC 9110 token");
    assert!(
        logged.contains("closed the connection from 127.0.0.1:"),
        "{logged}"
    );
    // Other connections are untouched.
    let mut good = connect(ccsd.addr());
    let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    good.write_all(request).expect("write");
    assert_eq!(read_n(&mut good, request.len()), request);
}
