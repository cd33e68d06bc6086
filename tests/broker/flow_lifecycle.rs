//! Flows seen from MCP: disconnect notices, close requests, and replies to flows that are gone.
//! The MCP here is the test itself, attached to the real lanes through `ccsd::mcp`.

use crate::common;

use std::io::Write;
use std::net::TcpStream;

use ccsd::flow::FlowId;
use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{CloseMode, Kind, Reason, RecordHeader};
use common::{Proc, TestEnv, WAIT, assert_closed, connect, packet, read_n};

/// A running ccsd with the test attached as its MCP. Fields drop in order: ccsd stops before the
/// environment removes the lanes.
struct Session {
    ccsd: Proc,
    mcp: McpEndpoint,
    msg: Message,
    env: TestEnv,
}

impl Session {
    fn start(workers: usize) -> Session {
        let env = TestEnv::new(workers, "", "");
        let ccsd = env.start_ccsd();
        let mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).expect("attach to ccsd's lanes");
        Session {
            ccsd,
            mcp,
            msg: Message::new(),
            env,
        }
    }

    /// The next record from ccsd, which must be of `kind`.
    fn expect(&mut self, kind: Kind) -> RecordHeader {
        assert!(
            self.mcp.recv(&mut self.msg, Some(WAIT)).unwrap(),
            "no {kind:?} record from ccsd"
        );
        assert_eq!(
            self.msg.header().kind,
            kind,
            "unexpected record {:?}",
            self.msg.header()
        );
        *self.msg.header()
    }

    /// Connects a client, sends `body` as one packet and returns the client with the header of
    /// the DATA record MCP received for it.
    fn open(&mut self, body: &[u8]) -> (TcpStream, RecordHeader) {
        let mut client = connect(self.ccsd.addr());
        client.write_all(&packet(body)).unwrap();
        let header = self.expect(Kind::Data);
        assert_eq!(self.msg.payload(), packet(body));
        (client, header)
    }
}

#[test]
fn client_close_sends_a_disconnect_notice_for_its_flow() {
    let mut s = Session::start(2);
    let (client, data) = s.open(b"hello");
    assert_eq!(data.peer, client.local_addr().unwrap());
    assert_eq!(data.listen_port, s.ccsd.addr().port());
    drop(client);

    let notice = s.expect(Kind::Disconnect);
    assert_eq!(notice.flow, data.flow);
    assert_eq!(Reason::from_u8(notice.code), Some(Reason::PeerClosed));
    s.env.wait_stat("totals.closed_peer", |v| v == 1);
}

#[test]
fn close_after_flush_delivers_earlier_replies_then_eof() {
    let mut s = Session::start(1);
    let (mut client, req) = s.open(b"q");
    let big = vec![b'x'; 3 * 1024 * 1024];
    for part in [&b"one"[..], &big, b"three"] {
        s.mcp.reply(&req, part).unwrap();
    }
    s.mcp.close(req.flow, CloseMode::AfterFlush).unwrap();
    s.mcp.flush().unwrap();

    assert_eq!(read_n(&mut client, 3), b"one");
    assert_eq!(read_n(&mut client, big.len()), big);
    assert_eq!(read_n(&mut client, 5), b"three");
    assert_closed(&mut client);
    let notice = s.expect(Kind::Disconnect);
    assert_eq!(
        (notice.flow, Reason::from_u8(notice.code)),
        (req.flow, Some(Reason::Local))
    );
}

#[test]
fn forced_close_closes_at_once() {
    let mut s = Session::start(1);
    let (mut client, req) = s.open(b"q");
    s.mcp.close(req.flow, CloseMode::Force).unwrap();
    s.mcp.flush().unwrap();
    assert_closed(&mut client);
    s.env.wait_stat("totals.closed_by_mcp", |v| v == 1);
}

#[test]
fn stale_flow_reply_is_dropped_and_never_reaches_the_slot_reuser() {
    let mut s = Session::start(1);
    let (a, req_a) = s.open(b"from a");
    drop(a);
    s.expect(Kind::Disconnect);

    let (mut b, req_b) = s.open(b"from b");
    assert_eq!(
        req_b.flow.slot(),
        req_a.flow.slot(),
        "the freed slot is reused"
    );
    assert_ne!(req_b.flow, req_a.flow);

    // A reply to the closed flow (whose slot B now holds), one to a slot never used, then B's own.
    s.mcp.reply(&req_a, b"STALE FOR A").unwrap();
    let never = FlowId::new(req_a.flow.epoch(), 0, 0, 999);
    s.mcp
        .reply(
            &RecordHeader {
                flow: never,
                ..req_a
            },
            b"NOBODY",
        )
        .unwrap();
    s.mcp.reply(&req_b, b"for b").unwrap();
    s.mcp.flush().unwrap();

    assert_eq!(
        read_n(&mut b, 5),
        b"for b",
        "B must get its own reply and nothing before it"
    );
    s.env.wait_stat("totals.dropped_stale_flow", |v| v == 2);
}

#[test]
fn replies_from_an_earlier_epoch_or_unknown_worker_are_dropped_and_counted() {
    let mut s = Session::start(1);
    let (mut client, req) = s.open(b"q");
    let f = req.flow;
    let old_epoch = FlowId::new(
        f.epoch().wrapping_sub(1),
        0,
        f.generation(),
        f.slot() as u32,
    );
    let no_worker = FlowId::new(f.epoch(), 7, f.generation(), f.slot() as u32);
    s.mcp
        .reply(
            &RecordHeader {
                flow: old_epoch,
                ..req
            },
            b"OLD",
        )
        .unwrap();
    s.mcp
        .reply(
            &RecordHeader {
                flow: no_worker,
                ..req
            },
            b"BAD",
        )
        .unwrap();
    s.mcp.reply(&req, b"ok").unwrap();
    s.mcp.flush().unwrap();
    assert_eq!(read_n(&mut client, 2), b"ok");
    s.env.wait_stat("bridge.dropped_stale_epoch", |v| v == 1);
    s.env.wait_stat("bridge.dropped_bad_worker", |v| v == 1);
}
