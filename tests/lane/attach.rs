//! Creating and attaching lane files: records survive reattachment, and every kind of file
//! that is not our valid lane is refused with an error naming it.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::shm_files::ShmFiles;
use ccsd::lane::{LANE_HEADER_SIZE, Lane, LaneError};

const CAPACITY: u64 = 4096;

fn fifo_of(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.fifo", path.display()))
}

/// Overwrites bytes of a lane file through write(2), as a foreign process could.
fn write_raw(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

/// A private (0600) file with the given contents, as a half-done or foreign creator leaves it.
fn write_private_file(path: &Path, contents: &[u8]) {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all_at(contents, 0).unwrap();
}

fn attach_error(path: &Path, expected_capacity: Option<u64>) -> LaneError {
    let err = Lane::attach(path, expected_capacity).unwrap_err();
    assert!(
        err.to_string().contains(&*path.to_string_lossy()),
        "error does not name the path: {err}"
    );
    err
}

#[test]
fn reattaching_keeps_unread_records() {
    let files = ShmFiles::new();
    {
        let mut producer = Lane::create_or_attach(files.path(), CAPACITY)
            .unwrap()
            .into_producer();
        let mut consumer = Lane::attach(files.path(), None).unwrap().into_consumer();
        for record in [&b"first"[..], b"second", b"third"] {
            producer.try_push(&[record]).unwrap();
        }
        producer.try_push(&[b"fourth"]).unwrap();
        producer.publish().unwrap();
        producer.try_push(&[b"unpublished, so lost"]).unwrap();
        let mut out = Vec::new();
        consumer.pop_into(&mut out).unwrap();
        assert_eq!(out, b"first");
    }
    let mut producer = Lane::create_or_attach(files.path(), CAPACITY)
        .unwrap()
        .into_producer();
    let mut consumer = Lane::attach(files.path(), Some(CAPACITY))
        .unwrap()
        .into_consumer();
    assert!(consumer.has_records());
    producer.try_push(&[b"after restart"]).unwrap();
    producer.publish().unwrap();
    let mut popped = Vec::new();
    let mut out = Vec::new();
    while consumer.pop_into(&mut out).unwrap().is_some() {
        popped.push(String::from_utf8(std::mem::take(&mut out)).unwrap());
    }
    assert_eq!(popped, ["second", "third", "fourth", "after restart"]);
}

#[test]
fn created_lane_file_and_fifo_are_private_and_sized() {
    let files = ShmFiles::new();
    let lane = Lane::create_or_attach(files.path(), CAPACITY).unwrap();
    assert_eq!(lane.path(), files.path());
    assert_eq!(lane.capacity(), CAPACITY);
    let meta = fs::metadata(files.path()).unwrap();
    assert_eq!(meta.len(), LANE_HEADER_SIZE as u64 + CAPACITY);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let fifo = fs::metadata(fifo_of(files.path())).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.permissions().mode() & 0o777, 0o600);
}

#[test]
fn header_fields_are_shared_between_attachments() {
    let files = ShmFiles::new();
    let creator = Lane::create_or_attach(files.path(), CAPACITY).unwrap();
    let other = Lane::attach(files.path(), None).unwrap();
    assert_eq!((other.epoch(), other.request_lanes()), (0, 0));
    assert_eq!((other.producer_pid(), other.consumer_pid()), (0, 0));
    creator.set_epoch(77);
    creator.set_request_lanes(4);
    assert_eq!((other.epoch(), other.request_lanes()), (77, 4));
    let producer = creator.into_producer();
    let consumer = other.into_consumer();
    let pid = std::process::id();
    assert_eq!(producer.lane().producer_pid(), pid);
    assert_eq!(producer.lane().consumer_pid(), pid);
    assert_eq!(consumer.lane().producer_pid(), pid);
}

#[test]
fn attach_never_creates_a_missing_lane_and_reports_it_not_ready() {
    let files = ShmFiles::new();
    let err = attach_error(files.path(), Some(CAPACITY));
    assert!(matches!(err, LaneError::NotFound { .. }), "{err}");
    assert!(err.is_not_ready());
    assert!(!files.path().exists());
    assert!(!fifo_of(files.path()).exists());
}

#[test]
fn lane_whose_magic_is_not_yet_written_is_not_ready() {
    let files = ShmFiles::new();
    write_private_file(files.path(), &[]);
    let err = attach_error(files.path(), None);
    assert!(matches!(err, LaneError::NotReady { .. }), "{err}");
    assert!(err.is_not_ready());

    // Sized and partly written, magic still zero.
    write_raw(files.path(), 8, &1u32.to_le_bytes());
    write_raw(files.path(), 512 + CAPACITY - 1, &[0]);
    let err = attach_error(files.path(), Some(CAPACITY));
    assert!(matches!(err, LaneError::NotReady { .. }), "{err}");
    let err = Lane::create_or_attach(files.path(), CAPACITY).unwrap_err();
    assert!(err.is_not_ready(), "{err}");
}

#[test]
fn capacity_other_than_the_configured_one_is_refused() {
    let files = ShmFiles::new();
    drop(Lane::create_or_attach(files.path(), CAPACITY).unwrap());
    let err = attach_error(files.path(), Some(8192));
    assert!(
        matches!(
            err,
            LaneError::CapacityMismatch {
                found: 4096,
                expected: 8192,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("remove it or change queues.capacity")
    );
    let err = Lane::create_or_attach(files.path(), 8192).unwrap_err();
    assert!(matches!(err, LaneError::CapacityMismatch { .. }), "{err}");
    assert_eq!(
        fs::metadata(files.path()).unwrap().len(),
        LANE_HEADER_SIZE as u64 + CAPACITY,
        "an existing lane is never resized"
    );
}

#[test]
fn other_layout_version_is_refused() {
    let files = ShmFiles::new();
    drop(Lane::create_or_attach(files.path(), CAPACITY).unwrap());
    write_raw(files.path(), 8, &2u32.to_le_bytes());
    let err = attach_error(files.path(), None);
    assert!(
        matches!(
            err,
            LaneError::VersionMismatch {
                found: 2,
                expected: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn other_header_size_is_refused() {
    let files = ShmFiles::new();
    drop(Lane::create_or_attach(files.path(), CAPACITY).unwrap());
    write_raw(files.path(), 12, &1024u32.to_le_bytes());
    let err = attach_error(files.path(), None);
    assert!(
        matches!(
            err,
            LaneError::HeaderSizeMismatch {
                found: 1024,
                expected: 512,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn capacity_in_header_that_is_not_a_power_of_two_is_refused() {
    let files = ShmFiles::new();
    drop(Lane::create_or_attach(files.path(), CAPACITY).unwrap());
    write_raw(files.path(), 16, &4000u64.to_le_bytes());
    let err = attach_error(files.path(), None);
    assert!(
        matches!(err, LaneError::InvalidCapacity { capacity: 4000, .. }),
        "{err}"
    );
}

#[test]
fn garbage_file_is_not_a_lane() {
    let files = ShmFiles::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let garbage: Vec<u8> = (0..512 + CAPACITY)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    write_private_file(files.path(), &garbage);
    let err = attach_error(files.path(), None);
    assert!(matches!(err, LaneError::NotALane { .. }), "{err}");
    assert!(err.to_string().contains("not a ccsd lane"), "{err}");
    assert!(!err.is_not_ready());
}

#[test]
fn file_smaller_than_the_header_is_not_a_lane() {
    let files = ShmFiles::new();
    write_private_file(files.path(), b"CCSDLANE and then nothing");
    let err = attach_error(files.path(), None);
    assert!(matches!(err, LaneError::NotALane { .. }), "{err}");
}

#[test]
fn file_size_other_than_header_plus_capacity_is_refused() {
    let files = ShmFiles::new();
    drop(Lane::create_or_attach(files.path(), CAPACITY).unwrap());
    let file = OpenOptions::new().write(true).open(files.path()).unwrap();
    file.set_len(512 + 2 * CAPACITY).unwrap();
    let err = attach_error(files.path(), Some(CAPACITY));
    assert!(
        matches!(
            err,
            LaneError::SizeMismatch {
                found: 8704,
                expected: 4608,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn misaligned_tail_is_refused() {
    let files = ShmFiles::new();
    drop(Lane::create_or_attach(files.path(), CAPACITY).unwrap());
    write_raw(files.path(), 128, &3u64.to_le_bytes());
    let err = attach_error(files.path(), None);
    assert!(
        matches!(
            err,
            LaneError::BadPositions {
                head: 0,
                tail: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn lane_file_readable_by_others_is_refused() {
    let files = ShmFiles::new();
    drop(Lane::create_or_attach(files.path(), CAPACITY).unwrap());
    fs::set_permissions(files.path(), fs::Permissions::from_mode(0o644)).unwrap();
    let err = attach_error(files.path(), None);
    assert!(
        matches!(err, LaneError::UnsafeMode { mode: 0o644, .. }),
        "{err}"
    );
    let err = Lane::create_or_attach(files.path(), CAPACITY).unwrap_err();
    assert!(matches!(err, LaneError::UnsafeMode { .. }), "{err}");
}

#[test]
fn fifo_writable_by_group_is_refused() {
    let files = ShmFiles::new();
    drop(Lane::create_or_attach(files.path(), CAPACITY).unwrap());
    let fifo = fifo_of(files.path());
    fs::set_permissions(&fifo, fs::Permissions::from_mode(0o620)).unwrap();
    let err = Lane::attach(files.path(), None).unwrap_err();
    assert!(
        matches!(&err, LaneError::UnsafeMode { path, mode: 0o620 } if *path == fifo),
        "{err}"
    );
}

#[test]
fn attacher_recreates_a_missing_fifo() {
    let files = ShmFiles::new();
    drop(Lane::create_or_attach(files.path(), CAPACITY).unwrap());
    let fifo = fifo_of(files.path());
    fs::remove_file(&fifo).unwrap();
    let lane = Lane::attach(files.path(), None).unwrap();
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    drop(lane);
}

#[test]
fn invalid_capacity_is_refused_before_creating_anything() {
    let files = ShmFiles::new();
    for capacity in [0, 1024, 5000, 12288] {
        let err = Lane::create_or_attach(files.path(), capacity).unwrap_err();
        assert!(
            matches!(err, LaneError::InvalidCapacity { capacity: c, .. } if c == capacity),
            "{err}"
        );
    }
    assert!(!files.path().exists());
}

#[test]
fn remove_files_ignores_files_already_gone() {
    let files = ShmFiles::new();
    Lane::remove_files(files.path()).unwrap();
    drop(Lane::create_or_attach(files.path(), CAPACITY).unwrap());
    fs::remove_file(fifo_of(files.path())).unwrap();
    Lane::remove_files(files.path()).unwrap();
    assert!(!files.path().exists());
}

/// Needs root to give a file away; as another user the check is not exercised.
#[test]
fn lane_owned_by_another_user_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: only root can chown a file to another user");
        return;
    }
    let files = ShmFiles::new();
    drop(Lane::create_or_attach(files.path(), CAPACITY).unwrap());
    std::os::unix::fs::chown(files.path(), Some(65534), None).unwrap();
    let err = attach_error(files.path(), None);
    assert!(
        matches!(
            err,
            LaneError::WrongOwner {
                owner: 65534,
                uid: 0,
                ..
            }
        ),
        "{err}"
    );
}
