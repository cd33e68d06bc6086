//! Hot restart's way back and its faults, through the real binaries: a takeover that cannot start
//! (invalid settings, an incompatible peer), a new process killed or hanging mid-handover (the
//! old one thaws and serves on, nothing lost, and can be taken over afterwards), an old process
//! that dies after passing the descriptors (the new one carries on) or is slow to let go after
//! the commit, a connect storm across a handover, a datagram that waits out a freeze, and an MCP
//! that holds its replies until after a takeover. The faults come from the test-only knobs
//! `ccsd::runtime::{FAULT_ENV, STEP_TIMEOUT_ENV}`.

use crate::common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ccsd::lane::Lane;
use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, RecordHeader};
use ccsd::runtime::{FAULT_ENV, FAULT_EXIT_CODE, STEP_TIMEOUT_ENV};
use common::{PipelinedClients, Proc, TestEnv, WAIT, connect, packet, read_n, round_trip, stat};

/// Clients that each connect, make one round trip and close, over and over, until stopped: a
/// refused connection or a missing reply fails its thread. Returns how many connections were
/// served.
struct Storm {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Storm {
    fn start(addr: SocketAddr, threads: usize) -> Storm {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|t| {
                let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let mut client = connect(addr);
                        let body = format!("storm {t} connection {n}").into_bytes();
                        assert_eq!(round_trip(&mut client, &body), packet(&body));
                        served.fetch_add(1, Ordering::Relaxed);
                        n += 1;
                    }
                })
            })
            .collect();
        Storm {
            stop,
            served,
            threads,
        }
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join()
                .expect("a storm connection was refused or not served");
        }
        self.served.load(Ordering::Relaxed)
    }
}

/// `ccsd --takeover` on the test's config with `env` set, not yet waited for.
fn spawn_takeover(env: &TestEnv, vars: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.arg("--takeover").arg("--config").arg(&env.config);
    cmd.envs(vars.iter().copied());
    Proc::spawn(cmd, "ccsd --takeover")
}

/// The running ccsd, with `vars` in its environment.
fn start_old(env: &TestEnv, vars: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.envs(vars.iter().copied());
    env.start_broker(cmd, "ccsd")
}

/// Waits until the lane headers name `pid` as ccsd's again: the producer of every request lane,
/// the consumer of the response lane (a process that took them over and gave up wrote its own).
fn wait_lanes_name(env: &TestEnv, pid: u32) {
    let settings = env.settings();
    let deadline = Instant::now() + WAIT;
    let named = || -> Vec<u32> {
        let mut pids: Vec<u32> = (0..settings.request_lane_count())
            .map(|i| {
                Lane::attach(&settings.request_lane_path(i), None)
                    .unwrap()
                    .producer_pid()
            })
            .collect();
        pids.push(
            Lane::attach(&settings.response_lane_path(), None)
                .unwrap()
                .consumer_pid(),
        );
        pids
    };
    loop {
        let pids = named();
        if pids.iter().all(|&p| p == pid) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the lanes name {pids:?}, not {pid}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Asserts that `p` logged a line containing `needle` by the time it was ready.
fn assert_logged(p: &Proc, needle: &str) {
    assert!(
        p.lines.iter().any(|l| l.contains(needle)),
        "no {needle:?} in {:#?}",
        p.lines
    );
}

/// Takes `old` over for real (the second attempt after a rollback) and checks the clients of
/// `load` are served by the new process; returns it.
fn take_over_for_real(
    env: &TestEnv,
    old: &mut Proc,
    load: &PipelinedClients,
    conns: usize,
) -> Proc {
    let new = env.take_over();
    assert_eq!(old.exit_code(), Some(0), "the old process exits 0");
    assert_logged(&new, &format!("with {conns} connections"));
    load.wait_all_served(50);
    new
}

#[test]
fn invalid_settings_or_a_refused_takeover_leave_the_old_process_serving_untouched() {
    let env = TestEnv::new(2, "", "");
    let old = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let addr = old.addr();
    let load = PipelinedClients::start(addr, 4, 16);
    env.wait_stat("totals.connections_open", |n| n == 4);
    load.wait_all_served(50);

    // Invalid settings: refused before anything connects to the running ccsd.
    let bad = env.dir.join("bad.toml");
    let toml = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&bad, toml.replacen("workers = 2", "workers = \"two\"", 1)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--takeover")
        .arg("--config")
        .arg(&bad)
        .output()
        .expect("run ccsd --takeover");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid settings"), "{stderr}");
    assert!(stderr.contains("workers"), "names the setting: {stderr}");
    assert!(!stderr.contains("hot restart"), "never connected: {stderr}");
    load.wait_all_served(50);

    // An incompatible setting: the running ccsd refuses, having frozen nothing.
    let other = env.dir.join("other.toml");
    let toml = std::fs::read_to_string(&env.config).unwrap();
    let toml = toml.replacen("[queues]\n", "[queues]\ncapacity = \"64MiB\"\n", 1);
    std::fs::write(&other, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ccsd"))
        .arg("--takeover")
        .arg("--config")
        .arg(&other)
        .output()
        .expect("run ccsd --takeover");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("queues.capacity differs"), "{stderr}");
    // One refusal: the invalid settings never reached the running ccsd.
    env.wait_stat("control.takeovers_refused", |n| n == 1);
    assert_eq!(stat(&env.stats(), "control.takeovers_rolled_back"), Some(0));
    load.wait_all_served(50);
    assert_eq!(stat(&env.stats(), "totals.connections_open"), Some(4));
    let mut fresh = connect(addr);
    assert_eq!(round_trip(&mut fresh, b"after"), packet(b"after"));
    assert!(load.finish() > 0);
}

#[test]
fn a_new_process_killed_before_it_says_ready_leaves_the_old_one_serving_with_nothing_lost() {
    let env = TestEnv::new(2, "", "");
    let mut old = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let addr = old.addr();
    let load = PipelinedClients::start(addr, 6, 16);
    env.wait_stat("totals.connections_open", |n| n == 6);
    load.wait_all_served(20);

    let mut new = spawn_takeover(&env, &[(FAULT_ENV, "hang-before-ready")]);
    new.wait_for_line("handed over 6 connections");
    new.wait_for_line("hanging before saying ready");
    new.kill(); // SIGKILL
    // The old process sees the channel close at once (not after its 10 s step timeout).
    let line = old.wait_for_line("rolled back, serving on");
    assert!(line.contains("the peer closed it"), "{line}");
    env.wait_stat("control.takeovers_rolled_back", |n| n == 1);
    load.wait_all_served(50);
    assert_eq!(stat(&env.stats(), "totals.connections_open"), Some(6));
    wait_lanes_name(&env, old.child.id());
    let mut fresh = connect(addr);
    assert_eq!(round_trip(&mut fresh, b"thawed"), packet(b"thawed"));
    drop(fresh);

    // The handover socket takes a second attempt, which completes.
    let _new = take_over_for_real(&env, &mut old, &load, 6);
    assert!(load.finish() > 0);
}

#[test]
fn a_new_process_that_exits_before_it_says_ready_leaves_the_old_one_serving() {
    let env = TestEnv::new(1, "", "");
    let mut old = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let load = PipelinedClients::start(old.addr(), 3, 8);
    env.wait_stat("totals.connections_open", |n| n == 3);

    let mut new = spawn_takeover(&env, &[(FAULT_ENV, "exit-before-ready")]);
    assert_eq!(new.exit_code(), Some(FAULT_EXIT_CODE));
    old.wait_for_line("rolled back, serving on");
    load.wait_all_served(50);
    env.wait_stat("control.takeovers_rolled_back", |n| n == 1);
    assert_eq!(stat(&env.stats(), "totals.connections_open"), Some(3));
    assert!(load.finish() > 0);
}

#[test]
fn a_hanging_new_process_times_out_and_the_old_one_thaws_with_nothing_lost() {
    let env = TestEnv::new(2, "", "");
    let mut old = start_old(&env, &[(STEP_TIMEOUT_ENV, "1500")]);
    let _mcp = env.start_echo_mcp();
    let addr = old.addr();
    let load = PipelinedClients::start(addr, 6, 16);
    env.wait_stat("totals.connections_open", |n| n == 6);
    load.wait_all_served(20);

    let mut new = spawn_takeover(&env, &[(FAULT_ENV, "hang-before-ready")]);
    new.wait_for_line("hanging before saying ready");
    // Connections that arrive while the old process is frozen wait in the listening socket's
    // backlog and are served once it thaws.
    let storm = Storm::start(addr, 3);
    let line = old.wait_for_line("rolled back, serving on");
    assert!(
        line.contains("timed out") || line.contains("TimedOut"),
        "{line}"
    );
    env.wait_stat("control.takeovers_rolled_back", |n| n == 1);
    load.wait_all_served(50);
    let before = storm.served();
    let deadline = Instant::now() + WAIT;
    while storm.served() < before + 20 {
        assert!(
            Instant::now() < deadline,
            "the storm is not served after the thaw"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(storm.finish() > 0);
    // Still hanging: it never got to serve anything. Ending it changes nothing for the clients.
    assert!(new.child.try_wait().unwrap().is_none());
    new.kill();
    load.wait_all_served(50);
    // The storm's connections closed; the pipelined ones are all there.
    env.wait_stat("totals.connections_open", |n| n == 6);

    let _new = take_over_for_real(&env, &mut old, &load, 6);
    assert!(load.finish() > 0);
}

#[test]
fn when_the_old_process_dies_after_passing_the_descriptors_the_new_one_carries_on() {
    let env = TestEnv::new(2, "", "");
    let mut old = start_old(&env, &[(FAULT_ENV, "exit-after-offer")]);
    let _mcp = env.start_echo_mcp();
    let addr = old.addr();
    let load = PipelinedClients::start(addr, 6, 16);
    env.wait_stat("totals.connections_open", |n| n == 6);
    load.wait_all_served(20);

    let mut new = env.take_over();
    assert_eq!(
        old.exit_code(),
        Some(FAULT_EXIT_CODE),
        "the old process died"
    );
    assert_logged(&new, "ended without a word");
    assert_logged(&new, "with 6 connections");
    load.wait_all_served(50);
    let mut fresh = connect(addr);
    assert_eq!(round_trip(&mut fresh, b"carried on"), packet(b"carried on"));
    drop(fresh);
    // And it can be taken over in turn.
    let _newer = take_over_for_real(&env, &mut new, &load, 6);
    assert!(load.finish() > 0);
}

#[test]
fn a_connect_storm_across_a_takeover_is_served_without_a_refusal() {
    let env = TestEnv::new(2, "", "");
    let mut old = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let addr = old.addr();
    let load = PipelinedClients::start(addr, 2, 8);
    let storm = Storm::start(addr, 4);
    let deadline = Instant::now() + WAIT;
    while storm.served() < 50 {
        assert!(Instant::now() < deadline, "the storm is not served");
        std::thread::sleep(Duration::from_millis(5));
    }
    let new = env.take_over();
    assert_eq!(old.exit_code(), Some(0));
    assert_eq!(new.addr(), addr);
    let before = storm.served();
    let deadline = Instant::now() + WAIT;
    while storm.served() < before + 50 {
        assert!(
            Instant::now() < deadline,
            "the storm is not served after the takeover"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(storm.finish() > 100);
    assert!(load.finish() > 0);
}

#[test]
fn replies_an_mcp_held_until_after_the_takeover_reach_their_clients_in_order() {
    let env = TestEnv::new(2, "", "");
    let mut old = env.start_ccsd();
    let mut mcp = McpEndpoint::attach_wait(&env.settings(), WAIT).expect("attach");
    let addr = old.addr();
    const CLIENTS: usize = 8;
    const EACH: usize = 5;
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| connect(addr)).collect();
    for (c, s) in clients.iter_mut().enumerate() {
        for i in 0..EACH {
            std::io::Write::write_all(s, &packet(format!("c{c} r{i}").as_bytes())).unwrap();
        }
    }
    // MCP takes every request and holds it.
    let mut held: Vec<(RecordHeader, Vec<u8>)> = Vec::new();
    let mut msg = Message::new();
    let deadline = Instant::now() + WAIT;
    while held.len() < CLIENTS * EACH {
        assert!(
            Instant::now() < deadline,
            "only {} requests came",
            held.len()
        );
        if mcp.recv(&mut msg, Some(WAIT)).unwrap() && msg.header().kind == Kind::Data {
            held.push((*msg.header(), msg.payload().to_vec()));
        }
    }
    let new = env.take_over();
    assert_eq!(old.exit_code(), Some(0));
    assert_logged(&new, &format!("with {CLIENTS} connections"));
    // Now the replies, in the order the requests came.
    for (header, payload) in &held {
        mcp.reply(header, payload).unwrap();
    }
    mcp.flush().unwrap();
    for (c, s) in clients.iter_mut().enumerate() {
        for i in 0..EACH {
            let body = format!("c{c} r{i}");
            assert_eq!(
                read_n(s, packet(body.as_bytes()).len()),
                packet(body.as_bytes())
            );
        }
    }
}

#[test]
fn a_process_that_took_over_can_be_taken_over_even_if_the_old_one_is_slow_to_let_go() {
    let env = TestEnv::new(1, "", "");
    let admin_unix = env.dir.join("admin.sock");
    env.add_setting(
        "admin",
        &format!("unix = {:?}", admin_unix.display().to_string()),
    );
    // The old process lingers after the commit: the new one binds its handover and admin Unix
    // sockets meanwhile.
    let mut old = start_old(&env, &[(FAULT_ENV, "pause-after-commit")]);
    let _mcp = env.start_echo_mcp();
    let load = PipelinedClients::start(old.addr(), 2, 8);
    env.wait_stat("totals.connections_open", |n| n == 2);
    let mut new = env.take_over();
    assert_eq!(old.exit_code(), Some(0));
    assert!(
        !new.lines
            .iter()
            .any(|l| l.contains("no hot restart for this process")),
        "{:#?}",
        new.lines
    );
    assert_logged(&new, "admin on unix://");
    let mut admin = std::os::unix::net::UnixStream::connect(&admin_unix).expect("admin socket");
    std::io::Write::write_all(&mut admin, b"quit\n").unwrap();
    let _newer = take_over_for_real(&env, &mut new, &load, 2);
    assert!(load.finish() > 0);
}

#[test]
fn a_datagram_sent_while_the_old_process_is_frozen_is_answered_after_it_thaws() {
    let udp = "[[listen]]\naddr = \"127.0.0.1:0\"\nproto = \"udp\"\n";
    let env = TestEnv::new(1, "", udp);
    let mut old = start_old(&env, &[(STEP_TIMEOUT_ENV, "1500")]);
    let _mcp = env.start_echo_mcp();
    let server = old.addrs[1];
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let echo = |payload: &[u8]| {
        client.send_to(payload, server).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).expect("a reply datagram");
        assert_eq!((from, &buf[..n]), (server, payload));
    };
    echo(b"before");
    let mut new = spawn_takeover(&env, &[(FAULT_ENV, "hang-before-ready")]);
    new.wait_for_line("hanging before saying ready");
    // The old process is frozen now: the datagram waits in its socket.
    echo(b"while frozen");
    old.wait_for_line("rolled back, serving on");
    echo(b"after");
}

#[test]
fn a_new_process_too_slow_to_say_ready_gives_up_and_leaves_the_old_ones_pid_file() {
    let env = TestEnv::new(1, "", "");
    let pid_file = env.dir.join("ccsd.pid");
    env.add_setting(
        "broker",
        &format!("pid_file = {:?}", pid_file.display().to_string()),
    );
    // The old process waits half a second for ready; the new one takes a second to say it.
    let mut old = start_old(&env, &[(STEP_TIMEOUT_ENV, "500")]);
    let _mcp = env.start_echo_mcp();
    let load = PipelinedClients::start(old.addr(), 2, 8);
    env.wait_stat("totals.connections_open", |n| n == 2);
    let old_pid = format!("{}\n", old.child.id());
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), old_pid);

    let mut new = spawn_takeover(&env, &[(FAULT_ENV, "pause-before-ready")]);
    assert_eq!(new.exit_code(), Some(2));
    new.kill_and_collect_stderr();
    assert_logged(&new, "the old process gave up");
    old.wait_for_line("rolled back, serving on");
    load.wait_all_served(50);
    assert_eq!(
        std::fs::read_to_string(&pid_file).ok(),
        Some(old_pid),
        "the pid file names the old process, which serves on"
    );
    let _new = take_over_for_real(&env, &mut old, &load, 2);
    assert!(load.finish() > 0);
}
