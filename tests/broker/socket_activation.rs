//! Socket activation through the real `systemd-socket-activate`: it listens, and on the first
//! connection execs ccsd with the socket as descriptor 3 (`LISTEN_FDS`, `LISTEN_PID`,
//! `LISTEN_FDNAMES`). A `[[listen]]` table takes the socket named like its `name`, or else the
//! one bound to its `addr`; other tables bind their own; a socket no table takes refuses the
//! start. The connection that woke ccsd is served.
//!
//! `systemd-socket-activate` does not take port 0, so each test picks a free port first (bound
//! and released on 127.0.0.1: another process could take it in between, which fails the test
//! with `systemd-socket-activate`'s own message, never a wrong pass).

use crate::common;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;

use common::{Proc, TestEnv, connect, packet, round_trip};

/// Whether `systemd-socket-activate` can run: in CI (`CI=true`) its absence fails the test,
/// elsewhere the test says why it is skipped.
fn available() -> bool {
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("systemd-socket-activate").is_file())
    });
    if !on_path {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd-socket-activate is not installed: .ci/deps installs it (Debian's systemd package)"
        );
        eprintln!("SKIPPED: systemd-socket-activate is not installed (Debian's systemd package)");
    }
    on_path
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// `systemd-socket-activate ARGS ccsd --config CONFIG`, once it listens. It execs ccsd in its own
/// process, so the returned process is ccsd after the first connection.
fn activate(env: &TestEnv, args: &[String]) -> Proc {
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(args)
        .arg(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--config")
        .arg(&env.config);
    let mut p = Proc::spawn(cmd, "systemd-socket-activate");
    for _ in args.iter().filter(|a| a.starts_with("--listen=")) {
        p.wait_for_line("Listening on");
    }
    p
}

#[test]
fn a_socket_named_like_the_listener_is_taken_and_the_waking_connection_is_served() {
    if !available() {
        return;
    }
    let env = TestEnv::new(1, "name = \"main\"", "");
    let addr = free_addr();
    let mut ccsd = activate(
        &env,
        &[format!("--listen={addr}"), "--fdname=main".to_owned()],
    );

    // The first connection wakes systemd-socket-activate, which execs ccsd.
    let mut first = connect(addr);
    ccsd.wait_for_line("ccsd ready");
    let line = ccsd
        .lines
        .iter()
        .find(|l| l.contains("listening on tcp://"))
        .expect("a listening line")
        .clone();
    assert!(
        line.contains(&format!("listening on tcp://{addr} (listener 0"))
            && line.ends_with(", from systemd)"),
        "{line}"
    );
    let _mcp = env.start_echo_mcp();
    assert_eq!(round_trip(&mut first, b"woke it"), packet(b"woke it"));
    let mut second = connect(addr);
    assert_eq!(round_trip(&mut second, b"next"), packet(b"next"));
}

#[test]
fn a_socket_bound_to_the_listeners_address_is_taken_and_other_listeners_bind_their_own() {
    if !available() {
        return;
    }
    let env = TestEnv::new(1, "", "[[listen]]\naddr = \"127.0.0.1:0\"\n");
    let addr = free_addr();
    env.set_listen_addr(&addr.to_string());
    let mut ccsd = activate(&env, &[format!("--listen={addr}")]);

    let mut first = connect(addr);
    ccsd.wait_for_line("ccsd ready");
    let listening: Vec<&String> = ccsd
        .lines
        .iter()
        .filter(|l| l.contains("listening on tcp://"))
        .collect();
    assert_eq!(listening.len(), 2, "{listening:?}");
    assert!(
        listening[0].contains(&format!("tcp://{addr} (listener 0"))
            && listening[0].ends_with(", from systemd)"),
        "{listening:?}"
    );
    assert!(
        listening[1].contains("(listener 1") && !listening[1].contains("from systemd"),
        "{listening:?}"
    );
    let own: SocketAddr = listening[1]
        .split("listening on tcp://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("listener 1's address");
    let _mcp = env.start_echo_mcp();
    assert_eq!(
        round_trip(&mut first, b"from systemd"),
        packet(b"from systemd")
    );
    let mut other = connect(own);
    assert_eq!(round_trip(&mut other, b"own socket"), packet(b"own socket"));
}

#[test]
fn a_passed_socket_no_listener_takes_refuses_the_start_naming_it() {
    if !available() {
        return;
    }
    let env = TestEnv::new(1, "name = \"main\"", "");
    let (main, extra) = (free_addr(), free_addr());
    let mut ccsd = activate(
        &env,
        &[
            format!("--listen={main}"),
            format!("--listen={extra}"),
            "--fdname=main:extra".to_owned(),
        ],
    );
    let _waking = connect(main);
    let line = ccsd.wait_for_line("socket activation:");
    assert!(
        line.contains(&format!(
            "the socket \"extra\" (descriptor 4, {extra}) is taken by no [[listen]] table"
        )),
        "{line}"
    );
    assert_eq!(ccsd.exit_code(), Some(2));
}
