//! The memcached text protocol: one packet is one command line (ending in `\r\n` or `\n`), plus
//! for storage commands the data block and its `\r\n`.
//!
//! Commands: `get`/`gets`, `set`/`add`/`replace`/`append`/`prepend`/`cas`, `delete`,
//! `incr`/`decr`, `touch`, `flush_all`, `version`, `stats`, `quit`. Expiration times and
//! `flush_all`'s delay are parsed and ignored: nothing expires. `noreply` suppresses the normal
//! reply; errors are still sent, as memcached does.

use std::io::Write;

use crate::store::{ArithError, Condition, Outcome, Store, parse_decimal};
use ccsd::mcp::service::After;

/// The longest key memcached accepts.
const MAX_KEY: usize = 250;

/// The most words a command line other than `get`/`gets` may have (`cas` with `noreply`).
const MAX_WORDS: usize = 7;

/// The command words this module answers (exact, lower case, as memcached requires).
const COMMANDS: [&[u8]; 16] = [
    b"get",
    b"gets",
    b"set",
    b"add",
    b"replace",
    b"append",
    b"prepend",
    b"cas",
    b"delete",
    b"incr",
    b"decr",
    b"touch",
    b"flush_all",
    b"version",
    b"stats",
    b"quit",
];

const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";

/// Whether `word` is a memcached command word.
pub fn is_command(word: &[u8]) -> bool {
    COMMANDS.contains(&word)
}

/// Answers one memcached command packet into `out`.
pub fn handle(store: &mut Store, packet: &[u8], out: &mut Vec<u8>) -> After {
    let Some((line, data)) = split_line(packet) else {
        out.extend_from_slice(BAD_FORMAT);
        return After::KeepOpen;
    };
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let Some(command) = words.next() else {
        out.extend_from_slice(b"ERROR\r\n");
        return After::KeepOpen;
    };
    if !is_command(command) {
        out.extend_from_slice(b"ERROR\r\n");
        return After::KeepOpen;
    }
    if matches!(command, b"get" | b"gets") {
        if data.is_empty() {
            get(store, words, command == b"gets", out);
        } else {
            out.extend_from_slice(BAD_FORMAT);
        }
        return After::KeepOpen;
    }
    let mut args: [&[u8]; MAX_WORDS] = [&[]; MAX_WORDS];
    let mut n = 0;
    for w in words {
        if n == MAX_WORDS {
            out.extend_from_slice(BAD_FORMAT);
            return After::KeepOpen;
        }
        args[n] = w;
        n += 1;
    }
    let noreply = n > 0 && args[n - 1] == b"noreply";
    let args = &args[..n - usize::from(noreply)];
    let is_storage = matches!(
        command,
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas"
    );
    let mut reply: Result<&[u8], &[u8]> = if is_storage {
        storage(store, command, args, data)
    } else if !data.is_empty() {
        Err(BAD_FORMAT)
    } else {
        match command {
            b"quit" => return After::Close,
            b"delete" => delete(store, args),
            b"incr" | b"decr" => arithmetic(store, args, command == b"incr", out),
            b"touch" => touch(store, args),
            b"flush_all" => flush_all(store, args),
            b"version" => {
                let version = env!("CARGO_PKG_VERSION");
                // libmemcached's tools parse a leading `major.minor.patch`: give them the memcached
                // protocol level this implements, then our own name.
                let _ = write!(out, "VERSION 1.6.0 ccsd-kv-{version}\r\n");
                Ok(&b""[..])
            }
            b"stats" => {
                stats(store, out);
                Ok(&b""[..])
            }
            _ => Err(&b"ERROR\r\n"[..]),
        }
    };
    if noreply && reply.is_ok() {
        out.clear();
        reply = Ok(b"");
    }
    out.extend_from_slice(reply.unwrap_or_else(|e| e));
    After::KeepOpen
}

/// The command line without its line end, and the bytes after it; `None` without a line end.
fn split_line(packet: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = packet.iter().position(|&b| b == b'\n')?;
    let line = &packet[..end];
    Some((line.strip_suffix(b"\r").unwrap_or(line), &packet[end + 1..]))
}

fn valid_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY
}

/// `get|gets <key>*`: one `VALUE` block per key found, then `END`.
fn get<'a>(
    store: &mut Store,
    keys: impl Iterator<Item = &'a [u8]> + Clone,
    with_cas: bool,
    out: &mut Vec<u8>,
) {
    let mut count = 0;
    for key in keys.clone() {
        if !valid_key(key) {
            out.extend_from_slice(BAD_FORMAT);
            return;
        }
        count += 1;
    }
    if count == 0 {
        out.extend_from_slice(b"ERROR\r\n");
        return;
    }
    for key in keys {
        let Some(e) = store.get(key) else { continue };
        out.extend_from_slice(b"VALUE ");
        out.extend_from_slice(key);
        let _ = write!(out, " {} {}", e.flags, e.value.len());
        if with_cas {
            let _ = write!(out, " {}", e.cas);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&e.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"END\r\n");
}

/// `<command> <key> <flags> <exptime> <bytes> [<cas unique>]` with its data block.
fn storage(
    store: &mut Store,
    command: &[u8],
    args: &[&[u8]],
    data: &[u8],
) -> Result<&'static [u8], &'static [u8]> {
    let is_cas = command == b"cas";
    let &[key, flags, exptime, bytes, ref rest @ ..] = args else {
        return Err(BAD_FORMAT);
    };
    let cas = match (is_cas, rest) {
        (false, []) => None,
        (true, [unique]) => Some(parse_decimal::<u64>(unique).ok_or(BAD_FORMAT)?),
        _ => return Err(BAD_FORMAT),
    };
    let flags = parse_decimal::<u32>(flags).ok_or(BAD_FORMAT)?;
    parse_decimal::<i64>(exptime).ok_or(BAD_FORMAT)?;
    let bytes = parse_decimal::<usize>(bytes).ok_or(BAD_FORMAT)?;
    if !valid_key(key) {
        return Err(b"CLIENT_ERROR key must be 1 to 250 bytes\r\n");
    }
    let value = match data.strip_suffix(b"\r\n") {
        Some(value) if value.len() == bytes => value,
        _ => return Err(b"CLIENT_ERROR bad data chunk\r\n"),
    };
    let stored = match (command, cas) {
        (b"append", _) => store.concat(key, value, true),
        (b"prepend", _) => store.concat(key, value, false),
        (_, Some(unique)) => store.set(key, flags, value, Condition::IfCas(unique)),
        (b"add", _) => store.set(key, flags, value, Condition::IfAbsent),
        (b"replace", _) => store.set(key, flags, value, Condition::IfPresent),
        _ => store.set(key, flags, value, Condition::Always),
    };
    Ok(match stored {
        Outcome::Stored => b"STORED\r\n",
        // memcached answers NOT_STORED to append/prepend of a missing key.
        Outcome::NotFound if !is_cas => b"NOT_STORED\r\n",
        Outcome::NotFound => b"NOT_FOUND\r\n",
        Outcome::NotStored => b"NOT_STORED\r\n",
        Outcome::Exists => b"EXISTS\r\n",
    })
}

/// `delete <key> [0]` (the old time argument, accepted only as 0 as memcached does).
fn delete(store: &mut Store, args: &[&[u8]]) -> Result<&'static [u8], &'static [u8]> {
    let key = match args {
        [key] | [key, b"0"] if valid_key(key) => key,
        _ => return Err(BAD_FORMAT),
    };
    Ok(if store.remove(key) {
        b"DELETED\r\n"
    } else {
        b"NOT_FOUND\r\n"
    })
}

/// `incr|decr <key> <delta>`: the new value, as a decimal line.
fn arithmetic(
    store: &mut Store,
    args: &[&[u8]],
    increment: bool,
    out: &mut Vec<u8>,
) -> Result<&'static [u8], &'static [u8]> {
    let &[key, delta] = args else {
        return Err(BAD_FORMAT);
    };
    if !valid_key(key) {
        return Err(BAD_FORMAT);
    }
    let delta = parse_decimal::<u64>(delta)
        .ok_or(&b"CLIENT_ERROR invalid numeric delta argument\r\n"[..])?;
    match store.add_unsigned(key, delta, increment) {
        Ok(Some(value)) => {
            let _ = write!(out, "{value}\r\n");
            Ok(b"")
        }
        Ok(None) => Ok(b"NOT_FOUND\r\n"),
        Err(ArithError::NotANumber | ArithError::Overflow) => {
            Err(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
        }
    }
}

/// `touch <key> <exptime>`: expirations are ignored, so this only tells whether the key exists.
fn touch(store: &Store, args: &[&[u8]]) -> Result<&'static [u8], &'static [u8]> {
    let &[key, exptime] = args else {
        return Err(BAD_FORMAT);
    };
    if !valid_key(key) || parse_decimal::<i64>(exptime).is_none() {
        return Err(BAD_FORMAT);
    }
    Ok(if store.contains(key) {
        b"TOUCHED\r\n"
    } else {
        b"NOT_FOUND\r\n"
    })
}

/// `flush_all [delay]`: removes every key at once (the delay is ignored).
fn flush_all(store: &mut Store, args: &[&[u8]]) -> Result<&'static [u8], &'static [u8]> {
    match args {
        [] => {}
        [delay] if parse_decimal::<i64>(delay).is_some() => {}
        _ => return Err(BAD_FORMAT),
    }
    store.clear();
    Ok(b"OK\r\n")
}

/// `stats`: a few general counters.
fn stats(store: &Store, out: &mut Vec<u8>) {
    let c = store.counters();
    let _ = write!(
        out,
        "STAT pid {}\r\nSTAT version ccsd-kv-{}\r\nSTAT curr_items {}\r\nSTAT cmd_get {}\r\n\
         STAT get_hits {}\r\nSTAT get_misses {}\r\nSTAT cmd_set {}\r\nEND\r\n",
        std::process::id(),
        env!("CARGO_PKG_VERSION"),
        store.len(),
        c.gets,
        c.hits,
        c.gets - c.hits,
        c.sets,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(store: &mut Store, packet: &[u8]) -> (String, After) {
        let mut out = Vec::new();
        let after = handle(store, packet, &mut out);
        (String::from_utf8(out).unwrap(), after)
    }

    fn reply(store: &mut Store, packet: &[u8]) -> String {
        run(store, packet).0
    }

    #[test]
    fn set_then_get_and_gets_return_value_flags_and_cas() {
        let mut s = Store::default();
        assert_eq!(reply(&mut s, b"set k 5 0 3\r\nabc\r\n"), "STORED\r\n");
        assert_eq!(
            reply(&mut s, b"get k nope k\n"),
            "VALUE k 5 3\r\nabc\r\nVALUE k 5 3\r\nabc\r\nEND\r\n"
        );
        assert_eq!(
            reply(&mut s, b"gets k\r\n"),
            "VALUE k 5 3 1\r\nabc\r\nEND\r\n"
        );
    }

    #[test]
    fn cas_succeeds_only_with_the_current_unique_value() {
        let mut s = Store::default();
        assert_eq!(reply(&mut s, b"cas k 0 0 1 1\r\nx\r\n"), "NOT_FOUND\r\n");
        reply(&mut s, b"set k 0 0 1\r\na\r\n");
        assert_eq!(reply(&mut s, b"cas k 0 0 1 99\r\nx\r\n"), "EXISTS\r\n");
        let unique = reply(&mut s, b"gets k\r\n");
        let unique = unique.split_whitespace().nth(4).unwrap();
        let cas = format!("cas k 0 0 1 {unique}\r\ny\r\n");
        assert_eq!(reply(&mut s, cas.as_bytes()), "STORED\r\n");
    }

    #[test]
    fn add_replace_append_prepend_follow_key_presence() {
        let mut s = Store::default();
        assert_eq!(reply(&mut s, b"replace k 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
        assert_eq!(reply(&mut s, b"append k 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
        assert_eq!(reply(&mut s, b"add k 3 0 1\r\nb\r\n"), "STORED\r\n");
        assert_eq!(reply(&mut s, b"add k 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
        assert_eq!(reply(&mut s, b"append k 0 0 1\r\nc\r\n"), "STORED\r\n");
        assert_eq!(reply(&mut s, b"prepend k 0 0 1\r\na\r\n"), "STORED\r\n");
        assert_eq!(reply(&mut s, b"get k\r\n"), "VALUE k 3 3\r\nabc\r\nEND\r\n");
        assert_eq!(reply(&mut s, b"replace k 0 0 1\r\nz\r\n"), "STORED\r\n");
    }

    #[test]
    fn noreply_suppresses_replies_but_not_errors() {
        let mut s = Store::default();
        assert_eq!(reply(&mut s, b"set k 0 0 1 noreply\r\nx\r\n"), "");
        assert_eq!(
            reply(&mut s, b"incr k 1 noreply\r\n"),
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
        );
        assert_eq!(reply(&mut s, b"delete k noreply\r\n"), "");
        assert_eq!(reply(&mut s, b"get k\r\n"), "END\r\n");
    }

    #[test]
    fn incr_and_decr_need_a_numeric_value() {
        let mut s = Store::default();
        assert_eq!(reply(&mut s, b"incr n 1\r\n"), "NOT_FOUND\r\n");
        reply(&mut s, b"set n 0 0 2\r\n10\r\n");
        assert_eq!(reply(&mut s, b"incr n 5\r\n"), "15\r\n");
        assert_eq!(reply(&mut s, b"decr n 20\r\n"), "0\r\n");
        assert_eq!(
            reply(&mut s, b"incr n x\r\n"),
            "CLIENT_ERROR invalid numeric delta argument\r\n"
        );
    }

    #[test]
    fn delete_touch_and_flush_all_report_presence() {
        let mut s = Store::default();
        reply(&mut s, b"set k 0 0 1\r\nx\r\n");
        assert_eq!(reply(&mut s, b"touch k 100\r\n"), "TOUCHED\r\n");
        assert_eq!(reply(&mut s, b"delete k\r\n"), "DELETED\r\n");
        assert_eq!(reply(&mut s, b"delete k\r\n"), "NOT_FOUND\r\n");
        assert_eq!(reply(&mut s, b"touch k 100\r\n"), "NOT_FOUND\r\n");
        reply(&mut s, b"set k 0 0 1\r\nx\r\n");
        assert_eq!(reply(&mut s, b"flush_all\r\n"), "OK\r\n");
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn version_stats_and_quit() {
        let mut s = Store::default();
        assert!(reply(&mut s, b"version\r\n").starts_with("VERSION 1.6.0 ccsd-kv-"));
        let stats = reply(&mut s, b"stats\r\n");
        assert!(stats.contains("STAT curr_items 0\r\n") && stats.ends_with("END\r\n"));
        assert_eq!(run(&mut s, b"quit\r\n"), (String::new(), After::Close));
    }

    #[test]
    fn malformed_commands_get_errors_not_panics() {
        let mut s = Store::default();
        let long_key = format!("get {}\r\n", "k".repeat(251));
        for (packet, expected) in [
            (&b"bogus\r\n"[..], "ERROR\r\n"),
            (b"ms k 1\r\nx\r\n", "ERROR\r\n"),
            (b"\r\n", "ERROR\r\n"),
            (b"get\r\n", "ERROR\r\n"),
            (b"get k", "CLIENT_ERROR bad command line format\r\n"),
            (
                long_key.as_bytes(),
                "CLIENT_ERROR bad command line format\r\n",
            ),
            (b"set k 0 0\r\n", "CLIENT_ERROR bad command line format\r\n"),
            (
                b"set k x 0 1\r\na\r\n",
                "CLIENT_ERROR bad command line format\r\n",
            ),
            (b"set k 0 0 2\r\na\r\n", "CLIENT_ERROR bad data chunk\r\n"),
            (b"set k 0 0 1\r\nab", "CLIENT_ERROR bad data chunk\r\n"),
            (b"delete\r\n", "CLIENT_ERROR bad command line format\r\n"),
            (
                b"version\r\nextra",
                "CLIENT_ERROR bad command line format\r\n",
            ),
            (
                b"incr a b c d e f g h\r\n",
                "CLIENT_ERROR bad command line format\r\n",
            ),
        ] {
            assert_eq!(reply(&mut s, packet), expected, "{packet:?}");
        }
    }
}
