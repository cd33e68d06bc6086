//! The validation rules: ranges and rules spanning several keys, each problem naming its key.

use std::path::Path;
use std::time::Duration;

use ccsd::proxy_protocol::Accepted;
use ccsd::settings::{ByteSize, Proto, ProxyProtocol, Settings, SettingsError, WhenDown};

/// The problems `validate` finds after `change` is applied to the defaults.
fn problems_after(change: impl FnOnce(&mut Settings)) -> Vec<String> {
    let mut settings = Settings::default();
    change(&mut settings);
    settings
        .validate()
        .err()
        .map_or_else(Vec::new, |SettingsError { problems }| problems)
}

#[test]
fn the_defaults_are_valid() {
    assert_eq!(Settings::default().validate(), Ok(()));
}

#[test]
fn workers_must_be_between_1_and_255() {
    assert_eq!(
        problems_after(|s| s.broker.workers = Some(0)),
        ["broker.workers: must be at least 1"]
    );
    assert_eq!(
        problems_after(|s| s.broker.workers = Some(1)),
        Vec::<String>::new()
    );
    assert_eq!(
        problems_after(|s| s.broker.workers = Some(255)),
        Vec::<String>::new()
    );
    let problems = problems_after(|s| s.broker.workers = Some(256));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("broker.workers: must be at most 255"),
        "{problems:?}"
    );
}

#[test]
fn locked_mode_is_refused() {
    assert_eq!(
        problems_after(|s| s.broker.unlocked_mode = false),
        ["broker.unlocked_mode: locked mode is not available yet; set it to true"]
    );
}

#[test]
fn mailbox_capacity_must_be_at_least_16() {
    assert_eq!(
        problems_after(|s| s.broker.mailbox_capacity = 16),
        Vec::<String>::new()
    );
    assert_eq!(
        problems_after(|s| s.broker.mailbox_capacity = 15),
        ["broker.mailbox_capacity: must be at least 16, got 15"]
    );
}

#[test]
fn broker_max_connections_must_be_at_least_1() {
    assert!(problems_after(|s| s.broker.max_connections = 1).is_empty());
    assert_eq!(
        problems_after(|s| s.broker.max_connections = 0),
        ["broker.max_connections: must be at least 1"]
    );
}

#[test]
fn queue_name_must_be_short_nonempty_and_plain() {
    assert_eq!(
        problems_after(|s| s.queues.name = String::new()),
        ["queues.name: must not be empty"]
    );
    assert_eq!(
        problems_after(|s| s.queues.name = "a".repeat(128)),
        Vec::<String>::new()
    );
    let problems = problems_after(|s| s.queues.name = "a".repeat(129));
    assert_eq!(
        problems,
        ["queues.name: must be at most 128 characters, got 129"]
    );
    for bad in ["a/b", "a b", "é", "../x", "a:b"] {
        let problems = problems_after(|s| s.queues.name = bad.to_owned());
        assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
        assert!(
            problems[0].starts_with("queues.name: "),
            "{bad}: {problems:?}"
        );
    }
    assert_eq!(
        problems_after(|s| s.queues.name = "Az09._-".to_owned()),
        Vec::<String>::new()
    );
}

#[test]
fn queue_dir_must_be_an_existing_directory() {
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("settings_validate-missing-dir");
    let problems = problems_after(|s| s.queues.dir = missing.clone());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("queues.dir: "), "{problems:?}");

    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("settings_validate-a-file");
    std::fs::write(&file, "").expect("write");
    let problems = problems_after(|s| s.queues.dir = file.clone());
    assert_eq!(
        problems,
        [format!("queues.dir: {} is not a directory", file.display())]
    );
}

#[test]
fn queue_capacity_must_be_a_power_of_two_from_64kib_to_4gib() {
    let shrink_packets = |s: &mut Settings| s.listen[0].max_packet = ByteSize(1024);
    for good in [64 << 10, 1 << 20, 4 << 30] {
        assert_eq!(
            problems_after(|s| {
                shrink_packets(s);
                s.queues.capacity = ByteSize(good);
            }),
            Vec::<String>::new(),
            "{good}"
        );
    }
    assert_eq!(
        problems_after(|s| {
            shrink_packets(s);
            s.queues.capacity = ByteSize(100_000);
        }),
        ["queues.capacity: must be a power of two, got 100000B"]
    );
    assert_eq!(
        problems_after(|s| {
            shrink_packets(s);
            s.queues.capacity = ByteSize(32 << 10);
        }),
        ["queues.capacity: must be between 64KiB and 4GiB, got 32KiB"]
    );
    assert_eq!(
        problems_after(|s| s.queues.capacity = ByteSize(8 << 30)),
        ["queues.capacity: must be between 64KiB and 4GiB, got 8GiB"]
    );
}

#[test]
fn queue_capacity_must_hold_the_largest_packet_plus_headers() {
    let problems = problems_after(|s| {
        let mut second = s.listen[0].clone();
        second.addr.set_port(7301);
        second.max_packet = ByteSize(64 << 20);
        s.listen.push(second);
    });
    assert_eq!(
        problems,
        [
            "queues.capacity: 32MiB cannot hold listen[1].max_packet (64MiB) plus 72 bytes of headers"
        ]
    );
    // Exactly enough room passes; one byte less does not.
    assert_eq!(
        problems_after(|s| {
            s.queues.capacity = ByteSize(64 << 10);
            s.listen[0].max_packet = ByteSize((64 << 10) - 72);
        }),
        Vec::<String>::new()
    );
    assert_eq!(
        problems_after(|s| {
            s.queues.capacity = ByteSize(64 << 10);
            s.listen[0].max_packet = ByteSize((64 << 10) - 71);
        })
        .len(),
        1
    );
}

#[test]
fn at_least_one_listener_is_required() {
    assert_eq!(
        problems_after(|s| s.listen.clear()),
        ["listen: at least one [[listen]] table is required"]
    );
}

#[test]
fn a_udp_listener_is_valid_and_its_max_packet_counts_up_to_one_datagram() {
    assert!(problems_after(|s| s.listen[0].proto = Proto::Udp).is_empty());
    // The default max_packet (16MiB) would not fit a 64KiB lane; no datagram is that large.
    let fits = problems_after(|s| {
        s.listen[0].proto = Proto::Udp;
        s.queues.capacity = ByteSize(128 << 10);
    });
    assert!(fits.is_empty(), "{fits:?}");
    assert_eq!(
        problems_after(|s| {
            s.listen[0].proto = Proto::Udp;
            s.queues.capacity = ByteSize(64 << 10);
        }),
        [
            "queues.capacity: 64KiB cannot hold listen[0].max_packet (65535B) plus 72 bytes of headers"
        ]
    );
}

#[test]
fn udp_send_queue_and_timeout_have_bounds() {
    assert_eq!(
        problems_after(|s| s.listen[0].udp_send_queue = ByteSize(1024)),
        ["listen[0].udp_send_queue: must be between 64KiB and 1GiB, got 1KiB"]
    );
    assert_eq!(
        problems_after(|s| s.listen[0].udp_send_timeout = Duration::ZERO),
        ["listen[0].udp_send_timeout: must be between 1ms and 10m, got 0ns"]
    );
    assert_eq!(
        problems_after(|s| s.listen[0].udp_send_timeout = Duration::from_secs(601)),
        ["listen[0].udp_send_timeout: must be between 1ms and 10m, got 601s"]
    );
}

#[test]
fn a_tcp_and_a_udp_listener_may_share_an_address_but_two_udp_listeners_may_not() {
    let problems = problems_after(|s| {
        let mut udp = s.listen[0].clone();
        udp.proto = Proto::Udp;
        s.listen.push(udp);
    });
    assert!(problems.is_empty(), "{problems:?}");
    let problems = problems_after(|s| {
        s.listen[0].proto = Proto::Udp;
        let copy = s.listen[0].clone();
        s.listen.push(copy);
    });
    assert_eq!(
        problems,
        ["listen[1].addr: 127.0.0.1:7300 is already used by listen[0]"]
    );
}

#[test]
fn an_unknown_framing_lists_the_known_ones() {
    assert_eq!(
        problems_after(|s| s.listen[0].framing = "smtp".to_owned()),
        [
            "listen[0].framing: unknown framing \"smtp\", known framings: http, length, line, memcache, resp"
        ]
    );
}

#[test]
fn backlog_must_be_between_1_and_65535() {
    assert!(problems_after(|s| s.listen[0].backlog = 65535).is_empty());
    assert_eq!(
        problems_after(|s| s.listen[0].backlog = 0),
        ["listen[0].backlog: must be between 1 and 65535, got 0"]
    );
}

#[test]
fn max_packet_must_be_between_1_byte_and_1gib() {
    let problems = problems_after(|s| s.listen[0].max_packet = ByteSize(0));
    assert_eq!(
        problems,
        ["listen[0].max_packet: must be between 1B and 1GiB, got 0B"]
    );
    let problems = problems_after(|s| {
        s.queues.capacity = ByteSize(4 << 30);
        s.listen[0].max_packet = ByteSize((1 << 30) + 1);
    });
    assert_eq!(
        problems,
        ["listen[0].max_packet: must be between 1B and 1GiB, got 1073741825B"]
    );
    assert_eq!(
        problems_after(|s| {
            s.queues.capacity = ByteSize(4 << 30);
            s.listen[0].max_packet = ByteSize(1 << 30);
        }),
        Vec::<String>::new()
    );
}

#[test]
fn max_packet_must_hold_the_length_header() {
    let problems = problems_after(|s| {
        s.listen[0].length_offset = 4;
        s.listen[0].max_packet = ByteSize(7);
    });
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("listen[0].max_packet: "),
        "{problems:?}"
    );
}

#[test]
fn length_size_must_be_1_2_4_or_8() {
    for good in [1, 2, 4, 8] {
        assert_eq!(
            problems_after(|s| s.listen[0].length_size = good),
            Vec::<String>::new()
        );
    }
    for bad in [0, 3, 5, 16] {
        assert_eq!(
            problems_after(|s| s.listen[0].length_size = bad),
            [format!(
                "listen[0].length_size: must be 1, 2, 4 or 8, got {bad}"
            )]
        );
    }
}

#[test]
fn length_offset_must_be_at_most_1024() {
    assert_eq!(
        problems_after(|s| s.listen[0].length_offset = 1024),
        Vec::<String>::new()
    );
    assert_eq!(
        problems_after(|s| s.listen[0].length_offset = 1025),
        ["listen[0].length_offset: must be at most 1024, got 1025"]
    );
}

#[test]
fn duplicate_listen_addresses_are_refused_unless_port_zero() {
    let problems = problems_after(|s| {
        let copy = s.listen[0].clone();
        s.listen.push(copy);
    });
    assert_eq!(
        problems,
        ["listen[1].addr: 127.0.0.1:7300 is already used by listen[0]"]
    );
    let problems = problems_after(|s| {
        s.listen[0].addr.set_port(0);
        let copy = s.listen[0].clone();
        s.listen.push(copy);
    });
    assert_eq!(problems, Vec::<String>::new());
}

#[test]
fn stats_interval_must_be_at_least_10ms() {
    assert_eq!(
        problems_after(|s| s.stats.interval = Duration::from_millis(10)),
        Vec::<String>::new()
    );
    assert_eq!(
        problems_after(|s| s.stats.interval = Duration::from_millis(9)),
        ["stats.interval: must be at least 10ms, got 9ms"]
    );
}

#[test]
fn mcp_stall_timeout_must_be_at_least_100ms() {
    assert_eq!(
        problems_after(|s| s.mcp.stall_timeout = std::time::Duration::from_millis(99)),
        ["mcp.stall_timeout: must be at least 100ms, got 99ms"]
    );
}

#[test]
fn packet_timeout_is_off_or_between_10ms_and_1h() {
    for ok in [0, 10, 3_600_000] {
        assert!(
            problems_after(|s| s.limits.packet_timeout = Duration::from_millis(ok)).is_empty(),
            "{ok} ms"
        );
    }
    assert_eq!(
        problems_after(|s| s.limits.packet_timeout = Duration::from_millis(9)),
        ["limits.packet_timeout: must be \"0s\" (off) or between 10ms and 1h, got 9ms"]
    );
    assert_eq!(
        problems_after(|s| s.limits.packet_timeout = Duration::from_secs(u64::MAX)).len(),
        1
    );
}

#[test]
fn max_memory_is_off_or_between_64mib_and_1024gib() {
    for ok in [0, 64 << 20, 1 << 40] {
        assert!(
            problems_after(|s| s.limits.max_memory = ByteSize(ok)).is_empty(),
            "{ok} bytes"
        );
    }
    assert_eq!(
        problems_after(|s| s.limits.max_memory = ByteSize(63 << 20)),
        ["limits.max_memory: must be \"0\" (off) or between 64MiB and 1024GiB, got 63MiB"]
    );
    assert_eq!(
        problems_after(|s| s.limits.max_memory = ByteSize(u64::MAX)).len(),
        1
    );
}

#[test]
fn mcp_when_down_refuse_is_valid() {
    assert!(problems_after(|s| s.mcp.when_down = WhenDown::Refuse).is_empty());
}

#[test]
fn validate_reports_every_broken_rule() {
    let problems = problems_after(|s| {
        s.broker.workers = Some(0);
        s.broker.mailbox_capacity = 1;
        s.queues.name = String::new();
        s.listen[0].udp_send_queue = ByteSize(0);
        s.listen[0].length_size = 3;
    });
    assert_eq!(problems.len(), 5, "{problems:?}");
}

#[test]
fn admin_login_timeout_is_from_100ms_to_1h_and_the_unix_path_fits_a_socket_address() {
    for ok in [Duration::from_millis(100), Duration::from_secs(3600)] {
        assert_eq!(
            problems_after(|s| s.admin.login_timeout = ok),
            Vec::<String>::new()
        );
    }
    for bad in [Duration::from_millis(99), Duration::from_secs(3601)] {
        let problems = problems_after(|s| s.admin.login_timeout = bad);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("admin.login_timeout: from 100ms to 3600s"),
            "{problems:?}"
        );
    }
    let fits = format!("/tmp/{}", "a".repeat(102));
    assert_eq!(
        problems_after(|s| s.admin.unix = Some(fits.into())),
        Vec::<String>::new()
    );
    let long = format!("/tmp/{}", "a".repeat(103));
    let problems = problems_after(|s| s.admin.unix = Some(long.into()));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("admin.unix: a socket path holds at most 107 bytes"),
        "{problems:?}"
    );
    assert_eq!(
        problems_after(|s| s.admin.unix = Some("/nonexistent-ccsd-dir/admin.sock".into())),
        ["admin.unix: the directory /nonexistent-ccsd-dir does not exist"]
    );
}

#[test]
fn the_values_that_crashed_ccsd_are_refused_from_the_file_and_the_environment() {
    for (toml, key) in [
        (
            "[limits]\nidle_timeout = \"18446744073709551615s\"\n",
            "limits.idle_timeout: must be at most",
        ),
        (
            "[stats]\nlog_interval = \"18446744073709551615s\"\n",
            "stats.log_interval: must be at most",
        ),
        (
            "[broker]\nmailbox_capacity = 1099511627776\n",
            "broker.mailbox_capacity: must be at most 65536",
        ),
        (
            "[broker]\nmailbox_capacity = 4611686018427387904\n",
            "broker.mailbox_capacity: must be at most 65536",
        ),
    ] {
        let problems = Settings::from_toml_str(toml).unwrap_err().problems;
        assert!(
            problems.len() == 1 && problems[0].starts_with(key),
            "{toml}: {problems:?}"
        );
    }
    for (name, value, key) in [
        (
            "CCSD_LIMITS__IDLE_TIMEOUT",
            "18446744073709551615s",
            "limits.idle_timeout: must be at most",
        ),
        (
            "CCSD_BROKER__MAILBOX_CAPACITY",
            "4611686018427387904",
            "broker.mailbox_capacity: must be at most 65536",
        ),
    ] {
        let env = [(name.to_owned(), value.to_owned())];
        let problems = Settings::load_with_env(None, env).unwrap_err().problems;
        assert!(
            problems.len() == 1 && problems[0].starts_with(key),
            "{name}={value}: {problems:?}"
        );
    }
}

#[test]
fn every_numeric_setting_accepts_its_maximum_and_refuses_one_more() {
    let day = Duration::from_secs(24 * 3600);
    type SetAtOrOverMax = Box<dyn Fn(&mut Settings, bool)>;
    let cases: Vec<(&str, SetAtOrOverMax)> = vec![
        (
            "broker.mailbox_capacity",
            Box::new(|s, over| s.broker.mailbox_capacity = 65536 + usize::from(over)),
        ),
        (
            "broker.max_connections",
            Box::new(|s, over| s.broker.max_connections = 10_000_000 + usize::from(over)),
        ),
        (
            "listen[0].max_connections",
            Box::new(|s, over| s.listen[0].max_connections = 10_000_000 + usize::from(over)),
        ),
        (
            "listen[0].max_requests_per_second",
            Box::new(|s, over| {
                s.listen[0].max_requests_per_second = 1_000_000_000 + u64::from(over)
            }),
        ),
        (
            "listen[0].length_adjust",
            Box::new(|s, over| s.listen[0].length_adjust = -(1 << 30) - i64::from(over)),
        ),
        (
            "limits.max_requests_per_second",
            Box::new(|s, over| s.limits.max_requests_per_second = 1_000_000_000 + u64::from(over)),
        ),
        (
            "limits.idle_timeout",
            Box::new(move |s, over| {
                s.limits.idle_timeout = 7 * day + Duration::from_nanos(u64::from(over))
            }),
        ),
        (
            "admin.idle_timeout",
            Box::new(move |s, over| {
                s.admin.idle_timeout = day + Duration::from_nanos(u64::from(over))
            }),
        ),
        (
            "stats.interval",
            Box::new(|s, over| {
                s.stats.interval = Duration::from_secs(3600) + Duration::from_nanos(u64::from(over))
            }),
        ),
        (
            "stats.log_interval",
            Box::new(move |s, over| {
                s.stats.log_interval = day + Duration::from_nanos(u64::from(over))
            }),
        ),
        (
            "mcp.stall_timeout",
            Box::new(|s, over| {
                s.mcp.stall_timeout =
                    Duration::from_secs(3600) + Duration::from_nanos(u64::from(over))
            }),
        ),
        (
            "mcp.reply_max_age",
            Box::new(move |s, over| {
                s.mcp.reply_max_age = day + Duration::from_nanos(u64::from(over))
            }),
        ),
    ];
    for (key, set) in cases {
        assert_eq!(
            problems_after(|s| set(s, false)),
            Vec::<String>::new(),
            "{key} at its maximum"
        );
        let problems = problems_after(|s| set(s, true));
        assert!(
            problems.len() == 1 && problems[0].starts_with(&format!("{key}: must be")),
            "{key} over its maximum: {problems:?}"
        );
    }
}

#[test]
fn an_ipv6_listener_without_v6only_may_not_share_its_port_with_an_ipv4_one() {
    let pair = |v4: &str, v6: &str, v6only: bool| {
        problems_after(|s| {
            s.listen[0].addr = v4.parse().unwrap();
            let mut second = s.listen[0].clone();
            second.addr = v6.parse().unwrap();
            second.v6only = v6only;
            s.listen.push(second);
        })
    };
    assert!(pair("0.0.0.0:7300", "[::]:7300", true).is_empty());
    assert!(pair("0.0.0.0:7300", "[::]:7301", false).is_empty());
    assert!(pair("0.0.0.0:0", "[::]:0", false).is_empty());
    assert_eq!(
        pair("0.0.0.0:7300", "[::]:7300", false),
        [
            "listen[1].addr: [::]:7300 overlaps listen[0].addr 0.0.0.0:7300: listen[1] has v6only = false, so it takes IPv4 clients on port 7300 too; set v6only = true there (or remove one)"
        ]
    );
    assert_eq!(pair("127.0.0.1:7300", "[::]:7300", false).len(), 1);
    assert_eq!(
        pair("127.0.0.1:7300", "[::ffff:127.0.0.1]:7300", false).len(),
        1
    );
    assert!(pair("127.0.0.1:7300", "[::ffff:127.0.0.2]:7300", false).is_empty());
}

#[test]
fn proxy_protocol_needs_tcp_and_named_sources_and_proxy_from_needs_proxy_protocol() {
    let v1 = ProxyProtocol::On(Accepted::V1);
    let from = || vec!["10.0.0.0/8".parse().unwrap()];
    assert_eq!(
        problems_after(|s| {
            s.listen[0].proxy_protocol = v1;
            s.listen[0].proxy_from = from();
        }),
        Vec::<String>::new()
    );
    assert_eq!(
        problems_after(|s| s.listen[0].proxy_protocol = v1),
        [
            "listen[0].proxy_from: empty; name the load balancers allowed to send the PROXY header (e.g. [\"10.0.0.0/8\"]): any other source could claim to be any client"
        ]
    );
    assert_eq!(
        problems_after(|s| {
            s.listen[0].proto = Proto::Udp;
            s.listen[0].proxy_protocol = v1;
            s.listen[0].proxy_from = from();
        }),
        ["listen[0].proxy_protocol: TCP listeners only; a UDP datagram carries no PROXY header"]
    );
    assert_eq!(
        problems_after(|s| s.listen[0].proxy_from = from()),
        [
            "listen[0].proxy_from: set while proxy_protocol = \"off\"; set proxy_protocol to \"v1\", \"v2\" or \"any\", or remove proxy_from"
        ]
    );
}

#[test]
fn a_listener_name_must_be_a_valid_systemd_file_descriptor_name() {
    assert_eq!(
        problems_after(|s| s.listen[0].name = "clients v4.1".to_owned()),
        Vec::<String>::new()
    );
    for bad in ["a:b", "tab\there", "é", &"x".repeat(256)] {
        assert_eq!(
            problems_after(|s| s.listen[0].name = bad.to_owned()),
            [format!(
                "listen[0].name: {bad:?} can never match a systemd FileDescriptorName= (at most 255 printable ASCII characters, no ':')"
            )]
        );
    }
}

#[test]
fn rebalance_threshold_must_be_a_finite_number_above_1() {
    use ccsd::settings::Ratio;
    for ok in [1.01, 1.5, 255.0] {
        assert_eq!(
            problems_after(|s| s.broker.rebalance_threshold = Ratio(ok)),
            Vec::<String>::new(),
            "{ok}"
        );
    }
    for bad in [1.0, 0.5, -2.0, 255.5, f64::NAN, f64::INFINITY] {
        let problems = problems_after(|s| s.broker.rebalance_threshold = Ratio(bad));
        assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
        assert!(
            problems[0].starts_with(
                "broker.rebalance_threshold: must be a number above 1 and at most 255"
            ),
            "{problems:?}"
        );
    }
}

#[test]
fn rebalance_rate_time_and_min_load_have_their_ranges() {
    assert_eq!(
        problems_after(|s| s.broker.rebalance_max_per_second = 0),
        [
            "broker.rebalance_max_per_second: must be between 1 and 10000, got 0 (to stop automatic moves set broker.rebalance = false)"
        ]
    );
    assert_eq!(
        problems_after(|s| s.broker.rebalance_max_per_second = 10_000),
        Vec::<String>::new()
    );
    assert_eq!(
        problems_after(|s| s.broker.rebalance_max_per_second = 10_001).len(),
        1
    );
    assert_eq!(
        problems_after(|s| s.broker.rebalance_after = Duration::from_secs(3601)),
        ["broker.rebalance_after: must be at most 1h, got 3601s"]
    );
    assert_eq!(
        problems_after(|s| s.broker.rebalance_after = Duration::ZERO),
        Vec::<String>::new()
    );
    assert_eq!(
        problems_after(|s| s.broker.rebalance_min_load = 1_000_000_000_001),
        ["broker.rebalance_min_load: must be at most 1000000000000, got 1000000000001"]
    );
}

#[test]
fn a_listeners_workers_must_exist_be_listed_once_and_not_be_empty() {
    let with = |workers: Vec<usize>| {
        problems_after(move |s| {
            s.broker.workers = Some(3);
            s.listen[0].workers = Some(workers);
        })
    };
    assert_eq!(with(vec![0, 2]), Vec::<String>::new());
    assert_eq!(
        with(vec![]),
        [
            "listen[0].workers: empty; list at least one worker, or remove the key to use every worker"
        ]
    );
    assert_eq!(
        with(vec![1, 3]),
        [
            "listen[0].workers: worker 3 does not exist: there are 3 workers, 0 to 2 (broker.workers)"
        ]
    );
    assert_eq!(
        with(vec![2, 0, 2]),
        ["listen[0].workers: worker 2 is listed twice (at positions 0 and 2)"]
    );
    // A long list costs one pass.
    let long: Vec<usize> = (0..1_000_000).map(|i| i % 3).collect();
    assert_eq!(with(long).len(), 1);
}

#[test]
fn a_udp_listener_takes_no_workers() {
    let problems = problems_after(|s| {
        s.listen[0].proto = Proto::Udp;
        s.listen[0].workers = Some(vec![0]);
    });
    assert_eq!(
        problems,
        [
            "listen[0].workers: TCP listeners only; a UDP listener's datagrams are handled on the main thread, not by workers (remove it)"
        ]
    );
}
