//! Redis RESP2 commands: one packet is one request (`resp_wire` parses it and encodes replies).
//!
//! Commands (case-insensitive): `PING`, `ECHO`, `GET`, `SET` (`NX`, `XX` and `GET` honoured;
//! `EX`, `PX`, `EXAT`, `PXAT`, `KEEPTTL` accepted and ignored: nothing expires), `DEL`,
//! `EXISTS`, `INCR`, `DECR`, `INCRBY`, `DECRBY`, `MGET`, `MSET`, `DBSIZE`, `FLUSHALL`,
//! `FLUSHDB`, `QUIT`, and the connection chatter clients send: `CONFIG GET` and `COMMAND`
//! (empty arrays), `SELECT 0`, `CLIENT SETNAME`/`SETINFO`, `HELLO` (protocol 2 only).
//! A request that breaks RESP gets `-ERR Protocol error: ...` and the connection is closed after
//! it, as Redis does.

use std::ops::Range;

use crate::resp_wire::{self, Request, array, bulk, error, integer, printable, simple};
use crate::store::{ArithError, Condition, Outcome, Store, parse_decimal};
use ccsd::mcp::service::After;

/// The command names this module answers, in lower case.
const COMMANDS: [&str; 21] = [
    "ping", "echo", "get", "set", "del", "exists", "incr", "decr", "incrby", "decrby", "mget",
    "mset", "dbsize", "flushall", "flushdb", "quit", "config", "command", "select", "client",
    "hello",
];

/// The longest command name in [`COMMANDS`].
const MAX_NAME: usize = 8;

const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

/// Whether `word` names a command this module answers, in any letter case.
pub fn is_command(word: &[u8]) -> bool {
    COMMANDS
        .iter()
        .any(|name| name.as_bytes().eq_ignore_ascii_case(word))
}

/// Answers one RESP request packet into `out`. `args` is scratch space for argument positions,
/// kept by the caller so that no request allocates.
pub fn handle(
    store: &mut Store,
    packet: &[u8],
    args: &mut Vec<Range<usize>>,
    out: &mut Vec<u8>,
) -> After {
    if let Err(why) = resp_wire::parse(packet, args) {
        out.extend_from_slice(b"-ERR Protocol error: ");
        out.extend_from_slice(why.as_bytes());
        out.extend_from_slice(b"\r\n");
        return After::Close;
    }
    if args.is_empty() {
        // An empty request (`*0`, a blank line) gets no reply, as in Redis.
        return After::KeepOpen;
    }
    let request = Request { packet, args };
    execute(store, &request, out)
}

fn execute(store: &mut Store, req: &Request<'_>, out: &mut Vec<u8>) -> After {
    let name = req.arg(0);
    let mut lower = [0u8; MAX_NAME];
    if name.len() > MAX_NAME {
        unknown_command(name, out);
        return After::KeepOpen;
    }
    lower[..name.len()].copy_from_slice(name);
    lower.make_ascii_lowercase();
    let lower = &lower[..name.len()];
    let argc = req.len();
    let arity_ok = match lower {
        b"ping" => argc <= 2,
        b"echo" | b"get" | b"incr" | b"decr" | b"select" => argc == 2,
        b"incrby" | b"decrby" => argc == 3,
        b"set" => argc >= 3,
        b"del" | b"exists" | b"mget" | b"config" | b"client" => argc >= 2,
        b"mset" => argc >= 3 && argc % 2 == 1,
        b"dbsize" | b"quit" => argc == 1,
        _ => true,
    };
    if !arity_ok {
        out.extend_from_slice(b"-ERR wrong number of arguments for '");
        out.extend_from_slice(lower);
        out.extend_from_slice(b"' command\r\n");
        return After::KeepOpen;
    }
    match lower {
        b"ping" if argc == 1 => simple(out, "PONG"),
        b"ping" | b"echo" => bulk(out, Some(req.arg(1))),
        b"get" => bulk(out, store.get(req.arg(1)).map(|e| e.value.as_slice())),
        b"set" => set(store, req, out),
        b"del" => {
            let removed = req.from(1).filter(|k| store.remove(k)).count();
            integer(out, removed as i64);
        }
        b"exists" => {
            let found = req.from(1).filter(|k| store.contains(k)).count();
            integer(out, found as i64);
        }
        b"incr" => add(store, req.arg(1), Ok(1), out),
        b"decr" => add(store, req.arg(1), Ok(-1), out),
        b"incrby" => add(store, req.arg(1), signed(req.arg(2)), out),
        b"decrby" => {
            let delta = signed(req.arg(2)).and_then(|d| d.checked_neg().ok_or(NOT_AN_INTEGER));
            add(store, req.arg(1), delta, out);
        }
        b"mget" => {
            array(out, argc - 1);
            for key in req.from(1) {
                bulk(out, store.get(key).map(|e| e.value.as_slice()));
            }
        }
        b"mset" => {
            for pair in req.args[1..].chunks_exact(2) {
                let (key, value) = (&req.packet[pair[0].clone()], &req.packet[pair[1].clone()]);
                store.set(key, 0, value, Condition::Always);
            }
            simple(out, "OK");
        }
        b"dbsize" => integer(out, store.len() as i64),
        b"flushall" | b"flushdb" => {
            store.clear();
            simple(out, "OK");
        }
        b"quit" => {
            simple(out, "OK");
            return After::Close;
        }
        b"config" if req.arg(1).eq_ignore_ascii_case(b"get") && argc >= 3 => array(out, 0),
        b"command" => array(out, 0),
        b"select" => match signed(req.arg(1)) {
            Ok(0) => simple(out, "OK"),
            Ok(_) => error(out, "ERR DB index is out of range"),
            Err(why) => error(out, why),
        },
        b"client"
            if [&b"setname"[..], b"setinfo"]
                .iter()
                .any(|sub| sub.eq_ignore_ascii_case(req.arg(1))) =>
        {
            simple(out, "OK");
        }
        b"config" | b"client" => {
            out.extend_from_slice(b"-ERR unknown subcommand '");
            printable(req.arg(1), out);
            out.extend_from_slice(b"'\r\n");
        }
        b"hello" => hello(req, out),
        _ => unknown_command(name, out),
    }
    After::KeepOpen
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]`.
fn set(store: &mut Store, req: &Request<'_>, out: &mut Vec<u8>) {
    let (key, value) = (req.arg(1), req.arg(2));
    let mut condition = Condition::Always;
    let mut want_old = false;
    let mut options = req.from(3);
    while let Some(option) = options.next() {
        let is = |name: &[u8]| option.eq_ignore_ascii_case(name);
        if is(b"nx") && condition != Condition::IfPresent {
            condition = Condition::IfAbsent;
        } else if is(b"xx") && condition != Condition::IfAbsent {
            condition = Condition::IfPresent;
        } else if is(b"get") {
            want_old = true;
        } else if is(b"ex") || is(b"px") || is(b"exat") || is(b"pxat") {
            match options.next().map(signed) {
                Some(Ok(t)) if t > 0 => {}
                Some(Ok(_)) => return error(out, "ERR invalid expire time in 'set' command"),
                Some(Err(why)) => return error(out, why),
                None => return error(out, "ERR syntax error"),
            }
        } else if !is(b"keepttl") {
            return error(out, "ERR syntax error");
        }
    }
    if want_old {
        bulk(out, store.get(key).map(|e| e.value.as_slice()));
    }
    let stored = store.set(key, 0, value, condition);
    if !want_old {
        match stored {
            Outcome::Stored => simple(out, "OK"),
            _ => bulk(out, None),
        }
    }
}

/// `INCR`/`DECR`/`INCRBY`/`DECRBY`: adds `delta` (or answers its parse error).
fn add(store: &mut Store, key: &[u8], delta: Result<i64, &'static str>, out: &mut Vec<u8>) {
    match delta.map(|d| store.add_signed(key, d)) {
        Ok(Ok(n)) => integer(out, n),
        Ok(Err(ArithError::NotANumber)) => error(out, NOT_AN_INTEGER),
        Ok(Err(ArithError::Overflow)) => error(out, "ERR increment or decrement would overflow"),
        Err(why) => error(out, why),
    }
}

/// `HELLO [protover ...]`: the server map for protocol 2; protocol 3 is not spoken.
fn hello(req: &Request<'_>, out: &mut Vec<u8>) {
    if req.len() > 1 {
        match signed(req.arg(1)) {
            Ok(2) => {}
            Ok(_) => return error(out, "NOPROTO sorry, this protocol version is not supported"),
            Err(_) => {
                return error(
                    out,
                    "ERR Protocol version is not an integer or out of range",
                );
            }
        }
    }
    array(out, 14);
    for (field, value) in [
        ("server", "ccsd-kv"),
        ("version", env!("CARGO_PKG_VERSION")),
    ] {
        bulk(out, Some(field.as_bytes()));
        bulk(out, Some(value.as_bytes()));
    }
    bulk(out, Some(b"proto"));
    integer(out, 2);
    bulk(out, Some(b"id"));
    integer(out, 0);
    for (field, value) in [("mode", "standalone"), ("role", "master")] {
        bulk(out, Some(field.as_bytes()));
        bulk(out, Some(value.as_bytes()));
    }
    bulk(out, Some(b"modules"));
    array(out, 0);
}

fn signed(arg: &[u8]) -> Result<i64, &'static str> {
    parse_decimal::<i64>(arg).ok_or(NOT_AN_INTEGER)
}

fn unknown_command(name: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"-ERR unknown command '");
    printable(name, out);
    out.extend_from_slice(b"'\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(store: &mut Store, packet: &[u8]) -> (String, After) {
        let (mut args, mut out) = (Vec::new(), Vec::new());
        let after = handle(store, packet, &mut args, &mut out);
        (String::from_utf8(out).unwrap(), after)
    }

    fn reply(store: &mut Store, packet: &[u8]) -> String {
        run(store, packet).0
    }

    /// A request as an array of bulk strings.
    fn cmd(words: &[&str]) -> Vec<u8> {
        let mut p = format!("*{}\r\n", words.len());
        for w in words {
            p += &format!("${}\r\n{w}\r\n", w.len());
        }
        p.into_bytes()
    }

    #[test]
    fn every_listed_command_is_answered_with_any_number_of_arguments() {
        let mut s = Store::default();
        for name in COMMANDS {
            for argc in 0..4 {
                let mut words = vec![name];
                words.extend(["a", "b", "c"].iter().take(argc));
                let r = reply(&mut s, &cmd(&words));
                assert!(!r.is_empty(), "{words:?}");
                assert!(!r.starts_with("-ERR unknown command"), "{words:?}: {r}");
            }
        }
    }

    #[test]
    fn ping_echo_and_inline_commands() {
        let mut s = Store::default();
        assert_eq!(reply(&mut s, b"PING\r\n"), "+PONG\r\n");
        assert_eq!(reply(&mut s, b"ping  hi\n"), "$2\r\nhi\r\n");
        assert_eq!(reply(&mut s, &cmd(&["ECHO", "a b"])), "$3\r\na b\r\n");
        assert_eq!(reply(&mut s, b"\r\n"), "");
        assert_eq!(reply(&mut s, b"*0\r\n"), "");
    }

    #[test]
    fn set_get_del_exists_mget_mset_dbsize() {
        let mut s = Store::default();
        assert_eq!(reply(&mut s, &cmd(&["SET", "k", "v"])), "+OK\r\n");
        assert_eq!(reply(&mut s, &cmd(&["get", "k"])), "$1\r\nv\r\n");
        assert_eq!(reply(&mut s, &cmd(&["GET", "x"])), "$-1\r\n");
        assert_eq!(
            reply(&mut s, &cmd(&["MSET", "a", "1", "b", "2"])),
            "+OK\r\n"
        );
        assert_eq!(
            reply(&mut s, &cmd(&["MGET", "a", "x", "b"])),
            "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n"
        );
        assert_eq!(reply(&mut s, &cmd(&["EXISTS", "a", "a", "x"])), ":2\r\n");
        assert_eq!(reply(&mut s, &cmd(&["DBSIZE"])), ":3\r\n");
        assert_eq!(reply(&mut s, &cmd(&["DEL", "a", "x", "k"])), ":2\r\n");
        assert_eq!(reply(&mut s, &cmd(&["FLUSHALL"])), "+OK\r\n");
        assert_eq!(reply(&mut s, &cmd(&["DBSIZE"])), ":0\r\n");
    }

    #[test]
    fn set_honours_nx_xx_and_get_and_ignores_expiry() {
        let mut s = Store::default();
        assert_eq!(reply(&mut s, &cmd(&["SET", "k", "1", "XX"])), "$-1\r\n");
        assert_eq!(
            reply(&mut s, &cmd(&["SET", "k", "1", "NX", "EX", "10"])),
            "+OK\r\n"
        );
        assert_eq!(reply(&mut s, &cmd(&["SET", "k", "2", "NX"])), "$-1\r\n");
        assert_eq!(
            reply(&mut s, &cmd(&["SET", "k", "3", "xx", "GET"])),
            "$1\r\n1\r\n"
        );
        assert_eq!(reply(&mut s, &cmd(&["GET", "k"])), "$1\r\n3\r\n");
        for bad in [
            &["NX", "XX"][..],
            &["EX"],
            &["EX", "0"],
            &["EX", "x"],
            &["BOGUS"],
        ] {
            let mut words = vec!["SET", "k", "v"];
            words.extend_from_slice(bad);
            assert!(reply(&mut s, &cmd(&words)).starts_with("-ERR"), "{bad:?}");
        }
    }

    #[test]
    fn incr_family_counts_and_refuses_non_integers() {
        let mut s = Store::default();
        assert_eq!(reply(&mut s, &cmd(&["INCR", "n"])), ":1\r\n");
        assert_eq!(reply(&mut s, &cmd(&["INCRBY", "n", "10"])), ":11\r\n");
        assert_eq!(reply(&mut s, &cmd(&["DECRBY", "n", "2"])), ":9\r\n");
        assert_eq!(reply(&mut s, &cmd(&["DECR", "n"])), ":8\r\n");
        reply(&mut s, &cmd(&["SET", "s", "abc"]));
        let not_int = "-ERR value is not an integer or out of range\r\n";
        assert_eq!(reply(&mut s, &cmd(&["INCR", "s"])), not_int);
        assert_eq!(reply(&mut s, &cmd(&["INCRBY", "n", "x"])), not_int);
    }

    #[test]
    fn connection_chatter_gets_harmless_answers() {
        let mut s = Store::default();
        assert_eq!(reply(&mut s, &cmd(&["CONFIG", "GET", "save"])), "*0\r\n");
        assert_eq!(reply(&mut s, &cmd(&["COMMAND", "DOCS"])), "*0\r\n");
        assert_eq!(reply(&mut s, &cmd(&["COMMAND"])), "*0\r\n");
        assert_eq!(reply(&mut s, &cmd(&["SELECT", "0"])), "+OK\r\n");
        assert!(reply(&mut s, &cmd(&["SELECT", "1"])).starts_with("-ERR"));
        assert_eq!(reply(&mut s, &cmd(&["CLIENT", "SETNAME", "x"])), "+OK\r\n");
        assert!(reply(&mut s, &cmd(&["HELLO", "2"])).starts_with("*14\r\n"));
        assert!(reply(&mut s, &cmd(&["HELLO"])).starts_with("*14\r\n"));
        assert!(reply(&mut s, &cmd(&["HELLO", "3"])).starts_with("-NOPROTO"));
        assert_eq!(
            run(&mut s, &cmd(&["QUIT"])),
            ("+OK\r\n".into(), After::Close)
        );
    }

    #[test]
    fn unknown_commands_and_wrong_arity_are_errors() {
        let mut s = Store::default();
        assert_eq!(
            reply(&mut s, &cmd(&["FOO\r\n", "x"])),
            "-ERR unknown command 'FOO??'\r\n"
        );
        assert_eq!(
            reply(&mut s, &cmd(&["GET"])),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(
            reply(&mut s, &cmd(&["MSET", "a"])),
            "-ERR wrong number of arguments for 'mset' command\r\n"
        );
    }

    #[test]
    fn broken_resp_gets_a_protocol_error_and_closes() {
        let mut s = Store::default();
        let (r, after) = run(&mut s, b"*1\r\n$5\r\nab\r\n");
        assert!(r.starts_with("-ERR Protocol error: "), "{r}");
        assert_eq!(after, After::Close);
    }
}
