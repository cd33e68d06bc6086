//! Command-line modes and options of the lane benchmark (clap).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// What this invocation does: the benchmark, or one of the child roles it spawns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The benchmark (the default): throughput and latency, lanes against sockets.
    Bench,
    /// Child role: writes --records records into the lane at --path.
    Produce,
    /// Child role: writes --records length-prefixed records of --size bytes to stdout.
    SocketProduce,
    /// Child role: sends each of --records records from lane --path back into --reply-path
    /// (--spin: polls instead of waiting).
    LaneEcho,
    /// Child role: reads --records length-prefixed records of --size bytes from stdin and
    /// writes each back to stdout.
    SocketEcho,
}

/// The parsed command line; each mode checks the options it needs.
#[derive(Debug, Parser)]
#[command(
    name = "lane_bench",
    about = "Shared-memory lane against Unix socket: throughput and round-trip latency between two processes.",
    after_help = "The modes other than bench are the child roles the benchmark spawns:\n  \
                  lane_bench produce --path P --records N [--size S | --seq-sizes]\n  \
                  lane_bench socket-produce --records N --size S\n  \
                  lane_bench lane-echo --path P --reply-path Q --records N --size S [--spin]\n  \
                  lane_bench socket-echo --records N --size S"
)]
pub struct Args {
    /// What to run.
    #[arg(value_enum, default_value = "bench")]
    pub mode: Mode,
    /// The lane file (produce, lane-echo).
    #[arg(long, value_name = "P")]
    pub path: Option<PathBuf>,
    /// The reply lane file (lane-echo).
    #[arg(long, value_name = "Q")]
    pub reply_path: Option<PathBuf>,
    /// Records per throughput run.
    #[arg(long, value_name = "N")]
    pub records: Option<u64>,
    /// Round trips per latency run (at least 1).
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: Option<u64>,
    /// Record size in bytes (default: 64 and 512).
    #[arg(long, value_name = "S", conflicts_with = "seq_sizes")]
    pub size: Option<usize>,
    /// produce: the deterministic stream of tests/lane/records.rs (1..=200 bytes, content
    /// derived from the sequence number) instead of --size bytes each.
    #[arg(long)]
    pub seq_sizes: bool,
    /// lane-echo: poll instead of waiting in Consumer::wait.
    #[arg(long)]
    pub spin: bool,
}

/// The command line, checked; exits on `--help` or bad options.
pub fn from_command_line() -> Args {
    let args = Args::parse();
    if args.spin && args.mode != Mode::LaneEcho {
        use clap::CommandFactory;
        Args::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--spin is an option of lane-echo",
            )
            .exit();
    }
    args
}
