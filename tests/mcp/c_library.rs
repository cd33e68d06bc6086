//! The C example MCPs (`examples/c/echo_mcp.c`, `examples/c/kv_mcp.c`), compiled with the
//! system C compiler against libccsd_mcp as installed with its pkg-config file, behind the real
//! ccsd: the same checks as the Rust examples get (echo byte-exact and in order, KV across
//! connections, disconnect notices, close requests, MCP and ccsd restarts, one MCP at a time),
//! and at-least-once delivery surviving an MCP killed under load.

use crate::{c_common, common};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use common::{Proc, Rng, TestEnv, assert_closed, connect, packet, read_n, round_trip};

/// Starts the C example `name` (`examples/c/{name}.c`) on `env`'s settings, with `args` after
/// the settings file, and waits until it has attached.
fn start_c_mcp(env: &TestEnv, name: &'static str, args: &[&str]) -> Proc {
    let exe = c_common::compile(&format!("examples/c/{name}.c"), name, false);
    let mut cmd = Command::new(exe);
    cmd.arg(&env.config).args(args);
    let mut p = Proc::spawn(cmd, name);
    p.wait_for_line(&format!("c_{name} attached"));
    p
}

#[test]
fn c_echo_mcp_echoes_every_packet_byte_exact_and_in_order() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = start_c_mcp(&env, "echo_mcp", &[]);
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(ccsd.addr())).collect();
    let mut rng = Rng(7);
    for round in 0..20 {
        // Pipelined: every client writes a batch, then reads it back; sizes up to 40 KiB make
        // replies the library cuts into several records.
        let batches: Vec<Vec<Vec<u8>>> = clients
            .iter()
            .map(|_| {
                (0..10)
                    .map(|i| {
                        let len = if i == 0 {
                            40_000
                        } else {
                            rng.below(3000) as usize
                        };
                        (0..len)
                            .map(|j| (j as u64 ^ rng.next() ^ round) as u8)
                            .collect()
                    })
                    .collect()
            })
            .collect();
        for (client, batch) in clients.iter_mut().zip(&batches) {
            let bytes: Vec<u8> = batch.iter().flat_map(|b| packet(b)).collect();
            client.write_all(&bytes).unwrap();
        }
        for (client, batch) in clients.iter_mut().zip(&batches) {
            for body in batch {
                assert_eq!(read_n(client, 4 + body.len()), packet(body));
            }
        }
    }
}

#[test]
fn a_second_c_mcp_is_refused_while_one_runs() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let first = start_c_mcp(&env, "echo_mcp", &[]);
    let exe = c_common::compile("examples/c/echo_mcp.c", "echo_mcp", false);
    let mut cmd = Command::new(exe);
    cmd.arg(&env.config);
    let mut second = Proc::spawn(cmd, "second echo_mcp");
    let line = second.wait_for_line("c_echo_mcp:");
    assert!(
        line.contains(&format!("another MCP (pid {})", first.child.id())),
        "{line}"
    );
    assert_eq!(second.exit_code(), Some(2));
    let mut client = connect(ccsd.addr());
    assert_eq!(
        round_trip(&mut client, b"still served"),
        packet(b"still served")
    );
}

#[test]
fn c_echo_mcp_restarted_answers_the_requests_queued_while_it_was_down() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let mut mcp = start_c_mcp(&env, "echo_mcp", &[]);
    let mut client = connect(ccsd.addr());
    assert_eq!(round_trip(&mut client, b"first"), packet(b"first"));
    mcp.kill();
    let bodies: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("queued {i}").into_bytes())
        .collect();
    for b in &bodies {
        client.write_all(&packet(b)).unwrap();
    }
    env.wait_stat("totals.packets_in", |v| v == 11);
    let _mcp = start_c_mcp(&env, "echo_mcp", &[]);
    for b in &bodies {
        assert_eq!(read_n(&mut client, 4 + b.len()), packet(b));
    }
    assert_eq!(round_trip(&mut client, b"last"), packet(b"last"));
}

#[test]
fn c_echo_mcp_keeps_serving_across_a_ccsd_restart() {
    let env = TestEnv::new(2, "", "");
    let mut first = env.start_ccsd();
    let mcp = start_c_mcp(&env, "echo_mcp", &[]);
    let mut client = connect(first.addr());
    assert_eq!(round_trip(&mut client, b"before"), packet(b"before"));
    first.kill();
    let second = env.start_ccsd();
    let mut client = connect(second.addr());
    assert_eq!(round_trip(&mut client, b"after"), packet(b"after"));
    drop(mcp);
}

/// ccsd with a memcache listener and the C KV MCP.
fn kv_server() -> (TestEnv, Proc, Proc) {
    let env = TestEnv::new(2, "framing = \"memcache\"", "");
    let ccsd = env.start_ccsd();
    let mcp = start_c_mcp(&env, "kv_mcp", &[]);
    (env, ccsd, mcp)
}

fn exchange(s: &mut TcpStream, request: &[u8], expected: &str) {
    s.write_all(request).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read_n(s, expected.len())),
        expected
    );
}

#[test]
fn c_kv_mcp_values_are_shared_across_connections_and_disconnects_are_noticed() {
    let (_env, ccsd, mut mcp) = kv_server();
    let mut a = connect(ccsd.addr());
    let mut b = connect(ccsd.addr());
    exchange(
        &mut a,
        b"set k 0 0 5\r\nhello\r\nget k\r\n",
        "STORED\r\nVALUE k 0 5\r\nhello\r\nEND\r\n",
    );
    exchange(&mut b, b"get k\r\n", "VALUE k 0 5\r\nhello\r\nEND\r\n");
    exchange(
        &mut b,
        b"delete k\r\ndelete k\r\nget k\r\nbogus\r\n",
        "DELETED\r\nNOT_FOUND\r\nEND\r\nERROR\r\n",
    );
    exchange(&mut a, b"get k\r\n", "END\r\n");
    drop(a);
    mcp.wait_for_line("reason 1");
}

#[test]
fn c_kv_mcp_quit_closes_after_the_reply_and_drop_closes_at_once() {
    let (_env, ccsd, mut mcp) = kv_server();
    let mut a = connect(ccsd.addr());
    exchange(
        &mut a,
        b"set x 0 0 1\r\n1\r\nget x\r\nquit\r\n",
        "STORED\r\nVALUE x 0 1\r\n1\r\nEND\r\n",
    );
    assert_closed(&mut a);
    mcp.wait_for_line("reason 5");
    let mut b = connect(ccsd.addr());
    b.write_all(b"drop\r\n").unwrap();
    let mut rest = Vec::new();
    b.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "drop sends nothing: {rest:?}");
}

#[test]
fn every_c_function_checks_its_arguments_the_event_loop_api_wakes_and_a_custom_record_closes_a_port()
 {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let exe = c_common::compile("tests/c/api_check.c", "api_check", true);
    let mut cmd = Command::new(exe);
    cmd.arg("/dev/shm").arg(&env.name);
    let mut check = Proc::spawn(cmd, "api_check");
    check.wait_for_line("api_check waiting");
    let mut client = connect(ccsd.addr());
    client.write_all(&packet(b"hi")).unwrap();
    // Replies are written to the client as they are: no framing is added.
    assert_eq!(read_n(&mut client, 12), b"pushed reply");
    assert_closed(&mut client);
    check.wait_for_line("api_check disconnect reason 5");
    let mut second = connect(ccsd.addr());
    second.write_all(&packet(b"close my port")).unwrap();
    assert_closed(&mut second);
    check.wait_for_line("api_check port closed, reason 5");
    check.wait_for_line("api_check done");
    assert_eq!(check.exit_code(), Some(0), "{}", check.lines.join("\n"));
}
