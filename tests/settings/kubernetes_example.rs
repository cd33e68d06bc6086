//! `deploy/kubernetes/` holds what `docs/deployment.md` says: its manifests pass the Kubernetes
//! schema (the `kubernetes-validate` tool from PyPI, with the schemas it ships, strict: an
//! unknown or misspelt field fails), the ConfigMap's `ccsd.toml` passes the real binary's
//! `--check-config` (with the admin token the Secret would give), and the pod's in-memory volume
//! is where the lanes go and big enough for them. No cluster is run: the pod itself is not
//! started here.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ccsd::lane::LANE_HEADER_SIZE;
use ccsd::settings::Settings;
use common::TestEnv;

/// The Kubernetes version the manifests are checked against: the oldest with the
/// `preStop.sleep` action on by default (1.30) is older; 1.32 is a current supported release.
const KUBERNETES_VERSION: &str = "1.32.0";

fn manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(manifest(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// The `ccsd.toml: |` block of the ConfigMap, unindented.
fn configmap_settings() -> String {
    let yaml = read("configmap.yaml");
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim() != "ccsd.toml: |")
        .skip(1);
    let first = lines.next().expect("ccsd.toml has lines");
    let indent = first.len() - first.trim_start().len();
    assert!(indent > 0, "the block is indented");
    let mut toml = String::new();
    for line in std::iter::once(first).chain(lines) {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        toml.push_str(line.get(indent..).unwrap_or(""));
        toml.push('\n');
    }
    toml
}

/// The value of the first `key: value` line of `yaml` (trimmed).
fn yaml_value<'a>(yaml: &'a str, key: &str) -> &'a str {
    yaml.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key}: line"))
        .trim()
}

#[test]
fn the_kubernetes_manifests_pass_the_kubernetes_schema_strictly() {
    let mut cmd = common::tool(
        "kubernetes-validate",
        "python3 -m pip install kubernetes-validate",
    );
    cmd.arg("--strict")
        .arg("--kubernetes-version")
        .arg(KUBERNETES_VERSION);
    for name in ["configmap.yaml", "deployment.yaml", "service.yaml"] {
        cmd.arg(manifest(name));
    }
    let out = common::run_ok(&mut cmd);
    for kind in ["configmap/ccsd", "deployment/ccsd", "service/ccsd"] {
        assert!(
            out.contains(&format!("passed for resource {kind}")),
            "{kind} not validated:\n{out}"
        );
    }
}

#[test]
fn the_kubernetes_configmap_settings_pass_check_config() {
    let env = TestEnv::new(1, "", "");
    let config = env.dir.join("kubernetes.toml");
    std::fs::write(&config, configmap_settings()).unwrap();
    // What the pod's environment gives it: the Secret's token (admin.addr is not loopback).
    let out = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .env_remove("CCSD_CONFIG")
        .env("CCSD_ADMIN__TOKEN", "from-the-secret")
        .stdin(Stdio::null())
        .output()
        .expect("run ccsd --check-config");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the ConfigMap's ccsd.toml is refused:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the token it must be refused: the Secret is what makes the admin port safe.
    let out = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .env_remove("CCSD_CONFIG")
        .env_remove("CCSD_ADMIN__TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin.token"));
}

#[test]
fn the_pods_memory_volume_holds_the_lanes_where_both_containers_look() {
    let env = TestEnv::new(1, "", "");
    let config = env.dir.join("kubernetes.toml");
    std::fs::write(&config, configmap_settings()).unwrap();
    let token = ("CCSD_ADMIN__TOKEN".to_owned(), "from-the-secret".to_owned());
    let settings =
        Settings::load_with_env(Some(&config), [token]).expect("the ConfigMap's settings");
    let deployment = read("deployment.yaml");
    let dir = settings.queues.dir.display().to_string();
    let mounts = deployment
        .lines()
        .filter(|l| l.trim() == format!("mountPath: {dir}"))
        .count();
    assert_eq!(
        mounts, 2,
        "both containers mount the lanes' volume at {dir}"
    );
    assert_eq!(yaml_value(&deployment, "medium"), "Memory");
    let limit = yaml_value(&deployment, "sizeLimit");
    let mib: u64 = limit
        .strip_suffix("Mi")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("sizeLimit {limit} in Mi"));
    let workers = settings
        .broker
        .workers
        .expect("workers set, not the node's cores") as u64;
    let needed = (workers + 2) * (settings.queues.capacity.bytes() + LANE_HEADER_SIZE as u64);
    assert!(
        needed < mib << 20,
        "the lanes need {needed} bytes, the volume holds {limit}"
    );
    // The same user in both containers (set once, for the pod).
    assert_eq!(yaml_value(&deployment, "runAsUser"), "10001");
    assert_eq!(yaml_value(&deployment, "fsGroup"), "10001");
    // Readiness is the balancer's health check.
    assert_eq!(yaml_value(&deployment, "path"), "/health");
}
