//! `broker.pid_file`: written with ccsd's pid once it holds the instance lock, removed at a clean
//! exit; a file left by a dead process is replaced, one held by a running ccsd refuses the start.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::TestEnv;
use rustix::process::{Pid, Signal, kill_process};

fn with_pid_file(env: &TestEnv, path: &Path) {
    env.add_setting(
        "broker",
        &format!("pid_file = {:?}", path.display().to_string()),
    );
}

fn pid_in(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).expect("read the pid file");
    text.trim().parse().expect("a pid")
}

#[test]
fn pid_file_holds_the_pid_while_running_and_is_removed_at_a_clean_exit() {
    let env = TestEnv::new(1, "", "");
    let path = env.dir.join("ccsd.pid");
    with_pid_file(&env, &path);
    let mut ccsd = env.start_ccsd();
    assert_eq!(pid_in(&path), ccsd.child.id());

    kill_process(Pid::from_child(&ccsd.child), Signal::TERM).unwrap();
    assert_eq!(ccsd.exit_code(), Some(0));
    assert!(!path.exists(), "the pid file outlived ccsd");
}

#[test]
fn a_stale_pid_file_from_a_dead_process_is_replaced() {
    let env = TestEnv::new(1, "", "");
    let path = env.dir.join("ccsd.pid");
    with_pid_file(&env, &path);
    // The pid of a process that has exited and been reaped: what a SIGKILLed ccsd leaves behind.
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    std::fs::write(&path, format!("{}\n", dead.id())).unwrap();

    let ccsd = env.start_ccsd();
    assert_eq!(pid_in(&path), ccsd.child.id());
}

#[test]
fn a_pid_file_in_use_by_a_running_ccsd_refuses_the_start_and_is_kept() {
    let first_env = TestEnv::new(1, "", "");
    let path = first_env.dir.join("shared.pid");
    with_pid_file(&first_env, &path);
    let first = first_env.start_ccsd();

    // Other queues, so the instance lock lets it through; the same pid file.
    let second_env = TestEnv::new(1, "", "");
    with_pid_file(&second_env, &path);
    let out = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--config")
        .arg(&second_env.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "broker.pid_file: {} is in use by another running ccsd (pid {})",
        path.display(),
        first.child.id()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(pid_in(&path), first.child.id());
}
