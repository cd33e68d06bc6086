//! `ccsd --demo`: the README's first command, ccsd with the echo MCP running inside it.

use crate::common;

use std::process::Command;

use common::{Proc, TestEnv, connect, packet, round_trip};

#[test]
fn demo_mode_answers_packets_with_its_embedded_echo_mcp() {
    let env = TestEnv::new(2, "", "");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.arg("--demo").arg("--config").arg(&env.config);
    let mut ccsd = Proc::spawn(cmd, "ccsd --demo");
    let listening = ccsd.wait_for_line("listening on tcp://");
    ccsd.wait_for_line("demo: echo MCP running");
    let addr = listening
        .split("listening on tcp://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("listen address in the log");

    let mut client = connect(addr);
    assert_eq!(round_trip(&mut client, b"hello"), packet(b"hello"));
}
