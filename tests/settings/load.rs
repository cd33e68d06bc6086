//! Loading settings files: defaults, partial files, unknown keys and reporting every problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ccsd::settings::{
    ByteSize, DEFAULT_SETTINGS_TOML, Dispatch, Endian, LengthIncludes, ListenSettings, OnFull,
    Proto, ProxyProtocol, Settings, SettingsError,
};

/// Writes `text` to a file named after the calling test and returns its path.
fn settings_file(test: &str, text: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("settings_load-{test}.toml"));
    std::fs::write(&path, text).expect("write test settings file");
    path
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn problems(result: Result<Settings, SettingsError>) -> Vec<String> {
    result.expect_err("settings should be rejected").problems
}

#[test]
fn no_file_means_the_built_in_defaults() {
    assert_eq!(
        Settings::load_with_env(None, no_env()),
        Ok(Settings::default())
    );
}

#[test]
fn built_in_defaults_are_the_documented_values() {
    let settings = Settings::from_toml_str(DEFAULT_SETTINGS_TOML).expect("defaults are valid");
    assert_eq!(settings.broker.workers, None);
    assert!(settings.broker.unlocked_mode);
    assert_eq!(settings.broker.dispatch, Dispatch::FdModulo);
    assert_eq!(settings.broker.mailbox_capacity, 4096);
    assert_eq!(settings.queues.dir, Path::new("/dev/shm"));
    assert_eq!(settings.queues.name, "ccsd");
    assert_eq!(settings.queues.capacity, ByteSize(32 << 20));
    assert_eq!(settings.queues.on_full, OnFull::Backpressure);
    assert_eq!(settings.listen, vec![ListenSettings::default()]);
    let listen = &settings.listen[0];
    assert_eq!(listen.addr, "127.0.0.1:7300".parse::<SocketAddr>().unwrap());
    assert_eq!(listen.proto, Proto::Tcp);
    assert_eq!(listen.framing, "length");
    assert_eq!(listen.max_packet, ByteSize(16 << 20));
    assert_eq!(listen.length_offset, 0);
    assert_eq!(listen.length_size, 4);
    assert_eq!(listen.length_endian, Endian::Big);
    assert_eq!(listen.length_includes, LengthIncludes::Body);
    assert_eq!(listen.length_adjust, 0);
    assert_eq!(settings.log.level, log::LevelFilter::Info);
    assert_eq!(settings.log.file, None);
    assert_eq!(settings.stats.interval, Duration::from_secs(1));
    assert_eq!(settings.stats.file, None);
}

#[test]
fn a_file_sets_only_what_it_changes() {
    let path = settings_file(
        "a_file_sets_only_what_it_changes",
        "[broker]\nworkers = 3\n[queues]\ncapacity = \"64MiB\"\n",
    );
    let settings = Settings::load_with_env(Some(&path), no_env()).expect("valid file");
    let mut expected = Settings::default();
    expected.broker.workers = Some(3);
    expected.queues.capacity = ByteSize(64 << 20);
    assert_eq!(settings, expected);
}

#[test]
fn an_empty_file_gives_the_defaults_and_the_default_listener() {
    let path = settings_file("an_empty_file_gives_the_defaults", "");
    assert_eq!(
        Settings::load_with_env(Some(&path), no_env()),
        Ok(Settings::default())
    );
}

#[test]
fn listen_tables_replace_the_default_listener_and_default_their_own_keys() {
    let settings = Settings::from_toml_str(
        "[[listen]]\naddr = \"[::1]:7400\"\nlength_size = 2\nlength_endian = \"little\"\n\
         [[listen]]\naddr = \"0.0.0.0:0\"\nlength_includes = \"all\"\nlength_adjust = -2\n",
    )
    .expect("valid listeners");
    assert_eq!(settings.listen.len(), 2);
    assert_eq!(
        settings.listen[0].addr,
        "[::1]:7400".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(settings.listen[0].length_size, 2);
    assert_eq!(settings.listen[0].length_endian, Endian::Little);
    assert_eq!(settings.listen[0].max_packet, ByteSize(16 << 20));
    assert_eq!(settings.listen[1].length_includes, LengthIncludes::All);
    assert_eq!(settings.listen[1].length_adjust, -2);
    assert_eq!(settings.listen[1].framing, "length");
}

#[test]
fn every_key_of_every_section_can_be_set() {
    let log_file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ccsd.log");
    let toml = format!(
        "[broker]\nworkers = 8\nunlocked_mode = true\ndispatch = \"least_connections\"\nmailbox_capacity = 16\npid_file = \"/run/ccsd/edge.pid\"\n\
         [queues]\ndir = \"/tmp\"\nname = \"edge-1.a_b\"\ncapacity = 65536\non_full = \"close\"\n\
         [[listen]]\naddr = \"127.0.0.1:0\"\nproto = \"tcp\"\nframing = \"length\"\nmax_packet = \"1KiB\"\n\
         length_offset = 2\nlength_size = 8\nlength_endian = \"little\"\nlength_includes = \"field\"\nlength_adjust = 4\n\
         proxy_protocol = \"v2\"\nproxy_from = [\"10.0.0.0/8\", \"2001:db8::1\"]\n\
         [log]\nlevel = \"debug\"\nfile = {log_file:?}\n\
         [stats]\ninterval = \"250ms\"\nfile = \"/tmp/ccsd-status.json\"\n"
    );
    let settings = Settings::from_toml_str(&toml).expect("valid file");
    assert_eq!(settings.broker.workers, Some(8));
    assert_eq!(settings.broker.worker_count(), 8);
    assert_eq!(settings.broker.dispatch, Dispatch::LeastConnections);
    assert_eq!(settings.broker.mailbox_capacity, 16);
    assert_eq!(
        settings.broker.pid_file,
        Some(PathBuf::from("/run/ccsd/edge.pid"))
    );
    assert_eq!(settings.queues.dir, Path::new("/tmp"));
    assert_eq!(settings.queues.name, "edge-1.a_b");
    assert_eq!(settings.queues.capacity, ByteSize(64 << 10));
    assert_eq!(settings.queues.on_full, OnFull::Close);
    let listen = &settings.listen[0];
    assert_eq!(listen.max_packet, ByteSize(1024));
    assert_eq!(listen.length_offset, 2);
    assert_eq!(listen.length_size, 8);
    assert_eq!(listen.length_endian, Endian::Little);
    assert_eq!(listen.length_includes, LengthIncludes::Field);
    assert_eq!(listen.length_adjust, 4);
    assert_eq!(
        listen.proxy_protocol,
        ProxyProtocol::On(ccsd::proxy_protocol::Accepted::V2)
    );
    let from: Vec<String> = listen.proxy_from.iter().map(ToString::to_string).collect();
    assert_eq!(from, ["10.0.0.0/8", "2001:db8::1/128"]);
    assert_eq!(settings.log.level, log::LevelFilter::Debug);
    assert_eq!(settings.log.file, Some(log_file));
    assert_eq!(settings.stats.interval, Duration::from_millis(250));
    assert_eq!(
        settings.stats.file,
        Some(PathBuf::from("/tmp/ccsd-status.json"))
    );
}

#[test]
fn byte_sizes_accept_integers_and_unit_strings() {
    for (text, bytes) in [
        ("1048576", 1 << 20),
        ("\"1048576\"", 1 << 20),
        ("\"1048576B\"", 1 << 20),
        ("\"1024KiB\"", 1 << 20),
        ("\"1024kb\"", 1 << 20),
        ("\"1MiB\"", 1 << 20),
        ("\"1m\"", 1 << 20),
        ("\"1GiB\"", 1 << 30),
    ] {
        let settings = Settings::from_toml_str(&format!(
            "[queues]\ncapacity = \"4GiB\"\n[[listen]]\nmax_packet = {text}\n"
        ))
        .unwrap_or_else(|err| panic!("{text}: {err}"));
        assert_eq!(settings.listen[0].max_packet, ByteSize(bytes), "{text}");
    }
}

#[test]
fn a_byte_size_with_an_unknown_unit_names_its_key() {
    let problems = problems(Settings::from_toml_str("[queues]\ncapacity = \"32XB\"\n"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("queues.capacity: "), "{problems:?}");
}

#[test]
fn a_duration_without_a_unit_is_rejected() {
    let problems = problems(Settings::from_toml_str("[stats]\ninterval = 5\n"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("stats.interval: "), "{problems:?}");
    assert!(problems[0].contains("needs a unit"), "{problems:?}");
}

#[test]
fn durations_accept_ms_s_m_and_h() {
    for (text, duration) in [
        ("250ms", Duration::from_millis(250)),
        ("1s", Duration::from_secs(1)),
        ("2m", Duration::from_secs(120)),
        ("1h", Duration::from_secs(3600)),
    ] {
        let settings = Settings::from_toml_str(&format!("[stats]\ninterval = \"{text}\"\n"))
            .unwrap_or_else(|err| panic!("{text}: {err}"));
        assert_eq!(settings.stats.interval, duration, "{text}");
    }
}

#[test]
fn keywords_are_case_insensitive() {
    let settings =
        Settings::from_toml_str("[broker]\ndispatch = \"Round_Robin\"\n[log]\nlevel = \"WARN\"\n")
            .expect("valid file");
    assert_eq!(settings.broker.dispatch, Dispatch::RoundRobin);
    assert_eq!(settings.log.level, log::LevelFilter::Warn);
}

#[test]
fn an_unknown_keyword_lists_the_accepted_ones() {
    let problems = problems(Settings::from_toml_str("[queues]\non_full = \"block\"\n"));
    assert_eq!(
        problems,
        [
            "queues.on_full: unknown value \"block\", expected one of \"backpressure\", \"drop\", \"close\""
        ]
    );
}

#[test]
fn a_proxy_from_entry_that_is_not_a_network_names_its_key() {
    let problems = problems(Settings::from_toml_str(
        "[[listen]]\nproxy_protocol = \"v1\"\nproxy_from = [\"10.0.0.0/33\"]\n",
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("proxy_from") && problems[0].contains("prefix length must be 0 to 32"),
        "{problems:?}"
    );
}

#[test]
fn an_empty_file_path_means_no_file() {
    let settings =
        Settings::from_toml_str("[log]\nfile = \"\"\n[stats]\nfile = \"\"\n").expect("valid file");
    assert_eq!(settings.log.file, None);
    assert_eq!(settings.stats.file, None);
}

#[test]
fn an_unknown_key_in_a_section_is_named_with_its_section() {
    let problems = problems(Settings::from_toml_str("[broker]\nwrkers = 3\n"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("unknown key `broker.wrkers`"),
        "{problems:?}"
    );
    assert!(
        problems[0].contains("`workers`"),
        "lists the known keys: {problems:?}"
    );
}

#[test]
fn an_unknown_key_in_a_listen_table_is_named_with_its_index() {
    let problems = problems(Settings::from_toml_str(
        "[[listen]]\naddr = \"127.0.0.1:1\"\n[[listen]]\naddr = \"127.0.0.1:2\"\nmax_pakket = 3\n",
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("unknown key `listen[1].max_pakket`"),
        "{problems:?}"
    );
}

#[test]
fn an_unknown_section_is_an_error() {
    let problems = problems(Settings::from_toml_str("[brokers]\nworkers = 3\n"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("unknown key `brokers`"),
        "{problems:?}"
    );
}

#[test]
fn a_value_of_the_wrong_type_names_its_key() {
    let problems = problems(Settings::from_toml_str(
        "[broker]\nmailbox_capacity = \"lots\"\n",
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("broker.mailbox_capacity: "),
        "{problems:?}"
    );
}

#[test]
fn an_invalid_socket_address_is_quoted() {
    let problems = problems(Settings::from_toml_str("[[listen]]\naddr = \"x\"\n"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("listen[0].addr: invalid socket address \"x\""),
        "{problems:?}"
    );
}

#[test]
fn listen_must_be_an_array_of_tables() {
    let problems = problems(Settings::from_toml_str(
        "[listen]\naddr = \"127.0.0.1:1\"\n",
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("listen: "), "{problems:?}");
}

#[test]
fn one_load_reports_a_problem_in_every_section() {
    let problems = problems(Settings::from_toml_str(
        "[broker]\nworkers = \"many\"\n\
         [queues]\nname = \"\"\n\
         [[listen]]\naddr = \"nowhere\"\n\
         [[listen]]\naddr = \"127.0.0.1:7301\"\nproto = \"sctp\"\n\
         [log]\nlevel = \"chatty\"\n\
         [stats]\ninterval = \"1ms\"\n\
         [extra]\n",
    ));
    let starts = [
        "broker.workers: ",
        "queues.name: ",
        "listen[0].addr: ",
        "listen[1].proto: ",
        "log.level: ",
        "stats.interval: ",
        "unknown key `extra`",
    ];
    for start in starts {
        assert!(
            problems.iter().any(|problem| problem.starts_with(start)),
            "no problem starting with {start:?} in {problems:?}"
        );
    }
    assert_eq!(problems.len(), starts.len(), "{problems:?}");
}

#[test]
fn a_broken_section_is_not_validated_with_stand_in_defaults() {
    // listen[0] is broken; the default listener (16MiB) must not be checked against the lane.
    let problems = problems(Settings::from_toml_str(
        "[queues]\ncapacity = \"64KiB\"\n[[listen]]\naddr = \"x\"\nmax_packet = \"1KiB\"\n",
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("listen[0].addr: "), "{problems:?}");
}

#[test]
fn error_display_shows_one_problem_per_line() {
    let err = Settings::from_toml_str("[broker]\nmailbox_capacity = 1\nunlocked_mode = false\n")
        .expect_err("two problems");
    assert_eq!(err.problems.len(), 2);
    assert_eq!(err.to_string(), err.problems.join("\n"));
}

#[test]
fn a_toml_syntax_error_names_the_file_and_line() {
    let path = settings_file("a_toml_syntax_error", "[broker\nworkers = 3\n");
    let problems = problems(Settings::load_with_env(Some(&path), no_env()));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("{}: ", path.display())),
        "{problems:?}"
    );
    assert!(problems[0].contains("line 1"), "{problems:?}");
    assert!(!problems[0].contains('\n'), "one line: {problems:?}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("settings_load-does-not-exist.toml");
    let problems = problems(Settings::load_with_env(Some(&path), no_env()));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("{}: ", path.display())),
        "{problems:?}"
    );
}

#[test]
fn lane_paths_join_dir_name_and_role() {
    let settings =
        Settings::from_toml_str("[queues]\ndir = \"/tmp\"\nname = \"edge\"\n").expect("valid");
    assert_eq!(settings.request_lane_path(0), Path::new("/tmp/edge.req.0"));
    assert_eq!(
        settings.request_lane_path(12),
        Path::new("/tmp/edge.req.12")
    );
    assert_eq!(settings.response_lane_path(), Path::new("/tmp/edge.rsp"));
}

#[test]
fn unset_workers_means_one_per_core() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(255));
    assert_eq!(Settings::default().broker.worker_count(), cores);
}

#[test]
fn built_in_settings_file_spells_out_every_key() {
    let root: config::Map<String, config::Value> = config::Config::builder()
        .add_source(config::File::from_str(
            DEFAULT_SETTINGS_TOML,
            config::FileFormat::Toml,
        ))
        .build()
        .and_then(config::Config::try_deserialize)
        .expect("built-in settings parse");
    let keys = |value: &config::Value| -> Vec<String> {
        let mut keys: Vec<String> = value
            .clone()
            .into_table()
            .expect("a table")
            .into_keys()
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&root["broker"]),
        [
            "dispatch",
            "idle_spin",
            "mailbox_capacity",
            "max_connections",
            "rebalance",
            "rebalance_after",
            "rebalance_max_per_second",
            "rebalance_min_load",
            "rebalance_threshold",
            "shutdown_grace",
            "unlocked_mode"
        ]
    );
    assert_eq!(
        keys(&root["queues"]),
        ["capacity", "dir", "name", "on_full"]
    );
    let listen = root["listen"].clone().into_array().expect("[[listen]]");
    assert_eq!(listen.len(), 1);
    assert_eq!(
        keys(&listen[0]),
        [
            "addr",
            "backlog",
            "framing",
            "http_continue",
            "http_max_header",
            "length_adjust",
            "length_endian",
            "length_includes",
            "length_offset",
            "length_size",
            "max_connections",
            "max_packet",
            "max_requests_per_second",
            "name",
            "proto",
            "proxy_from",
            "proxy_protocol",
            "reuse_port",
            "udp_send_queue",
            "udp_send_timeout",
            "v6only"
        ]
    );
    assert_eq!(keys(&root["log"]), ["level"]);
    assert_eq!(keys(&root["stats"]), ["interval", "log_interval"]);
    assert_eq!(
        keys(&root["admin"]),
        ["addr", "enabled", "idle_timeout", "login_timeout"]
    );
    assert_eq!(
        keys(&root["limits"]),
        [
            "half_close_timeout",
            "idle_timeout",
            "max_memory",
            "max_requests_per_second",
            "max_send_buffer",
            "packet_timeout"
        ]
    );
    assert_eq!(
        keys(&root["mcp"]),
        [
            "connect_events",
            "overload_notices",
            "reply_max_age",
            "stall_timeout",
            "when_down"
        ]
    );
    // Keys without a fixed default are shown commented out.
    assert!(DEFAULT_SETTINGS_TOML.contains("\n# workers = 4  # default: number of cores\n"));
    assert_eq!(DEFAULT_SETTINGS_TOML.matches("\n# file = ").count(), 2);
    assert!(DEFAULT_SETTINGS_TOML.contains("\n# pid_file = "));
}

#[test]
fn toml_examples_in_the_configuration_guide_are_valid() {
    let guide = include_str!("../../docs/configuration.md");
    let mut examples = 0;
    for block in guide.split("```toml\n").skip(1) {
        let example = block.split("```").next().unwrap_or_default();
        if let Err(err) = Settings::from_toml_str(example) {
            panic!("example is invalid:\n{example}\n{err}");
        }
        examples += 1;
    }
    assert!(examples >= 2, "found {examples} examples");
}
