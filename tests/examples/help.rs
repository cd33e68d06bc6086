//! Every example program answers `--help` (and `-h`) with its usage text on stdout and exit 0,
//! instead of treating the flag as a mode, a value or an error, in the one layout of their
//! shared parser (clap); and refuses an unknown flag with exit 2.

use crate::common;

use std::path::Path;
use std::process::Command;

/// The example programs, from the source tree (`examples/NAME.rs` and `examples/NAME/main.rs`),
/// so that a new example is covered without touching this test.
fn example_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if path.extension().is_some_and(|e| e == "rs") || path.join("main.rs").exists() {
            names.push(name);
        }
    }
    names.sort();
    names
}

#[test]
fn every_example_answers_help_with_usage_and_exit_0() {
    let names = example_names();
    assert!(names.len() >= 10, "found only {names:?}");
    for name in &names {
        let bin = common::example_bin(name);
        for flag in ["--help", "-h"] {
            let out = Command::new(&bin).arg(flag).output().expect("run example");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name} {flag}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // One parser (clap) for every example: one layout.
            assert!(
                stdout.contains(&format!("\nUsage: {name}")),
                "{name} {flag}: {stdout}"
            );
            assert!(stdout.contains("-h, --help"), "{name} {flag}: {stdout}");
        }
    }
}

#[test]
fn replay_help_after_a_mode_is_usage_too() {
    let out = Command::new(common::example_bin("replay"))
        .args(["play", "--help"])
        .output()
        .expect("run replay");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: replay play"));
}

#[test]
fn every_example_refuses_an_unknown_flag_with_exit_2() {
    for name in &example_names() {
        let out = Command::new(common::example_bin(name))
            .arg("--no-such-flag")
            .output()
            .expect("run example");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains("--no-such-flag"), "{name}: {stderr}");
    }
}
