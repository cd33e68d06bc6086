//! Echo MCP: answers every packet with the same bytes, to the same connection.
//!
//! ```text
//! cargo run --example echo_mcp -- --config settings/default.toml
//! ```
//!
//! It reads the same settings file as ccsd to find the lanes (`[queues]`), waits for ccsd to
//! create them, and keeps serving across ccsd restarts (the lanes survive them).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ccsd::demo::serve_echo;
use ccsd::mcp::McpEndpoint;
use ccsd::settings::Settings;
use log::{error, info};

fn main() -> ExitCode {
    let mut config = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match (arg.to_str(), args.next()) {
            (Some("--config"), Some(file)) => config = Some(PathBuf::from(file)),
            _ => {
                eprintln!("usage: echo_mcp [--config FILE]");
                return ExitCode::from(2);
            }
        }
    }
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo_mcp: invalid settings:\n{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = ccsd::logging::init(settings.log.level, None) {
        eprintln!("echo_mcp: {e}");
        return ExitCode::from(2);
    }
    let mut waiting_logged = false;
    let mut mcp = loop {
        match McpEndpoint::attach_wait(&settings, Duration::from_secs(1)) {
            Ok(mcp) => break mcp,
            Err(e) if e.is_not_ready() => {
                if !waiting_logged {
                    info!("waiting for ccsd to create the lanes: {e}");
                    waiting_logged = true;
                }
            }
            Err(e) => {
                error!("cannot attach: {e}");
                return ExitCode::from(2);
            }
        }
    };
    mcp.set_idle_spin(settings.broker.idle_spin);
    info!(
        "echo_mcp attached: {} request lanes, epoch {}",
        mcp.request_lanes(),
        mcp.epoch()
    );
    static NEVER: AtomicBool = AtomicBool::new(false);
    match serve_echo(&mut mcp, &NEVER) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}
