//! Hot restart started by the running ccsd itself: SIGUSR2 and admin `upgrade` start the binary
//! at the path ccsd was started from (a file replaced there is the new version) with its own
//! arguments plus `--takeover`; the old process exits 0 once the successor serves, and a
//! successor that cannot take over is reaped and logged while the old one serves on. Under
//! systemd the unit learns the new main process (`MAINPID=`). Clients with pipelined,
//! sequence-numbered requests keep every reply across each.

use crate::common;

use std::io::{BufRead, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{AdminClient, PipelinedClients, Proc, TestEnv, WAIT, connect, packet, round_trip};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::process::{Pid, Signal, kill_process};

/// A process the test did not spawn (the successor, a child of the old ccsd): killed at the end.
struct Successor(i32);

impl Successor {
    /// The pid in the old process's line "started process PID to take over".
    fn from_log(old: &mut Proc) -> Successor {
        let line = old.wait_for_line("): started process ");
        let pid = line
            .split("started process ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"));
        Successor(pid)
    }

    fn proc_path(&self, what: &str) -> PathBuf {
        Path::new("/proc").join(self.0.to_string()).join(what)
    }

    /// Its state letter in /proc/PID/stat (`Z` for a zombie), `None` once it is gone.
    fn state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(self.proc_path("stat")).ok()?;
        stat.rsplit(") ").next()?.chars().next()
    }
}

impl Drop for Successor {
    /// Kills it if it still runs as a successor (a reaped one's pid may name another process
    /// by now).
    fn drop(&mut self) {
        let ours = std::fs::read(self.proc_path("cmdline"))
            .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == b"--takeover"));
        if let (true, Some(pid)) = (ours, Pid::from_raw(self.0)) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
}

/// `n` pipelined clients on `addr`, checking every reply.
struct Clients(PipelinedClients);

impl Clients {
    fn start(env: &TestEnv, addr: SocketAddr, n: usize) -> Clients {
        let clients = PipelinedClients::start(addr, n, 16);
        env.wait_stat("totals.connections_open", |open| open == n as u64);
        Clients(clients)
    }

    /// Stops them; every one got at least one reply and lost none (checked in each).
    fn finish(self) {
        for (id, replies) in self.0.finish_each().into_iter().enumerate() {
            assert!(replies > 0, "client {id} got no reply");
        }
    }
}

fn signal(p: &Proc, signal: Signal) {
    kill_process(Pid::from_child(&p.child), signal).expect("send the signal");
}

/// A copy of the built ccsd at `dir/ccsd`.
fn install_binary(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("ccsd");
    replace_file(&path, Path::new(env!("CARGO_BIN_EXE_ccsd")));
    path
}

/// Replaces `path` by a copy of `from`, as a deploy does: a new file renamed over the old one.
fn replace_file(path: &Path, from: &Path) {
    let staged = path.with_extension("new");
    std::fs::copy(from, &staged).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

fn start_from(env: &TestEnv, binary: &Path) -> Proc {
    env.start_broker(Command::new(binary), "ccsd (installed copy)")
}

#[test]
fn sigusr2_runs_the_binary_now_at_the_start_path_which_takes_over_and_clients_lose_nothing() {
    let env = TestEnv::new(2, "", "");
    let binary = install_binary(&env.dir.join("bin"));
    let mut old = start_from(&env, &binary);
    let _mcp = env.start_echo_mcp();
    let addr = old.addr();
    let clients = Clients::start(&env, addr, 4);

    let first_inode = std::fs::metadata(&binary).unwrap().ino();
    replace_file(&binary, Path::new(env!("CARGO_BIN_EXE_ccsd")));
    let new_inode = std::fs::metadata(&binary).unwrap().ino();
    assert_ne!(first_inode, new_inode);

    signal(&old, Signal::USR2);
    let new = Successor::from_log(&mut old);
    // The successor shares the old one's stderr.
    let took = old.wait_for_line("hot restart: took over from process");
    assert!(took.contains("with 4 connections"), "{took}");
    assert_eq!(old.exit_code(), Some(0), "the old process exits 0");

    let exe = std::fs::metadata(new.proc_path("exe")).expect("the successor runs");
    assert_eq!(exe.ino(), new_inode, "the successor runs the replaced file");
    let cmdline = std::fs::read(new.proc_path("cmdline")).unwrap();
    let args: Vec<&[u8]> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    assert_eq!(args[0], binary.as_os_str().as_encoded_bytes());
    assert_eq!(
        args.iter().filter(|&&a| a == b"--takeover").count(),
        1,
        "{args:?}"
    );
    assert!(args.contains(&&b"--config"[..]), "{args:?}");

    clients.finish();
    let mut client = connect(addr);
    assert_eq!(round_trip(&mut client, b"after"), packet(b"after"));

    // The successor, started with --takeover, upgrades again without adding it twice.
    drop(client);
    let mut again = Command::new("kill");
    again.arg("-USR2").arg(new.0.to_string());
    assert!(again.status().unwrap().success());
    let third = Successor::from_log(&mut old);
    old.wait_for_line(&format!("hot restart: took over from process {}", new.0));
    let cmdline = std::fs::read(third.proc_path("cmdline")).unwrap();
    let takeovers = cmdline.split(|&b| b == 0).filter(|a| a == b"--takeover");
    assert_eq!(takeovers.count(), 1);
    let mut client = connect(addr);
    assert_eq!(round_trip(&mut client, b"third"), packet(b"third"));
}

#[test]
fn admin_upgrade_answers_ok_once_the_successor_serves_then_closes() {
    let env = TestEnv::new(2, "", "");
    let mut old = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let admin_addr = old.admin.expect("the admin port");
    let clients = Clients::start(&env, old.addr(), 3);

    let mut admin = AdminClient::connect(admin_addr);
    let answer = admin.ask("upgrade");
    let new = Successor::from_log(&mut old);
    assert_eq!(
        answer,
        format!("OK upgraded: process {} serves now; this one exits", new.0)
    );
    let mut rest = String::new();
    assert_eq!(
        admin.reader.read_line(&mut rest).unwrap(),
        0,
        "the old process closed the admin connection: {rest:?}"
    );
    assert_eq!(old.exit_code(), Some(0));
    clients.finish();

    // The admin port was handed over: the successor answers there.
    let mut admin = AdminClient::connect(admin_addr);
    let help = admin.ask("help");
    assert!(help.contains("upgrade"), "{help}");
}

#[test]
fn a_successor_that_cannot_take_over_is_reaped_and_logged_and_the_old_one_serves_on() {
    let env = TestEnv::new(2, "", "");
    let mut old = env.start_ccsd();
    let _mcp = env.start_echo_mcp();
    let clients = Clients::start(&env, old.addr(), 3);
    // The settings file now names a key ccsd does not know: the successor refuses to start.
    env.add_setting("broker", "no_such_setting = 1");

    signal(&old, Signal::USR2);
    let failed = Successor::from_log(&mut old);
    let reaped = old.wait_for_line(&format!("process {} exited", failed.0));
    assert!(reaped.contains("exit status: 2"), "{reaped}");
    assert!(reaped.contains("serving on"), "{reaped}");
    assert_eq!(failed.state(), None, "reaped: no zombie left");

    // The same through the admin port: an ERROR, with the exit status.
    let mut admin = AdminClient::connect(old.admin.expect("the admin port"));
    let answer = admin.ask("upgrade");
    let failed = Successor::from_log(&mut old);
    assert_eq!(
        answer,
        format!(
            "ERROR upgrade: process {} exited (exit status: 2) without taking over (its log says why); this ccsd serves on",
            failed.0
        )
    );
    assert_eq!(failed.state(), None, "reaped: no zombie left");
    assert!(
        old.lines.iter().any(|l| l.contains("no_such_setting")),
        "the successor said why on the shared stderr: {:?}",
        old.lines
    );

    assert_eq!(old.child.try_wait().unwrap(), None, "the old one serves on");
    clients.finish();
    let mut client = connect(old.addr());
    assert_eq!(round_trip(&mut client, b"still"), packet(b"still"));
}

#[test]
fn a_second_upgrade_while_one_runs_is_ignored_and_a_killed_successor_is_reaped() {
    let env = TestEnv::new(1, "", "");
    let binary = install_binary(&env.dir.join("bin"));
    let mut old = start_from(&env, &binary);
    // The file at the start path is now a program that never takes over.
    let hang = env.dir.join("hang.sh");
    std::fs::write(&hang, "#!/bin/sh\nwhile :; do sleep 1; done\n").unwrap();
    replace_file(&binary, &hang);

    signal(&old, Signal::USR2);
    let hanging = Successor::from_log(&mut old);
    signal(&old, Signal::USR2);
    let ignored = old.wait_for_line("SIGUSR2: ignored");
    assert!(
        ignored.contains(&format!("process {} is already taking over", hanging.0)),
        "{ignored}"
    );
    env.wait_stat("process.ignored_signals", |n| n == 1);
    let mut admin = AdminClient::connect(old.admin.expect("the admin port"));
    let answer = admin.ask("upgrade");
    assert!(
        answer.starts_with(&format!(
            "ERROR upgrade: process {} is already taking over",
            hanging.0
        )),
        "{answer}"
    );

    kill_process(Pid::from_raw(hanging.0).unwrap(), Signal::KILL).unwrap();
    let reaped = old.wait_for_line(&format!("process {} exited", hanging.0));
    assert!(reaped.contains("SIGKILL"), "{reaped}");
    assert_eq!(hanging.state(), None, "reaped: no zombie left");
    assert_eq!(old.child.try_wait().unwrap(), None, "the old one serves on");
}

/// The test's end of `NOTIFY_SOCKET`, with the sender's pid of each datagram (`SO_PASSCRED`).
struct NotifySocket(UnixDatagram);

impl NotifySocket {
    fn bind_in(env: &TestEnv) -> (NotifySocket, String) {
        let path = env.dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        rustix::net::sockopt::set_socket_passcred(&socket, true).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        (NotifySocket(socket), path.display().to_string())
    }

    /// The next datagram and its sender's pid. A descriptor passed along (`BARRIER=1`) is
    /// closed here, which is what releases the sender's barrier.
    fn next(&self) -> (String, i32) {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        let mut space =
            [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4), ScmCredentials(1))];
        loop {
            assert!(Instant::now() < deadline, "no notification within WAIT");
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let received = rustix::net::recvmsg(
                &self.0,
                &mut [IoSliceMut::new(&mut buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            );
            let n = match received {
                Ok(msg) => msg.bytes,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => panic!("no notification within WAIT: {e}"),
            };
            let mut pid = 0;
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmCredentials(cred) = message {
                    pid = cred.pid.as_raw_nonzero().get();
                }
            }
            return (String::from_utf8(buf[..n].to_vec()).unwrap(), pid);
        }
    }

    /// Skips datagrams until one has the line `line`; returns it and its sender.
    fn until(&self, line: &str) -> (String, i32) {
        loop {
            let (msg, pid) = self.next();
            if msg.lines().any(|l| l == line) {
                return (msg, pid);
            }
        }
    }
}

#[test]
fn after_sigusr2_systemd_hears_the_new_main_pid_from_both_processes() {
    let env = TestEnv::new(1, "", "");
    let (notify, path) = NotifySocket::bind_in(&env);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
    cmd.env("NOTIFY_SOCKET", &path);
    let mut old = env.start_broker(cmd, "ccsd");
    let _mcp = env.start_echo_mcp();
    let old_pid = old.child.id() as i32;
    let (_, from) = notify.until("READY=1");
    assert_eq!(from, old_pid);

    signal(&old, Signal::USR2);
    let new = Successor::from_log(&mut old);
    let mainpid = format!("MAINPID={}", new.0);
    // The old process names its successor while it is still the main process, then waits on a
    // barrier until this end has read that; the successor says it with its READY=1. The two
    // processes send at the same time: only each one's own order is fixed.
    let (mut from_old, mut from_new) = (Vec::new(), Vec::new());
    while !(from_old.len() == 2 && from_new.iter().any(|m: &String| m.contains("READY=1"))) {
        let (msg, from) = notify.next();
        match from {
            pid if pid == old_pid => {
                // Until this end reads its BARRIER=1 (or 5 s pass), the old one cannot exit.
                if from_old.is_empty() {
                    assert_eq!(
                        old.child.try_wait().unwrap(),
                        None,
                        "exited before the barrier"
                    );
                }
                from_old.push(msg);
            }
            pid if pid == new.0 => from_new.push(msg),
            other => panic!("a notification from process {other}: {msg:?}"),
        }
    }
    assert!(
        from_old[0].lines().any(|l| l == mainpid),
        "the old one's first: {from_old:?}"
    );
    assert_eq!(from_old[1], "BARRIER=1", "then the barrier: {from_old:?}");
    let ready = from_new.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.lines().any(|l| l == mainpid), "{ready:?}");
    assert_eq!(old.exit_code(), Some(0));
    let mut client = connect(old.addr());
    assert_eq!(round_trip(&mut client, b"served"), packet(b"served"));
}

#[test]
fn with_the_binary_gone_from_the_start_path_an_upgrade_is_refused_and_ccsd_serves_on() {
    let env = TestEnv::new(1, "", "");
    let binary = install_binary(&env.dir.join("bin"));
    let mut old = start_from(&env, &binary);
    let _mcp = env.start_echo_mcp();
    std::fs::remove_file(&binary).unwrap();

    signal(&old, Signal::USR2);
    let ignored = old.wait_for_line("SIGUSR2: ignored");
    assert!(
        ignored.contains(&format!("cannot start {}", binary.display())),
        "{ignored}"
    );
    env.wait_stat("process.ignored_signals", |n| n == 1);
    let mut admin = AdminClient::connect(old.admin.expect("the admin port"));
    let answer = admin.ask("upgrade");
    assert!(
        answer.starts_with(&format!("ERROR upgrade: cannot start {}", binary.display())),
        "{answer}"
    );
    assert_eq!(old.child.try_wait().unwrap(), None, "the old one serves on");
    let mut client = connect(old.addr());
    assert_eq!(round_trip(&mut client, b"still"), packet(b"still"));
}
