//! Command-line option values for the example drivers' clap parsers (`loadgen`, `soak`, ...):
//! whole numbers above 0, fractions and seconds, as `value_parser`s whose errors clap prefixes
//! with the flag; and [`parse_or_exit`], which adds the checks between flags.
//!
//! A driver includes this file with `#[path = "../common/flags.rs"] mod flags;`.
#![allow(dead_code)] // each driver uses a different subset

use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;

/// A whole number above 0.
pub fn positive<T: std::str::FromStr + PartialEq + Default>(s: &str) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(n) if n != T::default() => Ok(n),
        Ok(_) => Err("must be above 0".into()),
        Err(_) => Err("expected a whole number".into()),
    }
}

/// A finite number above 0.
pub fn positive_float(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err("expected a number above 0".into()),
    }
}

/// A number from 0 to 1.
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err("expected a number from 0 to 1".into()),
    }
}

/// Seconds, possibly fractional.
pub fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|x| Duration::try_from_secs_f64(x).ok())
        .ok_or_else(|| "expected seconds, e.g. 10 or 0.5".into())
}

/// Seconds above 0.
pub fn positive_seconds(s: &str) -> Result<Duration, String> {
    match seconds(s)? {
        d if d.is_zero() => Err("must be above 0".into()),
        d => Ok(d),
    }
}

/// Parses the command line as `C` and turns it into the options to run with by `check` (the
/// rules between flags); `--help` prints the usage and exits 0, a bad command line prints the
/// error and exits 2, as clap does.
pub fn parse_or_exit<C: Parser, A>(check: impl FnOnce(C) -> Result<A, String>) -> A {
    match check(C::parse()) {
        Ok(args) => args,
        Err(e) => C::command().error(ErrorKind::ArgumentConflict, e).exit(),
    }
}

/// `C` from `argv` (the program name first), checked by `check`: for a driver's unit tests.
pub fn try_parse<C: Parser, A>(
    argv: &[&str],
    check: impl FnOnce(C) -> Result<A, String>,
) -> Result<A, String> {
    check(C::try_parse_from(argv).map_err(|e| e.to_string())?)
}
