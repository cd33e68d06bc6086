//! Logging: fern to stderr and an optional file, plus a rate limiter for warnings that bad input
//! could otherwise turn into a flood.
//!
//! Nothing on the data path logs per packet: counters record every event, and a [`LogLimiter`]
//! lets through one line per interval with the number of similar events it held back.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::LevelFilter;

/// Sends log records at `level` and above to stderr and, when given, appended to `file`.
///
/// The level is the `log` crate's global maximum only (fern itself passes everything), so
/// `log::set_max_level` (admin `loglevel`, `reload`) can raise it later as well as lower it.
///
/// # Errors
/// The log file cannot be opened, or a logger is already installed.
pub fn init(level: LevelFilter, file: Option<&Path>) -> io::Result<()> {
    let mut dispatch = fern::Dispatch::new()
        .level(LevelFilter::Trace)
        .format(|out, message, record| {
            out.finish(format_args!(
                "{} {:<5} {}: {}",
                utc_timestamp(SystemTime::now()),
                record.level(),
                record.target(),
                message
            ))
        })
        .chain(io::stderr());
    if let Some(path) = file {
        let f = fern::log_file(path)
            .map_err(|e| io::Error::new(e.kind(), format!("log file {}: {e}", path.display())))?;
        dispatch = dispatch.chain(f);
    }
    dispatch
        .apply()
        .map_err(|e| io::Error::new(io::ErrorKind::AlreadyExists, e))?;
    log::set_max_level(level);
    Ok(())
}

/// `2026-11-23T22:19:44.123Z`, computed without a time zone database.
fn utc_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Lets one log line through per interval and counts the ones it held back.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter allowing one line per `interval`.
    pub const fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were held back since the last
    /// one; `None` when this one should be held back.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

impl Default for LogLimiter {
    /// One line per ten seconds.
    fn default() -> Self {
        LogLimiter::new(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_472_384_123);
        assert_eq!(utc_timestamp(t), "2026-11-23T22:19:44.123Z");
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn limiter_holds_back_lines_within_the_interval_and_reports_them() {
        let mut l = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        l.last = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(l.allow(), Some(2));
    }
}
