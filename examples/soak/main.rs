//! Soak benchmark: ccsd under full load for a long time, with idle connections held open and
//! clients that close in the middle of a packet, checked for lost or misrouted replies and for
//! memory growth.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/soak --duration 600        # or: benches/soak.sh --duration 600
//! ```
//!
//! It starts the ccsd and `echo_mcp` built beside it on a configuration of its own (a unique
//! queue name, port 0, the admin port on port 0, an idle timeout longer than the run), opens
//! `--idle-conns` connections and proves each with a round trip ([`idle`]), then runs
//! `--load-conns` load clients, one thread each ([`load`]), for `--duration`, while it samples
//! ccsd's resident memory. Afterwards it checks the idle connections again, reads ccsd's
//! counters through the admin port ([`admin`]), stops ccsd with SIGTERM and reports
//! ([`report`]). `--help` lists every option.

#[path = "../common/flags.rs"]
mod flags;
#[path = "../loadgen/rng.rs"]
mod rng;
#[path = "../common/servers.rs"]
mod servers;

mod admin;
mod args;
mod idle;
mod load;
mod payload;
mod report;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use args::Args;
use load::{Plan, Progress};
use report::{Counts, Report, Rss};
use rng::Rng;
use servers::{Scratch, Server, logged_addr, start_ccsd_and_mcp};

/// How often a progress line goes to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How long ccsd's counters may take to show the end of the run (they reach the admin port once
/// per `stats.interval`, 250 ms here).
const STATS_PATIENCE: Duration = Duration::from_secs(5);
/// How long ccsd may take to stop after SIGTERM (its `shutdown_grace` is 5 s).
const STOP_PATIENCE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args = args::from_command_line();
    let report = match run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    if report.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// ccsd's configuration for the soak: queue `name`, room for every connection, an idle timeout
/// the idle connections outlive the run with, counters refreshed every 250 ms.
fn config(args: &Args, name: &str) -> String {
    let workers = args
        .workers
        .map(|n| format!("workers = {n}\n"))
        .unwrap_or_default();
    format!(
        "[broker]\n{workers}max_connections = {}\n\n[queues]\nname = \"{name}\"\n\n\
         [admin]\naddr = \"127.0.0.1:0\"\n\n[stats]\ninterval = \"250ms\"\n\n\
         [limits]\nidle_timeout = \"{}s\"\n\n\
         [[listen]]\naddr = \"127.0.0.1:0\"\nframing = \"length\"\nbacklog = 4096\n",
        args.idle_conns + args.load_conns + 64,
        args.duration.as_secs() + 300,
    )
}

/// Runs the whole soak; an error means it could not be set up.
fn run(args: &Args) -> Result<Report, String> {
    let scratch = Scratch::new("ccsd-soak", |name| config(args, name))?;
    let (mut ccsd, lines, _mcp) = start_ccsd_and_mcp(&scratch.config, "echo_mcp")?;
    let addr = logged_addr(&lines, "listening on tcp://")?;
    let admin_addr = logged_addr(&lines, "admin on tcp://")?;
    let mut rss = Rss {
        at_start: ccsd.memory().unwrap_or_default(),
        warmup: args.warmup.as_secs_f64(),
        ..Rss::default()
    };
    eprintln!(
        "soak: ccsd on {addr}, opening {} idle connections",
        args.idle_conns
    );
    let mut idle_conns = idle::open(addr, args.idle_conns)?;
    let mut idle_rng = Rng::new(args.seed, u64::MAX);
    let idle_before = idle::check(&mut idle_conns, 0, &mut idle_rng, args.reply_timeout);
    if idle_before.alive != args.idle_conns as u64 {
        return Err(format!(
            "only {} of {} idle connections answered before the load: {:?}",
            idle_before.alive, args.idle_conns, idle_before.errors
        ));
    }
    rss.with_idle = ccsd.memory().unwrap_or_default();
    eprintln!(
        "soak: {} load connections for {:?}",
        args.load_conns, args.duration
    );
    let started = Instant::now();
    let plan = Plan {
        addr,
        pipeline: args.pipeline,
        max_body: args.max_payload,
        close_below: Plan::close_below(args.close_probability),
        reply_timeout: args.reply_timeout,
        until: started + args.duration,
        seed: args.seed,
    };
    let progress = Progress::default();
    let (mut load, ccsd_died) = thread::scope(|scope| {
        let clients: Vec<_> = (0..args.load_conns)
            .map(|slot| {
                let (plan, progress) = (&plan, &progress);
                scope.spawn(move || load::run(slot, plan, progress))
            })
            .collect();
        let died = watch(
            &mut ccsd,
            &plan,
            started,
            args.sample_every,
            &progress,
            &mut rss,
        );
        let mut load = Counts::default();
        for client in clients {
            load.merge(client.join().expect("load client panicked"));
        }
        (load, died)
    });
    let seconds = started.elapsed().as_secs_f64();
    let idle_after = idle::check(&mut idle_conns, 1, &mut idle_rng, args.reply_timeout);
    let idle_open = args.idle_conns as u64;
    let settled = |s: &admin::Stats| {
        admin::get(s, "connections_open") == idle_open
            && admin::get(s, "closed_peer") + admin::get(s, "closed_error") >= load.client_closes()
            && admin::get(s, "packets_in") >= load.answered + 2 * idle_open
            && admin::get(s, "replies_out") + admin::get(s, "dropped_stale_flow")
                >= admin::get(s, "packets_in")
    };
    let stats = admin::fetch_when(admin_addr, STATS_PATIENCE, settled).unwrap_or_else(|e| {
        load.error(|| format!("ccsd's counters: {e}"));
        admin::Stats::new()
    });
    drop(idle_conns);
    let ccsd_exit = ccsd.terminate(STOP_PATIENCE);
    Ok(Report {
        args: args.clone(),
        load,
        seconds,
        idle_open: args.idle_conns,
        idle_before,
        idle_after,
        rss,
        ccsd_died,
        stats,
        ccsd_exit,
    })
}

/// Until the load stops: samples ccsd's resident memory every `every`, writes a progress line
/// every [`PROGRESS_EVERY`], and watches that ccsd stays up; returns how it ended if it did.
fn watch(
    ccsd: &mut Server,
    plan: &Plan,
    started: Instant,
    every: Duration,
    progress: &Progress,
    rss: &mut Rss,
) -> Option<String> {
    let mut next_progress = started + PROGRESS_EVERY;
    let mut next_sample = started;
    loop {
        let now = Instant::now();
        if now >= plan.until {
            return None;
        }
        if let Some(status) = ccsd.exited() {
            return Some(status.to_string());
        }
        if now >= next_sample {
            if let Some(memory) = ccsd.memory() {
                rss.samples
                    .push((now.duration_since(started).as_secs_f64(), memory));
            }
            next_sample += every;
        }
        if now >= next_progress {
            let t = now.duration_since(started).as_secs_f64();
            let answered = progress.answered.load(Ordering::Relaxed);
            let memory = rss.samples.last().map(|(_, m)| *m).unwrap_or_default();
            let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
            eprintln!(
                "[{t:5.0} s] ccsd RSS {:.1} MiB ({:.2} MiB private), {answered} answered ({:.0}/s), {} mid-packet closes, {} lost/misrouted/corrupted",
                mib(memory.rss),
                mib(memory.anon),
                answered as f64 / t,
                progress.mid_packet_closes.load(Ordering::Relaxed),
                progress.bad.load(Ordering::Relaxed),
            );
            next_progress += PROGRESS_EVERY;
        }
        let wake = next_sample.min(next_progress).min(plan.until);
        thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
}
