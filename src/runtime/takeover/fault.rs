//! Test-only faults of a hot restart: the rollback tests make the new process hang or the old
//! one exit at an exact step of the handover, and shorten the time a side waits for the other,
//! through two environment variables read once. Not settings: nothing else changes, and a warning
//! is logged when one is used.

use std::time::Duration;

use log::warn;
use once_cell::sync::Lazy;

/// Test-only: makes a process fail at one step of a hot restart. Values: `hang-before-ready`
/// (the new process, having received everything, sleeps until it is killed instead of saying
/// ready), `pause-before-ready` (it waits a second there), `exit-before-ready` (it exits with
/// [`FAULT_EXIT_CODE`] there), `exit-after-offer`
/// (the old process exits with [`FAULT_EXIT_CODE`] right after sending the connections, before
/// waiting for ready), `pause-after-commit` (the old process waits a second between sending the
/// commit and letting go). Public for `tests/broker/hot_restart_rollback.rs` only.
#[doc(hidden)]
pub const FAULT_ENV: &str = "CCSDTEST_TAKEOVER_FAULT";

/// Test-only: milliseconds (1 to 600,000) each side of a hot restart waits for the other's next
/// step, instead of [`STEP_TIMEOUT`]. Public for `tests/broker/hot_restart_rollback.rs` only.
#[doc(hidden)]
pub const STEP_TIMEOUT_ENV: &str = "CCSDTEST_TAKEOVER_STEP_TIMEOUT_MS";

/// The exit code of a process that exits at a [`FAULT_ENV`] step.
#[doc(hidden)]
pub const FAULT_EXIT_CODE: i32 = 70;

/// How long [`Fault::PauseAfterCommit`] pauses.
const PAUSE: Duration = Duration::from_secs(1);

/// How long each side waits for the other's next step (its hello, its adoption of everything,
/// the commit), unless [`STEP_TIMEOUT_ENV`] says otherwise.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A step at which [`FAULT_ENV`] makes a process fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The new process hangs before it says ready.
    HangBeforeReady,
    /// The new process pauses before it says ready.
    PauseBeforeReady,
    /// The new process exits before it says ready.
    ExitBeforeReady,
    /// The old process exits right after sending the connections.
    ExitAfterOffer,
    /// The old process pauses between sending the commit and letting go.
    PauseAfterCommit,
}

static FAULT: Lazy<Option<Fault>> = Lazy::new(|| {
    let value = std::env::var_os(FAULT_ENV)?;
    let fault = match value.to_str() {
        Some("hang-before-ready") => Fault::HangBeforeReady,
        Some("pause-before-ready") => Fault::PauseBeforeReady,
        Some("exit-before-ready") => Fault::ExitBeforeReady,
        Some("exit-after-offer") => Fault::ExitAfterOffer,
        Some("pause-after-commit") => Fault::PauseAfterCommit,
        _ => {
            warn!(
                "{FAULT_ENV} ignored: not hang-before-ready, pause-before-ready, exit-before-ready, exit-after-offer or pause-after-commit"
            );
            return None;
        }
    };
    warn!("{FAULT_ENV}={value:?}: a hot restart fails at that step (for tests only)");
    Some(fault)
});

static STEP: Lazy<Duration> = Lazy::new(|| {
    let Some(value) = std::env::var_os(STEP_TIMEOUT_ENV) else {
        return STEP_TIMEOUT;
    };
    match value.to_str().and_then(|v| v.parse::<u64>().ok()) {
        Some(ms @ 1..=600_000) => {
            warn!(
                "{STEP_TIMEOUT_ENV}={ms}: hot restart steps time out after {ms} ms (for tests only)"
            );
            Duration::from_millis(ms)
        }
        _ => {
            warn!("{STEP_TIMEOUT_ENV} ignored: not a number from 1 to 600000");
            STEP_TIMEOUT
        }
    }
});

/// How long each side waits for the other's next step ([`STEP_TIMEOUT`], or [`STEP_TIMEOUT_ENV`]).
pub(crate) fn step_timeout() -> Duration {
    *STEP
}

/// Fails here if [`FAULT_ENV`] names `step`: hangs until killed, or exits.
pub(crate) fn inject(step: Fault) {
    if *FAULT != Some(step) {
        return;
    }
    match step {
        Fault::HangBeforeReady => {
            warn!("{FAULT_ENV}: hanging before saying ready");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Fault::PauseBeforeReady | Fault::PauseAfterCommit => {
            warn!("{FAULT_ENV}: pausing for {PAUSE:?} at {step:?}");
            std::thread::sleep(PAUSE);
        }
        Fault::ExitBeforeReady | Fault::ExitAfterOffer => {
            warn!("{FAULT_ENV}: exiting with {FAULT_EXIT_CODE} at {step:?}");
            log::logger().flush();
            std::process::exit(FAULT_EXIT_CODE);
        }
    }
}
