//! Replays every committed fuzz corpus input (`fuzz/corpus/<target>/`) through the contract check
//! its fuzz target runs, so what fuzzing found stays fixed without a fuzzer.

use std::fs;
use std::path::{Path, PathBuf};

use ccsd::framing;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

/// Checks every input of `target`'s corpus; panics naming the first file that breaks the
/// contract, or if the corpus is empty.
fn replay(target: &str) {
    let dir = corpus_root().join(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut replayed = 0;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let input = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(broken) = framing::check_fuzz_input(target, &input) {
            panic!("{}: {broken}", path.display());
        }
        replayed += 1;
    }
    assert!(replayed > 0, "{} holds no inputs", dir.display());
}

#[test]
fn the_line_corpus_keeps_the_contract() {
    replay("line");
}

#[test]
fn the_memcache_corpus_keeps_the_contract() {
    replay("memcache");
}

#[test]
fn the_resp_corpus_keeps_the_contract() {
    replay("resp");
}

#[test]
fn the_http_corpus_keeps_the_contract() {
    replay("http");
}

#[test]
fn the_length_corpus_keeps_the_contract() {
    replay("length");
}

#[test]
fn every_corpus_belongs_to_a_known_framing() {
    for entry in fs::read_dir(corpus_root()).expect("fuzz/corpus") {
        let name = entry.expect("corpus directory").file_name();
        let name = name.to_string_lossy();
        assert!(
            framing::is_known(&name),
            "fuzz/corpus/{name} is not a known framing"
        );
    }
}
