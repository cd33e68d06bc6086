//! The wake-up protocol: a sleeping consumer always gets a FIFO byte, a busy one never costs the
//! producer a write, and a million records cross threads with the consumer sleeping in wait().

use crate::records;

use std::thread;
use std::time::{Duration, Instant};

use crate::shm_files::ShmFiles;
use ccsd::lane::{Consumer, Lane, Producer, PushError};
use records::{MAX_SEQ_RECORD, seq_record};
use rustix::event::{PollFd, PollFlags, Timespec};

fn pair(files: &ShmFiles, capacity: u64) -> (Producer, Consumer) {
    let producer = Lane::create_or_attach(files.path(), capacity)
        .unwrap()
        .into_producer();
    let consumer = Lane::attach(files.path(), None).unwrap().into_consumer();
    (producer, consumer)
}

/// Whether the consumer's FIFO holds a wake-up byte right now.
fn fifo_has_byte(consumer: &Consumer) -> bool {
    let mut fds = [PollFd::from_borrowed_fd(consumer.wake_fd(), PollFlags::IN)];
    rustix::event::poll(&mut fds, Some(&Timespec::default())).unwrap() == 1
}

#[test]
fn publish_after_prepare_sleep_writes_a_wake_up_byte() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, 4096);
    assert!(consumer.prepare_sleep());
    producer.try_push(&[b"wake up"]).unwrap();
    assert!(!fifo_has_byte(&consumer), "push alone must not signal");
    assert!(producer.publish().unwrap());
    assert!(fifo_has_byte(&consumer));
    consumer.after_wake().unwrap();
    assert!(!fifo_has_byte(&consumer), "after_wake drains the FIFO");
    let mut out = Vec::new();
    assert_eq!(consumer.pop_into(&mut out), Ok(Some(7)));
}

#[test]
fn publish_without_a_sleeping_consumer_writes_nothing() {
    let files = ShmFiles::new();
    let (mut producer, consumer) = pair(&files, 4096);
    producer.try_push(&[b"no one sleeps"]).unwrap();
    assert!(!producer.publish().unwrap());
    assert!(!producer.publish().unwrap(), "nothing new to publish");
    assert!(!fifo_has_byte(&consumer));
}

#[test]
fn one_sleep_gets_one_wake_up_byte() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, 4096);
    assert!(consumer.prepare_sleep());
    producer.try_push(&[b"one"]).unwrap();
    assert!(producer.publish().unwrap());
    producer.try_push(&[b"two"]).unwrap();
    assert!(
        !producer.publish().unwrap(),
        "the flag was consumed by the first publish"
    );
    consumer.after_wake().unwrap();
    assert!(!fifo_has_byte(&consumer));
}

#[test]
fn prepare_sleep_refuses_when_records_are_published() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, 4096);
    producer.try_push(&[b"already here"]).unwrap();
    producer.publish().unwrap();
    assert!(!consumer.prepare_sleep());
    producer.try_push(&[b"more"]).unwrap();
    assert!(
        !producer.publish().unwrap(),
        "a consumer that did not sleep needs no byte"
    );
    assert!(!fifo_has_byte(&consumer));
}

#[test]
fn publish_into_a_full_fifo_is_not_an_error() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, 4096);
    let block = [0u8; 4096];
    loop {
        match rustix::io::write(consumer.wake_fd(), &block) {
            Ok(_) => {}
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("filling the FIFO: {e}"),
        }
    }
    assert!(consumer.prepare_sleep());
    producer.try_push(&[b"x"]).unwrap();
    assert!(
        !producer.publish().unwrap(),
        "a wake-up was already pending"
    );
    consumer.after_wake().unwrap();
    assert!(!fifo_has_byte(&consumer));
}

#[test]
fn wait_times_out_when_nothing_arrives() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, 4096);
    let start = Instant::now();
    consumer.wait(Some(Duration::from_millis(20))).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(20));
    producer.try_push(&[b"late"]).unwrap();
    assert!(
        !producer.publish().unwrap(),
        "wait cleared the waiting flag"
    );
}

#[test]
fn wait_returns_at_once_when_records_are_there() {
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, 4096);
    producer.try_push(&[b"here"]).unwrap();
    producer.publish().unwrap();
    consumer.wait(None).unwrap();
    let mut out = Vec::new();
    assert_eq!(consumer.pop_into(&mut out), Ok(Some(4)));
}

#[test]
fn one_million_records_cross_threads_with_a_sleeping_consumer() {
    const RECORDS: u64 = 1_000_000;
    // Far longer than any scheduling delay: a wait this long means a lost wake-up.
    const LOST: Duration = Duration::from_secs(10);
    let files = ShmFiles::new();
    let (mut producer, mut consumer) = pair(&files, 64 * 1024);

    let producing = thread::spawn(move || {
        let mut buf = [0u8; MAX_SEQ_RECORD];
        let mut signals = 0u64;
        let mut batch = 1;
        for seq in 0..RECORDS {
            let len = seq_record(seq, &mut buf);
            while let Err(e) = producer.try_push(&[&buf[..len]]) {
                assert_eq!(e, PushError::Full);
                signals += u64::from(producer.publish().unwrap());
                thread::yield_now();
            }
            // Publish in batches of varying size, and now and then let the consumer run dry.
            if seq % batch == 0 {
                signals += u64::from(producer.publish().unwrap());
                batch = 1 + seq % 61;
            }
            if seq % 10_007 == 0 {
                thread::yield_now();
            }
        }
        signals += u64::from(producer.publish().unwrap());
        signals
    });

    let mut expected = [0u8; MAX_SEQ_RECORD];
    let mut record = Vec::with_capacity(MAX_SEQ_RECORD);
    let mut waits = 0u64;
    let mut seq = 0;
    while seq < RECORDS {
        record.clear();
        match consumer.pop_into(&mut record).unwrap() {
            Some(len) => {
                let expected_len = seq_record(seq, &mut expected);
                assert_eq!(len, expected_len, "record {seq}");
                assert_eq!(record, expected[..len], "record {seq}");
                seq += 1;
            }
            None => {
                let start = Instant::now();
                consumer.wait(Some(LOST)).unwrap();
                assert!(start.elapsed() < LOST, "lost wake-up at record {seq}");
                waits += 1;
            }
        }
    }
    let signals = producing.join().unwrap();
    assert_eq!(
        consumer.pop_into(&mut record),
        Ok(None),
        "duplicate records"
    );
    eprintln!(
        "{RECORDS} records, consumer waited {waits} times, producer wrote {signals} wake-up bytes"
    );
}
