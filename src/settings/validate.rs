//! The rules that types alone cannot express: value ranges and rules spanning several keys.
//!
//! Each rule adds a problem starting with the key it concerns and carries on, so one run reports
//! every broken rule.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use super::sections::{
    AdminSettings, BrokerSettings, LimitsSettings, ListenSettings, LogSettings, MAX_WORKERS,
    McpSettings, Proto, ProxyProtocol, QueueSettings, StatsSettings,
};
use super::units::{ByteSize, GIB, KIB, MIB};
use crate::lane::FRAME_HEADER_SIZE;
use crate::record::RECORD_HEADER_SIZE;

/// Bytes every packet costs in a request lane on top of its own length: the 64-byte record header
/// plus the 8-byte frame header of the lane.
const LANE_OVERHEAD: u64 = (RECORD_HEADER_SIZE + FRAME_HEADER_SIZE) as u64;
/// The longest `broker.shutdown_grace` accepted.
const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(600);
/// The longest `broker.idle_spin` accepted.
const MAX_IDLE_SPIN: Duration = Duration::from_millis(10);

/// The largest `listen[i].backlog` accepted (the kernel caps it at `net.core.somaxconn` anyway).
const MAX_BACKLOG: u32 = 65535;
/// The shortest `limits.idle_timeout` other than zero (off).
const MIN_IDLE_TIMEOUT: Duration = Duration::from_millis(10);
/// The longest `limits.half_close_timeout` accepted.
const MAX_HALF_CLOSE_TIMEOUT: Duration = Duration::from_secs(600);
/// The shortest `limits.packet_timeout` other than zero (off).
const MIN_PACKET_TIMEOUT: Duration = Duration::from_millis(10);
/// The longest `limits.packet_timeout` accepted.
const MAX_PACKET_TIMEOUT: Duration = Duration::from_secs(3600);
/// The smallest `limits.max_memory` other than zero (off): below it the fixed reply buffers
/// alone (`docs/operations.md`, "What bounds ccsd's memory") would keep ccsd over it.
const MIN_MAX_MEMORY: u64 = 64 * MIB;
/// The largest `limits.max_memory` accepted.
const MAX_MAX_MEMORY: u64 = 1024 * GIB;
/// The smallest `limits.max_send_buffer`: one full read chunk of replies.
const MIN_SEND_BUFFER: u64 = 64 * KIB;
/// The shortest `mcp.stall_timeout` accepted: shorter would call a busy MCP dead.
const MIN_STALL_TIMEOUT: Duration = Duration::from_millis(100);

/// The smallest `listen[i].http_max_header`: room for a request line and a `Host` field.
const MIN_HTTP_HEADER: u64 = 64;
/// The shortest `listen[i].udp_send_timeout` accepted.
const MIN_UDP_SEND_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest `listen[i].udp_send_timeout` accepted: a reply older than that helps nobody.
const MAX_UDP_SEND_TIMEOUT: Duration = Duration::from_secs(600);

// The maxima below keep every accepted value far from what would overflow a clock reading
// (`Instant + duration`), a multiplication or an allocation; `docs/configuration.md` lists them.

/// The largest `broker.rebalance_max_per_second`.
const MAX_REBALANCE_PER_SECOND: u32 = 10_000;
/// The largest `broker.rebalance_min_load` (load units per second: packets plus KiB read).
const MAX_REBALANCE_MIN_LOAD: u64 = 1_000_000_000_000;
/// The largest `broker.mailbox_capacity`: each worker's mailbox preallocates a 72-byte slot per
/// message, so 65536 is 4.5 MiB per worker.
const MAX_MAILBOX_CAPACITY: usize = 65536;
/// The largest `broker.max_connections` and `listen[i].max_connections`: far above what the
/// open-file limit allows (`fs.nr_open` is 1048576 by default), small enough for every count.
const MAX_CONNECTIONS: usize = 10_000_000;
/// The largest `limits.max_requests_per_second` and `listen[i].max_requests_per_second`.
const MAX_REQUESTS_PER_SECOND: u64 = 1_000_000_000;
/// The largest magnitude of `listen[i].length_adjust`: the largest `max_packet`.
const MAX_LENGTH_ADJUST: u64 = GIB;
/// The longest `limits.idle_timeout`: a week (longer: turn it off with "0s").
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest `admin.idle_timeout`, `stats.log_interval` and `mcp.reply_max_age`: a day.
const MAX_DAY: Duration = Duration::from_secs(24 * 3600);
/// The longest `stats.interval` and `mcp.stall_timeout`: an hour.
const MAX_HOUR: Duration = Duration::from_secs(3600);

/// The sections to validate. `None` stands for a section (or `[[listen]]` table) that failed to
/// deserialize: its problem is already reported, so the rules involving it are skipped.
pub(super) struct Validation<'a> {
    pub(super) broker: Option<&'a BrokerSettings>,
    pub(super) queues: Option<&'a QueueSettings>,
    pub(super) listen: Option<&'a [Option<&'a ListenSettings>]>,
    pub(super) log: Option<&'a LogSettings>,
    pub(super) stats: Option<&'a StatsSettings>,
    pub(super) admin: Option<&'a AdminSettings>,
    pub(super) limits: Option<&'a LimitsSettings>,
    pub(super) mcp: Option<&'a McpSettings>,
    /// The names `listen[i].framing` may take (the settings do not know the framers).
    pub(super) framers: &'a [String],
}

impl Validation<'_> {
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if let Some(broker) = self.broker {
            broker.check(problems);
        }
        if let Some(queues) = self.queues {
            queues.check(problems);
        }
        if let Some(listeners) = self.listen {
            check_listeners(listeners, self.framers, problems);
            if let Some(broker) = self.broker {
                check_worker_sets(broker, listeners, problems);
            }
            if let Some(queues) = self.queues {
                check_lane_holds_packets(queues.capacity, listeners, problems);
            }
        }
        if let Some(log) = self.log {
            log.check(problems);
        }
        if let Some(stats) = self.stats {
            stats.check(problems);
        }
        if let Some(admin) = self.admin {
            admin.check(problems);
        }
        if let Some(limits) = self.limits {
            limits.check(problems);
        }
        if let Some(mcp) = self.mcp {
            mcp.check(problems);
        }
    }
}

impl LogSettings {
    fn check(&self, problems: &mut Vec<String>) {
        if self.stderr == Some(false) && self.file.is_none() {
            problems.push(
                "log.stderr: false needs log.file, or nothing would be logged (remove log.stderr \
                 or set log.file)"
                    .into(),
            );
        }
    }
}

impl AdminSettings {
    fn check(&self, problems: &mut Vec<String>) {
        if self.enabled && self.token.is_none() && !self.addr.ip().is_loopback() {
            problems.push(format!(
                "admin.token: required when admin.addr ({}) is not a loopback address",
                self.addr
            ));
        }
        if self.idle_timeout < Duration::from_secs(1) {
            problems.push(format!(
                "admin.idle_timeout: at least 1s, got {:?}",
                self.idle_timeout
            ));
        }
        if !(MIN_ADMIN_LOGIN_TIMEOUT..=MAX_ADMIN_LOGIN_TIMEOUT).contains(&self.login_timeout) {
            problems.push(format!(
                "admin.login_timeout: from {MIN_ADMIN_LOGIN_TIMEOUT:?} to {MAX_ADMIN_LOGIN_TIMEOUT:?}, got {:?}",
                self.login_timeout
            ));
        }
        if let Some(path) = &self.unix {
            let len = path.as_os_str().len();
            if len > MAX_UNIX_PATH {
                problems.push(format!(
                    "admin.unix: a socket path holds at most {MAX_UNIX_PATH} bytes, {} has {len}",
                    path.display()
                ));
            }
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                problems.push(format!(
                    "admin.unix: the directory {} does not exist",
                    dir.display()
                ));
            }
        }
        at_most(
            problems,
            "admin.idle_timeout",
            self.idle_timeout,
            MAX_DAY,
            "24h",
        );
    }
}

/// The shortest `admin.login_timeout`: a client needs a moment to send its first line.
const MIN_ADMIN_LOGIN_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest `admin.login_timeout`: a silent client should not hold a slot longer than this.
const MAX_ADMIN_LOGIN_TIMEOUT: Duration = Duration::from_secs(3600);
/// The longest Unix socket path (`sun_path` holds 108 bytes with the terminating NUL).
const MAX_UNIX_PATH: usize = 107;

/// `listen[i].workers`: TCP only, not empty, no worker twice, every worker one that runs.
fn check_worker_sets(
    broker: &BrokerSettings,
    listeners: &[Option<&ListenSettings>],
    problems: &mut Vec<String>,
) {
    let count = broker.worker_count();
    for (i, listen) in listeners.iter().enumerate() {
        let Some(workers) = listen.and_then(|l| l.workers.as_ref().map(|w| (l.proto, w))) else {
            continue;
        };
        match workers {
            (Proto::Udp, _) => problems.push(format!(
                "listen[{i}].workers: TCP listeners only; a UDP listener's datagrams are handled on the main thread, not by workers (remove it)"
            )),
            (Proto::Tcp, list) if list.is_empty() => problems.push(format!(
                "listen[{i}].workers: empty; list at least one worker, or remove the key to use every worker"
            )),
            (Proto::Tcp, list) => {
                if let Some(&w) = list.iter().find(|&&w| w >= count) {
                    let why = if broker.workers.is_some() {
                        "broker.workers"
                    } else {
                        "broker.workers is not set: one per core"
                    };
                    problems.push(format!(
                        "listen[{i}].workers: worker {w} does not exist: there are {count} workers, 0 to {} ({why})",
                        count - 1
                    ));
                }
                // Where each worker was listed first (linear: the list may be long).
                let mut first = [None; MAX_WORKERS + 1];
                let twice = list.iter().enumerate().find_map(|(k, &w)| {
                    let at = first.get_mut(w)?;
                    match *at {
                        Some(j) => Some((w, j, k)),
                        None => {
                            *at = Some(k);
                            None
                        }
                    }
                });
                if let Some((w, j, k)) = twice {
                    problems.push(format!(
                        "listen[{i}].workers: worker {w} is listed twice (at positions {j} and {k})"
                    ));
                }
            }
        }
    }
}

fn check_lane_holds_packets(
    capacity: ByteSize,
    listeners: &[Option<&ListenSettings>],
    problems: &mut Vec<String>,
) {
    for (i, listen) in listeners.iter().enumerate() {
        let Some(listen) = listen else { continue };
        if listen.packet_limit().saturating_add(LANE_OVERHEAD) > capacity.bytes() {
            problems.push(format!(
                "queues.capacity: {capacity} cannot hold listen[{i}].max_packet ({}) plus {LANE_OVERHEAD} bytes of headers",
                ByteSize(listen.packet_limit())
            ));
        }
    }
}

impl BrokerSettings {
    fn check(&self, problems: &mut Vec<String>) {
        match self.workers {
            Some(0) => problems.push("broker.workers: must be at least 1".to_owned()),
            Some(n) if n > MAX_WORKERS => problems.push(format!(
                "broker.workers: must be at most {MAX_WORKERS} (flow ids carry 8 bits of request lane, and the main thread has a lane after the workers'), got {n}"
            )),
            _ => {}
        }
        if !self.unlocked_mode {
            problems.push(
                "broker.unlocked_mode: locked mode is not available yet; set it to true".to_owned(),
            );
        }
        if self.mailbox_capacity < 16 {
            problems.push(format!(
                "broker.mailbox_capacity: must be at least 16, got {}",
                self.mailbox_capacity
            ));
        }
        if self.mailbox_capacity > MAX_MAILBOX_CAPACITY {
            problems.push(format!(
                "broker.mailbox_capacity: must be at most {MAX_MAILBOX_CAPACITY}, got {}",
                self.mailbox_capacity
            ));
        }
        if self.max_connections == 0 {
            problems.push("broker.max_connections: must be at least 1".to_owned());
        }
        if self.max_connections > MAX_CONNECTIONS {
            problems.push(format!(
                "broker.max_connections: must be at most {MAX_CONNECTIONS}, got {}",
                self.max_connections
            ));
        }
        if self.shutdown_grace > MAX_SHUTDOWN_GRACE {
            problems.push(format!(
                "broker.shutdown_grace: at most 10m, got {:?}",
                self.shutdown_grace
            ));
        }
        let threshold = self.rebalance_threshold.0;
        if !(threshold.is_finite() && threshold > 1.0 && threshold <= MAX_WORKERS as f64) {
            problems.push(format!(
                "broker.rebalance_threshold: must be a number above 1 and at most {MAX_WORKERS} (the hottest worker's load against the mean; it is never more than the worker count), got {threshold}"
            ));
        }
        at_most(
            problems,
            "broker.rebalance_after",
            self.rebalance_after,
            MAX_HOUR,
            "1h",
        );
        if !(1..=MAX_REBALANCE_PER_SECOND).contains(&self.rebalance_max_per_second) {
            problems.push(format!(
                "broker.rebalance_max_per_second: must be between 1 and {MAX_REBALANCE_PER_SECOND}, got {} (to stop automatic moves set broker.rebalance = false)",
                self.rebalance_max_per_second
            ));
        }
        if self.rebalance_min_load > MAX_REBALANCE_MIN_LOAD {
            problems.push(format!(
                "broker.rebalance_min_load: must be at most {MAX_REBALANCE_MIN_LOAD}, got {}",
                self.rebalance_min_load
            ));
        }
        if self.idle_spin > MAX_IDLE_SPIN {
            problems.push(format!(
                "broker.idle_spin: at most 10ms, got {:?} (longer spinning only burns CPU)",
                self.idle_spin
            ));
        }
    }
}

impl QueueSettings {
    fn check(&self, problems: &mut Vec<String>) {
        let name = &self.name;
        if name.is_empty() {
            problems.push("queues.name: must not be empty".to_owned());
        } else if name.len() > 128 {
            problems.push(format!(
                "queues.name: must be at most 128 characters, got {}",
                name.len()
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            problems.push(format!(
                "queues.name: {name:?} may only contain A-Z, a-z, 0-9, '.', '_' and '-'"
            ));
        }
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => problems.push(format!(
                "queues.dir: {} is not a directory",
                self.dir.display()
            )),
            Err(err) => problems.push(format!("queues.dir: {}: {err}", self.dir.display())),
        }
        let capacity = self.capacity;
        if !capacity.bytes().is_power_of_two() {
            problems.push(format!(
                "queues.capacity: must be a power of two, got {capacity}"
            ));
        }
        if !(64 * KIB..=4 * GIB).contains(&capacity.bytes()) {
            problems.push(format!(
                "queues.capacity: must be between 64KiB and 4GiB, got {capacity}"
            ));
        }
    }
}

fn check_listeners(
    listeners: &[Option<&ListenSettings>],
    framers: &[String],
    problems: &mut Vec<String>,
) {
    if listeners.is_empty() {
        problems.push("listen: at least one [[listen]] table is required".to_owned());
    }
    for (i, listen) in listeners.iter().enumerate() {
        let Some(listen) = listen else { continue };
        listen.check(i, framers, problems);
        let port = listen.addr.port();
        // TCP and UDP ports are separate: one address may have a listener of each.
        if let Some(j) = listeners[..i].iter().position(|other| {
            port != 0
                && other
                    .is_some_and(|other| other.addr == listen.addr && other.proto == listen.proto)
        }) {
            problems.push(format!(
                "listen[{i}].addr: {} is already used by listen[{j}]",
                listen.addr
            ));
        } else if let Some(j) = listeners[..i]
            .iter()
            .position(|other| other.is_some_and(|other| ipv4_overlap(other, listen)))
        {
            let dual = if listen.addr.is_ipv6() { i } else { j };
            problems.push(format!(
                "listen[{i}].addr: {} overlaps listen[{j}].addr {}: listen[{dual}] has v6only = false, so it takes IPv4 clients on port {port} too; set v6only = true there (or remove one)",
                listen.addr,
                listeners[j].map_or(listen.addr, |other| other.addr)
            ));
        }
    }
}

/// The IPv4 address a listener takes clients on: its own for an IPv4 address; for an IPv6 one
/// with `v6only = false`, `0.0.0.0` for `[::]` and the embedded address for `[::ffff:a.b.c.d]`.
fn ipv4_taken(listen: &ListenSettings) -> Option<Ipv4Addr> {
    match listen.addr.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) if !listen.v6only && ip.is_unspecified() => Some(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(ip) if !listen.v6only => ip.to_ipv4_mapped(),
        IpAddr::V6(_) => None,
    }
}

/// Whether two listeners of the same protocol and port, one of them an IPv6 listener with
/// `v6only = false`, would both take the same IPv4 clients: the second bind fails (unless both set
/// `reuse_port`, which shares the port on purpose).
fn ipv4_overlap(a: &ListenSettings, b: &ListenSettings) -> bool {
    let port = a.addr.port();
    let dual = |l: &ListenSettings| l.addr.is_ipv6() && !l.v6only;
    if port == 0 || port != b.addr.port() || a.proto != b.proto || a.addr == b.addr {
        return false;
    }
    if !(dual(a) || dual(b)) || (a.reuse_port && b.reuse_port) {
        return false;
    }
    match (ipv4_taken(a), ipv4_taken(b)) {
        (Some(x), Some(y)) => x == y || x.is_unspecified() || y.is_unspecified(),
        _ => false,
    }
}

impl ListenSettings {
    fn check_proxy_protocol(&self, i: usize, problems: &mut Vec<String>) {
        match (self.proxy_protocol, self.proto) {
            (ProxyProtocol::Off, _) if !self.proxy_from.is_empty() => problems.push(format!(
                "listen[{i}].proxy_from: set while proxy_protocol = \"off\"; set proxy_protocol to \"v1\", \"v2\" or \"any\", or remove proxy_from"
            )),
            (ProxyProtocol::Off, _) => {}
            (ProxyProtocol::On(_), Proto::Udp) => problems.push(format!(
                "listen[{i}].proxy_protocol: TCP listeners only; a UDP datagram carries no PROXY header"
            )),
            (ProxyProtocol::On(_), Proto::Tcp) if self.proxy_from.is_empty() => {
                problems.push(format!(
                    "listen[{i}].proxy_from: empty; name the load balancers allowed to send the PROXY header (e.g. [\"10.0.0.0/8\"]): any other source could claim to be any client"
                ))
            }
            (ProxyProtocol::On(_), Proto::Tcp) => {}
        }
    }

    fn check(&self, i: usize, framers: &[String], problems: &mut Vec<String>) {
        if !(64 * KIB..=GIB).contains(&self.udp_send_queue.bytes()) {
            problems.push(format!(
                "listen[{i}].udp_send_queue: must be between 64KiB and 1GiB, got {}",
                self.udp_send_queue
            ));
        }
        if !(MIN_UDP_SEND_TIMEOUT..=MAX_UDP_SEND_TIMEOUT).contains(&self.udp_send_timeout) {
            problems.push(format!(
                "listen[{i}].udp_send_timeout: must be between 1ms and 10m, got {:?}",
                self.udp_send_timeout
            ));
        }
        self.check_proxy_protocol(i, problems);
        // systemd's rule for FileDescriptorName= (LISTEN_FDNAMES is ':'-separated).
        let fdname_char = |c: char| c.is_ascii() && !c.is_ascii_control() && c != ':';
        if self.name.len() > 255 || !self.name.chars().all(fdname_char) {
            problems.push(format!(
                "listen[{i}].name: {:?} can never match a systemd FileDescriptorName= (at most 255 printable ASCII characters, no ':')",
                self.name
            ));
        }
        if !framers.contains(&self.framing) {
            problems.push(format!(
                "listen[{i}].framing: unknown framing {:?}, known framings: {}",
                self.framing,
                framers.join(", ")
            ));
        }
        let max_packet = self.max_packet;
        if !(1..=GIB).contains(&max_packet.bytes()) {
            problems.push(format!(
                "listen[{i}].max_packet: must be between 1B and 1GiB, got {max_packet}"
            ));
        }
        let max_header = self.http_max_header;
        if !(MIN_HTTP_HEADER..=GIB).contains(&max_header.bytes()) {
            problems.push(format!(
                "listen[{i}].http_max_header: must be between {} and 1GiB, got {max_header}",
                ByteSize(MIN_HTTP_HEADER)
            ));
        }
        if !(1..=MAX_BACKLOG).contains(&self.backlog) {
            problems.push(format!(
                "listen[{i}].backlog: must be between 1 and {MAX_BACKLOG}, got {}",
                self.backlog
            ));
        }
        if self.max_connections > MAX_CONNECTIONS {
            problems.push(format!(
                "listen[{i}].max_connections: must be at most {MAX_CONNECTIONS}, got {}",
                self.max_connections
            ));
        }
        if self.max_requests_per_second > MAX_REQUESTS_PER_SECOND {
            problems.push(format!(
                "listen[{i}].max_requests_per_second: must be at most {MAX_REQUESTS_PER_SECOND}, got {}",
                self.max_requests_per_second
            ));
        }
        if self.length_adjust.unsigned_abs() > MAX_LENGTH_ADJUST {
            problems.push(format!(
                "listen[{i}].length_adjust: must be between -{MAX_LENGTH_ADJUST} and {MAX_LENGTH_ADJUST} (1GiB), got {}",
                self.length_adjust
            ));
        }
        if ![1, 2, 4, 8].contains(&self.length_size) {
            problems.push(format!(
                "listen[{i}].length_size: must be 1, 2, 4 or 8, got {}",
                self.length_size
            ));
        }
        if self.length_offset > 1024 {
            problems.push(format!(
                "listen[{i}].length_offset: must be at most 1024, got {}",
                self.length_offset
            ));
        } else {
            let header = self.length_offset as u64 + u64::from(self.length_size);
            if max_packet.bytes() != 0 && max_packet.bytes() < header {
                problems.push(format!(
                    "listen[{i}].max_packet: {max_packet} is smaller than the length header (length_offset + length_size = {header} bytes)"
                ));
            }
        }
    }
}

impl StatsSettings {
    fn check(&self, problems: &mut Vec<String>) {
        if self.interval < Duration::from_millis(10) {
            problems.push(format!(
                "stats.interval: must be at least 10ms, got {:?}",
                self.interval
            ));
        }
        at_most(problems, "stats.interval", self.interval, MAX_HOUR, "1h");
        at_most(
            problems,
            "stats.log_interval",
            self.log_interval,
            MAX_DAY,
            "24h",
        );
    }
}

impl LimitsSettings {
    fn check(&self, problems: &mut Vec<String>) {
        if !self.idle_timeout.is_zero() && self.idle_timeout < MIN_IDLE_TIMEOUT {
            problems.push(format!(
                "limits.idle_timeout: must be \"0s\" (off) or at least 10ms, got {:?}",
                self.idle_timeout
            ));
        }
        if self.half_close_timeout > MAX_HALF_CLOSE_TIMEOUT {
            problems.push(format!(
                "limits.half_close_timeout: at most 10m, got {:?}",
                self.half_close_timeout
            ));
        }
        at_most(
            problems,
            "limits.idle_timeout",
            self.idle_timeout,
            MAX_IDLE_TIMEOUT,
            "7 days (168h)",
        );
        if self.max_requests_per_second > MAX_REQUESTS_PER_SECOND {
            problems.push(format!(
                "limits.max_requests_per_second: must be at most {MAX_REQUESTS_PER_SECOND}, got {}",
                self.max_requests_per_second
            ));
        }
        let send = self.max_send_buffer;
        if !(MIN_SEND_BUFFER..=4 * GIB).contains(&send.bytes()) {
            problems.push(format!(
                "limits.max_send_buffer: must be between 64KiB and 4GiB, got {send}"
            ));
        }
        let packet = self.packet_timeout;
        if !packet.is_zero() && !(MIN_PACKET_TIMEOUT..=MAX_PACKET_TIMEOUT).contains(&packet) {
            problems.push(format!(
                "limits.packet_timeout: must be \"0s\" (off) or between 10ms and 1h, got {packet:?}"
            ));
        }
        let memory = self.max_memory;
        if memory.bytes() != 0 && !(MIN_MAX_MEMORY..=MAX_MAX_MEMORY).contains(&memory.bytes()) {
            problems.push(format!(
                "limits.max_memory: must be \"0\" (off) or between 64MiB and 1024GiB, got {memory}"
            ));
        }
    }
}

impl McpSettings {
    fn check(&self, problems: &mut Vec<String>) {
        if self.stall_timeout < MIN_STALL_TIMEOUT {
            problems.push(format!(
                "mcp.stall_timeout: must be at least 100ms, got {:?}",
                self.stall_timeout
            ));
        }
        at_most(
            problems,
            "mcp.stall_timeout",
            self.stall_timeout,
            MAX_HOUR,
            "1h",
        );
        at_most(
            problems,
            "mcp.reply_max_age",
            self.reply_max_age,
            MAX_DAY,
            "24h",
        );
    }
}

/// Adds `"{key}: must be at most {max_text}, got {value:?}"` when `value` is over `max`.
fn at_most(problems: &mut Vec<String>, key: &str, value: Duration, max: Duration, max_text: &str) {
    if value > max {
        problems.push(format!("{key}: must be at most {max_text}, got {value:?}"));
    }
}
