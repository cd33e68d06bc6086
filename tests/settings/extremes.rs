//! No accepted numeric setting can make ccsd panic or abort, and every value over its documented
//! maximum is refused. Random extreme values (boundaries, powers of two, `u64::MAX`, random
//! numbers in every unit) go through `--check-config`, from the file or from `CCSD_*` variables;
//! a sample of the accepted ones also goes through a short start of the real binary with the echo
//! MCP: ready, a connection and a packet, SIGTERM, exit 0.
//!
//! The seed is printed; `CCSD_TEST_SEED=N` replays a run.

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::{Proc, Rng, TestEnv, connect, example_bin, packet};
use rustix::process::{Pid, Signal, kill_process};

/// How a key's value is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// An integer (signed where `signed`).
    Int { signed: bool },
    /// A byte size: an integer or a string with a unit.
    Bytes,
    /// A duration: a string with a unit.
    Duration,
}

/// One numeric key: where it lives, its kind, its documented maximum (in bytes, nanoseconds or
/// units) and the largest value a test start may use (to keep memory and `/dev/shm` small).
struct Key {
    section: &'static str,
    name: &'static str,
    kind: Kind,
    max: u128,
    start_limit: u128,
}

const KIB: u128 = 1 << 10;
const MIB: u128 = 1 << 20;
const GIB: u128 = 1 << 30;
const MS: u128 = 1_000_000;
const SEC: u128 = 1_000_000_000;
const HOUR: u128 = 3600 * SEC;

const fn key(section: &'static str, name: &'static str, kind: Kind, max: u128) -> Key {
    Key {
        section,
        name,
        kind,
        max,
        start_limit: u128::MAX,
    }
}

const INT: Kind = Kind::Int { signed: false };

/// Every numeric key with the maximum `docs/configuration.md` documents.
fn keys() -> Vec<Key> {
    vec![
        Key {
            start_limit: 4,
            ..key("broker", "workers", INT, 255)
        },
        key("broker", "mailbox_capacity", INT, 65536),
        key("broker", "max_connections", INT, 10_000_000),
        key("broker", "idle_spin", Kind::Duration, 10 * MS),
        key("broker", "shutdown_grace", Kind::Duration, 600 * SEC),
        key("broker", "rebalance_after", Kind::Duration, HOUR),
        key("broker", "rebalance_max_per_second", INT, 10_000),
        key("broker", "rebalance_min_load", INT, 1_000_000_000_000),
        Key {
            start_limit: MIB,
            ..key("queues", "capacity", Kind::Bytes, 4 * GIB)
        },
        key("listen", "max_packet", Kind::Bytes, GIB),
        key("listen", "length_offset", INT, 1024),
        key("listen", "length_size", INT, 8),
        key("listen", "length_adjust", Kind::Int { signed: true }, GIB),
        key("listen", "http_max_header", Kind::Bytes, GIB),
        key("listen", "max_connections", INT, 10_000_000),
        key("listen", "backlog", INT, 65535),
        key("listen", "max_requests_per_second", INT, 1_000_000_000),
        key("listen", "udp_send_queue", Kind::Bytes, GIB),
        key("listen", "udp_send_timeout", Kind::Duration, 600 * SEC),
        key("stats", "interval", Kind::Duration, HOUR),
        key("stats", "log_interval", Kind::Duration, 24 * HOUR),
        key("admin", "idle_timeout", Kind::Duration, 24 * HOUR),
        key("limits", "idle_timeout", Kind::Duration, 7 * 24 * HOUR),
        key("limits", "max_send_buffer", Kind::Bytes, 4 * GIB),
        key("limits", "max_requests_per_second", INT, 1_000_000_000),
        key("limits", "half_close_timeout", Kind::Duration, 600 * SEC),
        key("mcp", "stall_timeout", Kind::Duration, HOUR),
        key("mcp", "reply_max_age", Kind::Duration, 24 * HOUR),
    ]
}

/// A drawn value: its text, whether it is written bare (an integer) or quoted in the file, and
/// what it amounts to in the key's base unit (`None`: not a valid number at all).
#[derive(Clone, Debug)]
struct Value {
    text: String,
    bare: bool,
    amount: Option<u128>,
    negative: bool,
}

/// Numbers worth trying: boundaries of every documented range, powers of two, the limits of
/// every integer type, and random ones of every magnitude.
fn number(rng: &mut Rng, key: &Key, unit: u128) -> u128 {
    let special = [
        0,
        1,
        9,
        10,
        15,
        16,
        100,
        1000,
        1024,
        3600,
        65535,
        65536,
        65537,
        86400,
        604_800,
        604_801,
        10_000_000,
        10_000_001,
        1_000_000_000,
        1_000_000_001,
        u128::from(u32::MAX),
        1 << 40,
        1 << 62,
        u128::from(i64::MAX as u64),
        u128::from(u64::MAX),
        key.max / unit,
        key.max / unit + 1,
    ];
    match rng.below(4) {
        0 => special[rng.below(special.len() as u64) as usize],
        1 => u128::from(rng.next()),
        2 => u128::from(rng.next() % 10u64.pow(rng.below(20) as u32).max(1)),
        // Within the documented range, where most real settings are.
        _ => u128::from(rng.next()) % (key.max / unit + 1),
    }
}

fn draw(rng: &mut Rng, key: &Key) -> Value {
    match key.kind {
        Kind::Int { signed } => {
            let n = number(rng, key, 1);
            let negative = signed && rng.below(2) == 0;
            let text = if negative {
                format!("-{n}")
            } else {
                n.to_string()
            };
            Value {
                text,
                bare: true,
                amount: Some(n),
                negative,
            }
        }
        Kind::Bytes => {
            let (unit, factor) = [("", 1), ("B", 1), ("KiB", KIB), ("MiB", MIB), ("GiB", GIB)]
                [rng.below(5) as usize];
            let n = number(rng, key, factor);
            let amount = n.checked_mul(factor).filter(|&b| b <= u128::from(u64::MAX));
            Value {
                text: format!("{n}{unit}"),
                bare: unit.is_empty(),
                amount,
                negative: false,
            }
        }
        Kind::Duration => {
            let (unit, factor) = [
                ("us", 1000),
                ("ms", MS),
                ("s", SEC),
                ("m", 60 * SEC),
                ("h", HOUR),
            ][rng.below(5) as usize];
            let n = number(rng, key, factor);
            Value {
                text: format!("{n}{unit}"),
                bare: false,
                amount: Some(n * factor),
                negative: false,
            }
        }
    }
}

/// One drawn configuration: the file's keys by `(section, name)` and the environment overrides.
struct Case {
    file: BTreeMap<(&'static str, &'static str), Value>,
    env: Vec<(String, String)>,
    drawn: Vec<(&'static str, &'static str, Value)>,
}

/// The base every case starts from: small lanes, one worker, a fast stats file, port 0.
fn base(env: &TestEnv) -> BTreeMap<(&'static str, &'static str), Value> {
    let text = |t: &str| Value {
        text: t.to_owned(),
        bare: false,
        amount: None,
        negative: false,
    };
    let int = |t: &str| Value {
        bare: true,
        ..text(t)
    };
    BTreeMap::from([
        (("broker", "workers"), int("1")),
        (("queues", "dir"), text("/dev/shm")),
        (("queues", "name"), text(&env.name)),
        (("queues", "capacity"), text("64KiB")),
        (("log", "level"), text("info")),
        (("admin", "addr"), text("127.0.0.1:0")),
        (("stats", "interval"), text("20ms")),
        (
            ("stats", "file"),
            text(&env.stats_file.display().to_string()),
        ),
        (("listen", "addr"), text("127.0.0.1:0")),
        (("listen", "max_packet"), text("32KiB")),
    ])
}

fn render(file: &BTreeMap<(&'static str, &'static str), Value>) -> String {
    let mut toml = String::new();
    for section in [
        "broker", "queues", "log", "stats", "admin", "limits", "mcp", "listen",
    ] {
        toml.push_str(&if section == "listen" {
            "[[listen]]\n".to_owned()
        } else {
            format!("[{section}]\n")
        });
        for ((s, name), value) in file {
            if *s == section {
                if value.bare {
                    toml.push_str(&format!("{name} = {}\n", value.text));
                } else {
                    toml.push_str(&format!("{name} = {:?}\n", value.text));
                }
            }
        }
    }
    toml
}

fn draw_case(rng: &mut Rng, env: &TestEnv, keys: &[Key]) -> Case {
    let mut case = Case {
        file: base(env),
        env: Vec::new(),
        drawn: Vec::new(),
    };
    for _ in 0..=rng.below(3) {
        let key = &keys[rng.below(keys.len() as u64) as usize];
        let value = draw(rng, key);
        case.file.remove(&(key.section, key.name));
        case.env.retain(|(name, _)| {
            *name != format!("CCSD_{}__{}", key.section, key.name).to_uppercase()
        });
        case.drawn
            .retain(|(s, n, _)| (*s, *n) != (key.section, key.name));
        // `[[listen]]` keys cannot come from the environment.
        if key.section != "listen" && rng.below(2) == 0 {
            let name = format!("CCSD_{}__{}", key.section, key.name).to_uppercase();
            case.env.push((name, value.text.clone()));
        } else {
            case.file.insert((key.section, key.name), value.clone());
        }
        case.drawn.push((key.section, key.name, value));
    }
    case
}

fn ccsd(env: &TestEnv, case: &Case) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.envs(case.env.iter().map(|(k, v)| (k, v)));
    cmd.arg("--config").arg(&env.config);
    cmd
}

/// Whether a drawn value is over the key's documented maximum.
fn over_max(key: &Key, value: &Value) -> bool {
    value.amount.is_some_and(|a| a > key.max)
}

#[test]
fn random_extreme_settings_never_crash_check_config_or_a_short_start() {
    let seed = std::env::var("CCSD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("seed {seed} (CCSD_TEST_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let keys = keys();
    let env = TestEnv::new(1, "", "");
    let (mut accepted, mut refused, mut starts) = (0, 0, 0);
    for round in 0..400 {
        let case = draw_case(&mut rng, &env, &keys);
        std::fs::write(&env.config, render(&case.file)).unwrap();
        let out = ccsd(&env, &case).arg("--check-config").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let what = format!(
            "round {round}, seed {seed}, drawn {:?}, env {:?}",
            case.drawn, case.env
        );
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "--check-config ended with {} ({what}):\n{stderr}",
            out.status
        );
        for (section, name, value) in &case.drawn {
            let key = keys
                .iter()
                .find(|k| (k.section, k.name) == (*section, *name))
                .unwrap();
            if over_max(key, value) || value.negative && value.amount > Some(key.max) {
                assert_eq!(out.status.code(), Some(2), "over the maximum ({what})");
                if case.drawn.len() > 1 {
                    // Another key of the same table may fail to deserialize, which skips the
                    // table's rules: only a lone key must be named.
                    continue;
                }
                let named = if *section == "listen" {
                    format!("listen[0].{name}")
                } else {
                    format!("{section}.{name}")
                };
                // A number beyond TOML's i64 fails the parse of the whole file, which names
                // the line instead.
                assert!(
                    stderr.contains(&named) || stderr.contains("parse error"),
                    "{named} not named ({what}):\n{stderr}"
                );
            }
        }
        if out.status.code() == Some(2) {
            refused += 1;
            continue;
        }
        accepted += 1;
        let cheap = case.drawn.iter().all(|(section, name, value)| {
            let key = keys
                .iter()
                .find(|k| (k.section, k.name) == (*section, *name))
                .unwrap();
            value.amount.is_none_or(|a| a <= key.start_limit)
        });
        if starts < 16 && cheap {
            starts += 1;
            short_start(&env, &case, &what);
        }
    }
    println!("{accepted} accepted (of them {starts} started), {refused} refused");
    assert!(accepted > 0 && refused > 0, "the draw should produce both");
}

/// Starts ccsd and the echo MCP with `case`, sends a packet (and expects its echo unless a drawn
/// key may legitimately prevent it), stops ccsd with SIGTERM and expects exit 0.
fn short_start(env: &TestEnv, case: &Case, what: &str) {
    common::remove_queue_files(&env.name);
    let mut ccsd_proc = env.start_broker(
        {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
            cmd.envs(case.env.iter().map(|(k, v)| (k, v)));
            cmd
        },
        "ccsd",
    );
    let mut mcp_cmd = Command::new(example_bin("echo_mcp"));
    mcp_cmd.envs(case.env.iter().map(|(k, v)| (k, v)));
    mcp_cmd.arg("--config").arg(&env.config);
    let mut mcp = Proc::spawn(mcp_cmd, "echo_mcp");
    mcp.wait_for_line("echo_mcp attached");

    // Framing, packet-size and timing keys may make the packet incomplete, too large, the
    // connection idle-closed or the reply older than `mcp.reply_max_age` on a loaded machine
    // (a drawn age of a few microseconds drops it): then only "no crash" is asked.
    let echo_expected = case.drawn.iter().all(|(section, name, _)| {
        *section != "listen" && *name != "idle_timeout" && *name != "reply_max_age"
    });
    let mut client = connect(ccsd_proc.addr());
    let sent = packet(b"hello");
    let _ = client.write_all(&sent);
    if echo_expected {
        let mut reply = vec![0; sent.len()];
        client
            .read_exact(&mut reply)
            .unwrap_or_else(|e| panic!("no echo ({what}): {e}"));
        assert_eq!(reply, sent, "{what}");
    } else {
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = client.read(&mut [0; 64]);
    }
    drop(client);
    kill_process(Pid::from_child(&ccsd_proc.child), Signal::TERM).unwrap();
    assert_eq!(
        ccsd_proc.exit_code(),
        Some(0),
        "ccsd did not stop cleanly ({what}); its log:\n{}",
        ccsd_proc.lines.join("\n")
    );
    mcp.kill();
}

/// Sends one admin command and returns the first line of the answer.
fn admin_ask(addr: std::net::SocketAddr, command: &str) -> String {
    let mut admin = connect(addr);
    admin.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while admin.read(&mut byte).expect("admin answer") == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

#[test]
fn reload_refuses_a_duration_over_its_maximum_and_ccsd_keeps_serving() {
    let env = TestEnv::new(1, "", "[limits]\nidle_timeout = \"60s\"\n");
    let mut ccsd_proc = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let toml = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        toml.replace(
            "idle_timeout = \"60s\"",
            "idle_timeout = \"18446744073709551615s\"",
        ),
    )
    .unwrap();
    let answer = admin_ask(ccsd_proc.admin.unwrap(), "reload");
    assert!(
        answer.starts_with("ERROR reload: invalid settings, nothing applied: ")
            && answer.contains("limits.idle_timeout: must be at most 7 days"),
        "{answer}"
    );
    // A new connection (where the worker computes its idle deadline) is served.
    let mut client = connect(ccsd_proc.addr());
    assert_eq!(common::round_trip(&mut client, b"alive"), packet(b"alive"));
    drop(client);
    kill_process(Pid::from_child(&ccsd_proc.child), Signal::TERM).unwrap();
    assert_eq!(ccsd_proc.exit_code(), Some(0));
}

#[test]
fn every_key_at_its_maximum_at_once_starts_serves_and_stops() {
    let env = TestEnv::new(1, "", "");
    let mut file = base(&env);
    let set = |file: &mut BTreeMap<_, _>, section, name, text: &str, bare: bool| {
        let value = Value {
            text: text.to_owned(),
            bare,
            amount: None,
            negative: false,
        };
        file.insert((section, name), value);
    };
    // All but the lane and packet sizes (their maxima would reserve gigabytes of /dev/shm) and
    // the length-field layout (the client below speaks the default one).
    for (section, name, text, bare) in [
        ("broker", "mailbox_capacity", "65536", true),
        ("broker", "max_connections", "10000000", true),
        ("broker", "idle_spin", "10ms", false),
        ("broker", "shutdown_grace", "10m", false),
        ("listen", "http_max_header", "1GiB", false),
        ("listen", "max_connections", "10000000", true),
        ("listen", "backlog", "65535", true),
        ("listen", "max_requests_per_second", "1000000000", true),
        ("listen", "udp_send_queue", "1GiB", false),
        ("listen", "udp_send_timeout", "10m", false),
        ("stats", "interval", "1h", false),
        ("stats", "log_interval", "24h", false),
        ("admin", "idle_timeout", "24h", false),
        ("limits", "idle_timeout", "168h", false),
        ("limits", "max_send_buffer", "4GiB", false),
        ("limits", "max_requests_per_second", "1000000000", true),
        ("limits", "half_close_timeout", "10m", false),
        ("mcp", "stall_timeout", "1h", false),
        ("mcp", "reply_max_age", "24h", false),
    ] {
        set(&mut file, section, name, text, bare);
    }
    std::fs::write(&env.config, render(&file)).unwrap();
    let mut ccsd_proc = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    for _ in 0..3 {
        let mut client = connect(ccsd_proc.addr());
        assert_eq!(
            common::round_trip(&mut client, b"at max"),
            packet(b"at max")
        );
    }
    kill_process(Pid::from_child(&ccsd_proc.child), Signal::TERM).unwrap();
    assert_eq!(ccsd_proc.exit_code(), Some(0));
}
