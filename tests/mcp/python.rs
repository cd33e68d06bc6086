//! The Python module (`python/ccsd_mcp.py`, ctypes on libccsd_mcp) and its echo example behind
//! the real ccsd: echo byte-exact and in order, disconnect notices, one MCP at a time.

use crate::{c_common, common};

use std::io::Write;
use std::process::Command;

use common::{Proc, Rng, TestEnv, connect, packet, read_n};

fn python_echo(env: &TestEnv) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.arg(c_common::root().join("python/examples/echo_mcp.py"))
        .arg(&env.config)
        .env("PYTHONPATH", c_common::root().join("python"))
        .env(
            "LIBCCSD_MCP_PATH",
            c_common::prefix().join("lib/libccsd_mcp.so"),
        );
    Proc::spawn(cmd, "python echo_mcp")
}

#[test]
fn the_python_echo_mcp_echoes_byte_exact_in_order_and_sees_disconnects() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = python_echo(&env);
    mcp.wait_for_line("py_echo_mcp attached");
    let mut rng = Rng(3);
    let mut clients: Vec<_> = (0..3).map(|_| connect(ccsd.addr())).collect();
    for _ in 0..10 {
        let batches: Vec<Vec<Vec<u8>>> = clients
            .iter()
            .map(|_| {
                (0..10)
                    .map(|i| {
                        let len = if i == 0 {
                            20_000
                        } else {
                            rng.below(2000) as usize
                        };
                        (0..len).map(|_| rng.next() as u8).collect()
                    })
                    .collect()
            })
            .collect();
        for (c, batch) in clients.iter_mut().zip(&batches) {
            let bytes: Vec<u8> = batch.iter().flat_map(|b| packet(b)).collect();
            c.write_all(&bytes).unwrap();
        }
        for (c, batch) in clients.iter_mut().zip(&batches) {
            for body in batch {
                assert_eq!(read_n(c, 4 + body.len()), packet(body));
            }
        }
    }
    drop(clients);
    for _ in 0..3 {
        mcp.wait_for_line("reason 1");
    }
}

#[test]
fn a_second_python_mcp_is_refused_with_busy() {
    let env = TestEnv::new(1, "", "");
    let _ccsd = env.start_ccsd();
    let mut first = python_echo(&env);
    first.wait_for_line("py_echo_mcp attached");
    let mut second = python_echo(&env);
    let line = second.wait_for_line("py_echo_mcp:");
    assert!(line.contains("BUSY: another MCP"), "{line}");
    assert_eq!(second.exit_code(), Some(1));
}
