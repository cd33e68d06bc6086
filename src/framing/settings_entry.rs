//! The entry points of [`Settings`] that check `listen[i].framing` against this process's framing
//! registry (the built-in framings and those added with [`register`](super::register)).
//!
//! They live here, beside the registry, rather than in `settings`: the framers read the
//! listeners' settings, so `settings` must not ask the registry; its validation receives the
//! names instead, and these methods hand it [`known_framings`].

use std::path::Path;

use super::known_framings;
use crate::settings::{Settings, SettingsError};

impl Settings {
    /// Loads the settings file at `path` (the built-in
    /// [`DEFAULT_SETTINGS_TOML`](crate::settings::DEFAULT_SETTINGS_TOML) when `None`), applies
    /// the `CCSD_<SECTION>__<KEY>` environment variables of this process and validates.
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
        Settings::load_knowing(path, &known_framings())
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
        Settings::load_with_env_knowing(path, env, &known_framings())
    }

    /// Parses and validates settings from TOML text, without environment overrides.
    ///
    /// # Errors
    ///
    /// As for [`Settings::load`].
    pub fn from_toml_str(toml: &str) -> Result<Settings, SettingsError> {
        Settings::from_toml_str_knowing(toml, &known_framings())
    }

    /// Checks the rules that types alone cannot express, such as value ranges and rules that span
    /// several keys; [`Settings::load`] already calls it.
    ///
    /// # Errors
    ///
    /// Every rule broken, each problem starting with the key concerned.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.validate_knowing(&known_framings())
    }
}
