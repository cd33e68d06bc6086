//! Where log lines go (`log.file`, `log.stderr`): without a log file, to stderr; with one, to the
//! file only (so a service under journald does not log every line twice), unless
//! `log.stderr = true` asks for both. `log.stderr = false` without a file is refused.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{Proc, TestEnv, WAIT};

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

fn ccsd(env: &TestEnv) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.arg("--config").arg(&env.config);
    Proc::spawn(cmd, "ccsd")
}

#[test]
fn with_a_log_file_lines_go_to_the_file_only_by_default() {
    let env = TestEnv::new(1, "", "");
    let log = env.dir.join("ccsd.log");
    env.add_setting("log", &format!("file = {:?}", log.display().to_string()));
    let mut ccsd = ccsd(&env);
    wait_for_text(&log, "ccsd ready");
    let stderr = ccsd.kill_and_collect_stderr();
    assert!(
        stderr.iter().all(|l| !l.contains("ccsd ready")),
        "log lines went to stderr too:\n{}",
        stderr.join("\n")
    );
}

#[test]
fn log_stderr_true_with_a_log_file_sends_every_line_to_both() {
    let env = TestEnv::new(1, "", "");
    let log = env.dir.join("ccsd.log");
    env.add_setting("log", &format!("file = {:?}", log.display().to_string()));
    env.add_setting("log", "stderr = true");
    let mut ccsd = ccsd(&env);
    let line = ccsd.wait_for_line("ccsd ready");
    let text = wait_for_text(&log, "ccsd ready");
    assert!(text.contains(&line), "{line:?} is not in the file:\n{text}");
}

#[test]
fn log_stderr_false_without_a_log_file_is_refused_naming_the_key() {
    let env = TestEnv::new(1, "", "");
    env.add_setting("log", "stderr = false");
    let out = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--check-config")
        .arg("--config")
        .arg(&env.config)
        .output()
        .expect("run ccsd");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("log.stderr"), "{text}");
}
