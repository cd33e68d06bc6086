//! Ten million records from a producer in another process (`examples/lane_bench produce`),
//! consumed here with the wake-up protocol and checked one by one.

use crate::records;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::example_bin;
use crate::shm_files::ShmFiles;
use ccsd::lane::Lane;
use records::{MAX_SEQ_RECORD, seq_record};

const RECORDS: u64 = 10_000_000;
const DEADLINE: Duration = Duration::from_secs(60);

/// `target/<profile>/examples/lane_bench`, built by the harness if it is not yet.
fn lane_bench() -> PathBuf {
    example_bin("lane_bench")
}

/// Kills the producer if the test fails first.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn ten_million_records_cross_processes_in_order_and_intact() {
    let files = ShmFiles::new();
    let mut consumer = Lane::create_or_attach(files.path(), 1 << 20)
        .unwrap()
        .into_consumer();
    let start = Instant::now();
    let mut child = ChildGuard(
        Command::new(lane_bench())
            .arg("produce")
            .arg("--path")
            .arg(files.path())
            .args(["--records", &RECORDS.to_string(), "--seq-sizes"])
            .spawn()
            .unwrap(),
    );

    let mut expected = [0u8; MAX_SEQ_RECORD];
    let mut record = Vec::with_capacity(MAX_SEQ_RECORD);
    let mut bytes = 0u64;
    let mut seq = 0;
    while seq < RECORDS {
        record.clear();
        if let Some(len) = consumer.pop_into(&mut record).unwrap() {
            let expected_len = seq_record(seq, &mut expected);
            assert_eq!(len, expected_len, "length of record {seq}");
            assert_eq!(record, expected[..len], "content of record {seq}");
            bytes += len as u64;
            seq += 1;
            continue;
        }
        consumer.wait(Some(Duration::from_millis(500))).unwrap();
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "producer failed: {status}");
            assert!(
                consumer.has_records(),
                "producer exited after publishing only {seq} of {RECORDS} records"
            );
        }
        assert!(
            start.elapsed() < DEADLINE,
            "only {seq} records after {DEADLINE:?}"
        );
    }
    assert!(child.0.wait().unwrap().success());
    assert_eq!(
        consumer.pop_into(&mut record),
        Ok(None),
        "records beyond the last"
    );
    let elapsed = start.elapsed();
    eprintln!(
        "{RECORDS} records ({bytes} bytes) from another process in {:.2} s",
        elapsed.as_secs_f64()
    );
    assert!(elapsed < DEADLINE);
}
