//! The HAProxy configuration `docs/deployment.md` shows is one HAProxy accepts: the page's
//! ```` ```haproxy ```` block, as written, passes `haproxy -c`. (A syntax check only: no traffic
//! goes through it, as the page says.)

use crate::common;

use std::path::Path;
use std::process::Stdio;

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
