//! Connection limits through the real binary: a connection over `listen[i].max_connections` or
//! `broker.max_connections` is closed at once and counted, the others keep working, and a closed
//! connection makes room for a new one.

mod common;

use common::{TestEnv, assert_closed, connect, round_trip};

#[test]
fn connection_over_the_listener_limit_is_closed_and_a_closed_one_makes_room() {
    let env = TestEnv::new(2, "max_connections = 2", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut first = connect(ccsd.addr());
    let mut second = connect(ccsd.addr());
    assert_eq!(round_trip(&mut first, b"one"), common::packet(b"one"));
    assert_eq!(round_trip(&mut second, b"two"), common::packet(b"two"));

    let mut third = connect(ccsd.addr());
    assert_closed(&mut third);
    env.wait_stat("acceptor.refused_max_connections", |v| v == 1);
    assert_eq!(round_trip(&mut first, b"still"), common::packet(b"still"));
    assert_eq!(round_trip(&mut second, b"here"), common::packet(b"here"));

    drop(first);
    env.wait_stat("totals.closed_peer", |v| v == 1);
    let mut fourth = connect(ccsd.addr());
    assert_eq!(round_trip(&mut fourth, b"four"), common::packet(b"four"));
    assert_eq!(
        common::stat(&env.stats(), "acceptor.refused_max_connections"),
        Some(1)
    );
}

#[test]
fn connection_over_the_broker_limit_is_closed() {
    let env = TestEnv::new(2, "", "");
    env.add_setting("broker", "max_connections = 1");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let mut first = connect(ccsd.addr());
    assert_eq!(round_trip(&mut first, b"one"), common::packet(b"one"));

    let mut second = connect(ccsd.addr());
    assert_closed(&mut second);
    env.wait_stat("acceptor.refused_max_connections", |v| v == 1);
    assert_eq!(round_trip(&mut first, b"again"), common::packet(b"again"));
}
