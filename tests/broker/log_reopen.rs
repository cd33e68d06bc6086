//! SIGUSR1 (as in nginx) reopens the log file at its configured path (logrotate's postrotate):
//! after the file is renamed, new lines go to a new file there; a reopen that fails keeps the old
//! file and is counted; without a log file SIGUSR1 is harmless. SIGHUP reloads the settings
//! (`systemctl reload`, see `sighup_reload`) and does not reopen the log; SIGUSR2 is a hot restart
//! (`hot_restart_upgrade`). None of them kills ccsd.

use crate::common;

use std::path::Path;
use std::time::Instant;

use common::{Proc, TestEnv, WAIT, connect, packet, round_trip};
use rustix::process::{Pid, Signal, kill_process};

fn signal(p: &Proc, signal: Signal) {
    kill_process(Pid::from_child(&p.child), signal).expect("send the signal");
}

/// A log file, and the lines on stderr too (`log.stderr = true`; with a file it is off by
/// default): these tests follow ccsd's progress on stderr and the file's contents apart.
fn with_log_file(env: &TestEnv, path: &Path) {
    env.add_setting("log", &format!("file = {:?}", path.display().to_string()));
    env.add_setting("log", "stderr = true");
}

/// Waits until the file at `path` contains `needle`; returns its text.
fn wait_for_text(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never held {needle:?}; it holds:\n{text}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn after_a_rename_and_sigusr1_new_lines_go_to_a_new_file_at_the_configured_path() {
    let env = TestEnv::new(1, "", "");
    let log = env.dir.join("ccsd.log");
    let rotated = env.dir.join("ccsd.log.1");
    with_log_file(&env, &log);
    let mut ccsd = env.start_ccsd();
    wait_for_text(&log, "ccsd ready");

    std::fs::rename(&log, &rotated).unwrap();
    signal(&ccsd, Signal::USR1);
    env.wait_stat("process.log_reopens", |v| v == 1);
    ccsd.wait_for_line("SIGUSR1: reopened the log file");
    wait_for_text(&log, "SIGUSR1: reopened the log file");

    // A line provoked after the reopen: MCP attaching.
    let _mcp = env.start_echo_mcp();
    ccsd.wait_for_line("MCP is up");
    let fresh = wait_for_text(&log, "MCP is up");
    assert!(!fresh.contains("ccsd ready"), "{fresh}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("ccsd ready"), "{old}");
    assert!(
        !old.contains("MCP is up"),
        "a new line went to the renamed file:\n{old}"
    );
    assert!(!old.contains("SIGUSR1"), "{old}");

    let mut client = connect(ccsd.addr());
    assert_eq!(
        round_trip(&mut client, b"still serving"),
        packet(b"still serving")
    );
    assert_eq!(
        common::stat(&env.stats(), "process.log_reopen_errors"),
        Some(0)
    );
}

#[test]
fn a_failed_reopen_keeps_the_old_file_and_is_counted() {
    let env = TestEnv::new(1, "", "");
    let dir = env.dir.join("logs");
    std::fs::create_dir(&dir).unwrap();
    let log = dir.join("ccsd.log");
    with_log_file(&env, &log);
    let mut ccsd = env.start_ccsd();
    wait_for_text(&log, "ccsd ready");

    // The configured directory is gone: the path cannot be opened again.
    let moved = env.dir.join("logs.old");
    std::fs::rename(&dir, &moved).unwrap();
    signal(&ccsd, Signal::USR1);
    env.wait_stat("process.log_reopen_errors", |v| v == 1);
    let line = ccsd.wait_for_line("SIGUSR1: cannot reopen the log");
    assert!(
        line.contains("ERROR") && line.contains(&log.display().to_string()),
        "{line}"
    );
    wait_for_text(&moved.join("ccsd.log"), "SIGUSR1: cannot reopen the log");
    assert_eq!(common::stat(&env.stats(), "process.log_reopens"), Some(0));
}

#[test]
fn sighup_reloads_the_settings_and_leaves_the_log_file_open() {
    let env = TestEnv::new(1, "", "");
    let log = env.dir.join("ccsd.log");
    let rotated = env.dir.join("ccsd.log.1");
    with_log_file(&env, &log);
    let mut ccsd = env.start_ccsd();
    wait_for_text(&log, "ccsd ready");

    std::fs::rename(&log, &rotated).unwrap();
    signal(&ccsd, Signal::HUP);
    ccsd.wait_for_line("SIGHUP: OK reloaded");
    // Still writing to the renamed file: SIGHUP is the settings reload, not logrotate's signal.
    wait_for_text(&rotated, "SIGHUP: OK reloaded");
    assert!(!log.exists(), "SIGHUP reopened the log file");
    env.wait_stat("process.log_reopens", |v| v == 0);
    assert_eq!(ccsd.child.try_wait().unwrap(), None, "SIGHUP stopped ccsd");
}

#[test]
fn sigusr1_leaves_ccsd_serving_and_it_still_stops_cleanly() {
    let env = TestEnv::new(1, "", "");
    let pid_file = env.dir.join("ccsd.pid");
    env.add_setting(
        "broker",
        &format!("pid_file = {:?}", pid_file.display().to_string()),
    );
    let mut ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    signal(&ccsd, Signal::USR1);
    ccsd.wait_for_line("SIGUSR1: no log file to reopen");
    // SIGUSR2 is a hot restart: tests/broker/hot_restart_upgrade.rs.

    let mut client = connect(ccsd.addr());
    assert_eq!(round_trip(&mut client, b"alive"), packet(b"alive"));
    assert_eq!(ccsd.child.try_wait().unwrap(), None);
    assert!(pid_file.exists());
    drop(client);
    signal(&ccsd, Signal::TERM);
    assert_eq!(ccsd.exit_code(), Some(0));
    assert!(!pid_file.exists(), "the pid file was left behind");
}
