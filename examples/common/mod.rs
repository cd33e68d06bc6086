//! What every example MCP shares: the command line (`--config FILE`), settings and log setup,
//! attaching to ccsd's lanes, and the request loop that hands each data record to a [`Service`]
//! and sends back what it wrote.
//!
//! An example includes this file with `#[path = "../common/mod.rs"] mod common;` and calls
//! [`run`] from its `main`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ccsd::mcp::{McpEndpoint, McpError, Message};
use ccsd::record::{CloseMode, Kind};
use ccsd::settings::Settings;
use log::{error, info};

/// Largest payload of one reply record. A longer reply goes out as several records, which ccsd
/// writes to the client back to back; this size fits the smallest lane `queues.capacity` allows.
const REPLY_CHUNK: usize = 16 * 1024;

/// What happens to the connection after a request's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// The connection stays open for more requests.
    KeepOpen,
    /// The connection is closed once the reply has been written.
    Close,
}

/// A business process: answers one client packet at a time.
pub trait Service {
    /// The program's name, for the usage line and the log.
    const NAME: &'static str;

    /// Answers `packet` by appending the reply bytes to `reply` (empty when called). An empty
    /// reply sends nothing.
    fn handle(&mut self, packet: &[u8], reply: &mut Vec<u8>) -> After;
}

/// Parses `--config FILE`, loads the settings, sets up logging, attaches to the lanes (waiting
/// for ccsd to create them) and serves requests with `service` until an error.
///
/// Logs `"<NAME> attached: ..."` once it is serving.
pub fn run<S: Service>(service: &mut S) -> ExitCode {
    let name = S::NAME;
    let mut config = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match (arg.to_str(), args.next()) {
            (Some("--config"), Some(file)) => config = Some(PathBuf::from(file)),
            _ => {
                eprintln!("usage: {name} [--config FILE]");
                return ExitCode::from(2);
            }
        }
    }
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: invalid settings:\n{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = ccsd::logging::init(settings.log.level, None) {
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
    match serve(&mut mcp, service) {
        Ok(()) => ExitCode::SUCCESS,
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

/// Answers data records with `service`; other records (disconnect notices) need no answer,
/// since no service keeps state per connection.
fn serve<S: Service>(mcp: &mut McpEndpoint, service: &mut S) -> Result<(), McpError> {
    let mut msg = Message::new();
    let mut reply = Vec::with_capacity(64 * 1024);
    loop {
        if !mcp.recv(&mut msg, None)? {
            continue;
        }
        let header = msg.header();
        if header.kind == Kind::Data {
            reply.clear();
            let after = service.handle(msg.payload(), &mut reply);
            for chunk in reply.chunks(REPLY_CHUNK) {
                mcp.when_room(|mcp| mcp.reply(header, chunk))?;
            }
            if after == After::Close {
                mcp.when_room(|mcp| mcp.close(header.flow, CloseMode::AfterFlush))?;
            }
        }
        if !mcp.has_pending_requests() {
            mcp.flush()?;
        }
    }
}
