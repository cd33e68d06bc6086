//! Upgrading in place (SIGUSR2, admin `upgrade`): this process starts its successor — the binary
//! at the path it was itself started from, with its own arguments plus `--takeover` — and serves
//! on until the successor takes everything over (`takeover/hand_over.rs`), then exits 0. A
//! successor that fails exits (2, having said why on the shared stderr): this process reaps it
//! from the main loop (one `waitpid(WNOHANG)` per turn while one runs, the loop waking at least
//! every [`REAP_EVERY`]), logs its exit status and serves on.
//!
//! Which binary: recorded once at start. `argv[0]` when it names a path (made absolute against
//! the working directory at start), else `std::env::current_exe()` (the binary was found through
//! `PATH`; that resolves symbolic links). A binary replaced by rename (`install`, `mv`) at that
//! path is the new version; with `argv[0]`, so is one reached through a symbolic link switched to
//! a new release. `/proc/self/exe` read at upgrade time would name the old, deleted file instead.
//!
//! The successor is a plain child: nothing waits on it but the reaping above. Once it has taken
//! over, this process exits and the kernel reparents the child (to init, or to systemd as the
//! service's manager), which reaps it when it ends: no zombie either way. Under systemd the
//! successor becomes the unit's main process: this process sends `MAINPID=<successor>` and waits
//! (briefly, `BARRIER=1`) until systemd has read it, before it exits.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::Broker;

/// While a successor runs, how often the main loop looks whether it has exited.
const REAP_EVERY: Duration = Duration::from_millis(50);
/// How long an admin `upgrade` waits for the outcome before it answers `ERROR` (the successor
/// may still take over later; the log says when). Above the takeover's own step timeouts.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);
/// The flag the successor gets.
const TAKEOVER_FLAG: &str = "--takeover";

/// How to start a successor, and the one running, if any.
#[derive(Debug)]
pub(super) struct Upgrade {
    /// The binary, as recorded at start (see the module header), or why there is none.
    program: Result<PathBuf, String>,
    /// This process's arguments, with `--takeover` once.
    args: Vec<OsString>,
    successor: Option<Successor>,
    /// The pid of the process that took everything over (hot restart committed).
    handed_to: Option<u32>,
    /// This process took another one over: systemd is told it is the main process now.
    took_over: bool,
}

/// A successor started and not yet known to have taken over or failed.
#[derive(Debug)]
struct Successor {
    child: Child,
    since: Instant,
    /// Admin requests awaiting the outcome (their tokens).
    askers: Vec<u64>,
}

impl Upgrade {
    /// Records the binary and the arguments of this process (call at start).
    pub(super) fn record() -> Upgrade {
        let mut argv = std::env::args_os();
        let argv0 = argv.next();
        let mut args: Vec<OsString> = argv.collect();
        if !args.iter().any(|a| a == TAKEOVER_FLAG) {
            args.push(TAKEOVER_FLAG.into());
        }
        let program = match argv0 {
            Some(path) if path.as_encoded_bytes().contains(&b'/') => std::path::absolute(&path)
                .map_err(|e| format!("{}: {e}", PathBuf::from(&path).display())),
            _ => std::env::current_exe().map_err(|e| format!("the running binary's path: {e}")),
        };
        Upgrade {
            program,
            args,
            successor: None,
            handed_to: None,
            took_over: false,
        }
    }

    /// This process took another one over (the handover committed).
    pub(super) fn took_over(&mut self) {
        self.took_over = true;
    }

    /// What the first `READY=1` adds: `MAINPID=` after a takeover, for systemd to track this
    /// process from now on (accepted under `NotifyAccess=all`; see `dist/systemd/ccsd.service`).
    pub(super) fn ready_notice(&self) -> String {
        match self.took_over {
            true => format!("\nMAINPID={}", std::process::id()),
            false => String::new(),
        }
    }

    /// The process `pid` has taken everything over (the handover committed).
    pub(super) fn handed_to(&mut self, pid: u32) {
        self.handed_to = Some(pid);
    }

    /// How long the main loop may sleep before it must look at the successor again.
    pub(super) fn time_to_next(&self) -> Option<Duration> {
        self.successor.as_ref().map(|_| REAP_EVERY)
    }

    /// Starts the successor; its pid.
    fn spawn(&mut self) -> Result<u32, String> {
        if let Some(s) = &self.successor {
            return Err(format!(
                "process {} is already taking over (started {:?} ago)",
                s.child.id(),
                s.since.elapsed()
            ));
        }
        let program = self.program.as_ref().map_err(Clone::clone)?;
        let child = Command::new(program)
            .args(&self.args)
            .stdin(Stdio::null())
            // Meant for this process (sd_watchdog_enabled(3), sd_listen_fds(3)): the successor
            // serves the watchdog itself and takes its listeners over, not from systemd.
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES")
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let pid = child.id();
        self.successor = Some(Successor {
            child,
            since: Instant::now(),
            askers: Vec::new(),
        });
        Ok(pid)
    }

    /// The successor, when it has exited (or can no longer be waited for): its pid, how it
    /// ended and who awaits the outcome.
    fn reap(&mut self) -> Option<(u32, String, Vec<u64>)> {
        let s = self.successor.as_mut()?;
        let ended = match s.child.try_wait() {
            Ok(Some(status)) => status.to_string(),
            Ok(None) => return None,
            // Not ours to wait for any more (ECHILD): stop looking.
            Err(e) => format!("cannot be waited for: {e}"),
        };
        let s = self.successor.take().expect("checked above");
        Some((s.child.id(), ended, s.askers))
    }

    /// Admin requests that have waited [`ANSWER_WITHIN`], taken out; the successor's pid.
    fn overdue_askers(&mut self) -> Option<(u32, Vec<u64>)> {
        let s = self.successor.as_mut()?;
        if s.askers.is_empty() || s.since.elapsed() < ANSWER_WITHIN {
            return None;
        }
        Some((s.child.id(), std::mem::take(&mut s.askers)))
    }
}

impl Broker {
    /// SIGUSR2: starts a successor, or logs why not.
    pub(super) fn upgrade_on_signal(&mut self) {
        self.start_upgrade("SIGUSR2", None);
    }

    /// Admin `upgrade` (`token` identifies the request): starts a successor and answers once the
    /// outcome is known: `OK` right before this process exits, `ERROR` when the successor could
    /// not start or exited without taking over, or after [`ANSWER_WITHIN`].
    pub(super) fn upgrade_for_admin(&mut self, token: u64) {
        if self.start_upgrade("admin upgrade", Some(token)) {
            if let Some(s) = self.upgrade.successor.as_mut() {
                s.askers.push(token);
            }
        }
    }

    /// Starts the successor (`why` names the request in the log); `false` when none could be
    /// started (an admin asker, `token`, has had its `ERROR`).
    fn start_upgrade(&mut self, why: &str, token: Option<u64>) -> bool {
        let refusal = if self.stopping_requested() {
            Err("this ccsd is stopping".to_owned())
        } else {
            self.upgrade.spawn()
        };
        match refusal {
            Ok(pid) => {
                info!(
                    "hot restart ({why}): started process {pid} to take over: {} {}",
                    self.upgrade
                        .program
                        .as_ref()
                        .map_or(String::new(), |p| p.display().to_string()),
                    self.upgrade
                        .args
                        .iter()
                        .map(|a| a.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                true
            }
            Err(reason) => {
                match token {
                    Some(token) => {
                        warn!("hot restart ({why}): refused: {reason}");
                        let text = format!("ERROR upgrade: {reason}\r\n");
                        self.with_admin(|admin, view| admin.answer(token, &text, view));
                    }
                    None => self.signals.ignored_hot_restart(&reason),
                }
                false
            }
        }
    }

    /// Once per main-loop turn: reaps a successor that exited (logged with its status; admin
    /// askers get `ERROR`), and answers askers that have waited too long.
    pub(super) fn check_upgrade(&mut self) {
        if let Some((pid, status, askers)) = self.upgrade.reap() {
            warn!("hot restart: process {pid} exited ({status}) without taking over; serving on");
            let text = format!(
                "ERROR upgrade: process {pid} exited ({status}) without taking over (its log says why); this ccsd serves on\r\n"
            );
            for token in askers {
                self.with_admin(|admin, view| admin.answer(token, &text, view));
            }
        }
        if let Some((pid, askers)) = self.upgrade.overdue_askers() {
            let text = format!(
                "ERROR upgrade: process {pid} has not taken over within {ANSWER_WITHIN:?}; it still runs (see the log) and this ccsd serves on\r\n"
            );
            for token in askers {
                self.with_admin(|admin, view| admin.answer(token, &text, view));
            }
        }
    }

    /// Everything was handed over and this process is about to exit: admin askers get `OK`, and
    /// systemd learns the new main process (and has read it before this one ends).
    pub(super) fn upgrade_handed_over(&mut self) {
        let Some(pid) = self.upgrade.handed_to else {
            return;
        };
        let askers = self
            .upgrade
            .successor
            .as_mut()
            .map(|s| std::mem::take(&mut s.askers))
            .unwrap_or_default();
        let text = format!("OK upgraded: process {pid} serves now; this one exits\r\n");
        for token in askers {
            self.with_admin(|admin, view| admin.answer(token, &text, view));
        }
        self.notifier.notify(&format!(
            "MAINPID={pid}\nSTATUS=handed over to process {pid}"
        ));
        self.notifier.barrier();
    }
}
