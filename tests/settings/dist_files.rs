//! The files shipped in `dist/` for installing ccsd work as shipped: the production settings
//! `dist/ccsd.toml` pass the real binary's `--check-config`, and logrotate accepts
//! `dist/logrotate.d/ccsd` and, run on a live ccsd's log, makes it reopen the file.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestEnv, WAIT, run_ok};

fn dist_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `text` with every `from` replaced by `to`; fails when `text` does not name `from`, so a path
/// the test means to redirect cannot silently stay the installed one.
fn redirect(text: &str, from: &str, to: &Path) -> String {
    assert!(text.contains(from), "the shipped file does not name {from}");
    text.replace(from, &to.display().to_string())
}

/// A fresh directory under the test's directory.
fn subdir(env: &TestEnv, name: &str) -> PathBuf {
    let dir = env.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether logrotate can run: in CI (`CI=true`) its absence fails the test, elsewhere the test
/// says why it is skipped.
fn logrotate_available() -> bool {
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("logrotate").is_file())
    });
    if !on_path {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "logrotate is not installed: .ci/deps installs it (Debian's logrotate package)"
        );
        eprintln!("SKIPPED: logrotate is not installed (Debian's logrotate package)");
    }
    on_path
}

/// Writes `text` as a logrotate configuration logrotate will read: mode 0644 (it ignores files
/// others may write).
fn write_logrotate_conf(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn the_shipped_production_settings_pass_check_config() {
    let env = TestEnv::new(1, "", "");
    // The directories systemd creates for the unit (RuntimeDirectory=, LogsDirectory=) are
    // redirected to the test's own; everything else is checked as shipped.
    let toml = dist_file("ccsd.toml");
    let toml = redirect(&toml, "/run/ccsd", &subdir(&env, "run"));
    let toml = redirect(&toml, "/var/log/ccsd", &subdir(&env, "log"));
    let config = env.dir.join("production.toml");
    std::fs::write(&config, toml).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .env_remove("CCSD_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run ccsd --check-config");
    assert_eq!(
        out.status.code(),
        Some(0),
        "dist/ccsd.toml is refused:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("settings OK"));
}

#[test]
fn logrotate_accepts_the_shipped_logrotate_file() {
    if !logrotate_available() {
        return;
    }
    let env = TestEnv::new(1, "", "");
    let conf = env.dir.join("logrotate.conf");
    write_logrotate_conf(&conf, &dist_file("logrotate.d/ccsd"));
    // --debug parses and plans without rotating; any error in the file makes it exit 1.
    let out = Command::new("logrotate")
        .arg("--debug")
        .arg("--state")
        .arg(env.dir.join("logrotate.state"))
        .arg(&conf)
        .stdin(Stdio::null())
        .output()
        .expect("run logrotate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "logrotate --debug failed:\n{stderr}");
    assert!(!stderr.contains("error:"), "{stderr}");
    assert!(stderr.contains("/var/log/ccsd/*.log"), "{stderr}");
}

#[test]
fn logrotate_with_the_shipped_file_makes_a_running_ccsd_reopen_its_log() {
    if !logrotate_available() {
        return;
    }
    let env = TestEnv::new(1, "", "");
    let log_dir = subdir(&env, "log");
    let run_dir = subdir(&env, "run");
    let log_file = log_dir.join("ccsd.log");
    env.add_setting(
        "broker",
        &format!(
            "pid_file = {:?}",
            run_dir.join("ccsd.pid").display().to_string()
        ),
    );
    // Lines to the file and stderr both: the test reads readiness from stderr.
    env.add_setting(
        "log",
        &format!("file = {:?}\nstderr = true", log_file.display().to_string()),
    );
    let mut ccsd = env.start_ccsd();

    let conf_text = dist_file("logrotate.d/ccsd");
    let conf_text = redirect(&conf_text, "/var/log/ccsd", &log_dir);
    let conf_text = redirect(&conf_text, "/run/ccsd", &run_dir);
    let conf = env.dir.join("logrotate.conf");
    write_logrotate_conf(&conf, &conf_text);
    // --force rotates now (the file is not a day old); the postrotate script signals ccsd by
    // its pid file (no ccsd.service is active here).
    run_ok(
        Command::new("logrotate")
            .arg("--force")
            .arg("--state")
            .arg(env.dir.join("logrotate.state"))
            .arg(&conf),
    );
    let rotated = std::fs::read_to_string(log_dir.join("ccsd.log.1")).expect("ccsd.log.1");
    assert!(rotated.contains("ccsd ready"), "{rotated}");

    ccsd.wait_for_line("SIGUSR1: reopened the log file");
    // The new file is the one ccsd writes to now.
    let deadline = Instant::now() + WAIT;
    loop {
        let now = std::fs::read_to_string(&log_file).unwrap_or_default();
        if now.contains("SIGUSR1: reopened the log file") {
            assert!(!now.contains("ccsd ready"), "{now}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new {} never got a line: {now:?}",
            log_file.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
