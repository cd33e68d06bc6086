//! The key-value example MCP (`examples/kv_mcp`) behind the real ccsd: memcached text protocol
//! on a `framing = "memcache"` listener, RESP on a `framing = "resp"` listener, raw sockets and
//! the stock clients (`redis-cli`, `redis-benchmark`, libmemcached's `memccp`/`memccat`/`memcrm`).

use crate::common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use common::{Proc, TestEnv, assert_closed, connect, read_n, run_ok, tool};

/// ccsd with a memcache listener and a RESP listener, and kv_mcp serving both.
struct KvServer {
    // Fields drop in order: the MCP and ccsd are stopped before the environment is removed.
    _mcp: Proc,
    ccsd: Proc,
    env: TestEnv,
}

impl KvServer {
    fn start() -> KvServer {
        let env = TestEnv::new(
            2,
            "framing = \"memcache\"",
            "[[listen]]\naddr = \"127.0.0.1:0\"\nframing = \"resp\"\n",
        );
        let ccsd = env.start_ccsd();
        assert_eq!(ccsd.addrs.len(), 2, "two listeners: {:?}", ccsd.addrs);
        let mcp = env.start_mcp("kv_mcp");
        KvServer {
            _mcp: mcp,
            ccsd,
            env,
        }
    }

    fn memcache_addr(&self) -> SocketAddr {
        self.ccsd.addrs[0]
    }

    fn resp_addr(&self) -> SocketAddr {
        self.ccsd.addrs[1]
    }

    fn memcache(&self) -> TcpStream {
        connect(self.memcache_addr())
    }

    fn resp(&self) -> TcpStream {
        connect(self.resp_addr())
    }
}

/// Writes `requests` in one write and checks the replies are exactly `expected`.
fn exchange(s: &mut TcpStream, requests: &[u8], expected: &str) {
    s.write_all(requests).unwrap();
    let got = read_n(s, expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

/// A RESP request: an array of bulk strings.
fn resp_cmd(words: &[&str]) -> String {
    let mut p = format!("*{}\r\n", words.len());
    for w in words {
        p += &format!("${}\r\n{w}\r\n", w.len());
    }
    p
}

#[test]
fn memcache_storage_commands_pipelined_in_one_write() {
    let kv = KvServer::start();
    let mut s = kv.memcache();
    exchange(
        &mut s,
        b"set a 7 0 3\r\nabc\r\n\
          add a 0 0 1\r\nx\r\n\
          add b 0 0 1\r\nb\r\n\
          replace c 0 0 1\r\nc\r\n\
          append a 0 0 2\r\n>>\r\n\
          prepend a 0 0 2\r\n<<\r\n\
          get a b c\r\n",
        "STORED\r\nNOT_STORED\r\nSTORED\r\nNOT_STORED\r\nSTORED\r\nSTORED\r\n\
         VALUE a 7 7\r\n<<abc>>\r\nVALUE b 0 1\r\nb\r\nEND\r\n",
    );
}

#[test]
fn memcache_cas_stores_only_with_the_unique_value_gets_reported() {
    let kv = KvServer::start();
    let mut s = kv.memcache();
    exchange(&mut s, b"set k 0 0 1\r\na\r\n", "STORED\r\n");
    s.write_all(b"gets k\r\n").unwrap();
    let head = String::from_utf8(read_n(&mut s, "VALUE k 0 1 ".len())).unwrap();
    assert_eq!(head, "VALUE k 0 1 ");
    let mut unique = String::new();
    loop {
        let b = read_n(&mut s, 1)[0];
        if b == b'\r' {
            break;
        }
        unique.push(char::from(b));
    }
    assert_eq!(read_n(&mut s, "\na\r\nEND\r\n".len()), b"\na\r\nEND\r\n");
    let stale = format!(
        "cas k 0 0 1 {}\r\nb\r\n",
        unique.parse::<u64>().unwrap() + 1
    );
    exchange(&mut s, stale.as_bytes(), "EXISTS\r\n");
    let current = format!("cas k 0 0 1 {unique}\r\nc\r\n");
    exchange(&mut s, current.as_bytes(), "STORED\r\n");
    exchange(&mut s, b"get k\r\n", "VALUE k 0 1\r\nc\r\nEND\r\n");
}

#[test]
fn memcache_delete_incr_decr_touch_and_errors() {
    let kv = KvServer::start();
    let mut s = kv.memcache();
    exchange(
        &mut s,
        b"set n 0 0 2\r\n40\r\n\
          incr n 2\r\n\
          decr n 50\r\n\
          incr missing 1\r\n\
          set t 0 0 1\r\nx\r\n\
          incr t 1\r\n\
          touch t 60\r\n\
          touch missing 60\r\n\
          delete t\r\n\
          delete t\r\n\
          bogus\r\n\
          incr\r\n",
        "STORED\r\n42\r\n0\r\nNOT_FOUND\r\nSTORED\r\n\
         CLIENT_ERROR cannot increment or decrement non-numeric value\r\n\
         TOUCHED\r\nNOT_FOUND\r\nDELETED\r\nNOT_FOUND\r\nERROR\r\n\
         CLIENT_ERROR bad command line format\r\n",
    );
}

#[test]
fn memcache_data_block_split_across_writes_is_one_command() {
    let kv = KvServer::start();
    let mut s = kv.memcache();
    for part in [&b"set k 0 0 10\r"[..], b"\nhello", b"worl", b"d\r", b"\n"] {
        s.write_all(part).unwrap();
    }
    assert_eq!(read_n(&mut s, 8), b"STORED\r\n");
    exchange(&mut s, b"get k\n", "VALUE k 0 10\r\nhelloworld\r\nEND\r\n");
}

#[test]
fn memcache_value_larger_than_one_reply_record_comes_back_whole() {
    let kv = KvServer::start();
    let mut s = kv.memcache();
    let value: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let set = format!("set big 1 0 {}\r\n{value}\r\n", value.len());
    exchange(&mut s, set.as_bytes(), "STORED\r\n");
    let expected = format!("VALUE big 1 {}\r\n{value}\r\nEND\r\n", value.len());
    exchange(&mut s, b"get big\r\n", &expected);
}

#[test]
fn memcache_noreply_commands_answer_nothing() {
    let kv = KvServer::start();
    let mut s = kv.memcache();
    exchange(
        &mut s,
        b"set k 0 0 1 noreply\r\nx\r\n\
          add k 0 0 1 noreply\r\ny\r\n\
          delete missing noreply\r\n\
          get k\r\n",
        "VALUE k 0 1\r\nx\r\nEND\r\n",
    );
}

#[test]
fn memcache_version_and_stats_answer() {
    let kv = KvServer::start();
    let mut s = kv.memcache();
    let version = format!("VERSION 1.6.0 ccsd-kv-{}\r\n", env!("CARGO_PKG_VERSION"));
    exchange(&mut s, b"version\r\n", &version);
    s.write_all(b"set k 0 0 1\r\nx\r\nstats\r\n").unwrap();
    let mut text = Vec::new();
    while !text.ends_with(b"END\r\n") {
        text.extend(read_n(&mut s, 1));
    }
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with("STORED\r\nSTAT pid "), "{text}");
    assert!(text.contains("\r\nSTAT curr_items 1\r\n"), "{text}");
}

#[test]
fn memcache_quit_closes_the_connection_after_earlier_replies() {
    let kv = KvServer::start();
    let mut s = kv.memcache();
    exchange(&mut s, b"set k 0 0 1\r\nx\r\nquit\r\n", "STORED\r\n");
    assert_closed(&mut s);
}

#[test]
fn resp_commands_pipelined_in_one_write() {
    let kv = KvServer::start();
    let mut s = kv.resp();
    let requests = [
        resp_cmd(&["SET", "k", "v"]),
        resp_cmd(&["GET", "k"]),
        resp_cmd(&["GET", "missing"]),
        resp_cmd(&["INCR", "n"]),
        resp_cmd(&["INCRBY", "n", "41"]),
        resp_cmd(&["DECR", "n"]),
        resp_cmd(&["INCR", "k"]),
        resp_cmd(&["MSET", "a", "1", "b", "2"]),
        resp_cmd(&["MGET", "a", "missing", "b"]),
        resp_cmd(&["EXISTS", "a", "b", "missing"]),
        resp_cmd(&["DEL", "a", "missing"]),
        resp_cmd(&["DBSIZE"]),
        "PING\r\n".to_owned(),
        resp_cmd(&["ECHO", "hi there"]),
        resp_cmd(&["SET", "k", "w", "NX"]),
        resp_cmd(&["SET", "k", "w", "XX", "EX", "100"]),
        resp_cmd(&["NOSUCH", "x"]),
    ]
    .concat();
    exchange(
        &mut s,
        requests.as_bytes(),
        "+OK\r\n$1\r\nv\r\n$-1\r\n:1\r\n:42\r\n:41\r\n\
         -ERR value is not an integer or out of range\r\n+OK\r\n\
         *3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n:2\r\n:1\r\n:3\r\n+PONG\r\n$8\r\nhi there\r\n\
         $-1\r\n+OK\r\n-ERR unknown command 'NOSUCH'\r\n",
    );
}

#[test]
fn resp_quit_replies_ok_then_closes() {
    let kv = KvServer::start();
    let mut s = kv.resp();
    exchange(&mut s, resp_cmd(&["QUIT"]).as_bytes(), "+OK\r\n");
    assert_closed(&mut s);
}

#[test]
fn values_are_shared_between_memcache_and_resp_clients() {
    let kv = KvServer::start();
    let (mut mc, mut redis) = (kv.memcache(), kv.resp());
    exchange(&mut mc, b"set from_mc 0 0 2\r\nmc\r\n", "STORED\r\n");
    exchange(
        &mut redis,
        resp_cmd(&["GET", "from_mc"]).as_bytes(),
        "$2\r\nmc\r\n",
    );
    exchange(
        &mut redis,
        resp_cmd(&["SET", "from_redis", "r"]).as_bytes(),
        "+OK\r\n",
    );
    exchange(
        &mut mc,
        b"get from_redis\r\n",
        "VALUE from_redis 0 1\r\nr\r\nEND\r\n",
    );
}

fn redis_cli(kv: &KvServer, args: &[&str]) -> String {
    let port = kv.resp_addr().port().to_string();
    run_ok(
        tool("redis-cli", "redis-tools")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args),
    )
}

#[test]
fn redis_cli_sets_gets_and_increments() {
    let kv = KvServer::start();
    assert_eq!(redis_cli(&kv, &["SET", "k", "v"]), "OK\n");
    assert_eq!(redis_cli(&kv, &["GET", "k"]), "v\n");
    assert_eq!(redis_cli(&kv, &["INCR", "n"]), "1\n");
    assert_eq!(redis_cli(&kv, &["INCR", "n"]), "2\n");
    assert_eq!(redis_cli(&kv, &["PING"]), "PONG\n");
}

#[test]
fn redis_benchmark_set_and_get_complete_with_nonzero_rates() {
    let kv = KvServer::start();
    let port = kv.resp_addr().port().to_string();
    let out = run_ok(tool("redis-benchmark", "redis-tools").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "set,get",
        "-n",
        "2000",
        "-q",
    ]));
    // `-q` prints one `NAME: <rate> requests per second, ...` line per test, after progress
    // lines ending in `\r`.
    for test in ["SET", "GET"] {
        let rate = out
            .split(['\r', '\n'])
            .filter_map(|line| line.strip_prefix(&format!("{test}: ")))
            .filter_map(|rest| rest.split(" requests per second").next())
            .filter_map(|rate| rate.trim().parse::<f64>().ok())
            .next_back()
            .unwrap_or_else(|| panic!("no {test} rate in redis-benchmark output:\n{out}"));
        assert!(rate > 0.0, "{test} rate {rate}:\n{out}");
    }
}

/// A libmemcached command-line tool (Debian's `libmemcached-tools`) pointed at `kv`.
fn memc(kv: &KvServer, name: &str) -> std::process::Command {
    let mut cmd = tool(name, "libmemcached-tools");
    cmd.arg(format!("--servers=127.0.0.1:{}", kv.memcache_addr().port()))
        .current_dir(&kv.env.dir);
    cmd
}

#[test]
fn memcached_cli_tools_ping_copy_check_read_remove_and_flush() {
    let kv = KvServer::start();
    // memcping and memcstat parse the VERSION reply as memcached's `major.minor.patch`.
    run_ok(&mut memc(&kv, "memcping"));
    let stats = run_ok(&mut memc(&kv, "memcstat"));
    assert!(stats.contains("version: ccsd-kv-"), "{stats}");
    for name in ["greeting.txt", "other.txt"] {
        std::fs::write(kv.env.dir.join(name), "hello from a file\n").unwrap();
        run_ok(memc(&kv, "memccp").arg(name));
    }
    run_ok(memc(&kv, "memcexist").arg("greeting.txt"));
    run_ok(memc(&kv, "memctouch").arg("greeting.txt"));
    // memccat prints a newline after each value.
    let got = run_ok(memc(&kv, "memccat").arg("greeting.txt"));
    assert_eq!(got, "hello from a file\n\n");
    let mut s = kv.memcache();
    exchange(
        &mut s,
        b"get greeting.txt\r\n",
        "VALUE greeting.txt 0 18\r\nhello from a file\n\r\nEND\r\n",
    );
    run_ok(memc(&kv, "memcrm").arg("greeting.txt"));
    exchange(
        &mut s,
        b"get greeting.txt other.txt\r\n",
        "VALUE other.txt 0 18\r\nhello from a file\n\r\nEND\r\n",
    );
    run_ok(&mut memc(&kv, "memcflush"));
    exchange(&mut s, b"get other.txt\r\n", "END\r\n");
}
