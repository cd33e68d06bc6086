//! Ring behaviour in one process: frames, PAD records at the end of the data area, Full and
//! TooLarge, the byte layout, and a randomised comparison against a simple model.

use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::FileExt;

use crate::shm_files::ShmFiles;
use ccsd::lane::{Consumer, LANE_HEADER_SIZE, LANE_MAGIC, Lane, Producer, PushError};

const CAPACITY: u64 = 4096;

/// Producer and consumer of a fresh lane, each with its own mapping.
fn pair(files: &ShmFiles, capacity: u64) -> (Producer, Consumer) {
    let producer = Lane::create_or_attach(files.path(), capacity)
        .unwrap()
        .into_producer();
    let consumer = Lane::attach(files.path(), Some(capacity))
        .unwrap()
        .into_consumer();
    (producer, consumer)
}

/// xorshift64*: a tiny deterministic generator for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn frame(len: usize) -> u64 {
    8 + (len as u64).next_multiple_of(8)
}

fn pop(consumer: &mut Consumer) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let len = consumer.pop_into(&mut out).unwrap()?;
    assert_eq!(len, out.len());
    Some(out)
}

/// Pushes, publishes and pops `record`, draining first if the lane reports Full.
fn round_trip(producer: &mut Producer, consumer: &mut Consumer, record: &[u8]) {
    if let Err(e) = producer.try_push(&[record]) {
        assert_eq!(e, PushError::Full, "record of {} bytes", record.len());
        producer.publish().unwrap();
        while pop(consumer).is_some() {}
        producer.try_push(&[record]).unwrap();
    }
    producer.publish().unwrap();
    assert_eq!(pop(consumer).as_deref(), Some(record));
    assert_eq!(pop(consumer), None);
}

#[test]
fn records_of_every_size_round_trip_byte_exact() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, CAPACITY);
    let mut rng = Rng(0x5eed);
    for len in 0..=producer.max_record() {
        round_trip(&mut producer, &mut consumer, &rng.bytes(len));
    }
    assert_eq!(producer.lane().used_bytes(), 0);
}

#[test]
fn records_needing_a_pad_at_every_end_gap_continue_at_offset_zero() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, CAPACITY);
    let mut rng = Rng(7);
    let mut tail = 0u64;
    // For every gap left at the end of the data area, park the tail there with filler records,
    // then push a record one frame too big for the gap.
    for gap in (8..=CAPACITY - 8).step_by(8) {
        let target = CAPACITY - gap;
        let offset = tail % CAPACITY;
        let fillers = match offset.cmp(&target) {
            std::cmp::Ordering::Less => vec![target - offset],
            std::cmp::Ordering::Equal => vec![],
            std::cmp::Ordering::Greater => vec![CAPACITY - offset, target],
        };
        for filler in fillers {
            round_trip(
                &mut producer,
                &mut consumer,
                &rng.bytes(filler as usize - 8),
            );
            tail += filler;
        }
        assert_eq!(tail % CAPACITY, target);

        let record = rng.bytes(gap as usize);
        let needed = gap + frame(record.len());
        match producer.try_push(&[&record]) {
            Ok(()) => {
                assert!(needed <= CAPACITY);
                producer.publish().unwrap();
                assert_eq!(producer.lane().used_bytes(), needed);
            }
            Err(e) => {
                // Record and pad do not fit together: the pad alone went in.
                assert_eq!(e, PushError::Full);
                assert!(needed > CAPACITY);
                assert!(producer.has_unpublished());
                producer.publish().unwrap();
                assert_eq!(producer.lane().used_bytes(), gap);
                assert_eq!(pop(&mut consumer), None, "a PAD is not a record");
                producer.try_push(&[&record]).unwrap();
                producer.publish().unwrap();
            }
        }
        assert_eq!(pop(&mut consumer), Some(record));
        tail += needed;
    }
}

#[test]
fn full_lane_reports_full_then_accepts_after_the_consumer_drains() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, CAPACITY);
    let record = [0xabu8; 56]; // 64-byte frames: exactly 64 fit
    for _ in 0..64 {
        producer.try_push(&[&record]).unwrap();
    }
    assert_eq!(producer.try_push(&[&record]), Err(PushError::Full));
    assert_eq!(producer.try_push(&[]), Err(PushError::Full));
    producer.publish().unwrap();
    assert_eq!(producer.lane().used_bytes(), CAPACITY);

    assert_eq!(pop(&mut consumer).as_deref(), Some(&record[..]));
    producer.try_push(&[&record]).unwrap();
    assert_eq!(producer.try_push(&[&record]), Err(PushError::Full));
    producer.publish().unwrap();
    let mut popped = 0;
    while let Some(r) = pop(&mut consumer) {
        assert_eq!(r, record);
        popped += 1;
    }
    assert_eq!(popped, 64);
    // The tail is 64 bytes past offset 0: the largest record first needs a PAD to the end,
    // which goes in alone, and the record fits once the consumer skipped it.
    let max = vec![1u8; producer.max_record()];
    assert_eq!(producer.try_push(&[&max]), Err(PushError::Full));
    producer.publish().unwrap();
    assert_eq!(pop(&mut consumer), None);
    producer.try_push(&[&max]).unwrap();
    producer.publish().unwrap();
    assert_eq!(pop(&mut consumer), Some(max));
}

#[test]
fn pad_alone_is_written_when_record_and_pad_do_not_both_fit() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, CAPACITY);
    producer.try_push(&[&[1u8; 2040]]).unwrap(); // frame 2048
    producer.try_push(&[&[2u8; 1976]]).unwrap(); // frame 1984, tail at 4032
    producer.publish().unwrap();
    assert_eq!(pop(&mut consumer), Some(vec![1u8; 2040]));
    // Free: 2112. A 2056-byte frame needs a 64-byte pad first: 2120 bytes.
    let big = vec![3u8; 2048];
    assert_eq!(producer.try_push(&[&big]), Err(PushError::Full));
    assert!(producer.has_unpublished());
    producer.publish().unwrap();
    assert_eq!(producer.lane().used_bytes(), 1984 + 64);
    assert_eq!(pop(&mut consumer), Some(vec![2u8; 1976]));
    assert_eq!(pop(&mut consumer), None);
    assert_eq!(producer.lane().used_bytes(), 0);
    producer.try_push(&[&big]).unwrap();
    producer.publish().unwrap();
    assert_eq!(
        producer.lane().used_bytes(),
        2056,
        "record went to offset 0 without a pad"
    );
    assert_eq!(pop(&mut consumer), Some(big));
}

#[test]
fn record_of_capacity_minus_seven_is_too_large() {
    let files = ShmFiles::new();
    let (mut producer, _consumer) = pair(&files, CAPACITY);
    let max = CAPACITY as usize - 8;
    assert_eq!(producer.max_record(), max);
    let record = vec![0u8; max + 1];
    let err = producer.try_push(&[&record]).unwrap_err();
    assert_eq!(err, PushError::TooLarge { len: max + 1, max });
    assert_eq!(
        producer.try_push(&[&record[..max], &record[max..]]),
        Err(PushError::TooLarge { len: max + 1, max })
    );
    assert!(!producer.has_unpublished());
    producer.try_push(&[&record[..max]]).unwrap();
}

#[test]
fn gathered_parts_arrive_as_one_record() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, CAPACITY);
    producer
        .try_push(&[b"head", b"", b"er|", b"payload"])
        .unwrap();
    producer.try_push(&[]).unwrap();
    producer.publish().unwrap();
    let mut out = b"kept:".to_vec();
    assert_eq!(consumer.pop_into(&mut out).unwrap(), Some(14));
    assert_eq!(out, b"kept:header|payload");
    assert_eq!(pop(&mut consumer), Some(Vec::new()));
    assert_eq!(pop(&mut consumer), None);
}

#[test]
fn records_are_invisible_until_published() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, CAPACITY);
    assert!(!producer.has_unpublished());
    producer.try_push(&[b"one"]).unwrap();
    assert!(producer.has_unpublished());
    assert!(!consumer.has_records());
    assert_eq!(pop(&mut consumer), None);
    assert_eq!(producer.lane().used_bytes(), 0);
    producer.publish().unwrap();
    assert!(!producer.has_unpublished());
    assert!(consumer.has_records());
    assert_eq!(pop(&mut consumer), Some(b"one".to_vec()));
    assert!(!consumer.has_records());
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

#[test]
fn file_layout_matches_the_protocol_document() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, CAPACITY);
    producer.lane().set_epoch(0x0102_0304_0506_0708);
    producer.lane().set_request_lanes(3);
    producer.try_push(&[b"abc"]).unwrap(); // frame 16 at 0
    producer.try_push(&[&[9u8; 4056]]).unwrap(); // frame 4064 at 16, tail 4080
    producer.publish().unwrap();

    let bytes = fs::read(files.path()).unwrap();
    let data = &bytes[LANE_HEADER_SIZE..];
    assert_eq!((u32_at(data, 0), u32_at(data, 4)), (3, 0), "len, flags");
    assert_eq!(&data[8..16], b"abc\0\0\0\0\0", "record, zero padding");
    assert_eq!((u32_at(data, 16), u32_at(data, 20)), (4056, 0));
    assert!(data[24..4080].iter().all(|&b| b == 9));
    assert_eq!(u64_at(&bytes, 128), 4080, "tail");

    assert_eq!(pop(&mut consumer), Some(b"abc".to_vec()));
    assert!(pop(&mut consumer).is_some());
    producer.try_push(&[&[7u8; 16]]).unwrap(); // PAD of 16 at 4080, record at 0 (4096)
    producer.publish().unwrap();

    let bytes = fs::read(files.path()).unwrap();
    let pid = std::process::id();
    assert_eq!(bytes.len(), LANE_HEADER_SIZE + CAPACITY as usize);
    assert_eq!(&bytes[0..8], b"CCSDLANE");
    assert_eq!(u64_at(&bytes, 0), LANE_MAGIC);
    assert_eq!(u32_at(&bytes, 8), 1, "version");
    assert_eq!(u32_at(&bytes, 12), 512, "header_size");
    assert_eq!(u64_at(&bytes, 16), CAPACITY);
    assert_eq!(u64_at(&bytes, 24), 0x0102_0304_0506_0708, "epoch");
    assert_eq!(u32_at(&bytes, 32), pid, "producer_pid");
    assert_eq!(u32_at(&bytes, 36), pid, "consumer_pid");
    assert_eq!(u32_at(&bytes, 40), 3, "request_lanes");
    assert!(bytes[44..128].iter().all(|&b| b == 0), "reserved");
    assert_eq!(u64_at(&bytes, 128), 4096 + 24, "tail");
    assert_eq!(u64_at(&bytes, 256), 4080, "head");
    assert_eq!(u32_at(&bytes, 384), 0, "consumer_waiting");
    assert!(bytes[388..512].iter().all(|&b| b == 0), "reserved");
    let data = &bytes[LANE_HEADER_SIZE..];
    // The PAD frame: flags 1, len = bytes to the end - 8; the record went to offset 0.
    assert_eq!((u32_at(data, 4080), u32_at(data, 4084)), (8, 1));
    assert_eq!((u32_at(data, 0), u32_at(data, 4)), (16, 0));
    assert_eq!(&data[8..24], &[7u8; 16]);
}

#[test]
fn odd_lengths_are_zero_padded_to_eight() {
    let files = ShmFiles::new();
    let (mut producer, _consumer) = pair(&files, CAPACITY);
    producer.try_push(&[&[0xffu8; 5]]).unwrap();
    producer.try_push(&[&[0xeeu8; 1]]).unwrap();
    producer.publish().unwrap();
    let bytes = fs::read(files.path()).unwrap();
    let data = &bytes[LANE_HEADER_SIZE..];
    assert_eq!(
        &data[0..16],
        &[
            5, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0
        ]
    );
    assert_eq!(
        &data[16..32],
        &[1, 0, 0, 0, 0, 0, 0, 0, 0xee, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(u64_at(&bytes, 128), 32, "tail");
}

/// The expected state of a lane, kept with plain arithmetic from the rules in docs/protocol.md.
struct Model {
    capacity: u64,
    /// Producer position, published or not.
    tail: u64,
    published: u64,
    head: u64,
    /// Records published and not popped, with the position just past each one's frame.
    visible: VecDeque<(Vec<u8>, u64)>,
    /// Records pushed since the last publish.
    unpublished: Vec<(Vec<u8>, u64)>,
}

impl Model {
    fn push(&mut self, record: Vec<u8>) -> Result<(), PushError> {
        let max = self.capacity as usize - 8;
        if record.len() > max {
            return Err(PushError::TooLarge {
                len: record.len(),
                max,
            });
        }
        let frame = frame(record.len());
        let to_end = self.capacity - self.tail % self.capacity;
        let pad = if frame > to_end { to_end } else { 0 };
        let free = self.capacity - (self.tail - self.head);
        if pad + frame > free {
            if pad != 0 && pad <= free {
                self.tail += pad;
            }
            return Err(PushError::Full);
        }
        self.tail += pad + frame;
        self.unpublished.push((record, self.tail));
        Ok(())
    }

    fn publish(&mut self) {
        self.published = self.tail;
        self.visible.extend(self.unpublished.drain(..));
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        match self.visible.pop_front() {
            Some((record, end)) => {
                self.head = end;
                Some(record)
            }
            None => {
                // A trailing PAD is skipped even when no record follows it.
                self.head = self.published;
                None
            }
        }
    }
}

fn random_operations_match_the_model(seed: u64, capacity: u64, steps: usize) {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, capacity);
    let mut model = Model {
        capacity,
        tail: 0,
        published: 0,
        head: 0,
        visible: VecDeque::new(),
        unpublished: Vec::new(),
    };
    let mut rng = Rng(seed);
    let max = producer.max_record() as u64;
    let mut outcomes = [0usize; 3]; // pushed, full, popped
    for step in 0..steps {
        let context = format!("seed {seed:#x} step {step}");
        match rng.below(100) {
            0..45 => {
                let len = match rng.below(100) {
                    0..70 => rng.below(64),
                    70..95 => rng.below(1024),
                    95..99 => rng.below(max + 1),
                    _ => max + 1 + rng.below(16),
                };
                let record = rng.bytes(len as usize);
                let got =
                    producer.try_push(&[&record[..len as usize / 2], &record[len as usize / 2..]]);
                let expected = model.push(record);
                assert_eq!(got, expected, "{context}");
                outcomes[usize::from(got.is_err())] += 1;
            }
            45..65 => {
                producer.publish().unwrap();
                model.publish();
            }
            _ => {
                let got = pop(&mut consumer);
                outcomes[2] += usize::from(got.is_some());
                assert_eq!(got, model.pop(), "{context}");
            }
        }
        assert_eq!(
            producer.has_unpublished(),
            model.tail != model.published,
            "{context}"
        );
        assert_eq!(
            consumer.has_records(),
            model.published != model.head,
            "{context}"
        );
        assert_eq!(
            producer.lane().used_bytes(),
            model.published - model.head,
            "{context}"
        );
    }
    producer.publish().unwrap();
    model.publish();
    while let Some(record) = model.pop() {
        assert_eq!(pop(&mut consumer), Some(record));
    }
    assert_eq!(pop(&mut consumer), None);
    assert!(
        outcomes.iter().all(|&n| n > steps / 50),
        "seed {seed:#x}: too few pushes/fulls/pops: {outcomes:?}"
    );
}

#[test]
fn random_operations_match_a_vecdeque_model() {
    for seed in [1, 0xdead_beef, 0x1234_5678_9abc, 42, 0xfeed_f00d] {
        random_operations_match_the_model(seed, CAPACITY, 20_000);
    }
    random_operations_match_the_model(99, 8192, 20_000);
}

#[test]
fn positions_near_the_top_of_u64_wrap_past_zero_without_losing_a_record() {
    // A peer can leave any aligned positions in the header; both ends count modulo 2^64.
    let files = ShmFiles::new();
    Lane::create_or_attach(files.path(), CAPACITY).unwrap();
    let start = 0u64.wrapping_sub(CAPACITY + 80); // a ring and 80 bytes before zero
    let file = fs::OpenOptions::new()
        .write(true)
        .open(files.path())
        .unwrap();
    for offset in [128, 256] {
        file.write_all_at(&start.to_le_bytes(), offset).unwrap();
    }
    let (mut producer, mut consumer) = pair(&files, CAPACITY);
    let mut rng = Rng(7);
    for _ in 0..50 {
        let len = rng.below(3000) as usize;
        let record = rng.bytes(len);
        round_trip(&mut producer, &mut consumer, &record);
    }
    let head = consumer.lane().head_position();
    assert!(
        head < start,
        "the positions wrapped past zero (head {head})"
    );
}
