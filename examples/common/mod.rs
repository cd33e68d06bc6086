//! What every example MCP shares: the command line (`--config FILE`), settings and log setup,
//! attaching to ccsd's lanes (waiting for ccsd), then the library's request loop
//! ([`ccsd::mcp::service::serve`]) with the example's [`Service`].
//!
//! An example includes this file with `#[path = "../common/mod.rs"] mod common;` and calls
//! [`run`] from its `main`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ccsd::mcp::service::{Service, serve};
use ccsd::mcp::{McpEndpoint, McpError};
use ccsd::settings::Settings;
use log::{error, info};

/// Parses `--config FILE` (else `CCSD_CONFIG` names the file, as for ccsd), loads the settings, sets up logging, attaches to the lanes (waiting
/// for ccsd to create them) and serves requests with `service` until an error.
///
/// Logs `"<NAME> attached: ..."` once it is serving.
pub fn run<S: Service>(service: &mut S) -> ExitCode {
    let name = S::NAME;
    let mut config = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let usage = format!(
            "usage: {name} [--config FILE]\n\nServes ccsd's lanes; without --config, the settings file \
             CCSD_CONFIG names, else the built-in defaults."
        );
        match arg.to_str() {
            Some("--help" | "-h") => {
                println!("{usage}");
                return ExitCode::SUCCESS;
            }
            Some("--config") => match args.next() {
                Some(file) => config = Some(PathBuf::from(file)),
                None => {
                    eprintln!("{name}: --config needs a FILE\n{usage}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("{name}: unknown argument {arg:?}\n{usage}");
                return ExitCode::from(2);
            }
        }
    }
    let config = ccsd::settings::config_path(config);
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: invalid settings:\n{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = ccsd::logging::init(settings.log.level, None, true) {
        eprintln!("{name}: {e}");
        return ExitCode::from(2);
    }
    let mut mcp = match attach(&settings) {
        Ok(mcp) => mcp,
        Err(e) => {
            error!("cannot attach: {e}");
            return ExitCode::from(2);
        }
    };
    mcp.set_idle_spin(settings.broker.idle_spin);
    info!(
        "{name} attached: {} request lanes, epoch {}",
        mcp.request_lanes(),
        mcp.epoch()
    );
    static NEVER: AtomicBool = AtomicBool::new(false);
    match serve(&mut mcp, service, &NEVER) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
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
