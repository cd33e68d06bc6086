//! The HAProxy configuration `docs/deployment.md` shows works: the page's ```` ```haproxy ````
//! block, as written, passes `haproxy -c`, and its health check on the admin port (`health`,
//! answered without a token), run by a real HAProxy, finds a live ccsd with its MCP up and a
//! node whose admin port does not answer down. `tests/broker/drain.rs` sends client traffic
//! through the same configuration and drains a node.

use crate::common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{TestEnv, deployment_haproxy_config, haproxy_server_stat, replace_all};

#[test]
fn haproxy_accepts_the_configuration_in_the_deployment_doc() {
    let config = deployment_haproxy_config();
    assert!(config.contains("send-proxy-v2") && config.contains("tcp-check send \"health\\n\""));
    let env = TestEnv::new(1, "", "");
    let file = env.dir.join("haproxy.cfg");
    std::fs::write(&file, &config).unwrap();
    let out = common::tool("haproxy", "haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .expect("run haproxy -c");
    assert!(
        out.status.success(),
        "haproxy -c refused the configuration of docs/deployment.md:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_deployment_docs_health_check_finds_a_live_node_up_without_its_admin_token() {
    let env = TestEnv::new(1, "", "");
    // The token guards the other commands; `health` is answered without it, so the balancer's
    // configuration holds no secret.
    env.add_setting("admin", "token = \"s3cret-check\"");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let admin = ccsd.admin.expect("ccsd logged its admin port");

    // The page's configuration with the test's addresses: node1 is this ccsd, node2 an address
    // where nothing answers the admin port; the checks run every 100 ms instead of 2 s.
    let socket = env.dir.join("haproxy.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = replace_all(
        deployment_haproxy_config(),
        &[
            (
                "log stdout format raw local0",
                format!(
                    "log stderr format raw local0\n    stats socket {}",
                    socket.display()
                ),
            ),
            ("bind :7300", format!("bind 127.0.0.1:{port}")),
            (
                "connect port 7301",
                format!("connect port {}", admin.port()),
            ),
            ("inter 2s", "inter 100ms".to_owned()),
            ("10.0.0.5:7300", ccsd.addr().to_string()),
            ("10.0.0.6:7300", "127.0.0.3:7300".to_owned()),
        ],
    );
    let file = env.dir.join("haproxy.cfg");
    std::fs::write(&file, &config).unwrap();
    // haproxy itself, not under timeout(1) as `common::tool` runs it: killing this Proc at the
    // end of the test must stop haproxy, not only a `timeout` whose child would live on.
    let mut cmd = std::process::Command::new("haproxy");
    cmd.arg("-db").arg("-f").arg(&file);
    let _haproxy = common::Proc::spawn(cmd, "haproxy");

    // L7OK: connected to the admin port and the answer began with `UP`; node2's check cannot
    // connect and takes it down.
    let deadline = Instant::now() + common::WAIT;
    loop {
        let node1 = haproxy_server_stat(&socket, "node1").unwrap_or_default();
        let node2 = haproxy_server_stat(&socket, "node2").unwrap_or_default();
        if node1.contains(",UP,") && node1.contains(",L7OK,") && node2.contains(",DOWN,") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "HAProxy's checks never settled:\n{node1}\n{node2}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
