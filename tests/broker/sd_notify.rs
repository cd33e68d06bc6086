//! systemd's notifications through a test-owned `NOTIFY_SOCKET` (a datagram socket bound in the
//! test's directory, or an abstract name): `READY=1` once the listener answers, `RELOADING=1` then
//! `READY=1` around a SIGHUP reload, `STOPPING=1` at SIGTERM, and `WATCHDOG=1` at half
//! `WATCHDOG_USEC` when it is set.

use crate::common;

use std::net::TcpStream;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, TestEnv, WAIT};
use rustix::process::{Pid, Signal, kill_process};

/// The test's end of the notification socket.
struct NotifySocket(UnixDatagram);

impl NotifySocket {
    fn bind_in(env: &TestEnv) -> (NotifySocket, String) {
        let path = env.dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        (NotifySocket(socket), path.display().to_string())
    }

    /// The next datagram, as text; fails the test after [`WAIT`].
    fn next(&self) -> String {
        self.0.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 4096];
        // A signal handled elsewhere in this test process interrupts the wait: wait again.
        let n = loop {
            match self.0.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.expect("a notification within WAIT"),
            }
        };
        String::from_utf8(buf[..n].to_vec()).expect("UTF-8 notification")
    }

    /// Skips datagrams until one has the line `line`; returns it.
    fn until(&self, line: &str) -> String {
        loop {
            let msg = self.next();
            if msg.lines().any(|l| l == line) {
                return msg;
            }
        }
    }
}

fn ccsd_notifying(env: &TestEnv, socket: &str, watchdog_usec: Option<u64>) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.env("NOTIFY_SOCKET", socket);
    if let Some(usec) = watchdog_usec {
        cmd.env("WATCHDOG_USEC", usec.to_string());
    }
    env.start_broker(cmd, "ccsd")
}

fn signal(p: &Proc, signal: Signal) {
    kill_process(Pid::from_child(&p.child), signal).expect("send the signal");
}

#[test]
fn ready_comes_once_the_port_answers_then_reloading_and_stopping_follow_the_signals() {
    let env = TestEnv::new(1, "", "");
    let (notify, path) = NotifySocket::bind_in(&env);
    let mut ccsd = ccsd_notifying(&env, &path, None);

    let ready = notify.next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=serving")),
        "{ready:?}"
    );
    TcpStream::connect(ccsd.addr()).expect("the port answers once READY=1 came");

    env.add_setting("broker", "max_connections = 7");
    signal(&ccsd, Signal::HUP);
    let reloading = notify.next();
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    let reloaded = notify.next();
    assert!(reloaded.lines().any(|l| l == "READY=1"), "{reloaded:?}");
    assert!(
        reloaded.lines().any(
            |l| l.starts_with("STATUS=serving; last reload: OK reloaded")
                && l.ends_with("1 changed, 0 need a restart")
        ),
        "{reloaded:?}"
    );

    signal(&ccsd, Signal::TERM);
    let stopping = notify.next();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert_eq!(ccsd.exit_code(), Some(0));
}

#[test]
fn an_abstract_notify_socket_gets_ready() {
    let env = TestEnv::new(1, "", "");
    let name = format!("{}-notify", env.name);
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let notify = NotifySocket(UnixDatagram::bind_addr(&addr).expect("bind abstract"));
    let _ccsd = ccsd_notifying(&env, &format!("@{name}"), None);
    notify.until("READY=1");
}

#[test]
fn watchdog_pings_come_at_half_the_interval_systemd_asks_for() {
    let env = TestEnv::new(1, "", "");
    let (notify, path) = NotifySocket::bind_in(&env);
    // 400 ms asked: a ping every 200 ms, the first when the main loop starts. Only a lower bound
    // that no scheduling delay can break is asserted: the fourth ping is sent at least 600 ms
    // after the start, so it cannot be received sooner than that after the spawn.
    let spawned = Instant::now();
    let _ccsd = ccsd_notifying(&env, &path, Some(400_000));
    notify.until("READY=1");
    for _ in 0..4 {
        notify.until("WATCHDOG=1");
    }
    assert!(
        spawned.elapsed() >= Duration::from_millis(3 * 200),
        "four pings {:?} after the spawn: faster than every 200 ms",
        spawned.elapsed()
    );
}

#[test]
fn without_notify_socket_ccsd_starts_and_stops_as_before() {
    // The same start with the variable unset: ccsd starts and stops as ever.
    let env = TestEnv::new(1, "", "");
    let mut ccsd = env.start_ccsd();
    TcpStream::connect(ccsd.addr()).expect("the port answers");
    signal(&ccsd, Signal::TERM);
    assert_eq!(ccsd.exit_code(), Some(0));
}

#[test]
fn drain_tells_systemd_the_node_drains() {
    let env = TestEnv::new(1, "", "");
    let (notify, path) = NotifySocket::bind_in(&env);
    let mut ccsd = ccsd_notifying(&env, &path, None);
    notify.until("READY=1");

    let admin = ccsd.admin.expect("ccsd logged its admin port");
    let mut conn = TcpStream::connect(admin).unwrap();
    std::io::Write::write_all(&mut conn, b"drain\n").unwrap();
    let status = notify.until("STATUS=draining: health answers DOWN, serving until the stop");
    assert!(!status.lines().any(|l| l == "STOPPING=1"), "{status:?}");
    ccsd.wait_for_line("draining: health answers DOWN draining");
}
