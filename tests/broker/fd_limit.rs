//! The open-file limit through the real binary (started from `sh` with lowered limits): ccsd
//! raises its soft limit to fit `broker.max_connections`, and warns, naming both numbers and the
//! setting, when the hard limit is too low; once descriptors run out it pauses accepting instead
//! of spinning, the admin port still answers, and accepting resumes when descriptors are free.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, TestEnv, WAIT, connect, packet, round_trip};

/// ccsd on `env`'s config, after `sh` ran `ulimit` (e.g. `ulimit -Sn 1024`).
fn ccsd_with_ulimit(env: &TestEnv, ulimit: &str) -> Proc {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{ulimit} && exec \"$0\" --config \"$1\""))
        .arg(env!("CARGO_BIN_EXE_ccsd"))
        .arg(&env.config);
    Proc::spawn(cmd, "ccsd")
}

#[test]
fn soft_limit_is_raised_to_fit_max_connections() {
    let env = TestEnv::new(1, "", "");
    env.add_setting("broker", "max_connections = 1000");
    let mut ccsd = ccsd_with_ulimit(&env, "ulimit -Sn 256");
    let needed = ccsd::runtime::fd_limit::fd_budget(1000, 1, 1);
    let line = ccsd.wait_for_line("open-file limit");
    assert!(
        line.contains(&format!(
            "raised from 256 to {needed} for broker.max_connections = 1000"
        )),
        "{line}"
    );
    ccsd.wait_for_line("ccsd ready");
}

#[test]
fn hard_limit_below_max_connections_is_a_warning_naming_both_numbers() {
    let env = TestEnv::new(1, "", "");
    env.add_setting("broker", "max_connections = 5000");
    let mut ccsd = ccsd_with_ulimit(&env, "ulimit -Sn 500 && ulimit -Hn 1000");
    let needed = ccsd::runtime::fd_limit::fd_budget(5000, 1, 1);
    let line = ccsd.wait_for_line("open-file limit");
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&format!(
            "broker.max_connections = 5000 needs {needed} descriptors but the hard limit (RLIMIT_NOFILE) is 1000"
        )),
        "{line}"
    );
    let raised = ccsd.wait_for_line("open-file limit");
    assert!(raised.contains("raised from 500 to 1000"), "{raised}");
    ccsd.wait_for_line("ccsd ready");
}

/// CPU time (user + system) the thread `tid` of process `pid` has used, from `/proc`.
fn thread_cpu_time(pid: u32, tid: u32) -> Duration {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).expect("thread stat");
    // Fields after the command name (which may hold spaces) in parentheses: state is field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = rustix::param::clock_ticks_per_second();
    Duration::from_nanos(ticks * 1_000_000_000 / per_second)
}

/// Asks the admin at `addr` for `stats` (one fresh connection) and returns the value of `name`.
fn admin_stat(addr: SocketAddr, name: &str) -> u64 {
    let mut s = connect(addr);
    s.write_all(b"stats\n").unwrap();
    let prefix = format!("STAT {name} ");
    let mut found = None;
    for line in BufReader::new(s).lines() {
        let line = line.expect("admin answer");
        if line.trim_end() == "END" {
            break;
        }
        if let Some(v) = line.trim_end().strip_prefix(&prefix) {
            found = Some(v.parse().unwrap());
        }
    }
    found.unwrap_or_else(|| panic!("no {name} in stats"))
}

#[test]
fn out_of_descriptors_accepting_pauses_admin_answers_and_accepting_resumes() {
    let env = TestEnv::new(
        1,
        "",
        "[[listen]]\naddr = \"127.0.0.1:0\"\nproto = \"udp\"\n",
    );
    // Hard and soft limit: ccsd can raise neither. Its clients soon take every descriptor left.
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_ccsd"));
    let mut ccsd = env.start_broker(sh, "ccsd");
    let _mcp = env.start_echo_mcp();
    let admin = ccsd.admin.expect("admin port");
    let pid = ccsd.child.id();

    let mut clients: Vec<TcpStream> = (0..100).map(|_| connect(ccsd.addr())).collect();
    ccsd.wait_for_line("out of file descriptors");

    // The clients beyond the limit wait in the backlog and keep the listener readable: the
    // main thread must sleep through it, not retry `accept` in a loop.
    let wall = Duration::from_secs(3);
    let cpu_before = thread_cpu_time(pid, pid);
    let started = Instant::now();
    std::thread::sleep(wall);
    let cpu = thread_cpu_time(pid, pid) - cpu_before;
    let elapsed = started.elapsed();
    assert!(
        cpu < elapsed / 10,
        "the main thread used {cpu:?} of CPU in {elapsed:?} while out of descriptors"
    );

    // Connections already open are served (worker, lanes, bridge), and so are UDP peers.
    assert_eq!(
        round_trip(&mut clients[0], b"still served"),
        packet(b"still served")
    );
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(WAIT)).unwrap();
    udp.send_to(b"datagram", ccsd.addrs[1]).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = udp.recv_from(&mut buf).expect("the UDP echo");
    assert_eq!(&buf[..n], b"datagram");

    // A new admin client gets in on the admin's reserve descriptor.
    assert!(admin_stat(admin, "admin_reserve_used") >= 1);
    assert!(admin_stat(admin, "acceptor_accept_pauses") >= 1);
    let accepted = admin_stat(admin, "acceptor_accepted");
    assert!(accepted < 100, "{accepted} accepted under a limit of 64");

    // One admin client holds the reserve; a second one waits: the admin must not spin either.
    let mut held = connect(admin);
    held.write_all(b"help\n").unwrap();
    let mut waiting = connect(admin);
    waiting.write_all(b"stats\n").unwrap();
    let cpu_before = thread_cpu_time(pid, pid);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = thread_cpu_time(pid, pid) - cpu_before;
    let elapsed = started.elapsed();
    assert!(
        cpu < elapsed / 10,
        "the main thread used {cpu:?} of CPU in {elapsed:?} with an admin client waiting"
    );
    // The first leaves: the reserve comes back and lets the second in.
    drop(held);
    let answer: Vec<String> = BufReader::new(waiting)
        .lines()
        .map(Result::unwrap)
        .take_while(|l| l != "END")
        .collect();
    let pauses = answer
        .iter()
        .find_map(|l| l.strip_prefix("STAT admin_accept_pauses "))
        .expect("admin_accept_pauses in stats");
    assert!(pauses.parse::<u64>().unwrap() >= 1, "{answer:?}");

    // Descriptors free up: the clients waiting in the backlog are accepted, and new ones served.
    clients.clear();
    let deadline = Instant::now() + WAIT;
    while admin_stat(admin, "acceptor_accepted") < 100 {
        assert!(Instant::now() < deadline, "accepting never resumed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut client = connect(ccsd.addr());
    assert_eq!(round_trip(&mut client, b"back"), packet(b"back"));
}

/// Starts ccsd under `ulimit -n {limit}` and reads its stderr: `Ok(())` once it is ready (it is
/// then killed), or `Err(why)` with the line it gave up with.
fn start_with_descriptor_limit(env: &TestEnv, limit: u32) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" --config \"$1\""))
        .arg(env!("CARGO_BIN_EXE_ccsd"))
        .arg(&env.config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ccsd");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut last = String::new();
    for line in stderr.lines().map_while(Result::ok) {
        if line.contains("ccsd ready") {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(());
        }
        last = line;
    }
    let _ = child.wait();
    Err(last)
}

#[test]
fn every_start_step_that_runs_out_of_descriptors_is_named_in_the_error() {
    let env = TestEnv::new(1, "", "");
    let mut failures = Vec::new();
    let mut started = false;
    for limit in 4..=64 {
        match start_with_descriptor_limit(&env, limit) {
            Ok(()) => {
                started = true;
                break;
            }
            // Too few descriptors for the dynamic loader itself (how many it needs depends on
            // what else the test process has open at that moment): ccsd never ran.
            Err(why) if why.contains("error while loading shared libraries") => {}
            Err(why) => failures.push((limit, why)),
        }
    }
    assert!(started, "never started: {failures:?}");
    for (limit, why) in &failures {
        assert!(why.starts_with("ccsd: "), "limit {limit}: {why}");
        assert!(!why.contains("the runtime"), "limit {limit}: {why}");
    }
    // The poller is the first thing a start creates: with only the standard streams and one
    // descriptor more, that is the step that fails, and the error says so.
    let (limit, why) = &failures[0];
    assert!(
        why.starts_with("ccsd: cannot create the main poller: ") && why.contains("open files"),
        "limit {limit}: {why}"
    );
}
