//! The replay harness: the shipped recording replays byte-exact through ccsd, a fresh recording
//! made through the recording proxy replays too, and a changed reply is reported.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use common::{Proc, TestEnv, connect, example_bin, packet, read_n};

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/echo_session.replay"
);

fn play(target: std::net::SocketAddr, recording: &Path) -> Output {
    Command::new(example_bin("replay"))
        .args(["play", "--framing", "length", "--timeout", "20", "--target"])
        .arg(target.to_string())
        .arg("--in")
        .arg(recording)
        .output()
        .expect("run replay")
}

#[test]
fn shipped_recording_replays_byte_exact_through_ccsd() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let out = play(ccsd.addr(), Path::new(SHIPPED));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("3 connections, 3 matched, 0 mismatched"),
        "{stdout}"
    );
}

#[test]
fn traffic_recorded_through_the_proxy_replays_byte_exact() {
    let env = TestEnv::new(2, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let recording = env.dir.join("session.replay");
    let mut cmd = Command::new(example_bin("replay"));
    cmd.args([
        "record",
        "--listen",
        "127.0.0.1:0",
        "--connections",
        "2",
        "--target",
    ])
    .arg(ccsd.addr().to_string())
    .arg("--out")
    .arg(&recording);
    let mut recorder = Proc::spawn(cmd, "replay record");
    let line = recorder.wait_for_line("recording on ");
    let proxy = line
        .split("recording on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("proxy address");

    for c in 0..2u8 {
        let mut s = connect(proxy);
        let bodies: Vec<Vec<u8>> = (0..5u8)
            .map(|i| vec![c * 10 + i; 100 * usize::from(i + 1)])
            .collect();
        let all: Vec<u8> = bodies.iter().flat_map(|b| packet(b)).collect();
        s.write_all(&all).unwrap();
        assert_eq!(read_n(&mut s, all.len()), all);
    }
    assert!(
        recorder.child.wait().unwrap().success(),
        "the recorder stops after 2 connections"
    );

    let out = play(ccsd.addr(), &recording);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("2 connections, 2 matched"), "{stdout}");
}

#[test]
fn a_reply_that_differs_from_the_recording_is_reported_with_its_packet() {
    let env = TestEnv::new(1, "", "");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    // Change the first byte of the body of connection 1's reply chunk: packet 0 of its stream.
    let original = std::fs::read_to_string(SHIPPED).unwrap();
    let mut changed = String::new();
    let mut done = false;
    for line in original.lines() {
        if !done && line.starts_with("1 S ") {
            let (head, hex) = line.rsplit_once(' ').unwrap();
            let flipped = if &hex[8..10] == "00" { "01" } else { "00" };
            changed.push_str(&format!("{head} {}{flipped}{}\n", &hex[..8], &hex[10..]));
            done = true;
        } else {
            changed.push_str(line);
            changed.push('\n');
        }
    }
    assert!(done, "the shipped recording has a reply on connection 1");
    let recording = env.dir.join("changed.replay");
    std::fs::write(&recording, changed).unwrap();

    let out = play(ccsd.addr(), &recording);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("connection 1: DIFFERS at byte 4 (packet 0)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 connections, 2 matched, 1 mismatched"),
        "{stdout}"
    );
}
