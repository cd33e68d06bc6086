//! Admin `reload`: which settings a running ccsd takes over from its re-read settings file.
//!
//! Reloadable keys (applied at once, by message where another thread owns them): `log.level`,
//! `[limits]` but `half_close_timeout` (every worker; `max_memory` through the shared budget), `broker.max_connections` and `listen[i].max_connections` (the
//! acceptor), the `broker.rebalance*` keys (the rebalancer, which the runtime asks with
//! `Rebalancer::configure`), `mcp.reply_max_age` (the MCP bridge), `admin.idle_timeout` and
//! `admin.login_timeout`, `stats.interval` (the
//! stats reporter and every worker). Any other change needs a restart: it is named in the answer
//! and not applied, so it stays pending (and is named again) until ccsd restarts. The runtime
//! carries out the plan; this module only compares.

use log::LevelFilter;

use crate::settings::Settings;

/// What a reload changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReloadPlan {
    /// The settings in force afterwards: the current ones with every reloadable key taken from
    /// the file.
    pub(crate) next: Settings,
    /// `key old -> new` for every reloadable key that changed.
    pub(crate) changed: Vec<String>,
    /// The keys (a `[[listen]]` table as a whole) that changed but need a restart.
    pub(crate) needs_restart: Vec<String>,
}

/// Compares the settings in force (`current`, with the log level actually set now, `level_now`,
/// which the admin `loglevel` command may have changed) with those just read from the file.
pub(crate) fn plan(current: &Settings, level_now: LevelFilter, file: &Settings) -> ReloadPlan {
    let mut next = current.clone();
    next.log.level = level_now;
    let mut changed = Vec::new();
    let mut take = |name: &str, line: Option<String>| {
        if let Some(line) = line {
            changed.push(format!("{name} {line}"));
        }
    };
    macro_rules! reload_keys {
        ($section:ident: $($key:ident),+) => {
            $(
                take(
                    concat!(stringify!($section), ".", stringify!($key)),
                    take_over(&mut next.$section.$key, &file.$section.$key),
                );
            )+
        };
    }
    reload_keys!(log: level);
    reload_keys!(limits: idle_timeout, max_send_buffer, max_requests_per_second, packet_timeout, max_memory);
    reload_keys!(broker: max_connections, rebalance, rebalance_threshold, rebalance_after, rebalance_max_per_second, rebalance_min_load);
    reload_keys!(mcp: reply_max_age);
    reload_keys!(admin: idle_timeout, login_timeout);
    reload_keys!(stats: interval);
    let mut needs_restart = Vec::new();
    for (i, (old, new)) in next.listen.iter_mut().zip(&file.listen).enumerate() {
        let mut same_but_limit = new.clone();
        same_but_limit.max_connections = old.max_connections;
        if same_but_limit == *old {
            take(
                &format!("listen[{i}].max_connections"),
                take_over(&mut old.max_connections, &new.max_connections),
            );
        } else {
            // Another listener, or the same one changed: its limit waits for the restart too.
            needs_restart.push(format!("listen[{i}]"));
        }
    }
    if next.listen.len() != file.listen.len() {
        needs_restart.push(format!(
            "listen ({} tables, {} running)",
            file.listen.len(),
            next.listen.len()
        ));
    }
    // Every other key: named when it differs. `probe` takes each one over, so whatever still
    // differs at the end is a key this list does not know yet, reported as such.
    let mut probe = next.clone();
    probe.listen = file.listen.clone();
    let mut restart = |name: &str, differs: bool| {
        if differs {
            needs_restart.push(name.to_owned());
        }
    };
    macro_rules! restart_keys {
        ($section:ident: $($key:ident),+) => {
            $(
                restart(
                    concat!(stringify!($section), ".", stringify!($key)),
                    probe.$section.$key != file.$section.$key,
                );
                probe.$section.$key = file.$section.$key.clone();
            )+
        };
    }
    restart_keys!(broker: workers, unlocked_mode, dispatch, mailbox_capacity, idle_spin, shutdown_grace, pid_file);
    restart_keys!(queues: dir, name, capacity, on_full);
    restart_keys!(log: file, stderr);
    restart_keys!(stats: file, log_interval);
    restart_keys!(admin: enabled, addr, token, unix);
    restart_keys!(mcp: stall_timeout, when_down, connect_events, overload_notices);
    restart_keys!(limits: half_close_timeout);
    restart(
        "other settings (this version cannot name them)",
        probe != *file,
    );
    ReloadPlan {
        next,
        changed,
        needs_restart,
    }
}

/// Takes `new` over into `old`; `old -> new` when they differed.
fn take_over<T: PartialEq + Clone + Shown>(old: &mut T, new: &T) -> Option<String> {
    if old == new {
        return None;
    }
    let line = format!("{} -> {}", old.shown(), new.shown());
    *old = new.clone();
    Some(line)
}

/// How a setting's value is written in the `reload` answer: as in the settings file.
trait Shown {
    fn shown(&self) -> String;
}

impl Shown for std::time::Duration {
    fn shown(&self) -> String {
        format!("{self:?}")
    }
}

macro_rules! shown_by_display {
    ($($t:ty),+) => {
        $(impl Shown for $t {
            fn shown(&self) -> String {
                self.to_string().to_lowercase()
            }
        })+
    };
}

shown_by_display!(
    LevelFilter,
    bool,
    u32,
    u64,
    usize,
    crate::settings::ByteSize,
    crate::settings::Ratio
);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(toml: &str) -> Settings {
        Settings::from_toml_str(toml).unwrap()
    }

    #[test]
    fn reloadable_keys_are_taken_over_and_listed() {
        let current = settings("[[listen]]\naddr = \"127.0.0.1:0\"\n");
        let file = settings(
            "[log]\nlevel = \"debug\"\n[limits]\nidle_timeout = \"2s\"\nmax_send_buffer = \"1MiB\"\n\
             packet_timeout = \"5s\"\nmax_memory = \"1GiB\"\n\
             [broker]\nmax_connections = 10\nrebalance = true\nrebalance_threshold = 2.5\n\
             rebalance_after = \"10s\"\nrebalance_max_per_second = 3\nrebalance_min_load = 7\n[[listen]]\naddr = \"127.0.0.1:0\"\nmax_connections = 3\n",
        );
        let plan = plan(&current, LevelFilter::Info, &file);
        assert_eq!(
            plan.changed,
            [
                "log.level info -> debug",
                "limits.idle_timeout 60s -> 2s",
                "limits.max_send_buffer 4mib -> 1mib",
                "limits.packet_timeout 30s -> 5s",
                "limits.max_memory 0b -> 1gib",
                "broker.max_connections 100000 -> 10",
                "broker.rebalance false -> true",
                "broker.rebalance_threshold 1.5 -> 2.5",
                "broker.rebalance_after 3s -> 10s",
                "broker.rebalance_max_per_second 10 -> 3",
                "broker.rebalance_min_load 1000 -> 7",
                "listen[0].max_connections 0 -> 3",
            ]
        );
        assert!(plan.needs_restart.is_empty(), "{:?}", plan.needs_restart);
        assert_eq!(plan.next, file);
    }

    #[test]
    fn other_changes_are_named_and_not_applied() {
        let current = settings("[[listen]]\naddr = \"127.0.0.1:0\"\n");
        let file = settings(
            "[broker]\nworkers = 3\n[admin]\ntoken = \"t\"\nunix = \"/tmp/a.sock\"\nlogin_timeout = \"2s\"\n\
             [limits]\nidle_timeout = \"1s\"\n\
             [[listen]]\naddr = \"127.0.0.1:1\"\nmax_connections = 3\n[[listen]]\naddr = \"127.0.0.1:2\"\n",
        );
        let plan = plan(&current, LevelFilter::Info, &file);
        assert_eq!(
            plan.changed,
            [
                "limits.idle_timeout 60s -> 1s",
                "admin.login_timeout 5s -> 2s"
            ]
        );
        assert_eq!(
            plan.needs_restart,
            [
                "listen[0]",
                "listen (2 tables, 1 running)",
                "broker.workers",
                "admin.token",
                "admin.unix"
            ]
        );
        assert_eq!(plan.next.broker.workers, None);
        assert_eq!(
            plan.next.listen, current.listen,
            "listen[0]'s limit waits too"
        );
        assert_eq!(plan.next.limits.idle_timeout, Duration::from_secs(1));
    }

    #[test]
    fn a_listeners_worker_set_needs_a_restart() {
        let current = settings("[broker]\nworkers = 3\n[[listen]]\naddr = \"127.0.0.1:0\"\n");
        let file = settings(
            "[broker]\nworkers = 3\n[[listen]]\naddr = \"127.0.0.1:0\"\nworkers = [0, 2]\n",
        );
        let plan = plan(&current, LevelFilter::Info, &file);
        assert!(plan.changed.is_empty(), "{:?}", plan.changed);
        assert_eq!(plan.needs_restart, ["listen[0]"]);
        assert_eq!(plan.next.listen[0].workers, None);
    }

    #[test]
    fn the_level_set_by_loglevel_counts_as_the_current_one() {
        let current = settings("");
        let plan = plan(&current, LevelFilter::Trace, &current);
        assert_eq!(plan.changed, ["log.level trace -> info"]);
        let same = super::plan(&current, LevelFilter::Info, &current);
        assert!(same.changed.is_empty() && same.needs_restart.is_empty());
    }
}
