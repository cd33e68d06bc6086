//! What every example MCP shares: the command line (`--config FILE`, parsed by clap as
//! [`LaneArgs`]), settings and log setup, attaching to ccsd's lanes (waiting for ccsd), then the
//! library's request loop ([`ccsd::mcp::service::serve`]) with the example's [`Service`].
//!
//! An example includes this file with `#[path = "../common/mod.rs"] mod common;` and calls
//! [`run`] from its `main`; one with options of its own flattens [`LaneArgs`] into its clap
//! parser and calls [`attach_mcp`].
#![allow(dead_code)] // each example uses a different subset

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ccsd::mcp::service::{Service, serve};
use ccsd::mcp::{McpEndpoint, McpError};
use ccsd::settings::Settings;
use clap::{Args, CommandFactory, FromArgMatches, Parser};
use log::{error, info};

/// Where an MCP finds ccsd's lanes.
#[derive(Debug, Args)]
pub struct LaneArgs {
    /// The settings file ccsd runs with (its [queues] name the lanes); without it, the file
    /// CCSD_CONFIG names, else the built-in defaults.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The command line of an MCP without options of its own.
#[derive(Debug, Parser)]
#[command(about = "Serves ccsd's request lanes.")]
struct McpCli {
    #[command(flatten)]
    lanes: LaneArgs,
}

/// Parses `--config FILE` (see [`LaneArgs`]), loads the settings, sets up logging, attaches to
/// the lanes (waiting for ccsd to create them) and serves requests with `service` until an error.
///
/// Logs `"<NAME> attached: ..."` once it is serving.
pub fn run<S: Service>(service: &mut S) -> ExitCode {
    let name = S::NAME;
    let matches = McpCli::command().name(name).bin_name(name).get_matches();
    let cli = match McpCli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let (_, mut mcp) = match attach_mcp(name, &cli.lanes) {
        Ok(attached) => attached,
        Err(code) => return code,
    };
    static NEVER: AtomicBool = AtomicBool::new(false);
    match serve(&mut mcp, service, &NEVER) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the settings `lanes` names, sets up logging and attaches to the lanes, waiting as long
/// as it takes for ccsd to create them; logs `"<name> attached: ..."`. On failure the error is
/// printed and the exit code (2) returned.
pub fn attach_mcp(name: &str, lanes: &LaneArgs) -> Result<(Settings, McpEndpoint), ExitCode> {
    let config = ccsd::settings::config_path(lanes.config.clone());
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: invalid settings:\n{e}");
            return Err(ExitCode::from(2));
        }
    };
    if let Err(e) = ccsd::logging::init(settings.log.level, None, true) {
        eprintln!("{name}: {e}");
        return Err(ExitCode::from(2));
    }
    let mut mcp = match attach(&settings) {
        Ok(mcp) => mcp,
        Err(e) => {
            error!("cannot attach: {e}");
            return Err(ExitCode::from(2));
        }
    };
    mcp.set_idle_spin(settings.broker.idle_spin);
    info!(
        "{name} attached: {} request lanes, epoch {}",
        mcp.request_lanes(),
        mcp.epoch()
    );
    Ok((settings, mcp))
}

/// Attaches to the lanes, waiting as long as it takes for ccsd to create them.
fn attach(settings: &Settings) -> Result<McpEndpoint, McpError> {
    let mut waiting_logged = false;
    loop {
        match McpEndpoint::attach_wait(settings, Duration::from_secs(1)) {
            Err(e) if e.is_not_ready() => {
                if !waiting_logged {
                    info!("waiting for ccsd to create the lanes: {e}");
                    waiting_logged = true;
                }
            }
            other => return other,
        }
    }
}
