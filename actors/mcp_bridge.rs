//! MCP bridge: reads MCP's replies from the response lane and routes each to its worker.
//!
//! The bridge runs on the main thread. It validates every record (MCP is not ours: garbage is
//! counted and dropped, never trusted; a corrupt frame discards what is published, and a tail
//! published behind the bridge's head is counted and never moves the head back, so no reply is
//! delivered twice), checks the flow's epoch, and appends the record to a
//! per-worker batch; each batch goes to its worker as one `DataTrans`, so a burst of replies costs
//! one message and one wake-up per worker. Workers send emptied batch buffers back for reuse.
//!
//! When a worker's mailbox is full the batch's replies are dropped and counted, and the bridge
//! asks that worker to close their flows (`Disconnect`, reason overload); those requests are kept
//! (sorted and deduplicated, so bounded by the worker's connections) and retried every turn until
//! delivered; until then later replies for those flows are dropped too, so no client ever receives
//! a stream with a hole in it.
//! The main thread never blocks on a worker.
//!
//! Custom records (kind custom) are not about a flow: the bridge copies each into a [`CustomMcp`]
//! and the runtime hands them to the main thread's actors after the drain.
//!
//! Replies for flows of the main thread's lane (UDP peers: their worker field is the number of
//! workers) go to the caller of [`McpBridge::drain`] at once, which hands them to the UDP actor
//! on the same thread: no batch, no copy beyond the staging buffer.
//!
//! With `mcp.reply_max_age` set, a DATA reply whose header timestamp (MCP's `CLOCK_MONOTONIC` at
//! send time) is older than that when the bridge reads it is dropped and counted: the client
//! waited too long for it to matter. The connection stays open.
//!
//! The same timestamp measures how long each reply (DATA or CLOSE, of this start) waited in the
//! response lane: the bridge records `now - timestamp_ns` in a histogram, reading the clock once
//! per drain (so a record MCP wrote during the drain counts as no wait at all). A record whose
//! timestamp is 0 (MCP did not stamp it) is not recorded.

use std::os::fd::BorrowedFd;
use std::time::Duration;
use std::{io, mem};

use crossbeam_channel::Receiver;
use log::warn;

use crate::clock::monotonic_ns;
use crate::flow::FlowId;
use crate::histogram::Histogram;
use crate::lane::Consumer;
use crate::logging::LogLimiter;
use crate::mailbox::Mailbox;
use crate::message::{CustomMcp, DataTrans, Disconnect, WorkerMsg};
use crate::record::{RECORD_HEADER_SIZE, Reason, RecordHeader};
use crate::response::{Destination, Rejection, ResponseCheck};
use crate::stats::BridgeCounters;

/// A batch is sent as soon as it holds this many bytes or [`BATCH_RECORDS`] records: large
/// enough to spare wake-ups, small enough that the first reply of a burst does not wait for the
/// whole burst.
const BATCH_BYTES: usize = 64 * 1024;
/// See [`BATCH_BYTES`].
const BATCH_RECORDS: usize = 64;
/// Records read per turn before the main loop looks at its other actors.
pub const RECORDS_PER_TURN: usize = 1024;

/// The bridge's view of one worker.
#[derive(Debug)]
pub struct BridgeLink {
    /// The worker's mailbox.
    pub mailbox: Mailbox<WorkerMsg>,
    /// Emptied batch buffers coming back from the worker.
    pub recycle: Receiver<Vec<u8>>,
}

/// Routes MCP's records to workers.
#[derive(Debug)]
pub struct McpBridge {
    lane: Consumer,
    check: ResponseCheck,
    links: Vec<BridgeLink>,
    batches: Vec<Vec<u8>>,
    batch_records: Vec<usize>,
    pending_closes: Vec<Vec<FlowId>>,
    record: Vec<u8>,
    /// Custom records read in this drain, for the runtime to hand out.
    customs: Vec<CustomMcp>,
    /// The clock in the current drain, read at its first record; 0 until then.
    now_ns: u64,
    counters: BridgeCounters,
    /// How long replies waited in the response lane.
    lane_wait: Histogram,
    garbage_log: LogLimiter,
    overload_log: LogLimiter,
}

impl McpBridge {
    /// A bridge reading `lane` for ccsd start `epoch`, routing to `links` by worker index and
    /// dropping DATA replies older than `reply_max_age` (zero: none).
    pub fn new(
        lane: Consumer,
        epoch: u16,
        links: Vec<BridgeLink>,
        reply_max_age: Duration,
    ) -> McpBridge {
        let n = links.len();
        McpBridge {
            lane,
            check: ResponseCheck {
                epoch,
                workers: n,
                reply_max_age_ns: u64::try_from(reply_max_age.as_nanos()).unwrap_or(u64::MAX),
            },
            links,
            batches: vec![Vec::new(); n],
            batch_records: vec![0; n],
            pending_closes: vec![Vec::new(); n],
            record: Vec::new(),
            customs: Vec::new(),
            now_ns: 0,
            counters: BridgeCounters::default(),
            lane_wait: Histogram::default(),
            garbage_log: LogLimiter::default(),
            overload_log: LogLimiter::default(),
        }
    }

    /// Applies a new `mcp.reply_max_age` (a reload); zero: replies never expire.
    pub fn set_reply_max_age(&mut self, reply_max_age: Duration) {
        self.check.reply_max_age_ns = u64::try_from(reply_max_age.as_nanos()).unwrap_or(u64::MAX);
    }

    /// The response lane's wake-up FIFO, to register in the main poller.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.lane.wake_fd()
    }

    /// What the bridge counted so far.
    pub fn counters(&self) -> BridgeCounters {
        self.counters
    }

    /// How long the replies read so far waited in the response lane (their header's timestamp to
    /// the drain that read them).
    pub fn response_lane_wait(&self) -> Histogram {
        self.lane_wait
    }

    /// Bytes MCP has written that the bridge has not read yet.
    pub fn lane_used_bytes(&self) -> u64 {
        self.lane.lane().used_bytes()
    }

    /// Tells MCP the bridge is about to sleep; false when records arrived meanwhile (do not sleep).
    pub fn prepare_sleep(&mut self) -> bool {
        self.lane.prepare_sleep()
    }

    /// The main loop woke for something else: withdraw the sleep announcement (no syscall).
    pub fn cancel_sleep(&mut self) {
        self.lane.cancel_sleep();
    }

    /// The wake-up FIFO became readable: clear it.
    ///
    /// # Errors
    /// Reading the FIFO failed.
    pub fn on_wake(&mut self) -> io::Result<()> {
        self.lane.after_wake()
    }

    /// Routes up to [`RECORDS_PER_TURN`] records and returns how many it read; when that is
    /// `RECORDS_PER_TURN`, more may be waiting. Records for flows of the main thread's lane go to
    /// `main_thread` (header and payload), in lane order.
    pub fn drain(&mut self, main_thread: &mut dyn FnMut(&RecordHeader, &[u8])) -> usize {
        self.retry_pending_closes();
        self.now_ns = 0;
        let mut taken = 0;
        while taken < RECORDS_PER_TURN {
            self.record.clear();
            match self.lane.pop_into(&mut self.record) {
                Ok(Some(_)) => {
                    taken += 1;
                    self.route(main_thread);
                }
                Ok(None) => break,
                Err(corrupt) if corrupt.tail_out_of_range => {
                    // The head stays: moving it back would deliver replies again.
                    self.counters.lane_bad_tails += 1;
                    if let Some(n) = self.garbage_log.allow() {
                        warn!(
                            "response lane: {corrupt}; reading resumes when MCP publishes a tail in range ({n} similar suppressed)"
                        );
                    }
                }
                Err(corrupt) => {
                    let skipped = self.lane.discard_all();
                    self.counters.lane_corruptions += 1;
                    self.counters.lane_corrupt_bytes += skipped;
                    if let Some(n) = self.garbage_log.allow() {
                        warn!(
                            "response lane: {corrupt}; discarded {skipped} bytes ({n} similar suppressed)"
                        );
                    }
                }
            }
        }
        for w in 0..self.links.len() {
            self.send_batch(w);
        }
        taken
    }

    /// The custom records read since the last call, oldest first.
    pub fn take_customs(&mut self) -> Vec<CustomMcp> {
        mem::take(&mut self.customs)
    }

    fn route(&mut self, main_thread: &mut dyn FnMut(&RecordHeader, &[u8])) {
        self.counters.records_in += 1;
        if self.now_ns == 0 {
            self.now_ns = monotonic_ns();
        }
        let (header, w) = match self.check.classify(&self.record, self.now_ns) {
            Ok((header, Destination::Worker(w))) => {
                self.record_wait(&header);
                (header, w)
            }
            Ok((header, Destination::MainLane)) => {
                self.record_wait(&header);
                self.counters.records_udp += 1;
                main_thread(&header, &self.record[RECORD_HEADER_SIZE..]);
                return;
            }
            Ok((header, Destination::Custom)) => {
                self.counters.custom_records += 1;
                self.customs.push(CustomMcp {
                    header,
                    payload: self.record[RECORD_HEADER_SIZE..].to_vec(),
                });
                return;
            }
            Err(rejection) => return self.count_rejection(rejection),
        };
        // A flow that lost replies must not get later ones before its close: the client would
        // see a stream with a hole in it.
        if self.pending_closes[w].binary_search(&header.flow).is_ok() {
            self.counters.dropped_mailbox_full += 1;
            return;
        }
        let batch = &mut self.batches[w];
        batch.extend_from_slice(&self.record);
        self.counters.records_routed += 1;
        self.batch_records[w] += 1;
        if batch.len() >= BATCH_BYTES || self.batch_records[w] >= BATCH_RECORDS {
            self.send_batch(w);
        }
    }

    /// Adds how long an accepted reply waited in the lane (from MCP's timestamp) to the histogram;
    /// a timestamp ahead of our clock (MCP read it later than we did) waited for nothing.
    fn record_wait(&mut self, header: &RecordHeader) {
        if header.timestamp_ns != 0 {
            self.lane_wait
                .record_ns(self.now_ns.saturating_sub(header.timestamp_ns));
        }
    }

    fn count_rejection(&mut self, rejection: Rejection) {
        match rejection {
            Rejection::Malformed(e) => {
                self.counters.dropped_malformed += 1;
                if let Some(n) = self.garbage_log.allow() {
                    warn!(
                        "response lane: dropping a malformed record: {e} ({n} similar suppressed)"
                    );
                }
            }
            Rejection::UnknownCloseMode(code) => {
                self.counters.dropped_malformed += 1;
                if let Some(n) = self.garbage_log.allow() {
                    warn!(
                        "response lane: dropping a CLOSE with unknown mode {code} ({n} similar suppressed)"
                    );
                }
            }
            Rejection::UnexpectedKind(_) => self.counters.dropped_unexpected_kind += 1,
            Rejection::StaleEpoch => self.counters.dropped_stale_epoch += 1,
            Rejection::Expired { waited_ns } => {
                self.lane_wait.record_ns(waited_ns);
                self.counters.dropped_expired += 1;
            }
            Rejection::BadWorker => self.counters.dropped_bad_worker += 1,
        }
    }

    fn send_batch(&mut self, w: usize) {
        if self.batches[w].is_empty() {
            return;
        }
        self.batch_records[w] = 0;
        let link = &self.links[w];
        let fresh = link.recycle.try_recv().unwrap_or_default();
        let batch = mem::replace(&mut self.batches[w], fresh);
        let Err(err) = link
            .mailbox
            .try_send(WorkerMsg::DataTrans(DataTrans { batch }))
        else {
            return;
        };
        let WorkerMsg::DataTrans(undelivered) = err.into_inner() else {
            unreachable!("a DataTrans was sent")
        };
        let pending = &mut self.pending_closes[w];
        for (header, _) in undelivered.records() {
            self.counters.dropped_mailbox_full += 1;
            pending.push(header.flow);
        }
        pending.sort_unstable();
        pending.dedup();
        if let Some(n) = self.overload_log.allow() {
            warn!(
                "worker {w} mailbox full: dropped replies, closing {} connections ({n} similar suppressed)",
                pending.len()
            );
        }
    }

    fn retry_pending_closes(&mut self) {
        for (w, pending) in self.pending_closes.iter_mut().enumerate() {
            if pending.is_empty() {
                continue;
            }
            let msg = WorkerMsg::Disconnect(Disconnect {
                flows: mem::take(pending),
                reason: Reason::Overload,
            });
            if let Err(e) = self.links[w].mailbox.try_send(msg) {
                let WorkerMsg::Disconnect(d) = e.into_inner() else {
                    unreachable!("a Disconnect was sent")
                };
                *pending = d.flows;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use polling::Poller;

    use super::*;
    use crate::lane::{Lane, Producer};
    use crate::mailbox::mailbox;
    use crate::record::{Kind, RecordHeader};

    /// Removes the test lane's files, also when the test panics.
    struct LaneFiles(PathBuf);

    impl Drop for LaneFiles {
        fn drop(&mut self) {
            let _ = Lane::remove_files(&self.0);
        }
    }

    fn reply(mcp: &mut Producer, flow: FlowId, payload: &[u8]) {
        let mut h = RecordHeader::new(Kind::Data, flow);
        h.payload_len = payload.len() as u32;
        mcp.try_push(&[&h.encode(), payload]).unwrap();
        mcp.publish().unwrap();
    }

    fn no_main_thread(header: &RecordHeader, _: &[u8]) {
        panic!("no reply for the main thread was expected: {header:?}");
    }

    #[test]
    fn replies_for_the_main_threads_lane_go_to_the_caller_and_beyond_it_are_dropped() {
        let files = LaneFiles(PathBuf::from(format!(
            "/dev/shm/ccsd-bridgetest-main-{}.rsp",
            std::process::id()
        )));
        let consumer = Lane::create_or_attach(&files.0, 1 << 16)
            .unwrap()
            .into_consumer();
        let mut mcp = Lane::attach(&files.0, None).unwrap().into_producer();
        let (mailbox, inbox) = mailbox(4, Arc::new(Poller::new().unwrap()));
        let (_recycle_tx, recycle) = crossbeam_channel::bounded(1);
        let mut bridge = McpBridge::new(
            consumer,
            5,
            vec![BridgeLink { mailbox, recycle }],
            Duration::ZERO,
        );
        // One worker (index 0): index 1 is the main thread's lane, index 2 names nothing.
        let udp = FlowId::new(5, 1, 0, 3);
        reply(&mut mcp, udp, b"datagram");
        reply(&mut mcp, FlowId::new(5, 2, 0, 3), b"nowhere");
        let mut seen = Vec::new();
        bridge.drain(&mut |h, p| seen.push((h.flow, p.to_vec())));
        assert_eq!(seen, [(udp, b"datagram".to_vec())]);
        assert_eq!(bridge.counters().records_udp, 1);
        assert_eq!(bridge.counters().dropped_bad_worker, 1);
        assert!(inbox.try_recv().is_err(), "no worker got anything");
    }

    #[test]
    fn full_mailbox_drops_replies_then_closes_their_flows_once_it_has_room() {
        let files = LaneFiles(PathBuf::from(format!(
            "/dev/shm/ccsd-bridgetest-{}.rsp",
            std::process::id()
        )));
        let consumer = Lane::create_or_attach(&files.0, 1 << 16)
            .unwrap()
            .into_consumer();
        let mut mcp = Lane::attach(&files.0, None).unwrap().into_producer();
        let (mailbox, inbox) = mailbox(1, Arc::new(Poller::new().unwrap()));
        let (_recycle_tx, recycle) = crossbeam_channel::bounded(1);
        let mut bridge = McpBridge::new(
            consumer,
            5,
            vec![BridgeLink { mailbox, recycle }],
            Duration::ZERO,
        );
        let (a, b) = (FlowId::new(5, 0, 0, 1), FlowId::new(5, 0, 0, 2));

        reply(&mut mcp, a, b"a1");
        bridge.drain(&mut no_main_thread); // fills the one-message mailbox
        reply(&mut mcp, b, b"b1");
        bridge.drain(&mut no_main_thread); // mailbox full: b1 dropped, b to be closed
        reply(&mut mcp, b, b"b2");
        reply(&mut mcp, a, b"a2");
        bridge.drain(&mut no_main_thread); // b2 dropped because b awaits its close; a2 dropped, mailbox still full
        assert_eq!(bridge.counters().dropped_mailbox_full, 3);
        assert_eq!(bridge.counters().records_in, 4);
        assert_eq!(
            bridge.counters().records_routed,
            3,
            "b2 never reached a batch"
        );

        let Ok(WorkerMsg::DataTrans(first)) = inbox.try_recv() else {
            panic!("the first batch was delivered")
        };
        let payloads: Vec<_> = first.records().map(|(h, p)| (h.flow, p.to_vec())).collect();
        assert_eq!(payloads, [(a, b"a1".to_vec())]);

        bridge.drain(&mut no_main_thread); // room again: the pending closes go out
        let Ok(WorkerMsg::Disconnect(d)) = inbox.try_recv() else {
            panic!("a Disconnect follows")
        };
        assert_eq!((d.flows, d.reason), (vec![a, b], Reason::Overload));
        assert!(inbox.try_recv().is_err(), "nothing else was sent");
    }
}
