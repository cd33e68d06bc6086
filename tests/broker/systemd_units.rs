//! The unit files in `dist/systemd` (`ccsd.service`, `ccsd-mcp@.service`, `ccsd.socket`) pass `systemd-analyze verify` with no warning: every key is
//! known to systemd and parses, and the commands exist. The units name the installed paths
//! (`/usr/bin/ccsd`, `/usr/lib/ccsd/mcp/NAME`), so they are verified from a copy in the test's
//! directory with those paths pointed at the binaries just built. `verify` needs no running
//! systemd (it runs in a container whose PID 1 is not systemd).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{TestEnv, example_bin};

/// Whether `systemd-analyze` can run: in CI (`CI=true`) its absence fails the test, elsewhere the
/// test says why it is skipped.
fn systemd_analyze_available() -> bool {
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("systemd-analyze").is_file())
    });
    if !on_path {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd-analyze is not installed: .ci/deps installs it (Debian's systemd package)"
        );
        eprintln!("SKIPPED: systemd-analyze is not installed (Debian's systemd package)");
    }
    on_path
}

/// Copies `dist/systemd/NAME` into `dir` as `as_name`, with `from` replaced by `to`.
fn copy_unit(dir: &Path, name: &str, as_name: &str, from: &str, to: &str) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("dist/systemd")
            .join(name),
    )
    .unwrap_or_else(|e| panic!("read dist/systemd/{name}: {e}"));
    assert!(text.contains(from), "{name} does not name {from}");
    std::fs::write(dir.join(as_name), text.replace(from, to)).unwrap();
}

/// Runs `systemd-analyze verify` on `unit` in `dir`; fails on a non-zero exit or any warning.
fn verify(dir: &Path, unit: &str) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join(unit))
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {unit}: {}\n{stderr}",
        out.status
    );
}

#[test]
fn the_shipped_unit_files_pass_systemd_analyze_verify() {
    if !systemd_analyze_available() {
        return;
    }
    let env = TestEnv::new(1, "", "");
    let dir = env.dir.join("units");
    std::fs::create_dir(&dir).unwrap();
    let ccsd = env!("CARGO_BIN_EXE_ccsd");
    copy_unit(&dir, "ccsd.service", "ccsd.service", "/usr/bin/ccsd", ccsd);
    let examples = example_bin("echo_mcp");
    let examples = examples.parent().unwrap().display().to_string();
    // A template is verified through an instance; its %i names the example binary.
    copy_unit(
        &dir,
        "ccsd-mcp@.service",
        "ccsd-mcp@echo_mcp.service",
        "/usr/lib/ccsd/mcp",
        &examples,
    );
    copy_unit(
        &dir,
        "ccsd.socket",
        "ccsd.socket",
        "Service=ccsd.service",
        "Service=ccsd.service",
    );
    verify(&dir, "ccsd.service");
    verify(&dir, "ccsd-mcp@echo_mcp.service");
    // The socket unit is checked with the service it activates beside it.
    verify(&dir, "ccsd.socket");
}

#[test]
fn systemd_analyze_verify_reports_unknown_keys_and_missing_commands() {
    // The check above is only worth something if verify reports both kinds of mistake it guards
    // against: an unknown key (a warning, exit 0) and a command that does not exist (exit 1).
    if !systemd_analyze_available() {
        return;
    }
    let env = TestEnv::new(1, "", "");
    let dir = env.dir.join("units");
    std::fs::create_dir(&dir).unwrap();
    let ccsd = env!("CARGO_BIN_EXE_ccsd");
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/systemd/ccsd.service"),
    )
    .unwrap();
    std::fs::write(
        dir.join("typo.service"),
        unit.replace("/usr/bin/ccsd", ccsd)
            .replace("NotifyAccess=all", "NotifyAcess=all"),
    )
    .unwrap();
    let missing = env.dir.join("no-such-ccsd").display().to_string();
    std::fs::write(
        dir.join("missing.service"),
        unit.replace("/usr/bin/ccsd", &missing),
    )
    .unwrap();
    for (unit, expected) in [
        ("typo.service", "Unknown key 'NotifyAcess'"),
        ("missing.service", "no-such-ccsd is not executable"),
    ] {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.join(unit))
            .output()
            .expect("run systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{unit}: {stderr}");
    }
}

/// A directory of one's own with the user `dist/sysusers.d/ccsd.conf` makes, through
/// `systemd-sysusers --root` (no root needed, no running systemd).
fn root_with_user(env: &TestEnv) -> std::path::PathBuf {
    let root = env.dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let conf = std::fs::File::open(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/sysusers.d/ccsd.conf"),
    )
    .expect("dist/sysusers.d/ccsd.conf");
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg("-")
        .stdin(conf)
        .output()
        .expect("run systemd-sysusers");
    assert!(
        out.status.success(),
        "systemd-sysusers: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    root
}

#[test]
fn the_tmpfiles_entry_makes_the_runtime_and_log_directories_for_the_user() {
    if !systemd_analyze_available() {
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: systemd-tmpfiles needs root to give the directories to ccsd");
        return;
    }
    let env = TestEnv::new(1, "", "");
    let root = root_with_user(&env);
    let dir = root.join("etc/tmpfiles.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/tmpfiles.d/ccsd.conf"),
        dir.join("ccsd.conf"),
    )
    .expect("dist/tmpfiles.d/ccsd.conf");
    let out = Command::new("systemd-tmpfiles")
        .arg("--create")
        .arg(format!("--root={}", root.display()))
        .arg("ccsd.conf")
        .output()
        .expect("run systemd-tmpfiles");
    assert!(
        out.status.success(),
        "systemd-tmpfiles: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let uid: u32 = passwd
        .lines()
        .find_map(|l| l.strip_prefix("ccsd:x:")?.split(':').next()?.parse().ok())
        .expect("the ccsd user's uid");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for made in ["run/ccsd", "var/log/ccsd"] {
        let meta = std::fs::metadata(root.join(made)).unwrap_or_else(|e| panic!("{made}: {e}"));
        assert!(meta.is_dir(), "{made}");
        assert_eq!(
            (meta.uid(), meta.permissions().mode() & 0o777),
            (uid, 0o750),
            "{made}"
        );
    }
}

#[test]
fn the_sysusers_entry_creates_the_user_the_units_run_as() {
    // systemd-sysusers --root works on a directory of one's own: no root, no running systemd.
    if !systemd_analyze_available() {
        return;
    }
    let env = TestEnv::new(1, "", "");
    let root = root_with_user(&env);
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("ccsd:"))
        .unwrap_or_else(|| panic!("no user ccsd in\n{passwd}"));
    assert!(user.ends_with(":/:/usr/sbin/nologin"), "{user}");
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("ccsd:")), "{group}");
    // The units run as exactly this user and group.
    for unit in ["ccsd.service", "ccsd-mcp@.service"] {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("dist/systemd")
                .join(unit),
        )
        .unwrap();
        assert!(
            text.contains("\nUser=ccsd\n") && text.contains("\nGroup=ccsd\n"),
            "{unit}"
        );
    }
}
