//! [`ByteSize`] and the text forms of sizes and durations (`"64KiB"`, `"250ms"`).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

pub(super) const KIB: u64 = 1 << 10;
pub(super) const MIB: u64 = 1 << 20;
pub(super) const GIB: u64 = 1 << 30;

/// A number of bytes.
///
/// In the settings file it is an integer number of bytes, or a string with an optional unit:
/// `"512"`, `"512B"`, `"64KiB"`, `"16MiB"`, `"1GiB"`. Units are binary and case-insensitive;
/// `K`/`KB`, `M`/`MB` and `G`/`GB` mean the same as `KiB`, `MiB` and `GiB`.
///
/// # Examples
///
/// ```
/// use ccsd::settings::ByteSize;
///
/// assert_eq!(ByteSize(16 << 20).to_string(), "16MiB");
/// assert_eq!(ByteSize(1000).to_string(), "1000B");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Shows the largest binary unit that divides the size exactly (`"16MiB"`), else bytes (`"1000B"`).
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, suffix) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if self.0 != 0 && self.0 % unit == 0 {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte size such as 65536, \"64KiB\" or \"16MiB\"")
    }

    fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(bytes))
    }

    fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
        u64::try_from(bytes)
            .map(ByteSize)
            .map_err(|_| E::custom(format!("a byte size cannot be negative, got {bytes}")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
        parse_byte_size(text).map(ByteSize).map_err(E::custom)
    }
}

/// Parses `"64KiB"` and friends (see [`ByteSize`]).
fn parse_byte_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text).ok_or_else(|| {
        format!("invalid byte size {text:?}, expected a number of bytes with an optional unit B, KiB, MiB or GiB")
    })?;
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        _ => {
            return Err(format!(
                "invalid byte size {text:?}: unknown unit {unit:?}, expected B, KiB, MiB or GiB"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("byte size {text:?} is too large"))
}

/// Parses `"250ms"`, `"1s"`, `"2m"` or `"1h"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text).ok_or_else(|| {
        format!("invalid duration {text:?}, expected a whole number and a unit us, ms, s, m or h, e.g. \"250ms\"")
    })?;
    let seconds_per_unit = match unit {
        "us" => return Ok(Duration::from_micros(number)),
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "" => {
            return Err(format!(
                "duration {text:?} needs a unit us, ms, s, m or h, e.g. \"{text}s\""
            ));
        }
        _ => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?}, expected us, ms, s, m or h"
            ));
        }
    };
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Splits `" 64 KiB "` into `(64, "KiB")`; `None` when there is no leading whole number.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number = text[..digits_end].parse().ok()?;
    Some((number, text[digits_end..].trim_start()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_accept_binary_units_in_any_case() {
        for (text, bytes) in [
            ("512", 512),
            ("512B", 512),
            ("64KiB", 64 * KIB),
            ("64k", 64 * KIB),
            ("64KB", 64 * KIB),
            ("16MiB", 16 * MIB),
            ("16 mb", 16 * MIB),
            ("1GiB", GIB),
            ("1g", GIB),
        ] {
            assert_eq!(parse_byte_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn byte_sizes_reject_junk_and_overflow() {
        for text in [
            "",
            "KiB",
            "-1",
            "1.5MiB",
            "12TiB",
            "16 MiB extra",
            "99999999999GiB",
        ] {
            assert!(parse_byte_size(text).is_err(), "{text}");
        }
    }

    #[test]
    fn byte_size_display_uses_the_largest_exact_unit() {
        assert_eq!(ByteSize(0).to_string(), "0B");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
        assert_eq!(ByteSize(64 * KIB).to_string(), "64KiB");
        assert_eq!(ByteSize(1536 * KIB).to_string(), "1536KiB");
        assert_eq!(ByteSize(32 * MIB).to_string(), "32MiB");
        assert_eq!(ByteSize(4 * GIB).to_string(), "4GiB");
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for text in ["", "1", "1.5s", "s", "1d", "-1s", "99999999999999999999h"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }
}
