//! Flows seen from MCP: disconnect notices, close requests, and replies to flows that are gone.
//! The MCP here is the test itself, attached to the real lanes through `ccsd::mcp`.

mod common;

use std::io::Write;
use std::time::Duration;

use ccsd::flow::FlowId;
use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{CloseMode, Kind, Reason, RecordHeader};
use common::{TestEnv, WAIT, assert_closed, connect, packet, read_n};

fn attach(env: &TestEnv) -> McpEndpoint {
    McpEndpoint::attach_wait(&env.settings(), WAIT).expect("attach to ccsd's lanes")
}

/// The next record from ccsd, which must be of `kind`.
fn expect(mcp: &mut McpEndpoint, msg: &mut Message, kind: Kind) -> RecordHeader {
    assert!(
        mcp.recv(msg, Some(WAIT)).unwrap(),
        "no {kind:?} record from ccsd"
    );
    assert_eq!(
        msg.header().kind,
        kind,
        "unexpected record {:?}",
        msg.header()
    );
    *msg.header()
}

#[test]
fn client_close_sends_a_disconnect_notice_for_its_flow() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = attach(&env);
    let mut msg = Message::new();

    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"hello")).unwrap();
    let data = expect(&mut mcp, &mut msg, Kind::Data);
    assert_eq!(msg.payload(), packet(b"hello"));
    assert_eq!(data.peer, client.local_addr().unwrap());
    assert_eq!(data.listen_port, ccsd.addr().port());
    drop(client);

    let notice = expect(&mut mcp, &mut msg, Kind::Disconnect);
    assert_eq!(notice.flow, data.flow);
    assert_eq!(Reason::from_u8(notice.code), Some(Reason::PeerClosed));
    env.wait_stat("totals.closed_peer", |v| v == 1);
}

#[test]
fn close_after_flush_delivers_earlier_replies_then_eof() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = attach(&env);
    let mut msg = Message::new();

    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"q")).unwrap();
    let req = expect(&mut mcp, &mut msg, Kind::Data);
    let big = vec![b'x'; 3 * 1024 * 1024];
    for part in [&b"one"[..], &big, b"three"] {
        mcp.reply(&req, part).unwrap();
    }
    mcp.close(req.flow, CloseMode::AfterFlush).unwrap();
    mcp.flush().unwrap();

    assert_eq!(read_n(&mut client, 3), b"one");
    assert_eq!(read_n(&mut client, big.len()), big);
    assert_eq!(read_n(&mut client, 5), b"three");
    assert_closed(&mut client);
    let notice = expect(&mut mcp, &mut msg, Kind::Disconnect);
    assert_eq!(
        (notice.flow, Reason::from_u8(notice.code)),
        (req.flow, Some(Reason::Local))
    );
}

#[test]
fn forced_close_closes_at_once() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = attach(&env);
    let mut msg = Message::new();

    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"q")).unwrap();
    let req = expect(&mut mcp, &mut msg, Kind::Data);
    mcp.close(req.flow, CloseMode::Force).unwrap();
    mcp.flush().unwrap();
    assert_closed(&mut client);
    env.wait_stat("totals.closed_by_mcp", |v| v == 1);
}

#[test]
fn stale_flow_reply_is_dropped_and_never_reaches_the_slot_reuser() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = attach(&env);
    let mut msg = Message::new();

    let mut a = connect(ccsd.addr());
    a.write_all(&packet(b"from a")).unwrap();
    let req_a = expect(&mut mcp, &mut msg, Kind::Data);
    drop(a);
    expect(&mut mcp, &mut msg, Kind::Disconnect);

    let mut b = connect(ccsd.addr());
    b.write_all(&packet(b"from b")).unwrap();
    let req_b = expect(&mut mcp, &mut msg, Kind::Data);
    assert_eq!(
        req_b.flow.slot(),
        req_a.flow.slot(),
        "the freed slot is reused"
    );
    assert_ne!(req_b.flow, req_a.flow);

    // A reply to the closed flow (whose slot B now holds), one to a slot never used, then B's own.
    mcp.reply(&req_a, b"STALE FOR A").unwrap();
    let never = FlowId::new(req_a.flow.epoch(), 0, 0, 999);
    mcp.reply(
        &RecordHeader {
            flow: never,
            ..req_a
        },
        b"NOBODY",
    )
    .unwrap();
    mcp.reply(&req_b, b"for b").unwrap();
    mcp.flush().unwrap();

    assert_eq!(
        read_n(&mut b, 5),
        b"for b",
        "B must get its own reply and nothing before it"
    );
    env.wait_stat("totals.dropped_stale_flow", |v| v == 2);
    b.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut extra = [0u8; 1];
    assert!(
        std::io::Read::read(&mut b, &mut extra).is_err(),
        "B received bytes after its reply"
    );
}

#[test]
fn replies_from_an_earlier_epoch_or_unknown_worker_are_dropped_and_counted() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = attach(&env);
    let mut msg = Message::new();

    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"q")).unwrap();
    let req = expect(&mut mcp, &mut msg, Kind::Data);
    let f = req.flow;
    let old_epoch = FlowId::new(
        f.epoch().wrapping_sub(1),
        0,
        f.generation(),
        f.slot() as u32,
    );
    let no_worker = FlowId::new(f.epoch(), 7, f.generation(), f.slot() as u32);
    mcp.reply(
        &RecordHeader {
            flow: old_epoch,
            ..req
        },
        b"OLD",
    )
    .unwrap();
    mcp.reply(
        &RecordHeader {
            flow: no_worker,
            ..req
        },
        b"BAD",
    )
    .unwrap();
    mcp.reply(&req, b"ok").unwrap();
    mcp.flush().unwrap();
    assert_eq!(read_n(&mut client, 2), b"ok");
    env.wait_stat("bridge.dropped_stale_epoch", |v| v == 1);
    env.wait_stat("bridge.dropped_bad_worker", |v| v == 1);
}
