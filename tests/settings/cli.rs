//! The `ccsd` command line: settings validation and start-up failures exit 2 with one clear
//! message naming the problem.

use crate::common;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::TestEnv;

fn ccsd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CCSD_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run ccsd")
}

fn check(toml: &str, env: &[(&str, &str)]) -> (i32, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let file = std::env::temp_dir().join(format!("ccsd-cli-{}-{n}.toml", std::process::id()));
    std::fs::write(&file, toml).unwrap();
    let out = ccsd(&["--check-config", "--config", file.to_str().unwrap()], env);
    let _ = std::fs::remove_file(&file);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn built_in_defaults_pass_check_config() {
    let out = ccsd(&["--check-config"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unknown_key_is_named_and_exits_2() {
    let (code, text) = check("[broker]\nwrkers = 2\n", &[]);
    assert_eq!(code, 2);
    assert!(text.contains("wrkers"), "{text}");
}

#[test]
fn bad_address_zero_workers_and_locked_mode_are_all_reported_in_one_run() {
    let toml = "[broker]\nworkers = 0\nunlocked_mode = false\n\n[[listen]]\naddr = \"nowhere\"\n";
    let (code, text) = check(toml, &[]);
    assert_eq!(code, 2);
    for key in ["broker.workers", "broker.unlocked_mode", "listen[0].addr"] {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }
}

#[test]
fn invalid_listener_worker_sets_are_refused_naming_the_listener_and_the_worker() {
    let toml = "[broker]\nworkers = 2\n\n[[listen]]\naddr = \"127.0.0.1:0\"\nworkers = [0, 2]\n\n\
                [[listen]]\naddr = \"127.0.0.1:0\"\nworkers = []\n\n\
                [[listen]]\naddr = \"127.0.0.1:0\"\nworkers = [1, 1]\n\n\
                [[listen]]\naddr = \"127.0.0.1:0\"\nproto = \"udp\"\nworkers = [0]\n";
    let (code, text) = check(toml, &[]);
    assert_eq!(code, 2, "{text}");
    for line in [
        "listen[0].workers: worker 2 does not exist: there are 2 workers, 0 to 1 (broker.workers)",
        "listen[1].workers: empty; list at least one worker, or remove the key to use every worker",
        "listen[2].workers: worker 1 is listed twice (at positions 0 and 1)",
        "listen[3].workers: TCP listeners only",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    let (code, text) = check(
        "[broker]\nworkers = 2\ndispatch = \"least_loaded\"\n[[listen]]\naddr = \"127.0.0.1:0\"\nworkers = [1]\n",
        &[],
    );
    assert_eq!(code, 0, "{text}");
}

#[test]
fn environment_override_of_the_wrong_type_names_the_key() {
    let (code, text) = check("", &[("CCSD_BROKER__WORKERS", "abc")]);
    assert_eq!(code, 2);
    assert!(text.contains("broker.workers"), "{text}");
}

#[test]
fn environment_override_of_the_right_type_applies() {
    let (code, text) = check("", &[("CCSD_BROKER__WORKERS", "0")]);
    assert_eq!(code, 2, "the override must reach validation: {text}");
    assert!(text.contains("broker.workers"), "{text}");
}

#[test]
fn unusable_queue_dir_exits_2() {
    let (code, text) = check("[queues]\ndir = \"/nonexistent/ccsd\"\n", &[]);
    assert_eq!(code, 2);
    assert!(text.contains("queues.dir"), "{text}");
}

#[test]
fn port_in_use_exits_2_with_one_clear_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let env = TestEnv::new(1, "", "");
    env.set_listen_addr(&format!("127.0.0.1:{port}"));
    let out = ccsd(&["--config", env.config.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unknown_argument_exits_2_with_usage() {
    let out = ccsd(&["--frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: ccsd"));
}

#[test]
fn lanes_of_another_capacity_are_refused_with_the_file_named() {
    let env = TestEnv::new(1, "max_packet = \"1KiB\"", "");
    env.add_setting("queues", "capacity = \"64KiB\"");
    let mut first = env.start_ccsd();
    first.kill();

    // Start again with another lane size (edit the value: TOML refuses a second `capacity`).
    let toml = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, toml.replace("\"64KiB\"", "\"128KiB\"")).unwrap();
    let out = ccsd(&["--config", env.config.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("/dev/shm/{}.", env.name)),
        "{stderr}"
    );
    assert!(stderr.contains("queues.capacity"), "{stderr}");
}

#[test]
fn a_second_ccsd_on_the_same_queues_is_refused_naming_the_first() {
    let env = TestEnv::new(1, "", "");
    let first = env.start_ccsd();
    let out = ccsd(&["--config", env.config.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "another ccsd (pid {}) already uses these queues",
        first.child.id()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

/// A settings file whose only setting (`broker.workers = 0`) fails validation, so that
/// `--check-config` shows whether ccsd read it: exit 2 naming the key, where the built-in
/// defaults exit 0.
fn invalid_file(tag: &str) -> std::path::PathBuf {
    let file = std::env::temp_dir().join(format!("ccsd-cli-{}-{tag}.toml", std::process::id()));
    std::fs::write(&file, "[broker]\nworkers = 0\n").unwrap();
    file
}

fn text_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn config_file_is_read_from_every_spelling_of_the_flag_and_from_ccsd_config() {
    let file = invalid_file("spellings");
    let path = file.to_str().unwrap();
    let with_equals = format!("--config={path}");
    type Run<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let runs: [Run; 4] = [
        (&["--check-config", "--config", path], &[]),
        (&["--check-config", &with_equals], &[]),
        (&["--check-config", "-c", path], &[]),
        (&["--check-config"], &[("CCSD_CONFIG", path)]),
    ];
    for (args, env) in runs {
        let out = ccsd(args, env);
        let text = text_of(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {text}");
        assert!(text.contains("broker.workers"), "{args:?} {env:?}: {text}");
    }
    let _ = std::fs::remove_file(&file);
}

#[test]
fn command_line_config_wins_over_ccsd_config() {
    let file = invalid_file("wins");
    let out = ccsd(
        &["--check-config", "-c", "settings/default.toml"],
        &[("CCSD_CONFIG", file.to_str().unwrap())],
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.status.code(), Some(0), "{}", text_of(&out));
}

#[test]
fn ccsd_config_is_not_refused_as_an_unknown_setting() {
    let out = ccsd(
        &["--check-config"],
        &[("CCSD_CONFIG", "settings/default.toml")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text_of(&out));
    let out = ccsd(&["--check-config"], &[("CCSD_CONFIG", "")]);
    assert_eq!(out.status.code(), Some(0), "empty: {}", text_of(&out));
}

#[test]
fn config_flag_without_a_file_exits_2_naming_the_flag() {
    for (args, flag) in [(&["-c"][..], "-c"), (&["--config="][..], "--config=")] {
        let out = ccsd(args, &[]);
        let text = text_of(&out);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains(&format!("{flag} needs a FILE")), "{text}");
    }
}
