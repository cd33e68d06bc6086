//! Listener socket options through the real binary: with `reuse_port = true` two ccsd processes
//! (on different queues) listen on the same address; without it the second one cannot start.

use crate::common;

use std::net::SocketAddr;
use std::process::Command;

use common::{Proc, TestEnv};

/// A test world whose listener sets `reuse_port` and listens on `addr`.
fn env_on(addr: SocketAddr, reuse_port: bool) -> TestEnv {
    let env = TestEnv::new(1, &format!("reuse_port = {reuse_port}"), "");
    env.set_listen_addr(&addr.to_string());
    env
}

#[test]
fn two_processes_share_an_address_with_reuse_port() {
    let first_env = TestEnv::new(1, "reuse_port = true", "");
    let first = first_env.start_ccsd();
    let second_env = env_on(first.addr(), true);
    let second = second_env.start_ccsd();
    assert_eq!(second.addr(), first.addr());
}

#[test]
fn a_busy_address_without_reuse_port_stops_the_start_with_exit_2() {
    let first_env = TestEnv::new(1, "", "");
    let first = first_env.start_ccsd();
    let second_env = env_on(first.addr(), false);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.arg("--config").arg(&second_env.config);
    let mut second = Proc::spawn(cmd, "ccsd");
    let line = second.wait_for_line("cannot listen on");
    assert!(line.contains(&first.addr().to_string()), "{line}");
    let status = second.child.wait().expect("wait for ccsd");
    assert_eq!(status.code(), Some(2));
}
