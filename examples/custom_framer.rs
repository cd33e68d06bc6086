//! A ccsd of your own with a framer of your own: netstrings (`5:hello,`), registered by name and
//! used by a listener with `framing = "netstring"`, answered by the echo MCP running inside.
//!
//! ```text
//! cargo run --example custom_framer -- --config my.toml     # my.toml: [[listen]] framing = "netstring"
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ccsd::framing::{self, FrameCheck, FrameError, Framer};
use ccsd::mcp::McpEndpoint;
use ccsd::mcp::demo::Echo;
use ccsd::mcp::service::serve;
use ccsd::runtime::Broker;
use ccsd::settings::{ListenSettings, Settings};
use clap::Parser;

/// Netstrings: decimal length, `:`, that many bytes, `,`. The whole netstring is the packet.
///
/// A stateless framer: `check` looks at no more than the length prefix and the byte where the
/// netstring must end, whatever the packet's size, so it keeps the default `check_from` and needs
/// no `Progress`. A framer that searches for a terminator would resume instead (see
/// `ccsd::framing::Framer::check_from`).
#[derive(Debug)]
struct NetstringFramer {
    max_packet: usize,
}

/// More length digits than this cannot describe a packet under 1 GiB (ccsd's largest max_packet).
const MAX_DIGITS: usize = 10;

impl Framer for NetstringFramer {
    fn name(&self) -> &'static str {
        "netstring"
    }

    fn check(&self, buf: &[u8]) -> FrameCheck {
        let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > MAX_DIGITS || (digits > 1 && buf[0] == b'0') {
            return FrameCheck::Invalid(FrameError::Malformed("bad netstring length"));
        }
        match buf.get(digits) {
            None => return FrameCheck::Incomplete,
            Some(b':') if digits > 0 => {}
            Some(_) => {
                return FrameCheck::Invalid(FrameError::Malformed(
                    "netstring length must end with ':'",
                ));
            }
        }
        // At most ten digits: the value fits in a u64.
        let len: u64 = buf[..digits]
            .iter()
            .fold(0, |n, d| n * 10 + u64::from(d - b'0'));
        let total = digits as u64 + 1 + len + 1;
        if total > self.max_packet as u64 {
            return FrameCheck::Invalid(FrameError::Oversize {
                declared: total,
                max: self.max_packet,
            });
        }
        let total = total as usize;
        match buf.get(total - 1) {
            None => FrameCheck::Incomplete,
            Some(b',') => FrameCheck::Complete(total),
            Some(_) => FrameCheck::Invalid(FrameError::Malformed("netstring must end with ','")),
        }
    }

    fn max_packet(&self) -> usize {
        self.max_packet
    }
}

fn build_netstring(listen: &ListenSettings) -> std::io::Result<Arc<dyn Framer>> {
    let max_packet = usize::try_from(listen.max_packet.bytes()).unwrap_or(usize::MAX);
    Ok(Arc::new(NetstringFramer { max_packet }))
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "custom_framer",
    about = "ccsd with a framer of its own (netstring) registered by name, and the echo MCP on a thread."
)]
struct Args {
    /// The settings file (default: the file CCSD_CONFIG names, else the built-in defaults).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let config = Args::parse().config;
    let config = ccsd::settings::config_path(config);
    // Registered before the settings are loaded, so that `framing = "netstring"` is valid.
    framing::register("netstring", Arc::new(build_netstring));
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("custom_framer: invalid settings:\n{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = ccsd::logging::init(
        settings.log.level,
        settings.log.file.as_deref(),
        settings.log.to_stderr(),
    ) {
        eprintln!("custom_framer: {e}");
        return ExitCode::from(2);
    }
    let broker = match Broker::start(&settings) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("custom_framer: {e}");
            return ExitCode::from(2);
        }
    };
    let mut mcp = match McpEndpoint::attach_wait(&settings, Duration::from_secs(5)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("custom_framer: {e}");
            return ExitCode::from(2);
        }
    };
    std::thread::spawn(move || {
        static NEVER: AtomicBool = AtomicBool::new(false);
        serve(&mut mcp, &mut Echo, &NEVER)
    });
    match broker.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_framer: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstrings_keep_the_framer_contract() {
        let framer = NetstringFramer { max_packet: 64 };
        framing::check_contract(&framer, b"5:hello,0:,12:hello world!,").expect("contract");
        assert_eq!(framer.check(b"5:hello,rest"), FrameCheck::Complete(8));
        assert_eq!(framer.check(b"5:hel"), FrameCheck::Incomplete);
        assert!(matches!(
            framer.check(b"5:hello;"),
            FrameCheck::Invalid(FrameError::Malformed(_))
        ));
        assert!(matches!(
            framer.check(b"05:hello,"),
            FrameCheck::Invalid(FrameError::Malformed(_))
        ));
        assert!(matches!(
            framer.check(b"99:"),
            FrameCheck::Invalid(FrameError::Oversize { .. })
        ));
    }
}
