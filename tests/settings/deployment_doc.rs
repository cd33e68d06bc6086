//! The HAProxy configuration `docs/deployment.md` shows works: the page's ```` ```haproxy ````
//! block, as written, passes `haproxy -c`, and its health check on the admin port (`auth`, then
//! `stats` until `END`), run by a real HAProxy, finds a live ccsd up. No client traffic goes
//! through it, as the page says.

use crate::common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestEnv;

/// The lines of the first ```` ```haproxy ```` block of `markdown`.
fn haproxy_block(markdown: &str) -> String {
    let mut lines = markdown.lines().skip_while(|l| *l != "```haproxy").skip(1);
    let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
    assert!(
        !block.is_empty(),
        "docs/deployment.md has no ```haproxy block"
    );
    block.join("\n") + "\n"
}

#[test]
fn haproxy_accepts_the_configuration_in_the_deployment_doc() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deployment.md");
    let config = haproxy_block(&std::fs::read_to_string(&doc).expect("read docs/deployment.md"));
    assert!(config.contains("send-proxy-v2") && config.contains("tcp-check send \"stats\\n\""));
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

/// HAProxy's `show stat` line of server `name` in backend `ccsd`, asked on its stats socket.
fn haproxy_server_stat(socket: &Path, name: &str) -> Option<String> {
    let mut conn = std::os::unix::net::UnixStream::connect(socket).ok()?;
    conn.write_all(b"show stat\n").ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    let prefix = format!("ccsd,{name},");
    answer
        .lines()
        .find(|l| l.starts_with(&prefix))
        .map(str::to_owned)
}

#[test]
fn the_deployment_docs_health_check_passes_on_a_live_ccsd_admin_port_with_its_token() {
    let env = TestEnv::new(1, "", "");
    env.add_setting("admin", "token = \"s3cret-check\"");
    let ccsd = env.start_ccsd();
    let admin = ccsd.admin.expect("ccsd logged its admin port");

    // The page's configuration with the test's addresses: node1 is this ccsd, node2 an address
    // where nothing answers the admin port; the checks run every 100 ms instead of 2 s.
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deployment.md");
    let config = haproxy_block(&std::fs::read_to_string(&doc).unwrap());
    let socket = env.dir.join("haproxy.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = config;
    for (from, to) in [
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
        ("CHANGE-ME", "s3cret-check".to_owned()),
        ("inter 2s", "inter 100ms".to_owned()),
        ("10.0.0.5:7300", ccsd.addr().to_string()),
        ("10.0.0.6:7300", "127.0.0.3:7300".to_owned()),
    ] {
        assert!(
            config.contains(from),
            "the page's configuration lost {from:?}"
        );
        config = config.replace(from, &to);
    }
    let file = env.dir.join("haproxy.cfg");
    std::fs::write(&file, &config).unwrap();
    // haproxy itself, not under timeout(1) as `common::tool` runs it: killing this Proc at the
    // end of the test must stop haproxy, not only a `timeout` whose child would live on.
    let mut cmd = std::process::Command::new("haproxy");
    cmd.arg("-db").arg("-f").arg(&file);
    let _haproxy = common::Proc::spawn(cmd, "haproxy");

    // L7OK: connected to the admin port and both expects matched (`OK` to the token, `END`
    // after the stats); node2's check cannot connect and takes it down.
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
