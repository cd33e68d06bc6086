//! Environment overrides `CCSD_<SECTION>__<KEY>`, given explicitly through `load_with_env`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ccsd::settings::{ByteSize, Dispatch, OnFull, Settings, SettingsError, WhenDown};

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|&(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

fn problems(result: Result<Settings, SettingsError>) -> Vec<String> {
    result.expect_err("settings should be rejected").problems
}

#[test]
fn env_overrides_the_built_in_defaults() {
    let settings = Settings::load_with_env(
        None,
        env(&[
            ("CCSD_BROKER__WORKERS", "3"),
            ("CCSD_BROKER__DISPATCH", "round_robin"),
            ("CCSD_QUEUES__CAPACITY", "64MiB"),
            ("CCSD_QUEUES__ON_FULL", "close"),
            ("CCSD_LOG__LEVEL", "trace"),
            ("CCSD_STATS__INTERVAL", "250ms"),
            ("CCSD_STATS__FILE", "/tmp/status.json"),
            ("CCSD_MCP__STALL_TIMEOUT", "30s"),
            ("CCSD_MCP__REPLY_MAX_AGE", "5s"),
            ("CCSD_BROKER__PID_FILE", "/tmp/ccsd.pid"),
            ("CCSD_MCP__WHEN_DOWN", "refuse"),
        ]),
    )
    .expect("valid overrides");
    assert_eq!(settings.broker.workers, Some(3));
    assert_eq!(settings.broker.dispatch, Dispatch::RoundRobin);
    assert_eq!(settings.queues.capacity, ByteSize(64 << 20));
    assert_eq!(settings.queues.on_full, OnFull::Close);
    assert_eq!(settings.log.level, log::LevelFilter::Trace);
    assert_eq!(settings.stats.interval, Duration::from_millis(250));
    assert_eq!(settings.stats.file, Some(PathBuf::from("/tmp/status.json")));
    assert_eq!(settings.mcp.stall_timeout, Duration::from_secs(30));
    assert_eq!(settings.mcp.reply_max_age, Duration::from_secs(5));
    assert_eq!(
        settings.broker.pid_file,
        Some(PathBuf::from("/tmp/ccsd.pid"))
    );
    assert_eq!(settings.mcp.when_down, WhenDown::Refuse);
}

#[test]
fn env_overrides_a_settings_file() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("settings_env-file.toml");
    std::fs::write(&path, "[broker]\nworkers = 2\nmailbox_capacity = 64\n").expect("write");
    let settings =
        Settings::load_with_env(Some(&path), env(&[("CCSD_BROKER__WORKERS", "5")])).expect("valid");
    assert_eq!(settings.broker.workers, Some(5));
    assert_eq!(
        settings.broker.mailbox_capacity, 64,
        "keys not overridden stay"
    );
}

#[test]
fn env_byte_sizes_accept_plain_integers() {
    let settings = Settings::load_with_env(None, env(&[("CCSD_QUEUES__CAPACITY", "65536")]));
    let problems = problems(settings);
    // 64KiB is a valid capacity but cannot hold the default 16MiB packet: the value was applied.
    assert_eq!(
        problems,
        [
            "queues.capacity: 64KiB cannot hold listen[0].max_packet (16MiB) plus 72 bytes of headers"
        ]
    );
}

#[test]
fn env_names_are_case_insensitive() {
    let settings = Settings::load_with_env(None, env(&[("ccsd_broker__mailbox_capacity", "17")]))
        .expect("valid");
    assert_eq!(settings.broker.mailbox_capacity, 17);
}

#[test]
fn env_string_values_are_taken_verbatim() {
    let settings =
        Settings::load_with_env(None, env(&[("CCSD_QUEUES__NAME", "007")])).expect("valid");
    assert_eq!(settings.queues.name, "007");
}

#[test]
fn env_booleans_are_parsed() {
    let settings = Settings::load_with_env(None, env(&[("CCSD_BROKER__UNLOCKED_MODE", "true")]))
        .expect("valid");
    assert!(settings.broker.unlocked_mode);
    let problems = problems(Settings::load_with_env(
        None,
        env(&[("CCSD_BROKER__UNLOCKED_MODE", "false")]),
    ));
    assert_eq!(
        problems,
        ["broker.unlocked_mode: locked mode is not available yet; set it to true"]
    );
}

#[test]
fn an_empty_env_value_switches_an_optional_file_off() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("settings_env-log-file.toml");
    std::fs::write(&path, "[log]\nfile = \"/tmp/ccsd.log\"\n").expect("write");
    let settings =
        Settings::load_with_env(Some(&path), env(&[("CCSD_LOG__FILE", "")])).expect("valid");
    assert_eq!(settings.log.file, None);
}

#[test]
fn a_misspelt_env_key_is_an_error_naming_key_and_variable() {
    let problems = problems(Settings::load_with_env(
        None,
        env(&[("CCSD_BROKER__WRKERS", "3")]),
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("unknown key `broker.wrkers` (from CCSD_BROKER__WRKERS)"),
        "{problems:?}"
    );
}

#[test]
fn a_misspelt_env_section_is_an_error() {
    let problems = problems(Settings::load_with_env(
        None,
        env(&[("CCSD_BROKR__WORKERS", "3")]),
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("unknown key `brokr` (from CCSD_BROKR__WORKERS)"),
        "{problems:?}"
    );
}

#[test]
fn an_env_value_of_the_wrong_type_names_its_key() {
    let problems = problems(Settings::load_with_env(
        None,
        env(&[("CCSD_BROKER__WORKERS", "abc")]),
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("broker.workers (from CCSD_BROKER__WORKERS): "),
        "{problems:?}"
    );
}

#[test]
fn env_values_are_validated_like_file_values() {
    let problems = problems(Settings::load_with_env(
        None,
        env(&[("CCSD_BROKER__WORKERS", "0")]),
    ));
    assert_eq!(problems, ["broker.workers: must be at least 1"]);
}

#[test]
fn listen_tables_cannot_be_overridden_from_the_env() {
    let problems = problems(Settings::load_with_env(
        None,
        env(&[("CCSD_LISTEN__0__ADDR", "127.0.0.1:9")]),
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("listen: "), "{problems:?}");
    assert!(problems[0].contains("CCSD_LISTEN__0__ADDR"), "{problems:?}");
}

#[test]
fn variables_without_the_ccsd_prefix_are_ignored() {
    let settings = Settings::load_with_env(
        None,
        env(&[
            ("HOME", "/root"),
            ("BROKER__WORKERS", "0"),
            ("CCSDX_BROKER__WORKERS", "0"),
        ]),
    );
    assert_eq!(settings, Ok(Settings::default()));
}
