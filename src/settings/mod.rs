//! Settings: the settings file, its environment overrides and their validation.
//!
//! ccsd reads one TOML file: the built-in [`DEFAULT_SETTINGS_TOML`], or the file given with
//! `--config`, which replaces it as a whole. Keys a file leaves out take their defaults, and a file
//! without `[[listen]]` tables gets the default listener. Environment variables named
//! `CCSD_<SECTION>__<KEY>` override single keys (`CCSD_QUEUES__CAPACITY=64MiB`); `[[listen]]` tables
//! cannot be overridden that way.
//!
//! Loading reports every problem it finds in one go, each starting with the key it concerns, so an
//! operator fixes a file in one round. `docs/configuration.md` describes every key.
//!
//! # Examples
//!
//! ```
//! use ccsd::settings::Settings;
//!
//! let settings = Settings::from_toml_str("[queues]\ncapacity = \"64MiB\"\n")?;
//! assert_eq!(settings.queues.capacity.bytes(), 64 << 20);
//! assert_eq!(settings.listen.len(), 1);
//! # Ok::<(), ccsd::settings::SettingsError>(())
//! ```

use std::error::Error;
use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use config::{Config, ConfigError, Environment, File, FileFormat, Map, Value, ValueKind};
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

/// The built-in settings file: every key with its default value and a comment.
///
/// [`Settings::load`] uses it when no file is given; [`Settings::default`] equals it parsed.
pub const DEFAULT_SETTINGS_TOML: &str = include_str!("../../settings/default.toml");

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Flow ids carry the worker index in 8 bits.
const MAX_WORKERS: usize = 255;
/// Bytes every packet costs in a request lane on top of its own length: the 64-byte record header
/// plus the 8-byte frame header of the lane.
const LANE_OVERHEAD: u64 = 64 + 8;

/// The top-level sections, in the order problems are reported.
const SECTIONS: [&str; 5] = ["broker", "queues", "listen", "log", "stats"];

/// Everything ccsd can be told, one field per top-level section of the settings file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `[broker]`: the worker threads and how connections are spread over them.
    pub broker: BrokerSettings,
    /// `[queues]`: the shared-memory lanes to and from the business process.
    pub queues: QueueSettings,
    /// `[[listen]]`: one entry per listening socket.
    pub listen: Vec<ListenSettings>,
    /// `[log]`: the diagnostic log.
    pub log: LogSettings,
    /// `[stats]`: periodic statistics.
    pub stats: StatsSettings,
}

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
}

impl<'de> Deserialize<'de> for Dispatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        keyword(
            deserializer,
            &[
                ("fd_modulo", Dispatch::FdModulo),
                ("round_robin", Dispatch::RoundRobin),
                ("least_connections", Dispatch::LeastConnections),
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
}

impl Default for ListenSettings {
    fn default() -> Self {
        ListenSettings {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 7300)),
            proto: Proto::default(),
            framing: "length".to_owned(),
            max_packet: ByteSize(16 * MIB),
            length_offset: 0,
            length_size: 4,
            length_endian: Endian::default(),
            length_includes: LengthIncludes::default(),
            length_adjust: 0,
        }
    }
}

/// Transport protocol of a listener (`listen[i].proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    /// `"tcp"`.
    #[default]
    Tcp,
    /// `"udp"`: not available yet.
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
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: log::LevelFilter::Info,
            file: None,
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
}

impl Default for StatsSettings {
    fn default() -> Self {
        StatsSettings {
            interval: Duration::from_secs(1),
            file: None,
        }
    }
}

/// A number of bytes.
///
/// In the settings file it is an integer number of bytes, or a string with an optional unit:
/// `"512"`, `"512B"`, `"64KiB"`, `"16MiB"`, `"1GiB"`. Units are binary and case-insensitive;
/// `K`/`KB`, `M`/`MB` and `G`/`GB` mean the same as `KiB`, `MiB` and `GiB`.
///
/// # Examples
///
/// ```
/// use ccsd::settings::ByteSize;
///
/// assert_eq!(ByteSize(16 << 20).to_string(), "16MiB");
/// assert_eq!(ByteSize(1000).to_string(), "1000B");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Shows the largest binary unit that divides the size exactly (`"16MiB"`), else bytes (`"1000B"`).
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, suffix) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if self.0 != 0 && self.0 % unit == 0 {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte size such as 65536, \"64KiB\" or \"16MiB\"")
    }

    fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(bytes))
    }

    fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
        u64::try_from(bytes)
            .map(ByteSize)
            .map_err(|_| E::custom(format!("a byte size cannot be negative, got {bytes}")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
        parse_byte_size(text).map(ByteSize).map_err(E::custom)
    }
}

/// Parses `"64KiB"` and friends (see [`ByteSize`]).
fn parse_byte_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text).ok_or_else(|| {
        format!("invalid byte size {text:?}, expected a number of bytes with an optional unit B, KiB, MiB or GiB")
    })?;
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        _ => {
            return Err(format!(
                "invalid byte size {text:?}: unknown unit {unit:?}, expected B, KiB, MiB or GiB"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("byte size {text:?} is too large"))
}

/// Parses `"250ms"`, `"1s"`, `"2m"` or `"1h"`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text).ok_or_else(|| {
        format!("invalid duration {text:?}, expected a whole number and a unit ms, s, m or h, e.g. \"250ms\"")
    })?;
    let seconds_per_unit = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "" => {
            return Err(format!(
                "duration {text:?} needs a unit ms, s, m or h, e.g. \"{text}s\""
            ));
        }
        _ => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?}, expected ms, s, m or h"
            ));
        }
    };
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Splits `" 64 KiB "` into `(64, "KiB")`; `None` when there is no leading whole number.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number = text[..digits_end].parse().ok()?;
    Some((number, text[digits_end..].trim_start()))
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

/// Every problem found in the settings, one per line, each starting with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// The problems, in the order they were found.
    pub problems: Vec<String>,
}

impl SettingsError {
    fn check(problems: Vec<String>) -> Result<(), SettingsError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError { problems })
        }
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl Error for SettingsError {}

impl Default for Settings {
    /// The built-in defaults: what [`DEFAULT_SETTINGS_TOML`] says, one listener on 127.0.0.1:7300.
    fn default() -> Self {
        Settings {
            broker: BrokerSettings::default(),
            queues: QueueSettings::default(),
            listen: vec![ListenSettings::default()],
            log: LogSettings::default(),
            stats: StatsSettings::default(),
        }
    }
}

impl Settings {
    /// Loads the settings file at `path` (the built-in [`DEFAULT_SETTINGS_TOML`] when `None`),
    /// applies the `CCSD_<SECTION>__<KEY>` environment variables of this process and validates.
    ///
    /// Variable names are case-insensitive; each value is read as text and converted to its key's
    /// type, exactly as if written as a string in the file (`CCSD_QUEUES__NAME=007` stays `"007"`).
    /// Every `CCSD_` variable is taken as an override, so an unknown one is an error.
    ///
    /// # Errors
    ///
    /// Every problem found: an unreadable or malformed file, unknown keys, values of the wrong
    /// type and everything [`Settings::validate`] rejects.
    pub fn load(path: Option<&Path>) -> Result<Settings, SettingsError> {
        let mut env = Vec::new();
        let mut problems = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            let Some(key) = env_key(name) else { continue };
            match value.into_string() {
                Ok(value) => env.push((name.to_owned(), value)),
                Err(_) => problems.push(format!("{key} (from {name}): value is not valid UTF-8")),
            }
        }
        load_file(path, env, problems)
    }

    /// Like [`Settings::load`], but with the environment variables given as `(name, value)` pairs
    /// instead of the process environment.
    ///
    /// # Errors
    ///
    /// As for [`Settings::load`].
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        load_file(path, env.into_iter().collect(), Vec::new())
    }

    /// Parses and validates settings from TOML text, without environment overrides.
    ///
    /// # Errors
    ///
    /// As for [`Settings::load`].
    pub fn from_toml_str(toml: &str) -> Result<Settings, SettingsError> {
        parse("settings", toml, Vec::new(), Vec::new())
    }

    /// Checks the rules that types alone cannot express, such as value ranges and rules that span
    /// several keys; [`Settings::load`] already calls it.
    ///
    /// # Errors
    ///
    /// Every rule broken, each problem starting with the key concerned.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let listeners: Vec<_> = self.listen.iter().map(Some).collect();
        let mut problems = Vec::new();
        Validation {
            broker: Some(&self.broker),
            queues: Some(&self.queues),
            listen: Some(&listeners),
            stats: Some(&self.stats),
        }
        .check(&mut problems);
        SettingsError::check(problems)
    }

    /// Path of worker `worker`'s request lane: `{queues.dir}/{queues.name}.req.{worker}`.
    pub fn request_lane_path(&self, worker: usize) -> PathBuf {
        self.queues
            .dir
            .join(format!("{}.req.{worker}", self.queues.name))
    }

    /// Path of the response lane: `{queues.dir}/{queues.name}.rsp`.
    pub fn response_lane_path(&self) -> PathBuf {
        self.queues.dir.join(format!("{}.rsp", self.queues.name))
    }
}

/// The sections to validate. `None` stands for a section (or `[[listen]]` table) that failed to
/// deserialize: its problem is already reported, so the rules involving it are skipped.
struct Validation<'a> {
    broker: Option<&'a BrokerSettings>,
    queues: Option<&'a QueueSettings>,
    listen: Option<&'a [Option<&'a ListenSettings>]>,
    stats: Option<&'a StatsSettings>,
}

impl Validation<'_> {
    fn check(&self, problems: &mut Vec<String>) {
        if let Some(broker) = self.broker {
            broker.check(problems);
        }
        if let Some(queues) = self.queues {
            queues.check(problems);
        }
        if let Some(listeners) = self.listen {
            check_listeners(listeners, problems);
            if let Some(queues) = self.queues {
                check_lane_holds_packets(queues.capacity, listeners, problems);
            }
        }
        if let Some(stats) = self.stats {
            stats.check(problems);
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
        if listen.max_packet.bytes().saturating_add(LANE_OVERHEAD) > capacity.bytes() {
            problems.push(format!(
                "queues.capacity: {capacity} cannot hold listen[{i}].max_packet ({}) plus {LANE_OVERHEAD} bytes of headers",
                listen.max_packet
            ));
        }
    }
}

impl BrokerSettings {
    fn check(&self, problems: &mut Vec<String>) {
        match self.workers {
            Some(0) => problems.push("broker.workers: must be at least 1".to_owned()),
            Some(n) if n > MAX_WORKERS => problems.push(format!(
                "broker.workers: must be at most {MAX_WORKERS} (flow ids carry 8 bits of worker), got {n}"
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

fn check_listeners(listeners: &[Option<&ListenSettings>], problems: &mut Vec<String>) {
    if listeners.is_empty() {
        problems.push("listen: at least one [[listen]] table is required".to_owned());
    }
    for (i, listen) in listeners.iter().enumerate() {
        let Some(listen) = listen else { continue };
        listen.check(i, problems);
        let port = listen.addr.port();
        if let Some(j) = listeners[..i]
            .iter()
            .position(|other| port != 0 && other.is_some_and(|other| other.addr == listen.addr))
        {
            problems.push(format!(
                "listen[{i}].addr: {} is already used by listen[{j}]",
                listen.addr
            ));
        }
    }
}

impl ListenSettings {
    fn check(&self, i: usize, problems: &mut Vec<String>) {
        if self.proto == Proto::Udp {
            problems.push(format!("listen[{i}].proto: udp is not available yet"));
        }
        if !crate::framing::is_known(&self.framing) {
            problems.push(format!(
                "listen[{i}].framing: unknown framing {:?}, known framings: {}",
                self.framing,
                crate::framing::known_framings().join(", ")
            ));
        }
        let max_packet = self.max_packet;
        if !(1..=GIB).contains(&max_packet.bytes()) {
            problems.push(format!(
                "listen[{i}].max_packet: must be between 1B and 1GiB, got {max_packet}"
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
    }
}

/// `CCSD_BROKER__WORKERS` → `broker.workers`, the way `config::Environment` maps it; `None` for
/// variables without the `CCSD_` prefix.
fn env_key(name: &str) -> Option<String> {
    let lower = name.to_lowercase();
    lower
        .strip_prefix("ccsd_")
        .map(|rest| rest.replace("__", "."))
}

fn load_file(
    path: Option<&Path>,
    env: Vec<(String, String)>,
    mut problems: Vec<String>,
) -> Result<Settings, SettingsError> {
    let Some(path) = path else {
        return parse("built-in settings", DEFAULT_SETTINGS_TOML, env, problems);
    };
    match fs::read_to_string(path) {
        Ok(text) => parse(&path.display().to_string(), &text, env, problems),
        Err(err) => {
            problems.push(format!(
                "{}: cannot read the settings file: {err}",
                path.display()
            ));
            Err(SettingsError { problems })
        }
    }
}

/// Merges `toml` with the environment overrides in `env`, deserializes each section on its own and
/// validates, collecting every problem into `problems`. `origin` names the text in parse errors.
fn parse(
    origin: &str,
    toml: &str,
    env: Vec<(String, String)>,
    problems: Vec<String>,
) -> Result<Settings, SettingsError> {
    let mut loader = Loader {
        env_keys: Vec::new(),
        problems,
    };
    let mut env_vars = Map::new();
    for (name, value) in env {
        let Some(key) = env_key(&name) else { continue };
        if key == "listen" || key.starts_with("listen.") || key.starts_with("listen[") {
            loader.problems.push(format!(
                "listen: [[listen]] tables cannot be set from environment variables ({name})"
            ));
            continue;
        }
        loader.env_keys.push((key, name.clone()));
        env_vars.insert(name, value);
    }
    let environment = Environment::with_prefix("CCSD")
        .prefix_separator("_")
        .separator("__")
        // Values stay strings and are converted by each key's type: with `try_parsing(true)`,
        // config would turn `CCSD_QUEUES__NAME=007` into the integer 7 and back into "7".
        .try_parsing(false)
        .source(Some(env_vars));
    let root = Config::builder()
        .add_source(File::from_str(toml, FileFormat::Toml))
        .add_source(environment)
        .build()
        .and_then(Config::try_deserialize::<Map<String, Value>>);
    let mut root = match root {
        Ok(root) => root,
        Err(err) => {
            loader
                .problems
                .push(format!("{origin}: {}", one_line(&err)));
            return Err(SettingsError {
                problems: loader.problems,
            });
        }
    };

    let broker = loader.section(&mut root, "broker");
    let queues = loader.section(&mut root, "queues");
    let listen = loader.listeners(&mut root);
    let log = loader.section(&mut root, "log");
    let stats = loader.section(&mut root, "stats");
    loader.unknown_sections(root);

    let listen_refs: Option<Vec<_>> = listen
        .as_ref()
        .map(|listeners| listeners.iter().map(Option::as_ref).collect());
    Validation {
        broker: broker.as_ref(),
        queues: queues.as_ref(),
        listen: listen_refs.as_deref(),
        stats: stats.as_ref(),
    }
    .check(&mut loader.problems);

    let listen = listen.and_then(|listeners| listeners.into_iter().collect());
    match (broker, queues, listen, log, stats) {
        (Some(broker), Some(queues), Some(listen), Some(log), Some(stats))
            if loader.problems.is_empty() =>
        {
            Ok(Settings {
                broker,
                queues,
                listen,
                log,
                stats,
            })
        }
        _ => Err(SettingsError {
            problems: loader.problems,
        }),
    }
}

/// A TOML parse error on one line: its position and message, without the source excerpt.
fn one_line(err: &ConfigError) -> String {
    let text = err.to_string();
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let mut summary = lines.next().unwrap_or_default().to_owned();
    for line in lines {
        let excerpt = line.starts_with('|')
            || line
                .split_once(" |")
                .is_some_and(|(number, _)| number.bytes().all(|b| b.is_ascii_digit()));
        if !excerpt {
            summary.push_str(": ");
            summary.push_str(line);
        }
    }
    summary
}

/// Collects the problems of one load.
struct Loader {
    /// `(key, variable)` for every environment override, e.g. `("broker.workers", "CCSD_BROKER__WORKERS")`.
    env_keys: Vec<(String, String)>,
    problems: Vec<String>,
}

impl Loader {
    /// Deserializes section `name` of `root`: its default if absent, `None` (and a problem) if
    /// broken.
    fn section<T: DeserializeOwned + Default>(
        &mut self,
        root: &mut Map<String, Value>,
        name: &str,
    ) -> Option<T> {
        let Some(value) = root.remove(name) else {
            return Some(T::default());
        };
        value
            .try_deserialize()
            .map_err(|err| self.deserialize_failed(name, err))
            .ok()
    }

    /// Deserializes every `[[listen]]` table (the default listener if there is none); `None` for
    /// each broken table, or for the whole section if it is not an array of tables.
    fn listeners(&mut self, root: &mut Map<String, Value>) -> Option<Vec<Option<ListenSettings>>> {
        let Some(value) = root.remove("listen") else {
            return Some(vec![Some(ListenSettings::default())]);
        };
        let ValueKind::Array(tables) = value.kind else {
            self.problems
                .push("listen: must be an array of tables, written [[listen]]".to_owned());
            return None;
        };
        let listeners = tables
            .into_iter()
            .enumerate()
            .map(|(i, table)| {
                table
                    .try_deserialize()
                    .map_err(|err| self.deserialize_failed(&format!("listen[{i}]"), err))
                    .ok()
            })
            .collect();
        Some(listeners)
    }

    fn unknown_sections(&mut self, root: Map<String, Value>) {
        let mut unknown: Vec<String> = root.into_keys().collect();
        unknown.sort();
        for key in unknown {
            let from = self.env_origin(&key);
            self.problems.push(format!(
                "unknown key `{key}`{from}, expected one of `{}`",
                SECTIONS.join("`, `")
            ));
        }
    }

    /// Records why the table at `path` (`broker`, `listen[1]`, ...) failed to deserialize.
    fn deserialize_failed(&mut self, path: &str, err: ConfigError) {
        let (key, message) = match err {
            ConfigError::Type {
                unexpected,
                expected,
                key,
                ..
            } => (
                key,
                format!("invalid type: {unexpected}, expected {expected}"),
            ),
            ConfigError::At { error, key, .. } => (key, error.to_string()),
            ConfigError::NotFound(key) => (Some(key), "missing".to_owned()),
            other => (None, other.to_string()),
        };
        let path = match key {
            Some(key) if key.starts_with('[') => format!("{path}{key}"),
            Some(key) if !key.is_empty() => format!("{path}.{key}"),
            _ => path.to_owned(),
        };
        let problem = match message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((field, rest)) => {
                let key = format!("{path}.{field}");
                format!("unknown key `{key}`{}{rest}", self.env_origin(&key))
            }
            None => format!("{path}{}: {message}", self.env_origin(&path)),
        };
        self.problems.push(problem);
    }

    /// `" (from CCSD_…)"` if an environment variable set `key` or a key below it, else nothing.
    fn env_origin(&self, key: &str) -> String {
        self.env_keys
            .iter()
            .find(|(env_key, _)| {
                env_key
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
            .map(|(_, name)| format!(" (from {name})"))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_equals_the_built_in_settings_file() {
        assert_eq!(
            Settings::from_toml_str(DEFAULT_SETTINGS_TOML),
            Ok(Settings::default())
        );
    }

    #[test]
    fn byte_sizes_accept_binary_units_in_any_case() {
        for (text, bytes) in [
            ("512", 512),
            ("512B", 512),
            ("64KiB", 64 * KIB),
            ("64k", 64 * KIB),
            ("64KB", 64 * KIB),
            ("16MiB", 16 * MIB),
            ("16 mb", 16 * MIB),
            ("1GiB", GIB),
            ("1g", GIB),
        ] {
            assert_eq!(parse_byte_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn byte_sizes_reject_junk_and_overflow() {
        for text in [
            "",
            "KiB",
            "-1",
            "1.5MiB",
            "12TiB",
            "16 MiB extra",
            "99999999999GiB",
        ] {
            assert!(parse_byte_size(text).is_err(), "{text}");
        }
    }

    #[test]
    fn byte_size_display_uses_the_largest_exact_unit() {
        assert_eq!(ByteSize(0).to_string(), "0B");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!(ByteSize(64 * KIB).to_string(), "64KiB");
        assert_eq!(ByteSize(1536 * KIB).to_string(), "1536KiB");
        assert_eq!(ByteSize(32 * MIB).to_string(), "32MiB");
        assert_eq!(ByteSize(4 * GIB).to_string(), "4GiB");
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for text in ["", "1", "1.5s", "s", "1d", "-1s", "99999999999999999999h"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn env_names_map_to_dotted_keys() {
        assert_eq!(
            env_key("CCSD_BROKER__WORKERS").as_deref(),
            Some("broker.workers")
        );
        assert_eq!(
            env_key("CCSD_QUEUES__ON_FULL").as_deref(),
            Some("queues.on_full")
        );
        assert_eq!(env_key("HOME"), None);
    }
}
