//! `--check-config` checks the files ccsd will write, not only the keys: the directory of
//! `broker.pid_file` must exist, and `log.file` (or its directory) must be writable by the user
//! ccsd runs as.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use common::TestEnv;

fn check_config(env: &TestEnv, as_nobody: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.arg("--config").arg(&env.config).arg("--check-config");
    if as_nobody {
        cmd.uid(65534).gid(65534);
    }
    cmd.output().expect("run ccsd --check-config")
}

#[test]
fn a_pid_file_in_a_missing_directory_is_reported() {
    let env = TestEnv::new(1, "", "");
    let missing = env.dir.join("no-such-dir");
    let pid_file = missing.join("ccsd.pid");
    env.add_setting(
        "broker",
        &format!("pid_file = {:?}", pid_file.display().to_string()),
    );
    let out = check_config(&env, false);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "broker.pid_file: directory {}: No such file or directory",
        missing.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("settings OK"));
}

#[test]
fn a_log_directory_that_is_not_writable_is_reported() {
    let env = TestEnv::new(1, "", "");
    let log_dir = env.dir.join("logs");
    std::fs::create_dir(&log_dir).unwrap();
    let log_file = log_dir.join("ccsd.log");
    env.add_setting(
        "log",
        &format!("file = {:?}", log_file.display().to_string()),
    );
    // Root may write anywhere: check as another user, for whom the 0755 directory of root's is
    // read-only. Without root, take the write bit away instead.
    let as_nobody = rustix::process::geteuid().is_root();
    if as_nobody {
        for dir in [&env.dir, &log_dir] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(
            env.config.parent().unwrap(),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    } else {
        std::fs::set_permissions(&log_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let out = check_config(&env, as_nobody);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "log.file: {} is not writable: Permission denied",
        log_dir.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    // Writable again (the stats file's directory too): the same settings pass.
    for dir in [&env.dir, &log_dir] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let out = check_config(&env, as_nobody);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
