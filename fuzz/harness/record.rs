//! The check behind the `record` fuzz target, also run by `tests/framing/fuzz_corpus.rs`
//! (both include this file by path): arbitrary bytes taken as records popped from the response lane, judged
//! as the MCP bridge judges them ([`ResponseCheck::classify`]); the accepted ones are batched
//! as the bridge batches them (decoded headers, [`ReplyBatch::push`]) and read back as a worker
//! reads them ([`ReplyBatch::records`]).
//!
//! Input: bytes 0–1 the epoch (little-endian), byte 2 the number of workers minus one, byte 3
//! `reply_max_age` in microseconds (0: none), bytes 4–11 the clock (little-endian nanoseconds);
//! then records, each a little-endian `u16` length and that many bytes (fewer at the end).
//!
//! Checked, besides "nothing panics": a verdict is the decoder's (a record is malformed exactly
//! when [`RecordHeader::decode`] fails, with the same error); each rejection's reason is true of
//! the header and the checks before it passed; an accepted record satisfies every check; a
//! decoded header re-encodes to the bytes it came from; a batch yields exactly the records put
//! in it.

use ccsd::fuzzing::{Destination, Rejection, ReplyBatch, ResponseCheck};
use ccsd::record::{Kind, RECORD_HEADER_SIZE, RecordHeader};

/// Bytes before the first record: epoch, workers, age limit, clock.
const CONFIG_SIZE: usize = 12;

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// Checks one fuzz input; `Err` describes the first broken rule.
pub fn check_input(input: &[u8]) -> Result<(), String> {
    let Some((config, mut rest)) = input.split_first_chunk::<CONFIG_SIZE>() else {
        return Ok(());
    };
    let check = ResponseCheck {
        epoch: u16::from_le_bytes([config[0], config[1]]),
        workers: 1 + usize::from(config[2]),
        reply_max_age_ns: u64::from(config[3]) * 1_000,
        adopted: false,
    };
    let mut clock = [0u8; 8];
    clock.copy_from_slice(&config[4..]);
    let now_ns = u64::from_le_bytes(clock);

    let mut routed: Vec<Vec<&[u8]>> = vec![Vec::new(); check.workers];
    while let Some((len, after)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_le_bytes(*len)).min(after.len());
        let (record, next) = after.split_at(len);
        rest = next;
        if let Some(worker) = check_record(&check, now_ns, record)? {
            routed[worker].push(record);
        }
    }
    for records in &routed {
        check_batch(records)?;
    }
    Ok(())
}

/// Checks the verdict on one record; returns the worker it goes to, if it is routed to one.
fn check_record(
    check: &ResponseCheck,
    now_ns: u64,
    record: &[u8],
) -> Result<Option<usize>, String> {
    let verdict = check.classify(record, now_ns);
    let header = match RecordHeader::decode(record) {
        Ok(header) => header,
        Err(e) => {
            ensure!(
                verdict == Err(Rejection::Malformed(e)),
                "decode fails with {e:?} but the verdict is {verdict:?}"
            );
            return Ok(None);
        }
    };
    check_round_trip(&header, record)?;
    let routable = header.kind == Kind::Data || (header.kind == Kind::Close && header.code <= 1);
    let same_epoch = header.flow.epoch() == check.epoch;
    let expired = check.reply_max_age_ns != 0
        && header.kind == Kind::Data
        && now_ns.saturating_sub(header.timestamp_ns) > check.reply_max_age_ns;
    let worker = header.flow.worker();
    let why = match verdict {
        Ok((judged, _)) if judged != header => "the verdict carries another header",
        Ok((_, Destination::Custom)) if header.kind == Kind::Custom => return Ok(None),
        Ok((_, Destination::Worker(w)))
            if routable && same_epoch && !expired && w == worker && w < check.workers =>
        {
            return Ok(Some(w));
        }
        Ok((_, Destination::MainLane))
            if routable && same_epoch && !expired && worker == check.workers =>
        {
            return Ok(None);
        }
        Err(Rejection::UnexpectedKind(kind))
            if kind == header.kind && matches!(kind, Kind::Connect | Kind::Disconnect) =>
        {
            return Ok(None);
        }
        Err(Rejection::UnknownCloseMode(code))
            if header.kind == Kind::Close && code == header.code && code > 1 =>
        {
            return Ok(None);
        }
        Err(Rejection::StaleEpoch) if routable && !same_epoch => return Ok(None),
        Err(Rejection::Expired { waited_ns })
            if routable
                && same_epoch
                && expired
                && waited_ns == now_ns.saturating_sub(header.timestamp_ns) =>
        {
            return Ok(None);
        }
        Err(Rejection::BadWorker) if routable && same_epoch && !expired => {
            ensure!(
                worker > check.workers,
                "worker {worker} of {} rejected as bad",
                check.workers
            );
            return Ok(None);
        }
        Err(Rejection::Malformed(_)) => "a record that decodes is rejected as malformed",
        _ => "the verdict does not follow from the header",
    };
    Err(format!(
        "{why}: {verdict:?} for {header:?} ({check:?}, now {now_ns})"
    ))
}

/// A decoded header says what its bytes say: encoding it gives back every byte decode reads
/// (the two reserved bytes come back as zero), and `payload_len` is the payload's length.
fn check_round_trip(header: &RecordHeader, record: &[u8]) -> Result<(), String> {
    ensure!(
        header.payload_len as usize == record.len() - RECORD_HEADER_SIZE,
        "payload_len {} in a record of {} bytes",
        header.payload_len,
        record.len()
    );
    let encoded = header.encode();
    ensure!(
        encoded[..62] == record[..62] && encoded[62..] == [0, 0],
        "{header:?} re-encodes to {encoded:02x?}, decoded from {:02x?}",
        &record[..RECORD_HEADER_SIZE]
    );
    Ok(())
}

/// Batches `records` (each accepted by the check) as the bridge does and checks that the
/// worker's reader gives them back.
fn check_batch(records: &[&[u8]]) -> Result<(), String> {
    let mut batch = ReplyBatch::default();
    for record in records {
        let header = RecordHeader::decode(record).map_err(|e| e.to_string())?;
        batch.push(&header, &record[RECORD_HEADER_SIZE..]);
    }
    ensure!(
        batch.record_bytes() == records.iter().map(|r| r.len()).sum::<usize>(),
        "the batch stands for {} bytes of {} records",
        batch.record_bytes(),
        records.len()
    );
    let mut read = batch.records();
    for (i, record) in records.iter().enumerate() {
        let Some((header, payload)) = read.next() else {
            return Err(format!(
                "the batch ended after {i} of {} records",
                records.len()
            ));
        };
        ensure!(
            Ok(*header) == RecordHeader::decode(record) && payload == &record[RECORD_HEADER_SIZE..],
            "record {i} of the batch reads back as {header:?} with {} payload bytes",
            payload.len()
        );
    }
    ensure!(
        read.next().is_none(),
        "the batch yields more than its {} records",
        records.len()
    );
    Ok(())
}
