//! The lock file `{queues.dir}/{queues.name}.lock` and `broker.pid_file` are written only when
//! they are unmistakably ccsd's own: a symbolic link planted there is refused (its target is left
//! alone), and a file or lock of another user is reported as that, not as another ccsd.

use crate::common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::{TestEnv, WAIT};
use rustix::process::{Pid, Signal, kill_process_group};

/// Runs ccsd on `env` until it exits (it is expected to refuse the start).
fn run_ccsd(env: &TestEnv) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--config")
        .arg(&env.config)
        .output()
        .expect("run ccsd")
}

fn lock_path(env: &TestEnv) -> std::path::PathBuf {
    Path::new("/dev/shm").join(format!("{}.lock", env.name))
}

#[test]
fn a_symlink_as_lock_file_refuses_the_start_and_leaves_its_target_alone() {
    let env = TestEnv::new(1, "", "");
    let victim = env.dir.join("victim");
    std::fs::write(&victim, "root's precious file\n").unwrap();
    let lock = lock_path(&env);
    std::os::unix::fs::symlink(&victim, &lock).unwrap();

    let out = run_ccsd(&env);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}: is a symbolic link; refusing to use it", lock.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root's precious file\n"
    );
    // Refused before any lane was made.
    assert!(!Path::new(&format!("/dev/shm/{}.rsp", env.name)).exists());
}

#[test]
fn a_symlink_as_pid_file_refuses_the_start_and_leaves_its_target_alone() {
    let env = TestEnv::new(1, "", "");
    let victim = env.dir.join("victim");
    std::fs::write(&victim, "root's precious file\n").unwrap();
    let pid_file = env.dir.join("ccsd.pid");
    std::os::unix::fs::symlink(&victim, &pid_file).unwrap();
    env.add_setting(
        "broker",
        &format!("pid_file = {:?}", pid_file.display().to_string()),
    );

    let out = run_ccsd(&env);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "broker.pid_file: {}: is a symbolic link; refusing to use it",
        pid_file.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root's precious file\n"
    );
    assert!(pid_file.is_symlink(), "the planted link was replaced");
}

/// uid and gid of `nobody` on Linux.
const NOBODY: u32 = 65534;

#[test]
fn a_lock_held_by_another_users_process_is_reported_as_that() {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: needs root to run a lock holder as another user");
        return;
    }
    let env = TestEnv::new(1, "", "");
    let lock = lock_path(&env);
    // Another user's process creates and holds the lock file (flock(1) as `nobody`).
    let mut holder = Command::new("flock")
        .arg("--nonblock")
        .arg("--close")
        .arg(&lock)
        .args(["sleep", "60"])
        .uid(NOBODY)
        .gid(NOBODY)
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .expect("run flock(1) as nobody");
    let holder_pid = holder.id();
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| l.contains(" FLOCK ") && l.contains(&format!(" {holder_pid} ")))
    {
        assert!(Instant::now() < deadline, "flock(1) never took the lock");
        assert!(holder.try_wait().unwrap().is_none(), "flock(1) exited");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    let out = run_ccsd(&env);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}: locked by pid {holder_pid}, a process of another user (uid {NOBODY}",
        lock.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("another ccsd"), "{stderr}");

    // Without the holder, the file still belongs to another user: refused, and said so.
    kill_process_group(Pid::from_child(&holder), Signal::KILL).unwrap();
    holder.wait().unwrap();
    let out = run_ccsd(&env);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}: belongs to another user (uid {NOBODY}; ccsd runs as uid 0); refusing to use it",
        lock.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    std::fs::remove_file(&lock).unwrap();
}
