//! Where new connections go: a listener's worker set (`listen[i].workers`) under every dispatch
//! policy, and `least_loaded` steering new connections away from a worker a heavy client keeps
//! busy, with each worker's measured load in the stats file, admin `workers` and `stats`, and
//! `/metrics`. Through the real binary, with the echo MCP.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use common::{TestEnv, WAIT, connect, packet, round_trip};

/// Worker `w`'s figure `name` in a stats document.
fn worker_stat(doc: &serde_json::Value, w: usize, name: &str) -> Option<u64> {
    doc["workers"][w][name].as_u64()
}

/// Opens `n` connections to `addr`, each answered once (so its worker holds it).
fn open_clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut c = connect(addr);
            let body = format!("client {i}");
            assert_eq!(round_trip(&mut c, body.as_bytes()), packet(body.as_bytes()));
            c
        })
        .collect()
}

/// Waits until the stats file shows exactly `open` connections on each worker.
fn wait_open_per_worker(env: &TestEnv, open: &[u64]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let doc = env.stats();
        let now: Vec<Option<u64>> = (0..open.len())
            .map(|w| worker_stat(&doc, w, "connections_open"))
            .collect();
        if now.iter().zip(open).all(|(n, o)| *n == Some(*o)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "open connections per worker stayed at {now:?}, expected {open:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Connections open on each worker now, from the stats file (workers that reported).
fn open_per_worker(env: &TestEnv, workers: usize) -> Vec<u64> {
    let doc = env.stats();
    (0..workers)
        .map(|w| worker_stat(&doc, w, "connections_open").unwrap_or(0))
        .collect()
}

#[test]
fn every_dispatch_policy_keeps_a_listeners_connections_on_its_workers() {
    for dispatch in [
        "fd_modulo",
        "round_robin",
        "least_connections",
        "least_loaded",
    ] {
        // Listener 0 on worker 1 only; listener 1 on workers 0 and 2.
        let env = TestEnv::new(
            3,
            "workers = [1]",
            "[[listen]]\naddr = \"127.0.0.1:0\"\nworkers = [0, 2]\n",
        );
        env.add_setting("broker", &format!("dispatch = \"{dispatch}\""));
        let ccsd = env.start_ccsd();
        let _mcp = env.start_echo_mcp();
        let _on_one = open_clients(ccsd.addrs[0], 6);
        wait_open_per_worker(&env, &[0, 6, 0]);
        let _on_two = open_clients(ccsd.addrs[1], 4);
        let deadline = Instant::now() + WAIT;
        let open = loop {
            let open = open_per_worker(&env, 3);
            if open.iter().sum::<u64>() == 10 {
                break open;
            }
            assert!(Instant::now() < deadline, "{dispatch}: {open:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(open[1], 6, "{dispatch}: listener 1 used worker 1: {open:?}");
        if dispatch != "fd_modulo" {
            // Cycling over, or filling, the set {0, 2} spreads 4 connections 2 and 2.
            assert_eq!(open, [2, 6, 2], "{dispatch}");
        }
    }
}

/// A client that pipelines 1 KiB packets through the echo MCP until stopped; returns how many
/// replies it read.
fn heavy_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    let mut s = connect(addr);
    std::thread::spawn(move || {
        let one = packet(&[7u8; 1024]);
        let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 32).collect();
        let mut back = vec![0u8; batch.len()];
        let mut replies = 0;
        while !stop.load(Ordering::Relaxed) {
            s.write_all(&batch).unwrap();
            s.read_exact(&mut back).unwrap();
            replies += 32;
        }
        replies
    })
}

/// The lines of an admin command's answer up to `END`.
fn admin(addr: SocketAddr, command: &str) -> Vec<String> {
    let s = connect(addr);
    let mut writer = s.try_clone().unwrap();
    writeln!(writer, "{command}").unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(s).lines() {
        let line = line.unwrap();
        let line = line.trim_end();
        if line == "END" {
            break;
        }
        lines.push(line.to_owned());
    }
    lines
}

fn metrics(addr: SocketAddr) -> String {
    let mut s = connect(addr);
    write!(s, "GET /metrics HTTP/1.1\r\nHost: ccsd\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn least_loaded_sends_new_connections_away_from_a_busy_worker() {
    let env = TestEnv::new(2, "", "");
    env.add_setting("broker", "dispatch = \"least_loaded\"");
    let ccsd = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let stop = Arc::new(AtomicBool::new(false));
    let heavy = heavy_client(ccsd.addr(), Arc::clone(&stop));
    let deadline = Instant::now() + WAIT;
    // Wait until the heavy client's worker is measured busy and the other idle.
    let (busy, idle) = loop {
        let doc = env.stats();
        let load = |w: usize| worker_stat(&doc, w, "load").unwrap_or(0);
        let open = |w: usize| worker_stat(&doc, w, "connections_open");
        if let Some(busy) = (0..2).find(|&w| open(w) == Some(1)) {
            let idle = 1 - busy;
            if load(busy) >= 2000 && load(idle) == 0 {
                break (busy, idle);
            }
        }
        assert!(Instant::now() < deadline, "never measured busy: {doc}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };

    // Six new connections while it stays busy: least_connections would put three of them
    // beside the heavy client, least_loaded puts every one on the idle worker.
    let _clients = open_clients(ccsd.addr(), 6);
    let mut expected = [0, 0];
    expected[busy] = 1;
    expected[idle] = 6;
    wait_open_per_worker(&env, &expected);

    // The load is reported per worker: admin `workers` and `stats`, and `/metrics`.
    let admin_addr = ccsd.admin.expect("admin port");
    let load_of = |line: &str| -> u64 {
        let (_, load) = line.rsplit_once(' ').unwrap();
        load.parse().unwrap()
    };
    let workers = admin(admin_addr, "workers");
    let busy_line = workers
        .iter()
        .find(|l| l.starts_with(&format!("worker {busy} ")))
        .unwrap();
    assert!(busy_line.contains(" load "), "{workers:?}");
    assert!(load_of(busy_line) > 0, "{workers:?}");
    let stats = admin(admin_addr, "stats");
    let stat_line = stats
        .iter()
        .find(|l| l.starts_with(&format!("STAT worker{busy}_load ")))
        .unwrap_or_else(|| panic!("no worker{busy}_load in {stats:?}"));
    assert!(load_of(stat_line) > 0, "{stats:?}");
    let body = metrics(admin_addr);
    assert!(body.contains("# TYPE ccsd_worker_load gauge"), "{body}");
    let sample = body
        .lines()
        .find(|l| l.starts_with(&format!("ccsd_worker_load{{worker=\"{busy}\"}} ")))
        .unwrap_or_else(|| panic!("no load of worker {busy} in {body}"));
    assert!(load_of(sample) > 0, "{sample}");

    stop.store(true, Ordering::Relaxed);
    assert!(heavy.join().unwrap() > 0);
}
