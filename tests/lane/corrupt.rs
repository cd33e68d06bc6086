//! A buggy producer must not make the consumer read outside the lane or lose its place: every
//! broken frame is reported as LaneCorrupt without moving head, and discard_all recovers. A tail
//! out of range never moves the head (backwards, it would replay records), and a producer whose
//! consumer's head cannot follow its tail continues at that head.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::shm_files::ShmFiles;
use ccsd::lane::{Consumer, Lane, LaneCorrupt, Producer};

const CAPACITY: u64 = 4096;
const DATA: u64 = 512;
const TAIL: u64 = 128;

fn pair(files: &ShmFiles) -> (Producer, Consumer) {
    let producer = Lane::create_or_attach(files.path(), CAPACITY)
        .unwrap()
        .into_producer();
    let consumer = Lane::attach(files.path(), None).unwrap().into_consumer();
    (producer, consumer)
}

/// Overwrites bytes of the lane file through write(2), as a foreign buggy producer could.
fn write_raw(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

fn frame_header(len: u32, flags: u32) -> [u8; 8] {
    let mut header = [0u8; 8];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&flags.to_le_bytes());
    header
}

/// Pops the corrupt frame twice (the head must not move), then checks that discard_all skips
/// `expected_skip` bytes and the lane works again.
fn assert_corrupt_then_recovers(
    files: &ShmFiles,
    producer: &mut Producer,
    consumer: &mut Consumer,
    expected_skip: u64,
) -> LaneCorrupt {
    let mut out = b"untouched".to_vec();
    let err = consumer.pop_into(&mut out).unwrap_err();
    assert_eq!(out, b"untouched");
    assert_eq!(consumer.pop_into(&mut out).unwrap_err(), err, "head moved");
    assert_eq!(err.path, files.path());
    assert!(err.to_string().contains(&*files.path().to_string_lossy()));
    assert!(err.to_string().contains(&err.position.to_string()));

    assert_eq!(consumer.discard_all(), expected_skip);
    assert_eq!(consumer.lane().used_bytes(), 0);
    out.clear();
    assert_eq!(consumer.pop_into(&mut out), Ok(None));
    producer.try_push(&[b"after recovery"]).unwrap();
    producer.publish().unwrap();
    assert_eq!(consumer.pop_into(&mut out), Ok(Some(14)));
    assert_eq!(out, b"after recovery");
    err
}

#[test]
fn frame_len_beyond_capacity_is_corrupt_and_discard_all_recovers() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files);
    producer.try_push(&[b"good"]).unwrap();
    producer.try_push(&[b"will be broken"]).unwrap();
    producer.publish().unwrap();
    let mut out = Vec::new();
    assert_eq!(consumer.pop_into(&mut out), Ok(Some(4)));
    write_raw(files.path(), DATA + 16, &frame_header(1_000_000, 0));
    let err = assert_corrupt_then_recovers(&files, &mut producer, &mut consumer, 24);
    assert_eq!(
        (err.position, err.tail, err.len, err.flags),
        (16, 40, 1_000_000, 0)
    );
}

#[test]
fn unknown_flags_are_corrupt() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files);
    producer.try_push(&[b"record"]).unwrap();
    producer.publish().unwrap();
    write_raw(files.path(), DATA, &frame_header(6, 2));
    let err = assert_corrupt_then_recovers(&files, &mut producer, &mut consumer, 16);
    assert_eq!((err.position, err.len, err.flags), (0, 6, 2));
}

#[test]
fn frame_extending_past_the_published_tail_is_corrupt() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files);
    producer.try_push(&[b"short"]).unwrap();
    producer.publish().unwrap();
    write_raw(files.path(), DATA, &frame_header(100, 0));
    let err = assert_corrupt_then_recovers(&files, &mut producer, &mut consumer, 16);
    assert_eq!((err.tail, err.len), (16, 100));
}

#[test]
fn frame_crossing_the_end_of_the_data_area_is_corrupt() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files);
    producer.try_push(&[&[1u8; 4000]]).unwrap(); // frame 4008
    producer.publish().unwrap();
    let mut out = Vec::new();
    assert_eq!(consumer.pop_into(&mut out), Ok(Some(4000)));
    producer.try_push(&[&[2u8; 80]]).unwrap(); // fits the 88 bytes to the end exactly
    producer.publish().unwrap();
    write_raw(files.path(), DATA + 4008, &frame_header(88, 0));
    let err = assert_corrupt_then_recovers(&files, &mut producer, &mut consumer, 88);
    assert_eq!((err.position, err.len), (4008, 88));
}

#[test]
fn pad_that_does_not_reach_the_end_is_corrupt() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files);
    producer.try_push(&[b"record"]).unwrap();
    producer.publish().unwrap();
    write_raw(files.path(), DATA, &frame_header(0, 1));
    let err = assert_corrupt_then_recovers(&files, &mut producer, &mut consumer, 16);
    assert_eq!(err.flags, 1);
}

#[test]
fn tail_beyond_capacity_is_reported_once_and_the_head_stays() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files);
    write_raw(files.path(), TAIL, &(CAPACITY + 8).to_le_bytes());
    let mut out = Vec::new();
    let err = consumer.pop_into(&mut out).unwrap_err();
    assert_eq!(
        (err.position, err.tail, err.len, err.flags),
        (0, CAPACITY + 8, 0, 0)
    );
    assert!(err.tail_out_of_range);
    assert_eq!(consumer.pop_into(&mut out), Ok(None), "reported once");
    assert_eq!(consumer.discard_all(), 0, "nothing the data area holds");
    assert_eq!(consumer.lane().head_position(), 0);
    // The producer publishes its own tail again: reading resumes.
    producer.try_push(&[b"again"]).unwrap();
    producer.publish().unwrap();
    assert_eq!(consumer.pop_into(&mut out), Ok(Some(5)));
    assert_eq!(out, b"again");
}

#[test]
fn tail_behind_head_never_moves_the_head_back_nor_replays_records() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files);
    for i in 0..5u8 {
        producer.try_push(&[&[i; 8]]).unwrap();
    }
    producer.publish().unwrap();
    let mut out = Vec::new();
    for _ in 0..5 {
        out.clear();
        assert_eq!(consumer.pop_into(&mut out), Ok(Some(8)));
    }
    let head = consumer.lane().head_position();
    assert_eq!(head, 80);

    // A writer publishes a tail two records behind the head.
    write_raw(files.path(), TAIL, &48u64.to_le_bytes());
    let err = consumer.pop_into(&mut out).unwrap_err();
    assert!(err.tail_out_of_range, "{err}");
    assert_eq!((err.position, err.tail), (80, 48));
    assert!(!consumer.has_records());
    assert!(
        consumer.prepare_sleep(),
        "nothing to read: the consumer may sleep"
    );
    consumer.cancel_sleep();
    assert_eq!(consumer.pop_into(&mut out), Ok(None));
    assert_eq!(consumer.discard_all(), 0);
    assert_eq!(
        consumer.lane().head_position(),
        head,
        "the head never moves back"
    );

    producer.try_push(&[b"sixth"]).unwrap();
    producer.publish().unwrap();
    out.clear();
    assert_eq!(consumer.pop_into(&mut out), Ok(Some(5)));
    assert_eq!(out, b"sixth", "only the new record, none of the five again");
    assert_eq!(consumer.pop_into(&mut out), Ok(None));
}

#[test]
fn producer_continues_at_a_head_ahead_of_its_tail() {
    let files = ShmFiles::new();
    let (mut producer, consumer) = pair(&files);
    drop(consumer);
    while producer.try_push(&[&[7u8; 56]]).is_ok() {}
    producer.publish().unwrap();
    // Someone stores a head beyond everything published: the ring would look full forever.
    let ahead = 2 * CAPACITY + 1000;
    write_raw(files.path(), 256, &ahead.to_le_bytes());
    producer.try_push(&[b"after resync"]).unwrap();
    producer.publish().unwrap();
    assert_eq!(producer.resyncs(), 1);

    let mut consumer = Lane::attach(files.path(), None).unwrap().into_consumer();
    let mut out = Vec::new();
    assert_eq!(consumer.pop_into(&mut out), Ok(Some(12)));
    assert_eq!(out, b"after resync");
    assert_eq!(consumer.lane().head_position(), ahead + 24);
}

#[test]
fn tail_inside_a_frame_is_corrupt() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files);
    producer.try_push(&[b"record"]).unwrap();
    producer.publish().unwrap();
    write_raw(files.path(), TAIL, &20u64.to_le_bytes());
    let mut out = Vec::new();
    assert_eq!(consumer.pop_into(&mut out), Ok(Some(6)));
    let err = consumer.pop_into(&mut out).unwrap_err();
    assert_eq!((err.position, err.tail), (16, 20));
}

#[test]
fn head_garbled_after_attach_is_reported_instead_of_read_misaligned() {
    let files = ShmFiles::new();
    let (mut producer, _first) = pair(&files);
    producer.try_push(&[b"record"]).unwrap();
    producer.publish().unwrap();
    let lane = Lane::attach(files.path(), None).unwrap();
    write_raw(files.path(), 256, &3u64.to_le_bytes());
    let mut consumer = lane.into_consumer();
    let err = assert_corrupt_then_recovers(&files, &mut producer, &mut consumer, 13);
    assert_eq!((err.position, err.tail), (3, 16));
}
