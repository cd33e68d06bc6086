//! Logging: fern to stderr and/or a file (`log.file`, `log.stderr`), plus a rate limiter for warnings that bad input
//! could otherwise turn into a flood.
//!
//! Nothing on the data path logs per packet: counters record every event, and a `LogLimiter`
//! lets through one line per interval with the number of similar events it held back.
//!
//! The log file can be reopened at its configured path (`reopen_log_file`, on SIGUSR1), so that
//! logrotate can rename it and have new lines go to a new file. The logger writes through a
//! process-wide slot holding the open file; a reopen opens the new file first and then swaps it in,
//! so no line is lost or split between the two.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::LevelFilter;

/// Sends log records at `level` and above to stderr (when `to_stderr`) and, when given, appended
/// to `file`. (`log.stderr`: [`crate::settings::LogSettings::to_stderr`].)
///
/// The level is the `log` crate's global maximum only (fern itself passes everything), so
/// `log::set_max_level` (admin `loglevel`, `reload`) can raise it later as well as lower it.
///
/// # Errors
/// The log file cannot be opened, or a logger is already installed.
pub fn init(level: LevelFilter, file: Option<&Path>, to_stderr: bool) -> io::Result<()> {
    let mut dispatch =
        fern::Dispatch::new()
            .level(LevelFilter::Trace)
            .format(|out, message, record| {
                out.finish(format_args!(
                    "{} {:<5} {}: {}",
                    utc_timestamp(SystemTime::now()),
                    record.level(),
                    record.target(),
                    message
                ))
            });
    if to_stderr {
        dispatch = dispatch.chain(fern::Output::writer(Box::<StderrLines>::default(), "\n"));
    }
    if let Some(path) = file {
        let out = Mutex::new(BufWriter::new(open_log_file(path)?));
        let log_file = LogFile {
            path: path.to_path_buf(),
            out,
        };
        if LOG_FILE.set(log_file).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a log file is already set up",
            ));
        }
        dispatch = dispatch.chain(fern::Output::writer(Box::new(LogFileWriter), "\n"));
    }
    dispatch
        .apply()
        .map_err(|e| io::Error::new(io::ErrorKind::AlreadyExists, e))?;
    log::set_max_level(level);
    Ok(())
}

/// The log file set up by [`init`]: its path and the open file the logger writes to.
struct LogFile {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

impl LogFile {
    fn lock(&self) -> MutexGuard<'_, BufWriter<File>> {
        // A panic while writing a log line leaves nothing half-updated worth refusing.
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

static LOG_FILE: OnceLock<LogFile> = OnceLock::new();

/// fern's output for the log file: writes go to whatever file [`LOG_FILE`] holds now. fern
/// flushes after each record, so the buffer makes each record one `write(2)`.
struct LogFileWriter;

impl Write for LogFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match LOG_FILE.get() {
            Some(file) => file.lock().write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match LOG_FILE.get() {
            Some(file) => file.lock().flush(),
            None => Ok(()),
        }
    }
}

/// fern's output for stderr: each record is gathered and written with one `write(2)` when fern
/// flushes it, so that the lines of two processes sharing one stderr (the old and the new process
/// of a hot restart, under journald or a terminal) never interleave within a line. A line up to
/// `PIPE_BUF` (4096 bytes) is written to a pipe atomically.
#[derive(Default)]
struct StderrLines {
    line: Vec<u8>,
}

impl Write for StderrLines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let written = io::stderr().write_all(&self.line);
        self.line.clear();
        written
    }
}

/// Opens `path` for appending, creating it if needed (as fern does).
fn open_log_file(path: &Path) -> io::Result<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("log file {}: {e}", path.display())))
}

/// Opens the log file again at its configured path and sends the following lines there; the old
/// file is flushed and closed. For logrotate: after it renames the file, lines go to a new one.
///
/// Returns the path, or `None` when there is no log file. Must not be called while logging (from a
/// `Display` implementation being logged): the logger's lock is held then.
///
/// # Errors
/// The file cannot be opened (the error names it); lines keep going to the old file.
pub(crate) fn reopen_log_file() -> io::Result<Option<&'static Path>> {
    let Some(log_file) = LOG_FILE.get() else {
        return Ok(None);
    };
    let fresh = open_log_file(&log_file.path)?;
    // fern flushes after every record, so the old buffer is empty: no line is split between files.
    let old = std::mem::replace(&mut *log_file.lock(), BufWriter::new(fresh));
    drop(old);
    Ok(Some(&log_file.path))
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
pub(crate) struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter allowing one line per `interval`.
    pub(crate) const fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were held back since the last
    /// one; `None` when this one should be held back.
    pub(crate) fn allow(&mut self) -> Option<u64> {
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

/// Logs one line through a [`LogLimiter`]: at most one per its interval, ending with how many
/// similar lines it held back since the last one, e.g.
/// `log_limited!(self.error_log, Level::Warn, "main lane: cannot wake MCP: {e}")` logs
/// `main lane: cannot wake MCP: ... (3 similar suppressed)`.
macro_rules! log_limited {
    ($limiter:expr, $level:expr, $($arg:tt)+) => {
        if let Some(held) = $limiter.allow() {
            ::log::log!($level, "{} ({held} similar suppressed)", format_args!($($arg)+));
        }
    };
}
pub(crate) use log_limited;

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
