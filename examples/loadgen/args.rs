//! Command-line options of the load generator: parsing, validation and the usage text.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::flags::{Command, number, positive, positive_float, seconds};
use crate::protocol::MAX_PAYLOAD;

/// The usage text `--help` prints.
pub const USAGE: &str = "\
usage: loadgen --addr HOST:PORT [options]

Closed-loop (or, with --rate, open-loop) TCP load against ccsd, memcached or redis.

  --addr HOST:PORT         server to load (required)
  --protocol P             length | memcache | resp (default: length)
                             length:   4-byte big-endian length, then the bytes; the server
                                       echoes them (ccsd's default framing, echo MCP)
                             memcache: memcached text protocol, get/set
                             resp:     Redis RESP2 arrays, GET/SET
  --connections N          TCP connections (default: 32)
  --pipeline N             requests in flight per connection (default: 1)
  --ratio GET:SET          mix of GETs and SETs (default: 10:1; length: every request is an
                           echo of a --value-size payload)
  --value-size BYTES       SET value and echo payload size (default: 512)
  --keys N                 key space, keys key:000000 .. (default: 10000)
  --duration SECS          measure for SECS seconds (the default: 10) ...
  --requests N             ... or until N requests in total (after the warm-up) were sent
                           and answered
  --rate R                 open loop: R requests/s in total, at fixed intervals per
                           connection; latency counts from the scheduled send time
  --warmup SECS            run SECS seconds first without recording (default: 0)
  --preload                memcache/resp: SET every key once before measuring, so GETs hit
  --threads N              client threads; connections are spread over them (default: 1)
  --timeout SECS           a connection whose requests see no reply bytes for SECS seconds
                           fails (default: 5)
  --json                   print one JSON object instead of the text report
  --seed N                 seed of the key and operation choice (default: 1)
  --help                   print this text

Exit status: 0 when every request was answered correctly, 1 when any error occurred (failed
connection, unexpected or wrong reply), 2 on bad arguments.";

/// The wire protocol spoken to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// 4-byte big-endian length, then the bytes; the reply is the same bytes.
    Length,
    /// memcached text protocol.
    Memcache,
    /// Redis RESP2.
    Resp,
}

impl Protocol {
    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Length => "length",
            Protocol::Memcache => "memcache",
            Protocol::Resp => "resp",
        }
    }
}

/// When the measured run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this long (the warm-up not included).
    After(Duration),
    /// Once this many measured requests, over all connections, were sent and answered.
    Requests(u64),
}

/// Everything the command line sets.
#[derive(Debug, Clone)]
pub struct Args {
    /// The server, resolved.
    pub addr: SocketAddr,
    /// The wire protocol.
    pub protocol: Protocol,
    /// TCP connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Relative weight of GETs.
    pub get_weight: u32,
    /// Relative weight of SETs.
    pub set_weight: u32,
    /// SET value and echo payload size.
    pub value_size: usize,
    /// Keys `key:000000` up to `keys - 1`.
    pub keys: u64,
    /// When the run ends.
    pub stop: Stop,
    /// Open loop: requests per second over all connections.
    pub rate: Option<f64>,
    /// Unrecorded time before measuring.
    pub warmup: Duration,
    /// SET every key once before measuring.
    pub preload: bool,
    /// Client threads.
    pub threads: usize,
    /// How long requests may wait for reply bytes before their connection fails.
    pub timeout: Duration,
    /// Print JSON instead of text.
    pub json: bool,
    /// Seed of the key and operation choice.
    pub seed: u64,
}

/// Parses the arguments after the program name.
///
/// # Errors
/// A message naming the bad or missing option.
pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Command<Args>, String> {
    let mut argv = argv.into_iter();
    let mut addr = None;
    let mut protocol = Protocol::Length;
    let mut connections = 32;
    let mut pipeline = 1;
    let mut ratio = (10, 1);
    let mut value_size = 512;
    let mut keys = 10_000;
    let mut duration = None;
    let mut requests = None;
    let mut rate = None;
    let mut warmup = Duration::ZERO;
    let mut preload = false;
    let mut threads = 1;
    let mut timeout = Duration::from_secs(5);
    let mut json = false;
    let mut seed = 1;
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--addr" => addr = Some(value()?),
            "--protocol" => protocol = parse_protocol(&value()?)?,
            "--connections" => connections = positive(&flag, &value()?)?,
            "--pipeline" => pipeline = positive(&flag, &value()?)?,
            "--ratio" => ratio = parse_ratio(&value()?)?,
            "--value-size" => value_size = number(&flag, &value()?)?,
            "--keys" => keys = positive(&flag, &value()?)?,
            "--duration" => duration = Some(seconds(&flag, &value()?)?),
            "--requests" => requests = Some(positive(&flag, &value()?)?),
            "--rate" => rate = Some(positive_float(&flag, &value()?)?),
            "--warmup" => warmup = seconds(&flag, &value()?)?,
            "--preload" => preload = true,
            "--threads" => threads = positive(&flag, &value()?)?,
            "--timeout" => timeout = seconds(&flag, &value()?)?,
            "--json" => json = true,
            "--seed" => seed = number(&flag, &value()?)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let addr = addr.ok_or("--addr is required")?;
    let addr = resolve(&addr)?;
    let stop = match (duration, requests) {
        (Some(_), Some(_)) => return Err("give --duration or --requests, not both".into()),
        (Some(d), None) if d.is_zero() => return Err("--duration must be above 0".into()),
        (Some(d), None) => Stop::After(d),
        (None, Some(n)) => Stop::Requests(n),
        (None, None) => Stop::After(Duration::from_secs(10)),
    };
    if threads > connections {
        return Err(format!(
            "--threads {threads} exceeds --connections {connections}"
        ));
    }
    if preload && protocol == Protocol::Length {
        return Err("--preload applies to memcache and resp only".into());
    }
    if value_size > MAX_PAYLOAD {
        return Err(format!("--value-size {value_size} exceeds {MAX_PAYLOAD}"));
    }
    if timeout.is_zero() {
        return Err("--timeout must be above 0".into());
    }
    Ok(Command::Run(Args {
        addr,
        protocol,
        connections,
        pipeline,
        get_weight: ratio.0,
        set_weight: ratio.1,
        value_size,
        keys,
        stop,
        rate,
        warmup,
        preload,
        threads,
        timeout,
        json,
        seed,
    }))
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "length" => Ok(Protocol::Length),
        "memcache" => Ok(Protocol::Memcache),
        "resp" => Ok(Protocol::Resp),
        _ => Err(format!("--protocol {s}: expected length, memcache or resp")),
    }
}

fn parse_ratio(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("--ratio {s}: expected GET:SET, e.g. 10:1");
    let (get, set) = s.split_once(':').ok_or_else(bad)?;
    let get: u32 = get.parse().map_err(|_| bad())?;
    let set: u32 = set.parse().map_err(|_| bad())?;
    if get.checked_add(set).is_none_or(|sum| sum == 0) {
        return Err(bad());
    }
    Ok((get, set))
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("--addr {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("--addr {addr}: no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(|s| s.to_string()))?.into_run()
    }

    #[test]
    fn defaults_match_the_usage_text() {
        let a = run(&["--addr", "127.0.0.1:1"]).unwrap();
        assert_eq!(a.protocol, Protocol::Length);
        assert_eq!((a.connections, a.pipeline, a.threads), (32, 1, 1));
        assert_eq!((a.get_weight, a.set_weight), (10, 1));
        assert_eq!((a.value_size, a.keys), (512, 10_000));
        assert_eq!(a.stop, Stop::After(Duration::from_secs(10)));
        assert!(a.rate.is_none() && !a.preload && !a.json);
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["--connections", "4"][..],
            &["--addr", "127.0.0.1:1", "--ratio", "0:0"],
            &[
                "--addr",
                "127.0.0.1:1",
                "--duration",
                "1",
                "--requests",
                "5",
            ],
            &[
                "--addr",
                "127.0.0.1:1",
                "--threads",
                "4",
                "--connections",
                "2",
            ],
            &["--addr", "127.0.0.1:1", "--preload"],
            &["--addr", "127.0.0.1:1", "--rate", "-3"],
            &["--addr", "127.0.0.1:1", "--pipeline"],
            &["--addr", "127.0.0.1:1", "--bogus"],
            &["--addr", "127.0.0.1:1", "--value-size", "100000000"],
        ] {
            assert!(run(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
