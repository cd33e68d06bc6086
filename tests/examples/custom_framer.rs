//! A framer of the user's own, registered by name: `examples/custom_framer` runs ccsd with a
//! netstring listener and the echo MCP inside.

use crate::common;

use std::io::Write;
use std::process::Command;

use common::{Proc, TestEnv, assert_closed, connect, example_bin, read_n};

#[test]
fn a_registered_netstring_framer_frames_packets_and_closes_on_garbage() {
    let env = TestEnv::new(1, "framing = \"netstring\"", "");
    let mut cmd = Command::new(example_bin("custom_framer"));
    cmd.arg("--config").arg(&env.config);
    let mut p = Proc::spawn(cmd, "custom_framer");
    let line = p.wait_for_line("listening on tcp://");
    p.wait_for_line("ccsd ready");
    let addr = line
        .split("listening on tcp://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("listen address");
    assert!(line.contains("framing netstring"), "{line}");

    let mut client = connect(addr);
    let stream = b"5:hello,0:,12:hello world!,";
    for piece in stream.chunks(4) {
        client.write_all(piece).unwrap();
    }
    assert_eq!(read_n(&mut client, stream.len()), stream);

    let mut bad = connect(addr);
    bad.write_all(b"5:hello;").unwrap();
    assert_closed(&mut bad);
    env.wait_stat("totals.closed_protocol", |v| v == 1);
}
