//! The key-value store both protocols share: one map from key to [`Entry`], a CAS counter and
//! the few counters `stats` reports.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;

/// A stored value with its memcached metadata (RESP writes flags 0 and ignores them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Opaque client flags (memcached `<flags>`).
    pub flags: u32,
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The unique value `gets` reports and `cas` checks; changes on every write.
    pub cas: u64,
}

/// How a write treats an existing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Write whether or not the key exists (`set`).
    Always,
    /// Write only if the key is absent (`add`, `SET NX`).
    IfAbsent,
    /// Write only if the key is present (`replace`, `SET XX`).
    IfPresent,
    /// Write only if the key is present with this CAS value (`cas`).
    IfCas(u64),
}

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The value was written.
    Stored,
    /// The condition failed (`add` of a present key, `replace` of an absent one).
    NotStored,
    /// `cas`: the key is present but its CAS value has changed.
    Exists,
    /// `cas`, `append`, `prepend`: the key is absent.
    NotFound,
}

/// Why an arithmetic update failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithError {
    /// The stored value is not a decimal integer of the expected kind.
    NotANumber,
    /// The result does not fit.
    Overflow,
}

/// Counters reported by memcached's `stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounters {
    /// Reads of one key.
    pub gets: u64,
    /// Reads that found the key.
    pub hits: u64,
    /// Writes of one key (any condition, successful or not).
    pub sets: u64,
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct Store {
    map: HashMap<Vec<u8>, Entry>,
    last_cas: u64,
    counters: StoreCounters,
}

impl Store {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The counters so far.
    pub fn counters(&self) -> StoreCounters {
        self.counters
    }

    /// Looks a key up, counting the read.
    pub fn get(&mut self, key: &[u8]) -> Option<&Entry> {
        self.counters.gets += 1;
        let found = self.map.get(key);
        self.counters.hits += u64::from(found.is_some());
        found
    }

    /// Whether `key` is present (not counted as a read).
    pub fn contains(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    /// Writes `value` under `key` if `condition` holds.
    pub fn set(&mut self, key: &[u8], flags: u32, value: &[u8], condition: Condition) -> Outcome {
        self.counters.sets += 1;
        let cas = self.next_cas();
        match (self.map.get_mut(key), condition) {
            (Some(_), Condition::IfAbsent) | (None, Condition::IfPresent) => Outcome::NotStored,
            (None, Condition::IfCas(_)) => Outcome::NotFound,
            (Some(e), Condition::IfCas(expected)) if e.cas != expected => Outcome::Exists,
            (Some(e), _) => {
                e.flags = flags;
                e.value.clear();
                e.value.extend_from_slice(value);
                e.cas = cas;
                Outcome::Stored
            }
            (None, _) => {
                let value = value.to_vec();
                self.map.insert(key.to_vec(), Entry { flags, value, cas });
                Outcome::Stored
            }
        }
    }

    /// Adds `data` after (`at_end`) or before the value of an existing key, keeping its flags.
    pub fn concat(&mut self, key: &[u8], data: &[u8], at_end: bool) -> Outcome {
        self.counters.sets += 1;
        let cas = self.next_cas();
        let Some(e) = self.map.get_mut(key) else {
            return Outcome::NotFound;
        };
        if at_end {
            e.value.extend_from_slice(data);
        } else {
            e.value.splice(0..0, data.iter().copied());
        }
        e.cas = cas;
        Outcome::Stored
    }

    /// Removes a key; true if it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        self.map.remove(key).is_some()
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// memcached `incr`/`decr`: the value must be an unsigned decimal; `incr` wraps at 2^64 and
    /// `decr` stops at 0, as memcached does. `Ok(None)` when the key is absent.
    pub fn add_unsigned(
        &mut self,
        key: &[u8],
        delta: u64,
        increment: bool,
    ) -> Result<Option<u64>, ArithError> {
        let cas = self.next_cas();
        let Some(e) = self.map.get_mut(key) else {
            return Ok(None);
        };
        let now = parse_decimal::<u64>(&e.value).ok_or(ArithError::NotANumber)?;
        let new = if increment {
            now.wrapping_add(delta)
        } else {
            now.saturating_sub(delta)
        };
        write_number(e, new, cas);
        Ok(Some(new))
    }

    /// Redis `INCRBY`: the value must be a signed 64-bit decimal; an absent key counts as 0.
    pub fn add_signed(&mut self, key: &[u8], delta: i64) -> Result<i64, ArithError> {
        let cas = self.next_cas();
        let e = match self.map.entry(key.to_vec()) {
            Slot::Occupied(o) => o.into_mut(),
            Slot::Vacant(v) => v.insert(Entry {
                flags: 0,
                value: b"0".to_vec(),
                cas,
            }),
        };
        let now = parse_decimal::<i64>(&e.value).ok_or(ArithError::NotANumber)?;
        let new = now.checked_add(delta).ok_or(ArithError::Overflow)?;
        write_number(e, new, cas);
        Ok(new)
    }

    fn next_cas(&mut self) -> u64 {
        self.last_cas += 1;
        self.last_cas
    }
}

/// Parses an ASCII decimal integer that fills all of `bytes` (no spaces).
pub fn parse_decimal<T: std::str::FromStr>(bytes: &[u8]) -> Option<T> {
    if bytes.first() == Some(&b'+') {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn write_number(e: &mut Entry, n: impl std::fmt::Display, cas: u64) {
    use std::io::Write;
    e.value.clear();
    let _ = write!(e.value, "{n}");
    e.cas = cas;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_decide_whether_a_write_happens() {
        let mut s = Store::default();
        assert_eq!(
            s.set(b"k", 0, b"a", Condition::IfPresent),
            Outcome::NotStored
        );
        assert_eq!(s.set(b"k", 1, b"a", Condition::IfAbsent), Outcome::Stored);
        assert_eq!(
            s.set(b"k", 1, b"b", Condition::IfAbsent),
            Outcome::NotStored
        );
        let cas = s.get(b"k").unwrap().cas;
        assert_eq!(
            s.set(b"k", 2, b"c", Condition::IfCas(cas + 1)),
            Outcome::Exists
        );
        assert_eq!(s.set(b"k", 2, b"c", Condition::IfCas(cas)), Outcome::Stored);
        assert_eq!(
            s.set(b"x", 2, b"c", Condition::IfCas(cas)),
            Outcome::NotFound
        );
        let e = s.get(b"k").unwrap();
        assert_eq!((e.flags, e.value.as_slice()), (2, &b"c"[..]));
        assert_ne!(e.cas, cas);
    }

    #[test]
    fn concat_keeps_flags_and_needs_the_key() {
        let mut s = Store::default();
        assert_eq!(s.concat(b"k", b"x", true), Outcome::NotFound);
        s.set(b"k", 7, b"mid", Condition::Always);
        s.concat(b"k", b"<", false);
        s.concat(b"k", b">", true);
        let e = s.get(b"k").unwrap();
        assert_eq!((e.flags, e.value.as_slice()), (7, &b"<mid>"[..]));
    }

    #[test]
    fn unsigned_arithmetic_wraps_up_and_stops_at_zero_down() {
        let mut s = Store::default();
        assert_eq!(s.add_unsigned(b"n", 1, true), Ok(None));
        s.set(b"n", 0, b"18446744073709551615", Condition::Always);
        assert_eq!(s.add_unsigned(b"n", 2, true), Ok(Some(1)));
        assert_eq!(s.add_unsigned(b"n", 5, false), Ok(Some(0)));
        s.set(b"n", 0, b"-1", Condition::Always);
        assert_eq!(s.add_unsigned(b"n", 1, true), Err(ArithError::NotANumber));
    }

    #[test]
    fn signed_arithmetic_starts_at_zero_and_refuses_overflow() {
        let mut s = Store::default();
        assert_eq!(s.add_signed(b"n", -3), Ok(-3));
        assert_eq!(s.get(b"n").unwrap().value, b"-3");
        s.set(b"n", 0, b"9223372036854775807", Condition::Always);
        assert_eq!(s.add_signed(b"n", 1), Err(ArithError::Overflow));
        s.set(b"n", 0, b"abc", Condition::Always);
        assert_eq!(s.add_signed(b"n", 1), Err(ArithError::NotANumber));
    }
}
