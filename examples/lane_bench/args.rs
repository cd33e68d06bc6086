//! Command-line modes and options of the lane benchmark, and the usage text.

use std::path::PathBuf;

/// The usage text printed with an argument error.
pub const USAGE: &str = "usage:
  lane_bench [--records N] [--rounds R] [--size S]
  lane_bench produce --path P --records N [--size S | --seq-sizes]
  lane_bench socket-produce --records N --size S
  lane_bench lane-echo --path P --reply-path Q --records N --size S [--spin]
  lane_bench socket-echo --records N --size S";

/// What this invocation does: the benchmark, or one of the child roles it spawns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bench,
    Produce,
    SocketProduce,
    LaneEcho,
    SocketEcho,
}

/// The parsed command line; each mode checks the options it needs.
#[derive(Debug)]
pub struct Args {
    pub mode: Mode,
    pub path: Option<PathBuf>,
    pub reply_path: Option<PathBuf>,
    pub records: Option<u64>,
    pub rounds: Option<u64>,
    pub size: Option<usize>,
    pub seq_sizes: bool,
    pub spin: bool,
}

pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        mode: Mode::Bench,
        path: None,
        reply_path: None,
        records: None,
        rounds: None,
        size: None,
        seq_sizes: false,
        spin: false,
    };
    let mut next = args.next();
    parsed.mode = match next.as_deref() {
        Some("produce") => Mode::Produce,
        Some("socket-produce") => Mode::SocketProduce,
        Some("lane-echo") => Mode::LaneEcho,
        Some("socket-echo") => Mode::SocketEcho,
        _ => Mode::Bench,
    };
    if parsed.mode != Mode::Bench {
        next = args.next();
    }
    while let Some(arg) = next {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--path" => parsed.path = Some(PathBuf::from(value("--path")?)),
            "--reply-path" => parsed.reply_path = Some(PathBuf::from(value("--reply-path")?)),
            "--records" => parsed.records = Some(number("--records", &value("--records")?)?),
            "--rounds" => parsed.rounds = Some(number("--rounds", &value("--rounds")?)?),
            "--size" => parsed.size = Some(number("--size", &value("--size")?)?),
            "--seq-sizes" => parsed.seq_sizes = true,
            "--spin" => parsed.spin = true,
            other => return Err(format!("unknown argument {other}")),
        }
        next = args.next();
    }
    if parsed.seq_sizes && parsed.size.is_some() {
        return Err("--size and --seq-sizes exclude each other".into());
    }
    if parsed.spin && parsed.mode != Mode::LaneEcho {
        return Err("--spin is an option of lane-echo".into());
    }
    if parsed.rounds == Some(0) {
        return Err("--rounds must be at least 1".into());
    }
    Ok(parsed)
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("bad {name} {value}"))
}
