//! Loading: reading the file, applying `CCSD_*` environment overrides through the `config`
//! crate, deserializing each section on its own and validating, collecting every problem found.

use std::fs;
use std::path::Path;

use config::{Config, ConfigError, Environment, File, FileFormat, Map, Value, ValueKind};
use serde::de::DeserializeOwned;

use super::validate::Validation;
use super::{CONFIG_PATH_VAR, DEFAULT_SETTINGS_TOML, ListenSettings, Settings, SettingsError};

/// The top-level sections, in the order problems are reported.
const SECTIONS: [&str; 8] = [
    "broker", "queues", "listen", "log", "stats", "admin", "limits", "mcp",
];

/// `CCSD_BROKER__WORKERS` → `broker.workers`, the way `config::Environment` maps it; `None` for
/// variables without the `CCSD_` prefix and for [`CONFIG_PATH_VAR`], which names the file.
pub(super) fn env_key(name: &str) -> Option<String> {
    if name == CONFIG_PATH_VAR {
        return None;
    }
    let lower = name.to_lowercase();
    lower
        .strip_prefix("ccsd_")
        .map(|rest| rest.replace("__", "."))
}

pub(super) fn load_file(
    path: Option<&Path>,
    env: Vec<(String, String)>,
    mut problems: Vec<String>,
    framers: &[String],
) -> Result<Settings, SettingsError> {
    let Some(path) = path else {
        return parse(
            "built-in settings",
            DEFAULT_SETTINGS_TOML,
            env,
            problems,
            framers,
        );
    };
    match fs::read_to_string(path) {
        Ok(text) => parse(&path.display().to_string(), &text, env, problems, framers),
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
/// validates, collecting every problem into `problems`. `origin` names the text in parse errors;
/// `framers` are the names `listen[i].framing` may take.
pub(super) fn parse(
    origin: &str,
    toml: &str,
    env: Vec<(String, String)>,
    problems: Vec<String>,
    framers: &[String],
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
    let admin = loader.section(&mut root, "admin");
    let limits = loader.section(&mut root, "limits");
    let mcp = loader.section(&mut root, "mcp");
    loader.unknown_sections(root);

    let listen_refs: Option<Vec<_>> = listen
        .as_ref()
        .map(|listeners| listeners.iter().map(Option::as_ref).collect());
    Validation {
        broker: broker.as_ref(),
        queues: queues.as_ref(),
        listen: listen_refs.as_deref(),
        log: log.as_ref(),
        stats: stats.as_ref(),
        admin: admin.as_ref(),
        limits: limits.as_ref(),
        mcp: mcp.as_ref(),
        framers,
    }
    .check(&mut loader.problems);

    let listen = listen.and_then(|listeners| listeners.into_iter().collect());
    match (broker, queues, listen, log, stats, admin, limits, mcp) {
        (
            Some(broker),
            Some(queues),
            Some(listen),
            Some(log),
            Some(stats),
            Some(admin),
            Some(limits),
            Some(mcp),
        ) if loader.problems.is_empty() => Ok(Settings {
            broker,
            queues,
            listen,
            log,
            stats,
            admin,
            limits,
            mcp,
        }),
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

    #[test]
    fn the_config_path_variable_is_not_an_override() {
        assert_eq!(env_key(CONFIG_PATH_VAR), None);
        assert_eq!(env_key("CCSD_CONFIG"), None);
    }
}
