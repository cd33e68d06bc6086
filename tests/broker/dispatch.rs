//! The acceptor's worker-choice policies, observed from MCP through the worker field of each
//! connection's flow id.

use crate::common;

use std::io::Write;
use std::net::TcpStream;

use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, RecordHeader};
use common::{TestEnv, WAIT, connect, packet};

fn env(dispatch: &str) -> TestEnv {
    let env = TestEnv::new(2, "", "");
    let toml = std::fs::read_to_string(&env.config).unwrap().replace(
        "[broker]\n",
        &format!("[broker]\ndispatch = \"{dispatch}\"\n"),
    );
    std::fs::write(&env.config, toml).unwrap();
    env
}

/// Sends one packet on `client` and returns the header MCP receives for it.
fn first_record(mcp: &mut McpEndpoint, client: &mut TcpStream, kind: Kind) -> RecordHeader {
    client.write_all(&packet(b"which worker?")).unwrap();
    let mut msg = Message::new();
    loop {
        assert!(
            mcp.recv(&mut msg, Some(WAIT)).unwrap(),
            "no record from ccsd"
        );
        if msg.header().kind == kind {
            return *msg.header();
        }
    }
}

#[test]
fn round_robin_alternates_between_workers() {
    let env = env("round_robin");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let workers: Vec<usize> = (0..4)
        .map(|_| {
            let mut c = connect(ccsd.addr());
            first_record(&mut mcp, &mut c, Kind::Data).flow.worker()
        })
        .collect();
    assert_ne!(workers[0], workers[1]);
    assert_eq!(workers[0], workers[2]);
    assert_eq!(workers[1], workers[3]);
}

#[test]
fn least_connections_fills_the_worker_that_lost_a_connection() {
    let env = env("least_connections");
    let ccsd = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).unwrap();
    let mut a = connect(ccsd.addr());
    let wa = first_record(&mut mcp, &mut a, Kind::Data).flow.worker();
    let mut b = connect(ccsd.addr());
    let wb = first_record(&mut mcp, &mut b, Kind::Data).flow.worker();
    assert_ne!(wa, wb, "the second connection goes to the empty worker");

    drop(a);
    let mut msg = Message::new();
    assert!(mcp.recv(&mut msg, Some(WAIT)).unwrap());
    assert_eq!(msg.header().kind, Kind::Disconnect);

    let mut c = connect(ccsd.addr());
    let wc = first_record(&mut mcp, &mut c, Kind::Data).flow.worker();
    assert_eq!(
        wc, wa,
        "the third connection goes where a connection closed"
    );
}
