//! The load generator (`examples/loadgen`): counts exactly through the real ccsd and echo MCP,
//! parses pipelined memcache and RESP replies that arrive split at random points, and turns
//! wrong replies into counted errors and exit status 1.
//!
//! The memcache and RESP replies come from a small in-test server, so these tests need neither
//! memcached nor redis.

use crate::common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;

use common::{Rng, TestEnv, example_bin};
use serde_json::Value;

/// Runs loadgen with `args` and `--json`; returns its exit code and its report.
fn loadgen(addr: SocketAddr, args: &[&str]) -> (i32, Value) {
    let out = Command::new(example_bin("loadgen"))
        .arg("--addr")
        .arg(addr.to_string())
        .args(args)
        .arg("--json")
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "loadgen printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("loadgen exited"), report)
}

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {report}"))
}

fn assert_percentiles_ordered(report: &Value) {
    let lat = |k: &str| report["latency_us"][k].as_f64().expect("latency field");
    let order = ["min", "p50", "p90", "p99", "p999", "max"].map(lat);
    assert!(order.is_sorted(), "percentiles out of order: {report}");
    assert!(lat("min") > 0.0, "no latency recorded: {report}");
}

#[test]
fn length_load_through_ccsd_counts_every_request_without_errors() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let args = [
        "--protocol",
        "length",
        "--connections",
        "8",
        "--pipeline",
        "4",
    ];
    let (code, report) = loadgen(ccsd.addr(), &[&args[..], &["--requests", "4000"]].concat());
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "requests"), 4000, "{report}");
    assert_eq!(count(&report, "errors"), 0, "{report}");
    assert_percentiles_ordered(&report);
}

/// How the in-test server answers.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    /// As memcached, redis or an echo server would.
    Correctly,
    /// `BOGUS\r\n` to every request (echoes: the payload with its last byte flipped).
    Garbage,
}

/// A request the in-test server understood.
enum Cmd {
    Get(Vec<u8>),
    Set(Vec<u8>, Vec<u8>),
    Echo(Vec<u8>),
}

/// Starts a server for `protocol` on 127.0.0.1:0; every connection gets its own thread and
/// every batch of replies is written in pieces cut at random points.
fn fake_server(protocol: &'static str, answer: Answer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let store = Arc::new(Mutex::new(HashMap::new()));
    thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let store = Arc::clone(&store);
            let stream = stream.expect("accept");
            thread::spawn(move || serve(stream, protocol, answer, &store, Rng(n as u64 + 1)));
        }
    });
    addr
}

fn serve(
    mut stream: TcpStream,
    protocol: &str,
    answer: Answer,
    store: &Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    mut rng: Rng,
) {
    stream.set_nodelay(true).unwrap();
    let mut input = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        input.extend_from_slice(&chunk[..n]);
        let mut replies = Vec::new();
        while let Some((len, cmd)) = next_request(protocol, &input) {
            input.drain(..len);
            reply(protocol, answer, cmd, store, &mut replies);
        }
        while !replies.is_empty() {
            let cut = 1 + rng.below(replies.len() as u64) as usize;
            if stream.write_all(&replies[..cut]).is_err() {
                return;
            }
            replies.drain(..cut);
        }
    }
}

/// The first complete request in `input` and its length.
fn next_request(protocol: &str, input: &[u8]) -> Option<(usize, Cmd)> {
    match protocol {
        "length" => {
            let len = u32::from_be_bytes(*input.first_chunk::<4>()?) as usize;
            let body = input.get(4..4 + len)?;
            Some((4 + len, Cmd::Echo(body.to_vec())))
        }
        "memcache" => {
            let end = input.windows(2).position(|w| w == b"\r\n")?;
            let words: Vec<&[u8]> = input[..end].split(|&b| b == b' ').collect();
            match words[..] {
                [b"get", key] => Some((end + 2, Cmd::Get(key.to_vec()))),
                [b"set", key, _flags, _exptime, bytes] => {
                    let n: usize = std::str::from_utf8(bytes).unwrap().parse().unwrap();
                    let value = input.get(end + 2..end + 2 + n)?;
                    input.get(end + 2 + n..end + 4 + n)?;
                    Some((end + 4 + n, Cmd::Set(key.to_vec(), value.to_vec())))
                }
                _ => panic!("unknown memcache request {:?}", input[..end].escape_ascii()),
            }
        }
        "resp" => {
            let (elements, mut at) = resp_header(input, b'*')?;
            let mut args = Vec::new();
            for _ in 0..elements {
                let (n, data) = resp_header(&input[at..], b'$')?;
                args.push(input.get(at + data..at + data + n)?.to_vec());
                input.get(at + data + n + 1)?;
                at += data + n + 2;
            }
            let cmd = match (args[0].as_slice(), args.len()) {
                (b"GET", 2) => Cmd::Get(args.swap_remove(1)),
                (b"SET", 3) => Cmd::Set(args[1].clone(), args.swap_remove(2)),
                _ => panic!("unknown RESP command {:?}", args[0].escape_ascii()),
            };
            Some((at, cmd))
        }
        _ => unreachable!("no such protocol {protocol}"),
    }
}

/// A RESP `<marker><count>\r\n` header: the count and the header's length.
fn resp_header(input: &[u8], marker: u8) -> Option<(usize, usize)> {
    let end = input.windows(2).position(|w| w == b"\r\n")?;
    assert_eq!(input[0], marker, "RESP request out of step");
    let n = std::str::from_utf8(&input[1..end])
        .unwrap()
        .parse()
        .unwrap();
    Some((n, end + 2))
}

fn reply(
    protocol: &str,
    answer: Answer,
    cmd: Cmd,
    store: &Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    out: &mut Vec<u8>,
) {
    if answer == Answer::Garbage {
        match cmd {
            Cmd::Echo(mut body) => {
                *body.last_mut().expect("non-empty echo") ^= 1;
                out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                out.extend_from_slice(&body);
            }
            _ => out.extend_from_slice(b"BOGUS\r\n"),
        }
        return;
    }
    let mut store = store.lock().unwrap();
    match (protocol, cmd) {
        (_, Cmd::Echo(body)) => {
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(&body);
        }
        ("memcache", Cmd::Get(key)) => {
            if let Some(value) = store.get(&key) {
                out.extend_from_slice(b"VALUE ");
                out.extend_from_slice(&key);
                out.extend_from_slice(format!(" 0 {}\r\n", value.len()).as_bytes());
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"END\r\n");
        }
        ("resp", Cmd::Get(key)) => match store.get(&key) {
            Some(value) => {
                out.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
            None => out.extend_from_slice(b"$-1\r\n"),
        },
        (_, Cmd::Set(key, value)) => {
            store.insert(key, value);
            out.extend_from_slice(if protocol == "resp" {
                b"+OK\r\n"
            } else {
                b"STORED\r\n"
            });
        }
        (_, Cmd::Get(_)) => unreachable!("GET in {protocol}"),
    }
}

#[test]
fn preloaded_pipelined_gets_hit_when_replies_arrive_in_random_pieces() {
    for protocol in ["memcache", "resp"] {
        let addr = fake_server(protocol, Answer::Correctly);
        let (code, report) = loadgen(
            addr,
            &[
                "--protocol",
                protocol,
                "--preload",
                "--connections",
                "6",
                "--threads",
                "2",
                "--pipeline",
                "8",
                "--requests",
                "4000",
                "--ratio",
                "3:1",
                "--keys",
                "500",
                "--value-size",
                "300",
            ],
        );
        assert_eq!(code, 0, "{protocol}: {report}");
        assert_eq!(count(&report, "requests"), 4000, "{protocol}: {report}");
        assert_eq!(count(&report, "errors"), 0, "{protocol}: {report}");
        assert_eq!(count(&report, "get_misses"), 0, "{protocol}: {report}");
        let (hits, sets) = (count(&report, "get_hits"), count(&report, "sets"));
        assert_eq!(hits + sets, 4000, "{protocol}: {report}");
        assert!(
            hits > 2 * sets && sets > 0,
            "{protocol}: mix not 3:1: {report}"
        );
        assert_percentiles_ordered(&report);
    }
}

#[test]
fn gets_of_keys_never_set_count_as_misses() {
    for protocol in ["memcache", "resp"] {
        let addr = fake_server(protocol, Answer::Correctly);
        let args = [
            "--protocol",
            protocol,
            "--ratio",
            "1:0",
            "--requests",
            "500",
        ];
        let (code, report) = loadgen(addr, &[&args[..], &["--pipeline", "3"]].concat());
        assert_eq!(code, 0, "{protocol}: {report}");
        assert_eq!(count(&report, "get_misses"), 500, "{protocol}: {report}");
        assert_eq!(count(&report, "get_hits"), 0, "{protocol}: {report}");
    }
}

#[test]
fn garbage_replies_are_counted_as_errors_and_exit_with_1() {
    for protocol in ["memcache", "resp", "length"] {
        let addr = fake_server(protocol, Answer::Garbage);
        let args = [
            "--protocol",
            protocol,
            "--connections",
            "4",
            "--pipeline",
            "2",
        ];
        let (code, report) = loadgen(addr, &[&args[..], &["--requests", "200"]].concat());
        assert_eq!(code, 1, "{protocol}: {report}");
        assert!(count(&report, "errors") > 0, "{protocol}: {report}");
        assert!(count(&report, "requests") < 200, "{protocol}: {report}");
        let first = report["first_errors"][0].as_str().unwrap_or_default();
        assert!(
            !first.is_empty(),
            "{protocol}: no error described: {report}"
        );
    }
}

#[test]
fn bad_arguments_exit_with_2() {
    let out = Command::new(example_bin("loadgen"))
        .args(["--addr", "127.0.0.1:1", "--protocol", "smtp"])
        .output()
        .expect("run loadgen");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'smtp'") && stderr.contains("--protocol"),
        "{stderr}"
    );
}
