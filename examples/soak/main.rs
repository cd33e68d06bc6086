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
//! ([`report`]). With `--takeover-every SECS` it hot-restarts ccsd every SECS of the load
//! ([`takeover`]: `ccsd --takeover` on the same settings) and goes on with the new process.
//! `--help` lists every option.

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
mod takeover;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use args::Args;
use load::{Plan, Progress};
use report::{Counts, Report, Rss};
use rng::Rng;
use servers::{Logged, ccsd_command};
use servers::{Scratch, built_bin};
use takeover::{PATIENCE, Takeover};

/// How often a progress line goes to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How long ccsd's counters may take to show the end of the run (they reach the admin port once
/// per `stats.interval`, 250 ms here).
const STATS_PATIENCE: Duration = Duration::from_secs(5);
/// How long ccsd may take to stop after SIGTERM (its `shutdown_grace` is 5 s).
const STOP_PATIENCE: Duration = Duration::from_secs(10);
/// The window of the longest reply wait ([`Progress::max_wait_us`]).
const WAIT_WINDOW: Duration = Duration::from_secs(1);

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
    let mut ccsd = Logged::start(ccsd_command(&scratch.config, false)?, PATIENCE)?;
    ccsd.wait_for("ccsd ready")?;
    let mut cmd = Command::new(built_bin("echo_mcp")?);
    cmd.arg("--config").arg(&scratch.config);
    let (_mcp, _) = servers::start(cmd, "attached")?;
    let addr = ccsd.addr("listening on tcp://")?;
    let admin_addr = ccsd.addr("admin on tcp://")?;
    let rss = Rss {
        at_start: ccsd.server.memory().unwrap_or_default(),
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
    let mut watch = Watch {
        config: &scratch.config,
        listen: addr,
        admin: admin_addr,
        rss: Rss {
            with_idle: ccsd.server.memory().unwrap_or_default(),
            ..rss
        },
        ccsd,
        takeovers: Vec::new(),
        waits: Vec::new(),
    };
    eprintln!(
        "soak: {} load connections for {:?}{}",
        args.load_conns,
        args.duration,
        args.takeover_every
            .map(|every| format!(", a takeover every {every:?}"))
            .unwrap_or_default()
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
        let died = watch.run(&plan, started, args, &progress);
        let mut load = Counts::default();
        for client in clients {
            load.merge(client.join().expect("load client panicked"));
        }
        (load, died)
    });
    let seconds = started.elapsed().as_secs_f64();
    watch.close_window(started, &progress);
    let idle_after = idle::check(&mut idle_conns, 1, &mut idle_rng, args.reply_timeout);
    let idle_open = args.idle_conns as u64;
    let previous = std::cell::RefCell::new(admin::Stats::new());
    let stable = ["packets_in", "replies_out", "closed_peer", "closed_error"];
    let settled = |s: &admin::Stats| {
        // Two readings in a row alike: the workers' counters have reached the admin port.
        let same = stable
            .iter()
            .all(|name| admin::get(s, name) == admin::get(&previous.borrow(), name));
        *previous.borrow_mut() = s.clone();
        let answered = admin::get(s, "replies_out") + admin::get(s, "dropped_stale_flow")
            >= admin::get(s, "packets_in");
        let open = admin::get(s, "connections_open") == idle_open;
        if watch.takeovers.is_empty() {
            open && answered
                && admin::get(s, "closed_peer") + admin::get(s, "closed_error")
                    >= load.client_closes()
                && admin::get(s, "packets_in") >= load.answered + 2 * idle_open
        } else {
            open && answered && same
        }
    };
    let stats = admin::fetch_when(watch.admin, STATS_PATIENCE, settled).unwrap_or_else(|e| {
        load.error(|| format!("ccsd's counters: {e}"));
        admin::Stats::new()
    });
    drop(idle_conns);
    let ccsd_exit = watch.ccsd.server.terminate(STOP_PATIENCE);
    for t in &mut watch.takeovers {
        t.max_wait_ms = report::longest_wait(&watch.waits, |end| t.covers(end));
    }
    Ok(Report {
        args: args.clone(),
        load,
        seconds,
        idle_open: args.idle_conns,
        idle_before,
        idle_after,
        rss: watch.rss,
        takeovers: watch.takeovers,
        waits: watch.waits,
        ccsd_died,
        stats,
        ccsd_exit,
    })
}

/// What the soak watches during the load: the ccsd process serving now, and what it found.
struct Watch<'a> {
    /// ccsd's settings file, for `ccsd --takeover`.
    config: &'a Path,
    /// ccsd's listener.
    listen: SocketAddr,
    /// The serving process's admin port.
    admin: SocketAddr,
    /// The serving process.
    ccsd: Logged,
    /// The first process's resident memory.
    rss: Rss,
    /// The takeovers so far, each with the memory samples of the process that took over.
    takeovers: Vec<Takeover>,
    /// The longest reply wait of each [`WAIT_WINDOW`]: (end of the window in seconds since the
    /// load started, ms).
    waits: Vec<(f64, f64)>,
}

impl Watch<'_> {
    /// Until the load stops: samples the serving process's resident memory every
    /// `args.sample_every`, closes a reply-wait window every [`WAIT_WINDOW`], writes a progress
    /// line every [`PROGRESS_EVERY`], hot-restarts ccsd every `args.takeover_every`, and
    /// watches that ccsd stays up; returns how it ended if it did.
    fn run(
        &mut self,
        plan: &Plan,
        started: Instant,
        args: &Args,
        progress: &Progress,
    ) -> Option<String> {
        let mut next_progress = started + PROGRESS_EVERY;
        let mut next_sample = started;
        let mut next_window = started + WAIT_WINDOW;
        let mut next_takeover = args.takeover_every.map(|every| started + every);
        loop {
            let now = Instant::now();
            if now >= plan.until {
                return None;
            }
            if let Some(status) = self.ccsd.server.exited() {
                return Some(format!("process {}: {status}", self.ccsd.pid()));
            }
            let t = now.duration_since(started).as_secs_f64();
            if now >= next_sample {
                if let Some(memory) = self.ccsd.server.memory() {
                    match self.takeovers.last_mut() {
                        Some(last) => last.samples.push((t, memory)),
                        None => self.rss.samples.push((t, memory)),
                    }
                }
                next_sample += args.sample_every;
            }
            if now >= next_window {
                self.close_window(started, progress);
                next_window = Instant::now() + WAIT_WINDOW;
            }
            if let (Some(at), Some(every)) = (next_takeover, args.takeover_every)
                && now >= at
            {
                self.close_window(started, progress);
                self.take_over(started);
                next_window = Instant::now() + WAIT_WINDOW;
                next_takeover = Some(at + every);
            }
            if now >= next_progress {
                let answered = progress.answered.load(Ordering::Relaxed);
                let memory = self.ccsd.server.memory().unwrap_or_default();
                let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
                eprintln!(
                    "[{t:5.0} s] ccsd RSS {:.1} MiB ({:.2} MiB private), {answered} answered ({:.0}/s), {} mid-packet closes, {} lost/misrouted/corrupted, {} takeovers",
                    mib(memory.rss),
                    mib(memory.anon),
                    answered as f64 / t,
                    progress.mid_packet_closes.load(Ordering::Relaxed),
                    progress.bad.load(Ordering::Relaxed),
                    self.takeovers.len(),
                );
                next_progress += PROGRESS_EVERY;
            }
            let wake = [
                Some(next_sample),
                Some(next_progress),
                Some(next_window),
                next_takeover,
            ]
            .into_iter()
            .flatten()
            .fold(plan.until, Instant::min);
            thread::sleep(wake.saturating_duration_since(Instant::now()));
        }
    }

    /// Ends the current reply-wait window.
    fn close_window(&mut self, started: Instant, progress: &Progress) {
        let us = progress.max_wait_us.swap(0, Ordering::Relaxed);
        self.waits
            .push((started.elapsed().as_secs_f64(), us as f64 / 1e3));
    }

    /// One hot restart: the old process's counters and memory first, then `ccsd --takeover`;
    /// the new process serves from then on if it took over.
    fn take_over(&mut self, started: Instant) {
        let mut record = Takeover {
            at: started.elapsed().as_secs_f64(),
            old_memory: self.ccsd.server.memory(),
            ..Takeover::default()
        };
        match admin::fetch(self.admin) {
            Ok(stats) => record.old_stats = stats,
            Err(e) => record
                .failures
                .push(format!("the old process's counters: {e}")),
        }
        eprintln!(
            "[{:5.0} s] takeover {}: ccsd --takeover beside process {}",
            record.at,
            self.takeovers.len() + 1,
            self.ccsd.pid()
        );
        if let Some(new) =
            takeover::take_over(self.config, &mut self.ccsd, self.listen, &mut record)
        {
            match new.addr("admin on tcp://") {
                Ok(admin) => self.admin = admin,
                Err(e) => record.failures.push(e),
            }
            self.ccsd = new;
        }
        record.done = started.elapsed().as_secs_f64();
        eprintln!(
            "[{:5.0} s] takeover {}: {} connections handed over in {:.1} ms, new process ready after {:.1} ms, old exit {}{}",
            record.done,
            self.takeovers.len() + 1,
            record.handed.map_or(-1, |h| h as i64),
            record.handed_ms.unwrap_or(f64::NAN),
            record.ready_ms.unwrap_or(f64::NAN),
            record.old_exit,
            if record.failures.is_empty() {
                String::new()
            } else {
                format!("; FAILED: {}", record.failures.join("; "))
            }
        );
        self.takeovers.push(record);
    }
}
