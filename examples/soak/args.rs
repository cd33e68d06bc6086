//! Command-line options of the soak benchmark: the clap parser, the checks between flags, and
//! what they make ([`Args`]).

use std::time::Duration;

use clap::Parser;

use crate::flags::{fraction, positive, positive_float, positive_seconds, seconds};
use crate::payload::{MAX_BODY, MIN_BODY};

/// The command line as given.
#[derive(Debug, Parser)]
#[command(
    name = "soak",
    about = "Starts the release ccsd and the echo MCP built beside it (cargo build --release \
             --bins --examples), holds --idle-conns idle connections, drives --load-conns \
             connections at full speed whose clients now and then close in the middle of a \
             packet and reconnect, checks every reply, samples ccsd's resident memory, and fails \
             on any lost, misrouted or corrupted reply or on memory growth.",
    after_help = "Exit status: 0 when every reply came back exact and memory stayed within \
                  bounds, 1 when anything failed (the report says what), 2 on bad arguments."
)]
struct Cli {
    /// How long the load runs.
    #[arg(long, value_name = "SECS", default_value = "600", value_parser = positive_seconds)]
    duration: Duration,
    /// Connections under load.
    #[arg(long, value_name = "N", default_value = "32", value_parser = positive::<usize>)]
    load_conns: usize,
    /// Connections held open without traffic.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    idle_conns: usize,
    /// Requests in flight per load connection.
    #[arg(long, value_name = "N", default_value = "16", value_parser = positive::<usize>)]
    pipeline: usize,
    /// Largest request body; sizes are drawn from 24 up to it.
    #[arg(long, value_name = "BYTES", default_value_t = 512)]
    max_payload: usize,
    /// Chance, per request, that the client instead writes part of it and closes the
    /// connection, then reconnects.
    #[arg(long, value_name = "P", default_value = "0.0005", value_parser = fraction)]
    close_probability: f64,
    /// Memory samples before this are not judged (default: a tenth of the duration, at most 60).
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    warmup: Option<Duration>,
    /// How often ccsd's resident memory is sampled (default: a twentieth of the duration, from
    /// 0.25 to 5).
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    sample_every: Option<Duration>,
    /// Fail if the resident memory grows by more than PCT percent over its first sample after
    /// the warm-up.
    #[arg(long, value_name = "PCT", default_value = "10", value_parser = positive_float)]
    max_rss_growth: f64,
    /// A connection whose requests see no reply for this long has lost them.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = positive_seconds)]
    reply_timeout: Duration,
    /// ccsd's broker.workers (default: ccsd's own, the number of cores).
    #[arg(long, value_name = "N", value_parser = positive::<usize>)]
    workers: Option<usize>,
    /// Hot-restart ccsd every SECS of the load: start `ccsd --takeover --config FILE` (the same
    /// binary and settings), wait for its "ccsd ready" and the old process's exit 0 after
    /// "handed N connections over", and go on with the new process; each process's memory is
    /// judged within its own life (default: no takeover).
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    takeover_every: Option<Duration>,
    /// Seed of the payloads and the close decisions.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
}

/// Everything the command line sets.
#[derive(Debug, Clone)]
pub struct Args {
    /// How long the load runs.
    pub duration: Duration,
    /// Connections under load.
    pub load_conns: usize,
    /// Connections held open without traffic.
    pub idle_conns: usize,
    /// Requests in flight per load connection.
    pub pipeline: usize,
    /// Largest request body.
    pub max_payload: usize,
    /// Chance per request of a mid-packet close.
    pub close_probability: f64,
    /// Memory samples before this are not judged.
    pub warmup: Duration,
    /// Time between memory samples.
    pub sample_every: Duration,
    /// Allowed growth of the resident memory after the warm-up, in percent.
    pub max_rss_growth: f64,
    /// How long requests may wait for a reply before they count as lost.
    pub reply_timeout: Duration,
    /// ccsd's worker threads, if set.
    pub workers: Option<usize>,
    /// Time between hot restarts, if any.
    pub takeover_every: Option<Duration>,
    /// Seed of payloads and close decisions.
    pub seed: u64,
    /// Print JSON instead of text.
    pub json: bool,
}

/// The options to run with, from the process's command line; exits on `--help` or bad options.
pub fn from_command_line() -> Args {
    crate::flags::parse_or_exit(check)
}

/// The rules between flags, and the defaults that depend on `--duration`.
fn check(cli: Cli) -> Result<Args, String> {
    if !(MIN_BODY..=MAX_BODY).contains(&cli.max_payload) {
        return Err(format!(
            "--max-payload {}: expected {MIN_BODY} to {MAX_BODY}",
            cli.max_payload
        ));
    }
    let warmup = cli
        .warmup
        .unwrap_or((cli.duration / 10).min(Duration::from_secs(60)));
    if warmup >= cli.duration {
        return Err("--warmup must be shorter than --duration".into());
    }
    if cli
        .takeover_every
        .is_some_and(|every| every >= cli.duration)
    {
        return Err("--takeover-every must be shorter than --duration".into());
    }
    let sample_every = cli
        .sample_every
        .unwrap_or((cli.duration / 20).clamp(Duration::from_millis(250), Duration::from_secs(5)));
    Ok(Args {
        duration: cli.duration,
        load_conns: cli.load_conns,
        idle_conns: cli.idle_conns,
        pipeline: cli.pipeline,
        max_payload: cli.max_payload,
        close_probability: cli.close_probability,
        warmup,
        sample_every,
        max_rss_growth: cli.max_rss_growth,
        reply_timeout: cli.reply_timeout,
        workers: cli.workers,
        takeover_every: cli.takeover_every,
        seed: cli.seed,
        json: cli.json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        let argv: Vec<&str> = std::iter::once("soak")
            .chain(args.iter().copied())
            .collect();
        crate::flags::try_parse(&argv, check)
    }

    #[test]
    fn defaults_are_the_ten_minute_soak_of_the_usage_text() {
        let a = run(&[]).unwrap();
        assert_eq!(a.duration, Duration::from_secs(600));
        assert_eq!((a.load_conns, a.idle_conns, a.pipeline), (32, 2000, 16));
        assert_eq!(a.warmup, Duration::from_secs(60));
        assert_eq!(a.sample_every, Duration::from_secs(5));
        assert_eq!(a.max_rss_growth, 10.0);
        assert_eq!(a.takeover_every, None);
    }

    #[test]
    fn short_runs_scale_warmup_and_sampling_down() {
        let a = run(&["--duration", "4"]).unwrap();
        assert_eq!(a.warmup, Duration::from_millis(400));
        assert_eq!(a.sample_every, Duration::from_millis(250));
    }

    #[test]
    fn every_flag_is_taken() {
        let a = run(&[
            "--duration=20",
            "--load-conns",
            "4",
            "--idle-conns",
            "10",
            "--pipeline",
            "2",
            "--max-payload",
            "100",
            "--close-probability",
            "0.5",
            "--warmup",
            "1",
            "--sample-every",
            "0.5",
            "--max-rss-growth",
            "20",
            "--reply-timeout",
            "3",
            "--workers",
            "2",
            "--takeover-every",
            "5",
            "--seed",
            "9",
            "--json",
        ])
        .unwrap();
        assert_eq!((a.load_conns, a.idle_conns, a.pipeline), (4, 10, 2));
        assert_eq!((a.max_payload, a.close_probability), (100, 0.5));
        assert_eq!(
            (a.warmup, a.sample_every),
            (Duration::from_secs(1), Duration::from_millis(500))
        );
        assert_eq!(
            (a.max_rss_growth, a.reply_timeout),
            (20.0, Duration::from_secs(3))
        );
        assert!(a.workers == Some(2) && a.seed == 9 && a.json);
        assert_eq!(a.takeover_every, Some(Duration::from_secs(5)));
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["--duration", "0"][..],
            &["--load-conns", "0"],
            &["--close-probability", "1.5"],
            &["--max-payload", "8"],
            &["--duration", "10", "--warmup", "10"],
            &["--pipeline"],
            &["--bogus"],
            &["--sample-every", "0"],
            &["--takeover-every", "0"],
            &["--duration", "10", "--takeover-every", "10"],
        ] {
            assert!(run(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
