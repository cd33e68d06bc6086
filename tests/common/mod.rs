//! Shared harness for the integration tests: starts the real `ccsd` binary and the real example
//! MCPs (built once per test binary) or the echo MCP in the test process, on unique queue names
//! and port 0, finds their addresses from their logs, reads the stats file, and removes every
//! shared-memory file on drop.
#![allow(dead_code)] // each test binary uses a different subset of the harness

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use ccsd::mcp::demo::Echo;
use ccsd::mcp::service::serve;
use ccsd::mcp::{McpEndpoint, Message};
use ccsd::record::{Kind, RecordHeader};
use ccsd::settings::Settings;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// One test's private world: a unique queue name, a config file and a stats file.
pub struct TestEnv {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub stats_file: PathBuf,
}

impl TestEnv {
    /// A config with the test's queues, a fast stats interval, one TCP listener on port 0 with
    /// `listen_extra` lines added to it, and `extra` appended (other sections).
    pub fn new(workers: usize, listen_extra: &str, extra: &str) -> TestEnv {
        build_examples();
        let name = format!(
            "ccsd-t{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("ccsd.toml");
        let stats_file = dir.join("stats.json");
        let toml = format!(
            "[broker]\nworkers = {workers}\n\n[queues]\ndir = \"/dev/shm\"\nname = \"{name}\"\n\n\
             [log]\nlevel = \"info\"\n\n[admin]\naddr = \"127.0.0.1:0\"\n\n[stats]\ninterval = \"20ms\"\nfile = \"{}\"\n\n\
             [[listen]]\naddr = \"127.0.0.1:0\"\n{listen_extra}\n\n{extra}\n",
            stats_file.display()
        );
        std::fs::write(&config, toml).expect("write config");
        TestEnv {
            name,
            dir,
            config,
            stats_file,
        }
    }

    /// Adds `line` (e.g. `dispatch = "round_robin"`) at the top of `section` (`"broker"`,
    /// `"queues"`) of the config file, before ccsd starts.
    pub fn add_setting(&self, section: &str, line: &str) {
        let header = format!("[{section}]\n");
        let toml = std::fs::read_to_string(&self.config).expect("read config");
        assert!(toml.contains(&header), "the test config has no [{section}]");
        let toml = toml.replacen(&header, &format!("{header}{line}\n"), 1);
        std::fs::write(&self.config, toml).expect("write config");
    }

    /// Puts the (first) listener on `addr` instead of port 0.
    pub fn set_listen_addr(&self, addr: &str) {
        let from = "[[listen]]\naddr = \"127.0.0.1:0\"";
        let toml = std::fs::read_to_string(&self.config).expect("read config");
        assert!(
            toml.contains(from),
            "the test config has no port-0 listener"
        );
        let toml = toml.replacen(from, &format!("[[listen]]\naddr = \"{addr}\""), 1);
        std::fs::write(&self.config, toml).expect("write config");
    }

    pub fn settings(&self) -> Settings {
        Settings::load_with_env(Some(&self.config), std::iter::empty()).expect("test settings")
    }

    pub fn start_ccsd(&self) -> Proc {
        self.start_broker(Command::new(env!("CARGO_BIN_EXE_ccsd")), "ccsd")
    }

    /// Starts `cmd` (ccsd or a binary of one's own around `Broker`) with this test's config, and
    /// waits until it is ready; the listeners' (TCP and UDP, in listener order) and the admin
    /// port's addresses are read from its log.
    pub fn start_broker(&self, mut cmd: Command, what: &'static str) -> Proc {
        cmd.arg("--config").arg(&self.config);
        let mut p = Proc::spawn(cmd, what);
        p.wait_for_line("ccsd ready");
        p.addrs = p
            .lines
            .iter()
            .filter_map(|l| {
                l.split("listening on tcp://")
                    .nth(1)
                    .or_else(|| l.split("listening on udp://").nth(1))
            })
            .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        p.admin = p
            .lines
            .iter()
            .filter_map(|l| l.split("admin on tcp://").nth(1))
            .find_map(|rest| rest.split_whitespace().next()?.parse().ok());
        p
    }

    /// Starts `ccsd --takeover` on this test's config (a hot restart of the running ccsd) and
    /// waits until it serves.
    pub fn take_over(&self) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccsd"));
        cmd.arg("--takeover");
        self.start_broker(cmd, "ccsd --takeover")
    }

    /// The echo MCP, served in this test process (see [`EchoMcp`]), attached when this returns.
    /// Tests about the MCP process itself (killing it, a second one) start the example binary
    /// with [`TestEnv::start_mcp`]`("echo_mcp")` instead.
    pub fn start_echo_mcp(&self) -> EchoMcp {
        EchoMcp::start(&self.settings())
    }

    /// Starts the example MCP `name` on this test's config and waits until it has attached.
    pub fn start_mcp(&self, name: &'static str) -> Proc {
        let mut cmd = Command::new(example_bin(name));
        cmd.arg("--config").arg(&self.config);
        let mut p = Proc::spawn(cmd, name);
        p.wait_for_line(&format!("{name} attached"));
        p
    }

    /// The latest stats document.
    pub fn stats(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.stats_file).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// Waits until the stats counter at `path` (e.g. `"totals.closed_oversize"`) satisfies `ok`.
    pub fn wait_stat(&self, path: &str, ok: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = stat(&self.stats(), path);
            if let Some(v) = v.filter(|v| ok(*v)) {
                return v;
            }
            assert!(Instant::now() < deadline, "stat {path} stayed at {v:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        remove_queue_files(&self.name);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The echo MCP of `examples/echo_mcp` (the library's request loop, [`serve`], with
/// [`Echo`]) on a thread of this test process, attached to the test's real lanes. Dropping it
/// stops the loop, which notices within its stop check; nothing waits for that, so a test's
/// teardown does not either.
pub struct EchoMcp {
    stop: Arc<AtomicBool>,
}

impl EchoMcp {
    fn start(settings: &Settings) -> EchoMcp {
        let settings = settings.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let (attached_tx, attached) = mpsc::channel();
        std::thread::spawn(move || {
            let mut mcp = match McpEndpoint::attach_wait(&settings, WAIT) {
                Ok(mcp) => mcp,
                Err(e) => {
                    let _ = attached_tx.send(Err(e.to_string()));
                    return;
                }
            };
            mcp.set_idle_spin(settings.broker.idle_spin);
            let _ = attached_tx.send(Ok(()));
            // An error ends the loop; the test then sees its replies missing.
            if let Err(e) = serve(&mut mcp, &mut Echo, &stop_flag) {
                eprintln!("in-process echo MCP: {e}");
            }
        });
        match attached.recv() {
            Ok(Ok(())) => EchoMcp { stop },
            Ok(Err(e)) => panic!("the in-process echo MCP cannot attach: {e}"),
            Err(_) => panic!("the in-process echo MCP's thread ended before attaching"),
        }
    }
}

impl Drop for EchoMcp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An admin session: send a line, read the reply lines up to and including `END` (or one line).
pub struct AdminClient {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl AdminClient {
    pub fn connect(addr: SocketAddr) -> AdminClient {
        let s = connect(addr);
        AdminClient {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("admin reply");
        line.trim_end().to_owned()
    }

    pub fn ask(&mut self, command: &str) -> String {
        writeln!(self.writer, "{command}").unwrap();
        self.line()
    }

    pub fn ask_until_end(&mut self, command: &str) -> Vec<String> {
        writeln!(self.writer, "{command}").unwrap();
        self.until_end()
    }

    pub fn until_end(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            if line == "END" {
                return lines;
            }
            assert!(!line.is_empty(), "admin closed before END: {lines:?}");
            lines.push(line);
        }
    }
}

/// Sequence-numbered pipelined clients, each keeping `window` requests in flight and checking that
/// every reply comes exactly once and in order (a lost, repeated or reordered reply, an EOF or a
/// reset fails its thread), with a count of the replies each has received so far.
pub struct PipelinedClients {
    stop: Arc<AtomicBool>,
    progress: Vec<Arc<AtomicU64>>,
    clients: Vec<std::thread::JoinHandle<u64>>,
}

impl PipelinedClients {
    /// `clients` clients on `addr`, each with `window` requests in flight.
    pub fn start(addr: SocketAddr, clients: usize, window: u64) -> PipelinedClients {
        let stop = Arc::new(AtomicBool::new(false));
        let progress: Vec<_> = (0..clients).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let clients = progress
            .iter()
            .enumerate()
            .map(|(id, done)| {
                let (stop, done) = (Arc::clone(&stop), Arc::clone(done));
                std::thread::spawn(move || pipelined_client(addr, id, window, &stop, &done))
            })
            .collect();
        PipelinedClients {
            stop,
            progress,
            clients,
        }
    }

    /// Waits until every client has received `more` replies beyond what it had on entry: all of
    /// them are being served.
    pub fn wait_all_served(&self, more: u64) {
        let from: Vec<u64> = self
            .progress
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .collect();
        let deadline = Instant::now() + WAIT;
        for (id, (p, from)) in self.progress.iter().zip(from).enumerate() {
            while p.load(Ordering::Relaxed) < from + more {
                assert!(
                    Instant::now() < deadline,
                    "client {id} stalled at {} replies",
                    p.load(Ordering::Relaxed)
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Stops sending, waits for every outstanding reply; the replies each client received.
    pub fn finish_each(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.clients
            .into_iter()
            .map(|c| {
                c.join()
                    .expect("a client lost, repeated or reordered a reply")
            })
            .collect()
    }

    /// As [`finish_each`](PipelinedClients::finish_each): the replies received in all.
    pub fn finish(self) -> u64 {
        self.finish_each().into_iter().sum()
    }
}

/// A client that keeps `window` sequence-numbered requests in flight and checks that every reply
/// comes back exactly once, in order, counting them in `done`; returns how many it got once `stop`
/// is set and every outstanding reply came.
fn pipelined_client(
    addr: SocketAddr,
    id: usize,
    window: u64,
    stop: &AtomicBool,
    done: &AtomicU64,
) -> u64 {
    let mut s = connect(addr);
    let body = |seq: u64| format!("client {id:02} request {seq:08}").into_bytes();
    let reply_len = packet(&body(0)).len();
    let (mut sent, mut received) = (0u64, 0u64);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        while !stopping && sent - received < window {
            s.write_all(&packet(&body(sent))).unwrap();
            sent += 1;
        }
        if received == sent {
            return received;
        }
        let reply = read_n(&mut s, reply_len);
        assert_eq!(
            reply,
            packet(&body(received)),
            "client {id}: reply {received} out of order or lost"
        );
        received += 1;
        done.store(received, Ordering::Relaxed);
    }
}

/// The next DATA record a test-owned MCP receives: its header and payload.
pub fn next_data(mcp: &mut McpEndpoint, msg: &mut Message) -> (RecordHeader, Vec<u8>) {
    loop {
        assert!(mcp.recv(msg, Some(WAIT)).unwrap(), "no record from ccsd");
        if msg.header().kind == Kind::Data {
            return (*msg.header(), msg.payload().to_vec());
        }
    }
}

/// Replies to `request` as a test-owned MCP, waiting for room in the response lane if ccsd is
/// behind, and publishes the reply.
pub fn reply_when_room(mcp: &mut McpEndpoint, request: &RecordHeader, payload: &[u8]) {
    let deadline = Instant::now() + WAIT;
    loop {
        match mcp.reply(request, payload) {
            Ok(()) => break,
            Err(ccsd::mcp::McpError::Full) => {
                mcp.flush().unwrap();
                assert!(Instant::now() < deadline, "the response lane stayed full");
            }
            Err(e) => panic!("reply: {e}"),
        }
    }
    mcp.flush().unwrap();
}

/// Removes `/dev/shm/{name}.*`.
pub fn remove_queue_files(name: &str) {
    let prefix = format!("{name}.");
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// A counter from a stats document, by dotted path.
pub fn stat(doc: &serde_json::Value, path: &str) -> Option<u64> {
    path.split('.')
        .try_fold(doc, |v, key| v.get(key))
        .and_then(serde_json::Value::as_u64)
}

/// The path of the example binary `name` in `target/<profile>/examples/`, built by
/// [`build_examples`] if it is not yet.
pub fn example_bin(name: &str) -> PathBuf {
    build_examples();
    let path = profile_dir().join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing after `cargo build --examples`: is `{name}` an example?",
        path.display()
    );
    path
}

/// Runs `cargo build --examples` once per test binary, with the profile and target directory this
/// test binary was built with. `cargo test` builds the examples whose unit tests it runs only as
/// test harnesses, and `cargo test --test NAME` builds none, so without this step plain
/// `cargo test` from a fresh clone could not start the example MCPs and tools. When the examples
/// are fresh cargo only checks them (a fraction of a second). Called before the first ccsd start
/// too ([`TestEnv::new`]), so a first build never delays a test mid-scenario.
pub fn build_examples() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = profile_dir();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_owned(),
            Some(other) => other.to_owned(),
            None => panic!("no profile directory in {}", profile_dir.display()),
        };
        // `<target-dir>/<profile>/`, or `<target-dir>/<triple>/<profile>/` when built for an
        // explicit target; cargo marks the root of a target directory with CACHEDIR.TAG.
        let parent = profile_dir.parent().expect("target directory");
        let mut cmd =
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into()));
        cmd.arg("build")
            .arg("--examples")
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--profile")
            .arg(&profile);
        match parent.parent() {
            Some(root)
                if !parent.join("CACHEDIR.TAG").exists() && root.join("CACHEDIR.TAG").exists() =>
            {
                cmd.arg("--target-dir")
                    .arg(root)
                    .arg("--target")
                    .arg(parent.file_name().expect("target triple"));
            }
            _ => {
                cmd.arg("--target-dir").arg(parent);
            }
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// `target/<profile>/`: this test binary lives in its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// A child process whose stderr lines are collected.
pub struct Proc {
    pub child: Child,
    pub addrs: Vec<SocketAddr>,
    /// The admin port, when ccsd logged one.
    pub admin: Option<SocketAddr>,
    pub lines: Vec<String>,
    rx: mpsc::Receiver<String>,
    what: &'static str,
}

impl Proc {
    pub fn spawn(mut cmd: Command, what: &'static str) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            addrs: Vec::new(),
            admin: None,
            lines: Vec::new(),
            rx,
            what,
        }
    }

    /// Waits for a stderr line containing `needle`; panics with the log if the process exits.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "{} never logged {needle:?}; its log:\n{}",
                    self.what,
                    self.lines.join("\n")
                ),
            }
        }
    }

    /// Kills the process and returns every line it wrote to stderr (up to the pipe's end).
    pub fn kill_and_collect_stderr(&mut self) -> &[String] {
        self.kill();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return &self.lines,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{}'s stderr stayed open after it was killed", self.what)
                }
            }
        }
    }

    /// Waits (at most [`WAIT`]) for the process to exit on its own; its exit code.
    pub fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.what);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Asserts the connection is open and nothing arrives on it for 100 ms.
pub fn assert_open_and_silent(client: &mut TcpStream) {
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    match client.read(&mut [0u8; 1]) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("the connection should be open and silent, got {other:?}"),
    }
    client.set_read_timeout(Some(WAIT)).unwrap();
}

/// The peak resident set (`VmHWM` in `/proc/<pid>/status`) of `p`, in bytes.
pub fn peak_rss(p: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.child.id()))
        .expect("read /proc/<pid>/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib * 1024
}

/// A length-framed packet: 4-byte big-endian body length, then the body.
pub fn packet(body: &[u8]) -> Vec<u8> {
    let mut p = (body.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(body);
    p
}

/// Connects with a read timeout so a missing reply fails the test instead of hanging it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads exactly `n` bytes.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read reply");
    buf
}

/// Sends `body` as one packet and returns the echoed packet.
pub fn round_trip(s: &mut TcpStream, body: &[u8]) -> Vec<u8> {
    let p = packet(body);
    s.write_all(&p).unwrap();
    read_n(s, p.len())
}

/// Asserts the peer closes: the next read returns EOF (or a reset).
pub fn assert_closed(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("expected EOF, got data"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected EOF, got {e}"),
    }
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A command running the stock client `name`, killed by `timeout` if it runs longer than
/// [`WAIT`]. Fails the test, naming the Debian package to install, when `name` is not on `PATH`.
pub fn tool(name: &str, package: &str) -> Command {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    assert!(
        on_path,
        "{name} is not installed: it comes with Debian's {package} package \
         (apt-get install -y {package})"
    );
    let mut cmd = Command::new("timeout");
    cmd.arg(WAIT.as_secs().to_string()).arg(name);
    cmd
}

/// Runs `cmd` to completion and returns its standard output; fails the test, with its standard
/// error, if it does not exit with status 0.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Receives records until one of `kind` arrives, answering every DATA request with its echo.
pub fn next_of_kind(mcp: &mut McpEndpoint, msg: &mut Message, kind: Kind) -> RecordHeader {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if !mcp.recv(msg, Some(WAIT)).unwrap() {
            continue;
        }
        let header = *msg.header();
        if header.kind == kind {
            return header;
        }
        if header.kind == Kind::Data {
            let echo = msg.payload().to_vec();
            mcp.reply(&header, &echo).unwrap();
            mcp.flush().unwrap();
        }
    }
    panic!("no {kind:?} record from ccsd");
}

/// The lines of the first ```` ```haproxy ```` block of `docs/deployment.md`: the HAProxy
/// configuration the page tells operators to use, which the HAProxy tests run.
pub fn deployment_haproxy_config() -> String {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deployment.md");
    let markdown = std::fs::read_to_string(&doc).expect("read docs/deployment.md");
    let mut lines = markdown.lines().skip_while(|l| *l != "```haproxy").skip(1);
    let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
    assert!(
        !block.is_empty(),
        "docs/deployment.md has no ```haproxy block"
    );
    block.join("\n") + "\n"
}

/// `config` with each `(from, to)` replaced; fails the test when `from` is not there (the page's
/// configuration changed under the test).
pub fn replace_all(mut config: String, edits: &[(&str, String)]) -> String {
    for (from, to) in edits {
        assert!(
            config.contains(from),
            "the HAProxy configuration lost {from:?}:\n{config}"
        );
        config = config.replace(from, to);
    }
    config
}

/// HAProxy's `show stat` line of server `name` in backend `ccsd`, asked on its stats socket.
pub fn haproxy_server_stat(socket: &Path, name: &str) -> Option<String> {
    let mut conn = std::os::unix::net::UnixStream::connect(socket).ok()?;
    conn.write_all(b"show stat\n").ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    let prefix = format!("ccsd,{name},");
    answer
        .lines()
        .find(|l| l.starts_with(&prefix))
        .map(str::to_owned)
}

/// Whether `haproxy` is on `PATH` (Debian's `haproxy` package; `.ci/deps` installs it).
pub fn haproxy_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("haproxy").is_file()))
}
