//! The documented dual-stack pair `0.0.0.0:P` and `[::]:P` starts and serves both families
//! (`IPV6_V6ONLY` is set on IPv6 listeners, `v6only = true` by default); with `v6only = false` the
//! pair is refused by `--check-config`, naming both listeners.

use crate::common;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;

use common::{TestEnv, connect, packet, round_trip};

/// A port free on the IPv4 and IPv6 wildcards (a dual-stack probe), or `None` without IPv6.
fn free_dual_port() -> Option<u16> {
    let probe = TcpListener::bind("[::]:0").ok()?;
    let port = probe.local_addr().unwrap().port();
    // The probe took IPv4 too only if the system default is dual stack; check IPv4 separately.
    drop(probe);
    TcpListener::bind(("0.0.0.0", port)).ok()?;
    Some(port)
}

#[test]
fn the_documented_ipv4_and_ipv6_wildcard_pair_starts_and_serves_both() {
    let Some(port) = free_dual_port() else {
        println!("skipped: no IPv6 on this host");
        return;
    };
    let env = TestEnv::new(1, "", &format!("[[listen]]\naddr = \"[::]:{port}\"\n"));
    env.set_listen_addr(&format!("0.0.0.0:{port}"));
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    assert_eq!(
        ccsd.addrs,
        [
            SocketAddr::from(([0, 0, 0, 0], port)),
            format!("[::]:{port}").parse().unwrap()
        ]
    );
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let mut client = connect(addr.parse().unwrap());
        assert_eq!(round_trip(&mut client, b"both"), packet(b"both"), "{addr}");
    }
}

#[test]
fn check_config_refuses_the_pair_when_the_ipv6_one_is_dual_stack() {
    let env = TestEnv::new(1, "", "[[listen]]\naddr = \"[::]:7399\"\nv6only = false\n");
    env.set_listen_addr("0.0.0.0:7399");
    let out = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--config")
        .arg(&env.config)
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listen[1].addr: [::]:7399 overlaps listen[0].addr 0.0.0.0:7399: listen[1] has v6only = false"),
        "{stderr}"
    );
}
