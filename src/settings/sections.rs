//! The section structs of the settings file, their defaults, and how their fields are read.
//!
//! Each `[section]` is a `#[serde(default)]` struct, so a key left out takes the value its
//! `Default` gives; `settings/default.toml` must say the same. Keywords, addresses, log levels,
//! durations and optional paths are read by the small deserializers at the end of this file.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::proxy_protocol::{Accepted, SourceNetwork};

use super::units::{ByteSize, KIB, MIB, parse_duration};

/// Flow ids carry the request lane's index in 8 bits: workers `0..=254` and the main thread's
/// lane right after the last worker (255 at most).
pub(super) const MAX_WORKERS: usize = 255;

/// `[broker]`: the worker threads and how connections are spread over them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSettings {
    /// Worker threads (1 to 255); `None` means one per core, see [`BrokerSettings::worker_count`].
    pub workers: Option<usize>,
    /// Whether workers run without locks; `false` (locked mode) is not available yet.
    pub unlocked_mode: bool,
    /// How new connections are assigned to workers.
    pub dispatch: Dispatch,
    /// Messages each worker's mailbox holds.
    pub mailbox_capacity: usize,
    /// How long a thread keeps polling without sleeping after it last had work (0: sleep at
    /// once). Spinning trades CPU for latency: each hop of a request skips a sleep and a wake-up.
    #[serde(deserialize_with = "duration")]
    pub idle_spin: Duration,
    /// On SIGTERM/SIGINT: how long connections may wait for the replies to requests they already
    /// sent before they are closed anyway.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Connections open at once over all listeners; the acceptor closes any connection beyond
    /// it at once. ccsd raises its open-file limit to fit it at start.
    pub max_connections: usize,
    /// File the running ccsd's pid is written to (after the instance lock is taken) and removed
    /// from at exit; `None` (or an empty string) means no pid file.
    #[serde(deserialize_with = "optional_path")]
    pub pid_file: Option<PathBuf>,
    /// Whether connections are moved between workers on their own when one worker stays much
    /// hotter than the others (admin `rebalance` runs one round either way).
    pub rebalance: bool,
    /// The hottest worker's load against the mean load that counts as an imbalance (above 1).
    pub rebalance_threshold: Ratio,
    /// How long an imbalance must last before connections are moved.
    #[serde(deserialize_with = "duration")]
    pub rebalance_after: Duration,
    /// Connections moved per second at most, over all workers.
    pub rebalance_max_per_second: u32,
    /// Below this load of the hottest worker (load units per second: packets plus KiB read)
    /// nothing is moved.
    pub rebalance_min_load: u64,
}

/// A ratio of two loads (`broker.rebalance_threshold`): a finite number, compared bit for bit.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(transparent)]
pub struct Ratio(pub f64);

impl PartialEq for Ratio {
    fn eq(&self, other: &Ratio) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Ratio {}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl BrokerSettings {
    /// The number of worker threads to start: `workers` if set, otherwise the number of cores
    /// (1 if it cannot be determined), at most 255.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            thread::available_parallelism()
                .map_or(1, NonZeroUsize::get)
                .min(MAX_WORKERS)
        })
    }
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            workers: None,
            unlocked_mode: true,
            dispatch: Dispatch::default(),
            mailbox_capacity: 4096,
            idle_spin: Duration::ZERO,
            shutdown_grace: Duration::from_secs(5),
            max_connections: 100_000,
            pid_file: None,
            rebalance: false,
            rebalance_threshold: Ratio(1.5),
            rebalance_after: Duration::from_secs(3),
            rebalance_max_per_second: 10,
            rebalance_min_load: 1000,
        }
    }
}

/// How new connections are assigned to workers (`broker.dispatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// `"fd_modulo"`: the worker is the connection's file descriptor modulo the worker count.
    #[default]
    FdModulo,
    /// `"round_robin"`: each worker in turn.
    RoundRobin,
    /// `"least_connections"`: the worker holding the fewest connections.
    LeastConnections,
    /// `"least_loaded"`: the worker with the least measured load (packets and bytes read per
    /// second); of equal loads, the one holding the fewest connections.
    LeastLoaded,
}

impl<'de> Deserialize<'de> for Dispatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        keyword(
            deserializer,
            &[
                ("fd_modulo", Dispatch::FdModulo),
                ("round_robin", Dispatch::RoundRobin),
                ("least_connections", Dispatch::LeastConnections),
                ("least_loaded", Dispatch::LeastLoaded),
            ],
        )
    }
}

/// `[queues]`: the shared-memory lanes to and from the business process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Directory holding the lanes and their FIFOs.
    pub dir: PathBuf,
    /// Prefix of every shared-memory object and FIFO name.
    pub name: String,
    /// Bytes per lane.
    pub capacity: ByteSize,
    /// What a worker does with a packet when its request lane is full.
    pub on_full: OnFull,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            dir: PathBuf::from("/dev/shm"),
            name: "ccsd".to_owned(),
            capacity: ByteSize(32 * MIB),
            on_full: OnFull::default(),
        }
    }
}

/// What a worker does with a packet when its request lane is full (`queues.on_full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// `"backpressure"`: stop reading that client until the lane has room; nothing is lost and
    /// TCP flow control slows the client down.
    #[default]
    Backpressure,
    /// `"drop"`: drop the packet (and count it).
    Drop,
    /// `"close"`: close the connection the packet came from.
    Close,
}

impl<'de> Deserialize<'de> for OnFull {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        keyword(
            deserializer,
            &[
                ("backpressure", OnFull::Backpressure),
                ("drop", OnFull::Drop),
                ("close", OnFull::Close),
            ],
        )
    }
}

/// `[[listen]]`: one listening socket and how packets are cut out of its connections' bytes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenSettings {
    /// Address to listen on; port 0 lets the system pick one.
    #[serde(deserialize_with = "socket_addr")]
    pub addr: SocketAddr,
    /// Transport protocol.
    pub proto: Proto,
    /// Under socket activation: the `FileDescriptorName=` of the socket systemd passes for this
    /// listener (empty: the passed socket bound to `addr`, if any).
    pub name: String,
    /// Name of the framing (see [`crate::framing::known_framings`]).
    pub framing: String,
    /// Largest packet accepted, length prefix included.
    pub max_packet: ByteSize,
    /// Byte offset of the length field in the packet.
    pub length_offset: usize,
    /// Size of the length field in bytes: 1, 2, 4 or 8.
    pub length_size: u8,
    /// Byte order of the length field.
    pub length_endian: Endian,
    /// What the value of the length field counts.
    pub length_includes: LengthIncludes,
    /// Added to the total packet length computed from the length field.
    pub length_adjust: i64,
    /// Largest request head (request line and header fields) the `http` framing accepts.
    pub http_max_header: ByteSize,
    /// Whether the `http` framing answers `Expect: 100-continue` with an interim
    /// `HTTP/1.1 100 Continue` once the head is in and the body is not.
    pub http_continue: bool,
    /// Connections open at once on this listener (0: only `broker.max_connections` applies).
    pub max_connections: usize,
    /// Pending connections the kernel queues for `accept` (`listen(2)` backlog).
    pub backlog: u32,
    /// Whether to set `SO_REUSEPORT`, so several processes can listen on the same address.
    pub reuse_port: bool,
    /// IPv6 addresses only: whether to set `IPV6_V6ONLY`, so `[::]:P` takes IPv6 clients only
    /// and an IPv4 listener can share port P; `false` makes `[::]:P` take IPv4 clients too.
    pub v6only: bool,
    /// Packets this listener's connections may send together per one-second window; the
    /// connection whose packet goes over is closed (reason overload). 0: no limit.
    pub max_requests_per_second: u64,
    /// UDP only: most bytes of replies waiting for the socket to take them (each datagram counts
    /// its payload plus 64 bytes); a reply beyond it is dropped.
    pub udp_send_queue: ByteSize,
    /// UDP only: a reply that waited this long for the socket is dropped.
    #[serde(deserialize_with = "duration")]
    pub udp_send_timeout: Duration,
    /// TCP only: whether each connection starts with a PROXY protocol header naming the client a
    /// load balancer relays, and which versions are accepted.
    pub proxy_protocol: ProxyProtocol,
    /// The sources allowed to send that header (addresses or networks such as `"10.0.0.0/8"`);
    /// a connection from any other source is closed.
    #[serde(deserialize_with = "source_networks")]
    pub proxy_from: Vec<SourceNetwork>,
    /// TCP only: the workers this listener's connections may live on (every dispatch picks among
    /// them, no rebalancing moves a connection out of them); `None`: every worker.
    pub workers: Option<Vec<usize>>,
}

/// The largest UDP payload (an IPv6 datagram's length field is 16 bits).
pub const MAX_DATAGRAM: u64 = 65535;

impl ListenSettings {
    /// The largest packet this listener hands to MCP: `max_packet`, and for UDP at most
    /// [`MAX_DATAGRAM`] (no datagram is larger).
    pub fn packet_limit(&self) -> u64 {
        match self.proto {
            Proto::Tcp => self.max_packet.bytes(),
            Proto::Udp => self.max_packet.bytes().min(MAX_DATAGRAM),
        }
    }
}

impl Default for ListenSettings {
    fn default() -> Self {
        ListenSettings {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 7300)),
            proto: Proto::default(),
            name: String::new(),
            framing: "length".to_owned(),
            max_packet: ByteSize(16 * MIB),
            length_offset: 0,
            length_size: 4,
            length_endian: Endian::default(),
            length_includes: LengthIncludes::default(),
            length_adjust: 0,
            http_max_header: ByteSize(8 * KIB),
            http_continue: true,
            max_connections: 0,
            backlog: 1024,
            reuse_port: false,
            v6only: true,
            max_requests_per_second: 0,
            udp_send_queue: ByteSize(MIB),
            udp_send_timeout: Duration::from_secs(1),
            proxy_protocol: ProxyProtocol::Off,
            proxy_from: Vec::new(),
            workers: None,
        }
    }
}

/// Whether a listener's connections start with a PROXY protocol header
/// (`listen[i].proxy_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyProtocol {
    /// `"off"`: no header; the connection's peer is the client.
    #[default]
    Off,
    /// `"v1"`, `"v2"`, `"any"`: the header versions accepted.
    On(Accepted),
}

impl<'de> Deserialize<'de> for ProxyProtocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        keyword(
            deserializer,
            &[
                ("off", ProxyProtocol::Off),
                ("v1", ProxyProtocol::On(Accepted::V1)),
                ("v2", ProxyProtocol::On(Accepted::V2)),
                ("any", ProxyProtocol::On(Accepted::Any)),
            ],
        )
    }
}

fn source_networks<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SourceNetwork>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| text.trim().parse().map_err(de::Error::custom))
        .collect()
}

/// Transport protocol of a listener (`listen[i].proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    /// `"tcp"`.
    #[default]
    Tcp,
    /// `"udp"`: every datagram is one packet; no framing.
    Udp,
}

impl<'de> Deserialize<'de> for Proto {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        keyword(deserializer, &[("tcp", Proto::Tcp), ("udp", Proto::Udp)])
    }
}

/// Byte order of a length field (`listen[i].length_endian`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endian {
    /// `"big"`: most significant byte first (network order).
    #[default]
    Big,
    /// `"little"`: least significant byte first.
    Little,
}

impl<'de> Deserialize<'de> for Endian {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        keyword(
            deserializer,
            &[("big", Endian::Big), ("little", Endian::Little)],
        )
    }
}

/// What the value of a length field counts (`listen[i].length_includes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LengthIncludes {
    /// `"body"`: the bytes after the length field.
    #[default]
    Body,
    /// `"field"`: the length field itself and the bytes after it.
    Field,
    /// `"all"`: the whole packet from its first byte.
    All,
}

impl<'de> Deserialize<'de> for LengthIncludes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        keyword(
            deserializer,
            &[
                ("body", LengthIncludes::Body),
                ("field", LengthIncludes::Field),
                ("all", LengthIncludes::All),
            ],
        )
    }
}

/// `[mcp]`: how ccsd watches the business process and what it does when MCP fails.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpSettings {
    /// MCP counts as down when records wait in a request lane whose head has not moved for
    /// this long (also when its consumer process no longer exists).
    #[serde(deserialize_with = "duration")]
    pub stall_timeout: Duration,
    /// What workers do with new packets while MCP is down.
    pub when_down: WhenDown,
    /// Replies older than this (by their header's `timestamp_ns`) when the bridge reads them are
    /// dropped; zero: no limit.
    #[serde(deserialize_with = "duration")]
    pub reply_max_age: Duration,
    /// Send MCP a connect record (kind 2) for every new connection.
    pub connect_events: bool,
    /// Send MCP a disconnect record (reason overload, flow 0) for every connection the acceptor
    /// closes at once (connection limit, full worker mailbox).
    pub overload_notices: bool,
}

impl Default for McpSettings {
    fn default() -> Self {
        McpSettings {
            stall_timeout: Duration::from_secs(10),
            when_down: WhenDown::default(),
            reply_max_age: Duration::ZERO,
            connect_events: false,
            overload_notices: false,
        }
    }
}

/// What workers do with new packets while MCP is down (`mcp.when_down`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenDown {
    /// `"queue"`: keep queueing requests for MCP's return; a full lane is handled by
    /// `queues.on_full`.
    #[default]
    Queue,
    /// `"refuse"`: drop new packets (counted) while MCP is down; clients stay connected.
    Refuse,
}

impl<'de> Deserialize<'de> for WhenDown {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        keyword(
            deserializer,
            &[("queue", WhenDown::Queue), ("refuse", WhenDown::Refuse)],
        )
    }
}

/// `[log]`: the diagnostic log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Least severe level written.
    #[serde(deserialize_with = "level_filter")]
    pub level: log::LevelFilter,
    /// Log file; `None` (or an empty string) means no log file.
    #[serde(deserialize_with = "optional_path")]
    pub file: Option<PathBuf>,
    /// Whether log lines also go to stderr; `None` (unset): only when there is no log file, so
    /// that a service with a log file does not write every line twice (file and journal).
    pub stderr: Option<bool>,
}

impl LogSettings {
    /// Whether log lines go to stderr: `stderr` if set, else only without a log file.
    pub fn to_stderr(&self) -> bool {
        self.stderr.unwrap_or(self.file.is_none())
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: log::LevelFilter::Info,
            file: None,
            stderr: None,
        }
    }
}

/// `[stats]`: periodic statistics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsSettings {
    /// How often statistics are gathered and the status file rewritten.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// JSON status file, replaced atomically; `None` (or an empty string) means none.
    #[serde(deserialize_with = "optional_path")]
    pub file: Option<PathBuf>,
    /// How often the one-line summary is logged at info level (at every interval it is logged at
    /// debug level); zero: never at info.
    #[serde(deserialize_with = "duration")]
    pub log_interval: Duration,
}

impl Default for StatsSettings {
    fn default() -> Self {
        StatsSettings {
            interval: Duration::from_secs(1),
            file: None,
            log_interval: Duration::from_secs(60),
        }
    }
}

/// `[admin]`: the operators' port (a line protocol, and `GET /metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Whether the admin port is opened at all.
    pub enabled: bool,
    /// Address of the admin port; a non-loopback address requires `token`.
    #[serde(deserialize_with = "socket_addr")]
    pub addr: SocketAddr,
    /// Shared secret clients send first (`auth TOKEN`; HTTP: `Authorization: Bearer TOKEN`);
    /// `None` (or an empty string): no authentication, allowed on loopback addresses only.
    #[serde(deserialize_with = "optional_string")]
    pub token: Option<String>,
    /// An admin client that sends nothing for this long is closed.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// An admin client that has not authenticated (with `token`) or sent a command (without)
    /// this long after it connected is closed, so silent clients cannot hold the slots.
    #[serde(deserialize_with = "duration")]
    pub login_timeout: Duration,
    /// An admin Unix socket serving the same commands (mode 0600, so only ccsd's user and root
    /// can connect; no token asked); `None` (or an empty string): none.
    #[serde(deserialize_with = "optional_path")]
    pub unix: Option<PathBuf>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            enabled: true,
            addr: SocketAddr::from(([127, 0, 0, 1], 7301)),
            token: None,
            idle_timeout: Duration::from_secs(60),
            login_timeout: Duration::from_secs(5),
            unix: None,
        }
    }
}

/// `[limits]`: what one client connection may cost before ccsd closes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSettings {
    /// A connection with neither a read of client bytes nor a write of reply bytes for this long
    /// is closed (reason timeout); zero turns the timeout off.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// A connection whose unwritten replies exceed this many bytes is closed (reason overload):
    /// its client does not read what it asked for.
    pub max_send_buffer: ByteSize,
    /// A connection sending more packets than this within one second is closed (reason
    /// overload); 0 turns the limit off.
    pub max_requests_per_second: u64,
    /// After a client shuts down its sending side, how long its connection is kept for the
    /// replies to the requests it sent; zero: closed at once.
    #[serde(deserialize_with = "duration")]
    pub half_close_timeout: Duration,
    /// A connection whose unfinished packet began this long ago is closed (reason timeout),
    /// however steadily its bytes trickle in; zero turns the timeout off.
    #[serde(deserialize_with = "duration")]
    pub packet_timeout: Duration,
    /// Most bytes all connections' receive and send buffers and the replies on their way to the
    /// workers may hold together; past it ccsd stops reading clients, refuses new connections and
    /// closes the largest holders. Zero turns the ceiling off.
    pub max_memory: ByteSize,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        LimitsSettings {
            idle_timeout: Duration::from_secs(60),
            max_send_buffer: ByteSize(4 * MIB),
            max_requests_per_second: 0,
            half_close_timeout: Duration::from_secs(2),
            packet_timeout: Duration::from_secs(30),
            max_memory: ByteSize(0),
        }
    }
}

/// Reads an optional string; an empty string means `None`.
fn optional_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text.filter(|t| !t.is_empty()))
}

/// Deserializes one of a fixed set of lower-case keywords (case-insensitively).
fn keyword<'de, D: Deserializer<'de>, T: Copy>(
    deserializer: D,
    choices: &[(&str, T)],
) -> Result<T, D::Error> {
    let text = String::deserialize(deserializer)?;
    let wanted = text.trim();
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
        .map(|&(_, value)| value)
        .ok_or_else(|| {
            let names: Vec<String> = choices
                .iter()
                .map(|(name, _)| format!("{name:?}"))
                .collect();
            de::Error::custom(format!(
                "unknown value {text:?}, expected one of {}",
                names.join(", ")
            ))
        })
}

fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.trim().parse().map_err(|_| {
        de::Error::custom(format!(
            "invalid socket address {text:?}, expected an IP address and a port such as \"127.0.0.1:7300\" or \"[::1]:7300\""
        ))
    })
}

fn level_filter<'de, D: Deserializer<'de>>(deserializer: D) -> Result<log::LevelFilter, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.trim().parse().map_err(|_| {
        de::Error::custom(format!(
            "unknown log level {text:?}, expected one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\""
        ))
    })
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(de::Error::custom)
}

/// An empty string means "none", so an environment variable can switch a file off.
fn optional_path<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PathBuf>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text.filter(|text| !text.is_empty()).map(PathBuf::from))
}
