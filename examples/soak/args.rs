//! Command-line options of the soak benchmark: parsing, validation and the usage text.

use std::time::Duration;

use crate::flags::{Command, fraction, number, positive, positive_float, seconds};
use crate::payload::{MAX_BODY, MIN_BODY};

/// The usage text `--help` prints.
pub const USAGE: &str = "\
usage: soak [options]

Starts the release ccsd and the echo MCP built beside it (cargo build --release --bins --examples),
holds --idle-conns idle connections, drives --load-conns connections at full speed whose clients
now and then close in the middle of a packet and reconnect, checks every reply, samples ccsd's
resident memory, and fails on any lost, misrouted or corrupted reply or on memory growth.

  --duration SECS          how long the load runs (default: 600)
  --load-conns N           connections under load (default: 32)
  --idle-conns N           connections held open without traffic (default: 2000)
  --pipeline N             requests in flight per load connection (default: 16)
  --max-payload BYTES      largest request body; sizes are drawn from 24 up to it (default: 512)
  --close-probability P    chance, per request, that the client instead writes part of it and
                           closes the connection, then reconnects (default: 0.0005)
  --warmup SECS            memory samples before this are not judged (default: a tenth of the
                           duration, at most 60)
  --sample-every SECS      how often ccsd's resident memory is sampled (default: a twentieth of
                           the duration, from 0.25 to 5)
  --max-rss-growth PCT     fail if the resident memory grows by more than PCT percent over its
                           first sample after the warm-up (default: 10)
  --reply-timeout SECS     a connection whose requests see no reply for this long has lost them
                           (default: 10)
  --workers N              ccsd's broker.workers (default: ccsd's own, the number of cores)
  --seed N                 seed of the payloads and the close decisions (default: 1)
  --json                   print one JSON object instead of the text report
  --help                   print this text

Exit status: 0 when every reply came back exact and memory stayed within bounds, 1 when anything
failed (the report says what), 2 on bad arguments.";

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
    /// Seed of payloads and close decisions.
    pub seed: u64,
    /// Print JSON instead of text.
    pub json: bool,
}

/// Parses the arguments after the program name.
///
/// # Errors
/// A message naming the bad or missing option.
pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Command<Args>, String> {
    let mut argv = argv.into_iter();
    let mut args = Args {
        duration: Duration::from_secs(600),
        load_conns: 32,
        idle_conns: 2000,
        pipeline: 16,
        max_payload: 512,
        close_probability: 0.0005,
        warmup: Duration::ZERO,
        sample_every: Duration::ZERO,
        max_rss_growth: 10.0,
        reply_timeout: Duration::from_secs(10),
        workers: None,
        seed: 1,
        json: false,
    };
    let (mut warmup, mut sample_every) = (None, None);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--duration" => args.duration = seconds(&flag, &value()?)?,
            "--load-conns" => args.load_conns = positive(&flag, &value()?)?,
            "--idle-conns" => args.idle_conns = number(&flag, &value()?)?,
            "--pipeline" => args.pipeline = positive(&flag, &value()?)?,
            "--max-payload" => args.max_payload = number(&flag, &value()?)?,
            "--close-probability" => args.close_probability = fraction(&flag, &value()?)?,
            "--warmup" => warmup = Some(seconds(&flag, &value()?)?),
            "--sample-every" => sample_every = Some(seconds(&flag, &value()?)?),
            "--max-rss-growth" => args.max_rss_growth = positive_float(&flag, &value()?)?,
            "--reply-timeout" => args.reply_timeout = seconds(&flag, &value()?)?,
            "--workers" => args.workers = Some(positive(&flag, &value()?)?),
            "--seed" => args.seed = number(&flag, &value()?)?,
            "--json" => args.json = true,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if args.duration.is_zero() {
        return Err("--duration must be above 0".into());
    }
    if !(MIN_BODY..=MAX_BODY).contains(&args.max_payload) {
        return Err(format!(
            "--max-payload {}: expected {MIN_BODY} to {MAX_BODY}",
            args.max_payload
        ));
    }
    if args.reply_timeout.is_zero() {
        return Err("--reply-timeout must be above 0".into());
    }
    args.warmup = warmup.unwrap_or((args.duration / 10).min(Duration::from_secs(60)));
    if args.warmup >= args.duration {
        return Err("--warmup must be shorter than --duration".into());
    }
    args.sample_every = sample_every
        .unwrap_or((args.duration / 20).clamp(Duration::from_millis(250), Duration::from_secs(5)));
    if args.sample_every.is_zero() {
        return Err("--sample-every must be above 0".into());
    }
    Ok(Command::Run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(|s| s.to_string()))?.into_run()
    }

    #[test]
    fn defaults_are_the_ten_minute_soak_of_the_usage_text() {
        let a = run(&[]).unwrap();
        assert_eq!(a.duration, Duration::from_secs(600));
        assert_eq!((a.load_conns, a.idle_conns, a.pipeline), (32, 2000, 16));
        assert_eq!(a.warmup, Duration::from_secs(60));
        assert_eq!(a.sample_every, Duration::from_secs(5));
        assert_eq!(a.max_rss_growth, 10.0);
    }

    #[test]
    fn short_runs_scale_warmup_and_sampling_down() {
        let a = run(&["--duration", "4"]).unwrap();
        assert_eq!(a.warmup, Duration::from_millis(400));
        assert_eq!(a.sample_every, Duration::from_millis(250));
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
        ] {
            assert!(run(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
