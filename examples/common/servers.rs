//! What the benchmark drivers (`bench_compare`, `soak`) share: a scratch ccsd configuration on a
//! unique queue name, removed with its shared-memory files on drop; server processes started from
//! the binaries built next to the driver, waited for by a log line and killed on drop; and their
//! CPU time and resident memory, read from `/proc`.
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
