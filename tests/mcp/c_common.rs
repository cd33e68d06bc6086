//! Building C MCPs for the tests: installs libccsd_mcp, its header and pkg-config file under
//! `target/<profile>/ccsd-mcp-prefix` with `ccsd-mcp/install.sh` (which builds the library), then
//! compiles C sources with the system C compiler and the flags `pkg-config` gives, as a C author
//! would. Each step runs once per test binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::common::run_ok;

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`, where the test binaries are.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The prefix libccsd_mcp is installed under (built and installed at the first call).
pub fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let profile = profile_dir();
        let name = profile
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let prefix = profile.join("ccsd-mcp-prefix");
        let mut cmd = Command::new(root().join("ccsd-mcp/install.sh"));
        cmd.arg(&prefix).arg(name);
        // The library goes where this test binary's profile is.
        if let Some(target) = profile.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        run_ok(&mut cmd);
        prefix
    })
}

/// `pkg-config ARGS ccsd_mcp` against the installed library, split into words.
pub fn pkg_config(args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("pkg-config");
    cmd.args(args)
        .arg("ccsd_mcp")
        .env("PKG_CONFIG_PATH", prefix().join("lib/pkgconfig"));
    run_ok(&mut cmd)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Compiles `source` (relative to the repository root) into `name` with `cc -std=c11 -Wall
/// -Wextra -Werror`, linked to the shared library (`pkg-config --cflags --libs`) or, with
/// `static_link`, to `libccsd_mcp.a` (`pkg-config --static`). Returns the executable.
pub fn compile(source: &str, name: &str, static_link: bool) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(exe) = built.get_or_insert_with(HashMap::new).get(name) {
        return exe.clone();
    }
    let prefix = prefix();
    let bin = prefix.join("bin");
    std::fs::create_dir_all(&bin).expect("create the bin directory");
    let exe = bin.join(name);
    let mut cc = Command::new("cc");
    cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-o"])
        .arg(&exe)
        .arg(root().join(source))
        .args(pkg_config(&["--cflags"]));
    if static_link {
        // The static archive by its file name, then what it needs (Libs.private).
        cc.args(pkg_config(&["--static", "--libs"]).into_iter().map(|w| {
            if w == "-lccsd_mcp" {
                "-l:libccsd_mcp.a".to_owned()
            } else {
                w
            }
        }));
    } else {
        cc.args(pkg_config(&["--libs"]))
            .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()));
    }
    run_ok(&mut cc);
    built
        .get_or_insert_with(HashMap::new)
        .insert(name.to_owned(), exe.clone());
    exe
}
