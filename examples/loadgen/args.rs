//! Command-line options of the load generator: the clap parser, the checks between flags, and
//! what they make ([`Args`]).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::flags::{positive, positive_float, positive_seconds, seconds};
use crate::protocol::MAX_PAYLOAD;

/// The command line as given.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Closed-loop (or, with --rate, open-loop) TCP load against ccsd, memcached or redis.",
    after_help = "Exit status: 0 when every request was answered correctly, 1 when any error \
                  occurred (failed connection, unexpected or wrong reply), 2 on bad arguments."
)]
struct Cli {
    /// Server to load.
    #[arg(long, value_name = "HOST:PORT")]
    addr: String,
    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Length)]
    protocol: Protocol,
    /// TCP connections.
    #[arg(long, value_name = "N", default_value = "32", value_parser = positive::<usize>)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, value_name = "N", default_value = "1", value_parser = positive::<usize>)]
    pipeline: usize,
    /// Mix of GETs and SETs (length: every request is an echo of a --value-size payload).
    #[arg(long, value_name = "GET:SET", default_value = "10:1", value_parser = parse_ratio)]
    ratio: (u32, u32),
    /// SET value and echo payload size.
    #[arg(long, value_name = "BYTES", default_value_t = 512)]
    value_size: usize,
    /// Key space, keys key:000000 and up.
    #[arg(long, value_name = "N", default_value = "10000", value_parser = positive::<u64>)]
    keys: u64,
    /// Measure for SECS seconds (default: 10) ...
    #[arg(long, value_name = "SECS", value_parser = positive_seconds, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// ... or until N requests in total (after the warm-up) were sent and answered.
    #[arg(long, value_name = "N", value_parser = positive::<u64>)]
    requests: Option<u64>,
    /// Open loop: R requests/s in total, at fixed intervals per connection; latency counts from
    /// the scheduled send time.
    #[arg(long, value_name = "R", value_parser = positive_float)]
    rate: Option<f64>,
    /// Run SECS seconds first without recording.
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = seconds)]
    warmup: Duration,
    /// memcache/resp: SET every key once before measuring, so GETs hit.
    #[arg(long)]
    preload: bool,
    /// Client threads; connections are spread over them.
    #[arg(long, value_name = "N", default_value = "1", value_parser = positive::<usize>)]
    threads: usize,
    /// A connection whose requests see no reply bytes for SECS seconds fails.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = positive_seconds)]
    timeout: Duration,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
    /// Seed of the key and operation choice.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
}

/// The wire protocol spoken to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// 4-byte big-endian length, then the bytes; the server echoes them (ccsd's default framing,
    /// echo MCP).
    Length,
    /// memcached text protocol, get/set.
    Memcache,
    /// Redis RESP2 arrays, GET/SET.
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

/// The options to run with, from the process's command line; exits on `--help` or bad options.
pub fn from_command_line() -> Args {
    crate::flags::parse_or_exit(check)
}

/// The rules between flags, and the address resolved.
fn check(cli: Cli) -> Result<Args, String> {
    let addr = resolve(&cli.addr)?;
    let stop = match (cli.duration, cli.requests) {
        (_, Some(n)) => Stop::Requests(n),
        (d, None) => Stop::After(d.unwrap_or(Duration::from_secs(10))),
    };
    if cli.threads > cli.connections {
        return Err(format!(
            "--threads {} exceeds --connections {}",
            cli.threads, cli.connections
        ));
    }
    if cli.preload && cli.protocol == Protocol::Length {
        return Err("--preload applies to memcache and resp only".into());
    }
    if cli.value_size > MAX_PAYLOAD {
        return Err(format!(
            "--value-size {} exceeds {MAX_PAYLOAD}",
            cli.value_size
        ));
    }
    Ok(Args {
        addr,
        protocol: cli.protocol,
        connections: cli.connections,
        pipeline: cli.pipeline,
        get_weight: cli.ratio.0,
        set_weight: cli.ratio.1,
        value_size: cli.value_size,
        keys: cli.keys,
        stop,
        rate: cli.rate,
        warmup: cli.warmup,
        preload: cli.preload,
        threads: cli.threads,
        timeout: cli.timeout,
        json: cli.json,
        seed: cli.seed,
    })
}

fn parse_ratio(s: &str) -> Result<(u32, u32), String> {
    let bad = || "expected GET:SET, e.g. 10:1".to_owned();
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
        let argv: Vec<&str> = std::iter::once("loadgen")
            .chain(args.iter().copied())
            .collect();
        crate::flags::try_parse(&argv, check)
    }

    #[test]
    fn defaults_match_the_usage_text() {
        let a = run(&["--addr", "127.0.0.1:1"]).unwrap();
        assert_eq!(a.protocol, Protocol::Length);
        assert_eq!((a.connections, a.pipeline, a.threads), (32, 1, 1));
        assert_eq!((a.get_weight, a.set_weight), (10, 1));
        assert_eq!((a.value_size, a.keys), (512, 10_000));
        assert_eq!(a.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!(a.timeout, Duration::from_secs(5));
        assert!(a.rate.is_none() && !a.preload && !a.json);
    }

    #[test]
    fn every_flag_is_taken_in_both_spellings() {
        let a = run(&[
            "--addr=127.0.0.1:1",
            "--protocol",
            "memcache",
            "--connections=8",
            "--pipeline",
            "4",
            "--ratio",
            "3:1",
            "--value-size",
            "100",
            "--keys",
            "50",
            "--requests",
            "1000",
            "--rate",
            "2.5",
            "--warmup",
            "0.5",
            "--preload",
            "--threads",
            "2",
            "--timeout",
            "1",
            "--json",
            "--seed",
            "7",
        ])
        .unwrap();
        assert_eq!(a.protocol, Protocol::Memcache);
        assert_eq!((a.connections, a.pipeline, a.threads), (8, 4, 2));
        assert_eq!(
            (a.get_weight, a.set_weight, a.value_size, a.keys),
            (3, 1, 100, 50)
        );
        assert_eq!(a.stop, Stop::Requests(1000));
        assert_eq!((a.rate, a.warmup), (Some(2.5), Duration::from_millis(500)));
        assert!(a.preload && a.json && a.seed == 7);
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
            &["--addr", "127.0.0.1:1", "--duration", "0"],
            &["--addr", "127.0.0.1:1", "--timeout", "0"],
            &["--addr", "127.0.0.1:1", "--protocol", "http"],
        ] {
            assert!(run(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
