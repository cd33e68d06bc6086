//! The `ccsd` binary: parses the command line, loads settings, starts the broker.
//!
//! Exit codes: 0 after `--check-config` on valid settings; 2 for invalid settings or anything
//! that prevents starting (queue files, ports); 1 if the running broker fails.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ccsd::mcp::McpEndpoint;
use ccsd::mcp::demo::Echo;
use ccsd::mcp::service::serve;
use ccsd::runtime::Broker;
use ccsd::settings::{self, Settings, SettingsError};
use log::{error, info};

const USAGE: &str = "\
usage: ccsd [-c FILE | --config FILE | --config=FILE] [--check-config] [--demo] [--takeover]

  -c, --config FILE  settings file (TOML); without it the file CCSD_CONFIG names, else the
                     built-in defaults
  --check-config     validate the settings and the files ccsd will write (the pid, log and
                     stats files' directories exist and are writable), print every problem,
                     exit 0 (valid) or 2
  --demo             also run the echo MCP inside this process, for a first try
  --takeover         hot restart: take over the running ccsd of the same queues (its
                     listening sockets and every live connection); it exits 0 once this
                     process serves. Exit 2, the old one serving on, if that cannot be done.
                     SIGUSR2 or admin `upgrade` makes a running ccsd start this itself
  -h, --help         this text
  -V, --version      the version

Environment variables CCSD_<SECTION>__<KEY> override settings, e.g. CCSD_BROKER__WORKERS=4;
CCSD_CONFIG=FILE names the settings file when --config is not given.";

struct Args {
    config: Option<PathBuf>,
    check_only: bool,
    demo: bool,
    takeover: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        config: None,
        check_only: false,
        demo: false,
        takeover: false,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some(flag @ ("--config" | "-c")) => {
                let file = it.next().ok_or(format!("{flag} needs a FILE"))?;
                args.config = Some(PathBuf::from(file));
            }
            Some(with_file) if with_file.starts_with("--config=") => {
                let file = &with_file["--config=".len()..];
                if file.is_empty() {
                    return Err("--config= needs a FILE".into());
                }
                args.config = Some(PathBuf::from(file));
            }
            Some("--check-config") => args.check_only = true,
            Some("--demo") => args.demo = true,
            Some("--takeover") => args.takeover = true,
            Some("--help" | "-h") => {
                println!("{USAGE}");
                return Ok(None);
            }
            Some("--version" | "-V") => {
                println!("ccsd {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            _ => return Err(format!("unknown argument {arg:?}\n\n{USAGE}")),
        }
    }
    args.config = settings::config_path(args.config);
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccsd: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return invalid_settings(&e),
    };
    if args.check_only {
        if let Err(e) = settings.check_files() {
            return invalid_settings(&e);
        }
        println!("settings OK");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = ccsd::logging::init(
        settings.log.level,
        settings.log.file.as_deref(),
        settings.log.to_stderr(),
    ) {
        eprintln!("ccsd: {e}");
        return ExitCode::from(2);
    }
    let broker = match Broker::builder()
        .settings_file(args.config.as_deref())
        .takeover(args.takeover)
        .start(&settings)
    {
        Ok(b) => b,
        Err(e) => {
            error!("{e}");
            eprintln!("ccsd: {e}");
            return ExitCode::from(2);
        }
    };
    if args.demo {
        if let Err(e) = start_demo_mcp(&settings) {
            eprintln!("ccsd: demo MCP: {e}");
            return ExitCode::from(2);
        }
    }
    match broker.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("stopping: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints every problem of `e` and returns exit code 2.
fn invalid_settings(e: &SettingsError) -> ExitCode {
    eprintln!("ccsd: invalid settings:");
    for problem in &e.problems {
        eprintln!("  {problem}");
    }
    ExitCode::from(2)
}

/// Attaches the echo MCP to this process's own lanes and serves it on a thread.
fn start_demo_mcp(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let mut mcp = McpEndpoint::attach_wait(settings, Duration::from_secs(5))?;
    mcp.set_idle_spin(settings.broker.idle_spin);
    std::thread::Builder::new()
        .name("ccsd-demo-echo".into())
        .spawn(move || {
            static NEVER: AtomicBool = AtomicBool::new(false);
            if let Err(e) = serve(&mut mcp, &mut Echo, &NEVER) {
                error!("demo echo MCP stopped: {e}");
            }
        })?;
    info!(
        "demo: echo MCP running inside ccsd; try: exec 3<>/dev/tcp/127.0.0.1/7300; printf '\\0\\0\\0\\5hello' >&3; head -c 9 <&3 | od -c"
    );
    Ok(())
}
