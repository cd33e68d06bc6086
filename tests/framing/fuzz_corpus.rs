//! Replays every committed fuzz corpus input (`fuzz/corpus/<target>/`) through the check its fuzz
//! target runs, so what fuzzing found stays fixed without a fuzzer.

#[path = "../../fuzz/harness/conn_state.rs"]
mod conn_state_harness;
#[path = "../../fuzz/harness/handover.rs"]
mod handover_harness;
#[path = "../../fuzz/harness/lane.rs"]
mod lane_harness;
#[path = "../../fuzz/harness/proxy_header.rs"]
mod proxy_header_harness;
#[path = "../../fuzz/harness/record.rs"]
mod record_harness;

use std::fs;
use std::path::{Path, PathBuf};

use ccsd::framing;

/// The fuzz targets that are not a framing.
const OTHER_TARGETS: [&str; 5] = ["record", "lane", "proxy_header", "conn_state", "handover"];

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

/// Runs `check` on every input of `target`'s corpus; panics naming the first file it rejects,
/// or if the corpus is empty.
fn replay(target: &str, check: impl Fn(&[u8]) -> Result<(), String>) {
    let dir = corpus_root().join(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut replayed = 0;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let input = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(broken) = check(&input) {
            panic!("{}: {broken}", path.display());
        }
        replayed += 1;
    }
    assert!(replayed > 0, "{} holds no inputs", dir.display());
}

fn replay_framing(framing: &str) {
    replay(framing, |input| framing::check_fuzz_input(framing, input));
}

#[test]
fn the_line_corpus_keeps_the_contract() {
    replay_framing("line");
}

#[test]
fn the_memcache_corpus_keeps_the_contract() {
    replay_framing("memcache");
}

#[test]
fn the_resp_corpus_keeps_the_contract() {
    replay_framing("resp");
}

#[test]
fn the_http_corpus_keeps_the_contract() {
    replay_framing("http");
}

#[test]
fn the_length_corpus_keeps_the_contract() {
    replay_framing("length");
}

#[test]
fn the_record_corpus_is_judged_and_batched_as_the_bridge_must() {
    replay("record", record_harness::check_input);
}

#[test]
fn the_lane_corpus_keeps_both_ends_of_a_lane_safe_from_a_hostile_peer() {
    let lane = PathBuf::from(format!(
        "/dev/shm/ccsd-lanetest-fuzz-corpus-{}",
        std::process::id()
    ));
    replay("lane", |input| lane_harness::check_input(&lane, input));
}

#[test]
fn every_corpus_belongs_to_a_fuzz_target() {
    for entry in fs::read_dir(corpus_root()).expect("fuzz/corpus") {
        let name = entry.expect("corpus directory").file_name();
        let name = name.to_string_lossy();
        assert!(
            framing::is_known(&name) || OTHER_TARGETS.contains(&&*name),
            "fuzz/corpus/{name} belongs to no fuzz target"
        );
    }
}

#[test]
fn the_proxy_header_corpus_keeps_the_parser_bounded_and_consistent() {
    replay("proxy_header", proxy_header_harness::check_input);
}

#[test]
fn the_conn_state_corpus_is_refused_or_read_back_whole() {
    replay("conn_state", conn_state_harness::check_input);
}

#[test]
fn the_handover_corpus_is_refused_or_read_back_whole() {
    replay("handover", handover_harness::check_input);
}
