//! Settings: the settings file, its environment overrides and their validation.
//!
//! ccsd reads one TOML file: the built-in [`DEFAULT_SETTINGS_TOML`], or the file given with
//! `--config`, which replaces it as a whole. Keys a file leaves out take their defaults, and a file
//! without `[[listen]]` tables gets the default listener. Environment variables named
//! `CCSD_<SECTION>__<KEY>` override single keys (`CCSD_QUEUES__CAPACITY=64MiB`); `[[listen]]` tables
//! cannot be overridden that way. [`CONFIG_PATH_VAR`] (`CCSD_CONFIG`) is not a setting: it names
//! the settings file when the command line does not, and is never read as an override.
//!
//! Loading reports every problem it finds in one go, each starting with the key it concerns, so an
//! operator fixes a file in one round. `docs/configuration.md` describes every key.
//!
//! The settings do not know the framers (the framers read the settings): validation receives the
//! names `listen[i].framing` may take. [`Settings::load`], [`Settings::load_with_env`],
//! [`Settings::from_toml_str`] and [`Settings::validate`] hand it the process-wide framing
//! registry's names; they are defined beside that registry (`src/framing/settings_entry.rs`), so
//! that this module does not import `framing`.
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
use std::path::{Path, PathBuf};

/// The environment variable naming the settings file when the command line gives none
/// (`CCSD_CONFIG=/etc/ccsd/ccsd.toml`). It shares the `CCSD_` prefix but is not an override.
pub const CONFIG_PATH_VAR: &str = "CCSD_CONFIG";

/// The settings file to load: `from_args` (the command line's `--config`) if given, else a
/// non-empty [`CONFIG_PATH_VAR`], else none (the built-in defaults).
pub fn config_path(from_args: Option<PathBuf>) -> Option<PathBuf> {
    from_args.or_else(|| {
        std::env::var_os(CONFIG_PATH_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

mod host;
mod load;
mod sections;
mod units;
mod validate;

pub use sections::{
    AdminSettings, BrokerSettings, Dispatch, Endian, LengthIncludes, LimitsSettings,
    ListenSettings, LogSettings, MAX_DATAGRAM, McpSettings, OnFull, Proto, ProxyProtocol,
    QueueSettings, Ratio, StatsSettings, WhenDown,
};
pub use units::{ByteSize, parse_duration};

use load::{env_key, load_file, parse};
use validate::Validation;

/// The built-in settings file: every key with its default value and a comment.
///
/// [`Settings::load`] uses it when no file is given; [`Settings::default`] equals it parsed.
pub const DEFAULT_SETTINGS_TOML: &str = include_str!("../../settings/default.toml");

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
    /// `[admin]`: the operators' port.
    pub admin: AdminSettings,
    /// `[limits]`: per-connection limits.
    pub limits: LimitsSettings,
    /// `[mcp]`: watching the business process, and what to do when it fails.
    pub mcp: McpSettings,
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
            admin: AdminSettings::default(),
            limits: LimitsSettings::default(),
            mcp: McpSettings::default(),
        }
    }
}

impl Settings {
    /// [`Settings::load`] with `framers` as the names `listen[i].framing` may take.
    pub(crate) fn load_knowing(
        path: Option<&Path>,
        framers: &[String],
    ) -> Result<Settings, SettingsError> {
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
        load_file(path, env, problems, framers)
    }

    /// [`Settings::load_with_env`] with `framers` as the names `listen[i].framing` may take.
    pub(crate) fn load_with_env_knowing(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        framers: &[String],
    ) -> Result<Settings, SettingsError> {
        load_file(path, env.into_iter().collect(), Vec::new(), framers)
    }

    /// [`Settings::from_toml_str`] with `framers` as the names `listen[i].framing` may take.
    pub(crate) fn from_toml_str_knowing(
        toml: &str,
        framers: &[String],
    ) -> Result<Settings, SettingsError> {
        parse("settings", toml, Vec::new(), Vec::new(), framers)
    }

    /// [`Settings::validate`] with `framers` as the names `listen[i].framing` may take.
    pub(crate) fn validate_knowing(&self, framers: &[String]) -> Result<(), SettingsError> {
        let listeners: Vec<_> = self.listen.iter().map(Some).collect();
        let mut problems = Vec::new();
        Validation {
            broker: Some(&self.broker),
            queues: Some(&self.queues),
            listen: Some(&listeners),
            log: Some(&self.log),
            stats: Some(&self.stats),
            admin: Some(&self.admin),
            limits: Some(&self.limits),
            mcp: Some(&self.mcp),
            framers,
        }
        .check(&mut problems);
        SettingsError::check(problems)
    }

    /// Checks what `--check-config` checks beyond [`Settings::validate`]: the files ccsd will
    /// write. `queues.dir` must have room for the lanes (those that exist count for the space
    /// not yet allocated to them); the directories of `broker.pid_file`, `log.file` and
    /// `stats.file` must exist and be writable by this process's effective user (the pid and log
    /// files themselves when they exist).
    ///
    /// # Errors
    ///
    /// Every problem found, each starting with the key concerned.
    pub fn check_files(&self) -> Result<(), SettingsError> {
        let mut problems = Vec::new();
        host::check_files(self, &mut problems);
        SettingsError::check(problems)
    }

    /// Path of request lane `lane`: `{queues.dir}/{queues.name}.req.{lane}`. Lanes `0..workers`
    /// belong to the workers, lane `workers` to the main thread (UDP, overload notices).
    pub fn request_lane_path(&self, lane: usize) -> PathBuf {
        self.queues
            .dir
            .join(format!("{}.req.{lane}", self.queues.name))
    }

    /// How many request lanes ccsd creates: one per worker, plus the main thread's.
    pub fn request_lane_count(&self) -> usize {
        self.broker.worker_count() + 1
    }

    /// Path of the response lane: `{queues.dir}/{queues.name}.rsp`.
    pub fn response_lane_path(&self) -> PathBuf {
        self.queues.dir.join(format!("{}.rsp", self.queues.name))
    }

    /// Path of the handover socket a new ccsd connects to for a hot restart:
    /// `{queues.dir}/{queues.name}.handover`.
    pub fn handover_path(&self) -> PathBuf {
        self.queues
            .dir
            .join(format!("{}.handover", self.queues.name))
    }

    /// Path of the single-instance lock: `{queues.dir}/{queues.name}.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.queues.dir.join(format!("{}.lock", self.queues.name))
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
}
