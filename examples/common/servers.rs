//! What the benchmark drivers (`bench_compare`, `soak`, `takeover_bench`) share: a scratch ccsd
//! configuration on a unique queue name, removed with its shared-memory files on drop; server
//! processes started from the binaries built next to the driver, waited for by a log line and
//! killed on drop; a process whose log lines keep being read ([`Logged`]) and the hot restart's
//! log line parsed ([`parse_handed`]); and their CPU time and resident memory, read from `/proc`.
//!
//! A driver includes this file with `#[path = "../common/servers.rs"] mod servers;`.
#![allow(dead_code)] // each driver uses a different subset

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A ccsd configuration file of one's own, and the queue name in it (`{prefix}-{pid}`). Drop
/// removes the file and every `/dev/shm/{name}.*` object.
#[derive(Debug)]
pub struct Scratch {
    /// The queue name (`queues.name`).
    pub name: String,
    /// The configuration file.
    pub config: PathBuf,
}

impl Scratch {
    /// Writes `toml(name)` to a temporary file, `name` being a queue name no other run uses.
    pub fn new(prefix: &str, toml: impl FnOnce(&str) -> String) -> Result<Scratch, String> {
        let name = format!("{prefix}-{}", std::process::id());
        let config = std::env::temp_dir().join(format!("{name}.toml"));
        std::fs::write(&config, toml(&name)).map_err(|e| format!("{}: {e}", config.display()))?;
        Ok(Scratch { name, config })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
        let prefix = format!("{}.", self.name);
        for entry in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The binary `name` built beside the running driver: `ccsd` one directory up
/// (`target/<profile>/ccsd`), the examples in the driver's own directory.
pub fn built_bin(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let dir = exe.parent().ok_or("the driver's directory")?;
    let path = if name == "ccsd" {
        dir.join("..").join(name)
    } else {
        dir.join(name)
    };
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it first (cargo build --release --bins --examples)",
            path.display()
        ))
    }
}

/// A process's resident memory, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// All of it (`VmRSS`): the next two and the pages of mapped files.
    pub rss: u64,
    /// Private memory (`RssAnon`): heap and stacks.
    pub anon: u64,
    /// Shared memory touched (`RssShmem`): for ccsd, the parts of the lanes used so far.
    pub shmem: u64,
}

/// A server process, killed on drop.
#[derive(Debug)]
pub struct Server {
    /// The process.
    pub child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// User + system CPU seconds the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        ticks as f64 / rustix::param::clock_ticks_per_second() as f64
    }

    /// The resident memory now, from `/proc/<pid>/status`; `None` once the process is gone.
    pub fn memory(&self) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let field = |name: &str| -> Option<u64> {
            let kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(kib * 1024)
        };
        Some(Memory {
            rss: field("VmRSS")?,
            anon: field("RssAnon")?,
            shmem: field("RssShmem")?,
        })
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits up to `patience` for the process to end; describes how it ended
    /// (`"exit status: 0"` for a clean stop), or that it did not.
    pub fn terminate(&mut self, patience: Duration) -> String {
        if let Some(status) = self.exited() {
            return format!("had already ended: {status}");
        }
        let pid = rustix::process::Pid::from_child(&self.child);
        if let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
            return format!("SIGTERM failed: {e}");
        }
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return status.to_string();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        format!("still running {patience:?} after SIGTERM")
    }
}

/// Starts `cmd` and waits for a stderr line containing `needle`; returns the server and every
/// line it logged up to that one.
pub fn start(mut cmd: Command, needle: &str) -> Result<(Server, Vec<String>), String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let server = Server { child };
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.map_err(|e| e.to_string())?;
        let found = line.contains(needle);
        seen.push(line);
        if found {
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((server, seen));
        }
    }
    Err(format!(
        "{cmd:?} exited before logging {needle:?}; its log:\n{}",
        seen.join("\n")
    ))
}

/// The address after `prefix` (e.g. `"listening on tcp://"`) in the first of `lines` naming one.
pub fn logged_addr(lines: &[String], prefix: &str) -> Result<SocketAddr, String> {
    lines
        .iter()
        .filter_map(|l| l.split(prefix).nth(1))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or(format!(
            "no {prefix:?} address in the log:\n{}",
            lines.join("\n")
        ))
}

/// Starts ccsd and then `mcp` (an example MCP) on `config`; waits until ccsd is ready and the
/// MCP has attached.
pub fn start_ccsd_and_mcp(
    config: &Path,
    mcp: &str,
) -> Result<(Server, Vec<String>, Server), String> {
    let mut cmd = Command::new(built_bin("ccsd")?);
    cmd.arg("--config").arg(config);
    let (ccsd, lines) = start(cmd, "ccsd ready")?;
    let mut cmd = Command::new(built_bin(mcp)?);
    cmd.arg("--config").arg(config);
    let (mcp, _) = start(cmd, "attached")?;
    Ok((ccsd, lines, mcp))
}

/// A server process whose stderr lines arrive, with the time each was read, on a channel the
/// driver reads as it asks: waiting for a line, or everything logged since a moment. A thread
/// reads stderr to its end, so the server never blocks on a full pipe.
pub struct Logged {
    /// The process, killed on drop.
    pub server: Server,
    lines: crossbeam_channel::Receiver<(Instant, String)>,
    /// Every line taken from `lines` so far.
    pub seen: Vec<String>,
    /// When each of `seen` was read.
    seen_at: Vec<Instant>,
    /// How long one wait (a line, the exit) may take.
    patience: Duration,
}

impl Logged {
    /// Starts `cmd`; each wait on it gives up after `patience`.
    pub fn start(mut cmd: Command, patience: Duration) -> Result<Logged, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Logged {
            server: Server { child },
            lines,
            seen: Vec::new(),
            seen_at: Vec::new(),
            patience,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.server.child.id()
    }

    /// Waits for a line containing `needle`; returns when it was read, and the line.
    pub fn wait_for(&mut self, needle: &str) -> Result<(Instant, String), String> {
        let deadline = Instant::now() + self.patience;
        loop {
            match self.lines.recv_deadline(deadline) {
                Ok((at, line)) => {
                    self.seen.push(line.clone());
                    self.seen_at.push(at);
                    if line.contains(needle) {
                        return Ok((at, line));
                    }
                }
                Err(e) => {
                    let why = if e == crossbeam_channel::RecvTimeoutError::Timeout {
                        "no such line within the patience"
                    } else {
                        "the process ended"
                    };
                    return Err(format!(
                        "waiting for {needle:?}: {why}; its log:\n{}",
                        self.seen.join("\n")
                    ));
                }
            }
        }
    }

    /// Every line read since `from` (all of those still waiting on the channel included), with
    /// its time in ms since `from`.
    pub fn lines_since(&mut self, from: Instant) -> Vec<(f64, String)> {
        for (at, line) in self.lines.try_iter() {
            self.seen.push(line);
            self.seen_at.push(at);
        }
        self.seen_at
            .iter()
            .zip(&self.seen)
            .filter(|(at, _)| **at >= from)
            .map(|(at, line)| (at.duration_since(from).as_secs_f64() * 1e3, line.clone()))
            .collect()
    }

    /// The address after `prefix` in the lines seen so far.
    pub fn addr(&self, prefix: &str) -> Result<SocketAddr, String> {
        logged_addr(&self.seen, prefix)
    }

    /// Waits for the process to end; its exit code, or how it ended.
    pub fn wait_exit(&mut self) -> String {
        let deadline = Instant::now() + self.patience;
        while Instant::now() < deadline {
            if let Some(status) = self.server.exited() {
                return status
                    .code()
                    .map_or_else(|| status.to_string(), |c| c.to_string());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        format!("still running {:?} later", self.patience)
    }
}

/// The release ccsd built beside the driver on `config`, with `--takeover` if `takeover`.
pub fn ccsd_command(config: &Path, takeover: bool) -> Result<Command, String> {
    let mut cmd = Command::new(built_bin("ccsd")?);
    if takeover {
        cmd.arg("--takeover");
    }
    cmd.arg("--config").arg(config);
    Ok(cmd)
}

/// The count and the duration (ms) in the old process's "handed N connections over to the new
/// process in X; exiting".
pub fn parse_handed(line: &str) -> (Option<u64>, Option<f64>) {
    let after = line.split("handed ").nth(1).unwrap_or("");
    let count = after.split_whitespace().next().and_then(|c| c.parse().ok());
    let ms = after
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(parse_debug_duration)
        .map(|d| d.as_secs_f64() * 1e3);
    (count, ms)
}

/// A `Duration` as `{:?}` shows it: `12.5ms`, `1.2s`, `830µs`, `40ns`.
pub fn parse_debug_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (value, unit) = s.split_at(split);
    let value: f64 = value.parse().ok()?;
    let seconds = match unit {
        "s" => value,
        "ms" => value / 1e3,
        "µs" | "us" => value / 1e6,
        "ns" => value / 1e9,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}
