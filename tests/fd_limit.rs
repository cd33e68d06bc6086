//! The open-file limit through the real binary (started from `sh` with lowered limits): ccsd
//! raises its soft limit to fit `broker.max_connections`, and warns, naming both numbers and the
//! setting, when the hard limit is too low.

mod common;

use std::process::Command;

use common::{Proc, TestEnv};

/// ccsd on `env`'s config, after `sh` ran `ulimit` (e.g. `ulimit -Sn 1024`).
fn ccsd_with_ulimit(env: &TestEnv, ulimit: &str) -> Proc {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{ulimit} && exec \"$0\" --config \"$1\""))
        .arg(env!("CARGO_BIN_EXE_ccsd"))
        .arg(&env.config);
    Proc::spawn(cmd, "ccsd")
}

#[test]
fn soft_limit_is_raised_to_fit_max_connections() {
    let env = TestEnv::new(1, "", "");
    env.add_setting("broker", "max_connections = 1000");
    let mut ccsd = ccsd_with_ulimit(&env, "ulimit -Sn 256");
    let needed = ccsd::fd_limit::fd_budget(1000, 1, 1);
    let line = ccsd.wait_for_line("open-file limit");
    assert!(
        line.contains(&format!(
            "raised from 256 to {needed} for broker.max_connections = 1000"
        )),
        "{line}"
    );
    ccsd.wait_for_line("ccsd ready");
}

#[test]
fn hard_limit_below_max_connections_is_a_warning_naming_both_numbers() {
    let env = TestEnv::new(1, "", "");
    env.add_setting("broker", "max_connections = 5000");
    let mut ccsd = ccsd_with_ulimit(&env, "ulimit -Sn 500 && ulimit -Hn 1000");
    let needed = ccsd::fd_limit::fd_budget(5000, 1, 1);
    let line = ccsd.wait_for_line("open-file limit");
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&format!(
            "broker.max_connections = 5000 needs {needed} descriptors but the hard limit (RLIMIT_NOFILE) is 1000"
        )),
        "{line}"
    );
    let raised = ccsd.wait_for_line("open-file limit");
    assert!(raised.contains("raised from 500 to 1000"), "{raised}");
    ccsd.wait_for_line("ccsd ready");
}
