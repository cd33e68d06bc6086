//! SIGHUP (what `systemctl reload` sends through `ExecReload=/bin/kill -HUP $MAINPID`) reloads the
//! settings file exactly as admin `reload` does: a changed reloadable setting takes effect, a
//! change that needs a restart is named and not applied, invalid settings change nothing.

use crate::common;

use common::{TestEnv, assert_closed, connect, packet, round_trip};
use rustix::process::{Pid, Signal, kill_process};

#[test]
fn sighup_applies_a_changed_max_connections_and_the_second_client_is_refused() {
    let env = TestEnv::new(1, "", "");
    let mut ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();

    env.add_setting("broker", "max_connections = 1");
    kill_process(Pid::from_child(&ccsd.child), Signal::HUP).expect("send SIGHUP");
    ccsd.wait_for_line("reload: broker.max_connections 100000 -> 1");
    let line = ccsd.wait_for_line("SIGHUP: OK reloaded");
    assert!(line.ends_with("1 changed, 0 need a restart"), "{line}");

    let mut first = connect(ccsd.addr());
    assert_eq!(round_trip(&mut first, b"one"), packet(b"one"));
    let mut second = connect(ccsd.addr());
    assert_closed(&mut second);
    env.wait_stat("acceptor.refused_max_connections", |v| v == 1);
}

#[test]
fn sighup_with_invalid_settings_changes_nothing_and_ccsd_keeps_serving() {
    let env = TestEnv::new(1, "", "");
    let mut ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();

    env.add_setting("broker", "no_such_key = 1");
    kill_process(Pid::from_child(&ccsd.child), Signal::HUP).expect("send SIGHUP");
    let line = ccsd.wait_for_line("SIGHUP: ERROR reload: invalid settings");
    assert!(line.contains("no_such_key"), "{line}");
    let mut client = connect(ccsd.addr());
    assert_eq!(round_trip(&mut client, b"alive"), packet(b"alive"));
    assert_eq!(ccsd.child.try_wait().unwrap(), None);
}
