//! Command-line option values, as the example drivers (`loadgen`, `soak`) parse them: whole
//! numbers, positive numbers, fractions and seconds, with errors naming the flag; and what a
//! parsed command line asks for ([`Command`], [`args_or_exit`]).
//!
//! A driver includes this file with `#[path = "../common/flags.rs"] mod flags;`.
#![allow(dead_code)] // each driver uses a different subset

use std::process::ExitCode;
use std::time::Duration;

/// What a driver's command line asks for.
#[derive(Debug)]
pub enum Command<A> {
    /// Print the usage text.
    Help,
    /// Run with these options.
    Run(A),
}

impl<A> Command<A> {
    /// The options to run with; `Err` for `--help` (for tests of a driver's parser).
    pub fn into_run(self) -> Result<A, String> {
        match self {
            Command::Run(args) => Ok(args),
            Command::Help => Err("help".into()),
        }
    }
}

/// The options to run with; or, after printing the usage text (`--help`) or the error, the exit
/// code to leave with (0, or 2 for bad options).
pub fn args_or_exit<A>(
    parsed: Result<Command<A>, String>,
    program: &str,
    usage: &str,
) -> Result<A, ExitCode> {
    match parsed {
        Ok(Command::Run(args)) => Ok(args),
        Ok(Command::Help) => {
            println!("{usage}");
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{program}: {e}\n({program} --help lists the options)");
            Err(ExitCode::from(2))
        }
    }
}

/// A whole number.
pub fn number<T: std::str::FromStr>(flag: &str, s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{flag} {s}: expected a whole number"))
}

/// A whole number above 0.
pub fn positive<T: std::str::FromStr + PartialEq + Default>(
    flag: &str,
    s: &str,
) -> Result<T, String> {
    let n: T = number(flag, s)?;
    if n == T::default() {
        return Err(format!("{flag} must be above 0"));
    }
    Ok(n)
}

/// A finite number above 0.
pub fn positive_float(flag: &str, s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("{flag} {s}: expected a number above 0")),
    }
}

/// A number from 0 to 1.
pub fn fraction(flag: &str, s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{flag} {s}: expected a number from 0 to 1")),
    }
}

/// Seconds, possibly fractional.
pub fn seconds(flag: &str, s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|x| Duration::try_from_secs_f64(x).ok())
        .ok_or_else(|| format!("{flag} {s}: expected seconds, e.g. 10 or 0.5"))
}
