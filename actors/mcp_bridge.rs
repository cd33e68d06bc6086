//! MCP bridge: reads MCP's replies from the response lane and routes each to its worker.
//!
//! The bridge runs on the main thread. It validates every record (MCP is not ours: garbage is
//! counted and dropped, never trusted; a corrupt frame discards what is published, and a tail
//! published behind the bridge's head is counted and never moves the head back, so no reply is
//! delivered twice), checks the flow's epoch, and appends the record to a
//! per-worker batch; each batch goes to its worker as one `DataTrans`, so a burst of replies costs
//! one message and one wake-up per worker. Workers send emptied batch buffers back for reuse.
//!
//! A worker that cannot take a batch yet (replies fill three quarters of its mailbox — the rest is
//! kept for new connections and control messages — or it has not yet taken [`IN_FLIGHT_MAX`]
//! bytes of earlier batches) does not cost anyone a reply: the bridge holds the
//! batch, and every later one for that worker, in order, and offers them again every turn. Held
//! replies are bounded in bytes: once they reach [`HELD_MAX`] the bridge stops reading the
//! response lane, so replies wait there and MCP, finding the lane full, waits for room (push-back)
//! until the workers catch up. No reply is dropped and no connection is closed because another
//! connection's replies filled its worker's mailbox.
//! The main thread never blocks on a worker.
//!
//! A connection that moved to another worker keeps its flow id, whose worker field names the
//! worker it was born on: the bridge keeps a route for each flow that lives elsewhere
//! ([`McpBridge::begin_move`]; looked up only while some flow has moved). While a connection is on
//! its way, its replies wait in the bridge; they reach the new worker right after the connection
//! itself, and after every reply the old worker was sent (`docs/architecture.md`, "Moving a
//! connection"). Control messages that must keep that order go through the same per-worker queue
//! as the batches.
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

pub(crate) mod response;

use std::collections::{HashMap, VecDeque};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use std::{io, mem};

use crossbeam_channel::Receiver;
use log::Level;

use crate::clock::monotonic_ns;
use crate::flow::FlowId;
use crate::lane::Consumer;
use crate::logging::{LogLimiter, log_limited};
use crate::mailbox::Mailbox;
use crate::memory::MemoryShare;
use crate::message::{
    CustomMcp, DataTrans, Departure, Disconnect, MoveRefused, Moved, ReplyBatch, WorkerMsg,
};
use crate::record::{RECORD_HEADER_SIZE, RecordHeader};
use crate::stats::BridgeCounters;
use crate::stats::histogram::Histogram;
use response::{Destination, Rejection, ResponseCheck};

/// A batch is sent as soon as it holds this many bytes or [`BATCH_RECORDS`] records: large
/// enough to spare wake-ups, small enough that the first reply of a burst does not wait for the
/// whole burst.
const BATCH_BYTES: usize = 64 * 1024;
/// See [`BATCH_BYTES`].
const BATCH_RECORDS: usize = 64;
/// Records read per turn before the main loop looks at its other actors.
pub(crate) const RECORDS_PER_TURN: usize = 1024;
/// Reply bytes a worker may have in its mailbox, handed over but not taken yet; beyond that its
/// batches wait in the bridge. Bounds the replies queued for a worker in bytes rather than by
/// `broker.mailbox_capacity` messages (a batch is always handed over when none is in flight).
pub(crate) const IN_FLIGHT_MAX: usize = 8 << 20;
/// Reply bytes the bridge holds for workers that cannot take them yet, over all workers, before
/// it stops reading the response lane (push-back on MCP).
pub(crate) const HELD_MAX: usize = 16 << 20;
/// Control messages (moves, pins, closes) the bridge holds for workers whose mailbox is full,
/// over all workers, before it refuses to begin more moves and pins.
pub(crate) const HELD_CONTROLS_MAX: usize = 4096;
/// How soon the main loop offers held replies again (workers do not signal room).
pub(crate) const HELD_RETRY: Duration = Duration::from_millis(1);

/// The bridge's view of one worker.
#[derive(Debug)]
pub(crate) struct BridgeLink {
    /// The worker's mailbox.
    pub mailbox: Mailbox<WorkerMsg>,
    /// Emptied batch buffers coming back from the worker.
    pub recycle: Receiver<ReplyBatch>,
    /// Bytes of batches handed to the worker and not yet taken by it: the bridge adds a batch's
    /// length before it sends it (and takes it back if the send fails), the worker subtracts it
    /// once it has queued the batch's replies.
    pub in_flight: Arc<AtomicUsize>,
}

/// What waits in the bridge for a worker's mailbox, in the order it must arrive.
#[derive(Debug)]
enum Outbound {
    /// Replies.
    Batch(ReplyBatch),
    /// A message that must not overtake the replies before it (a connection's move).
    Control(WorkerMsg),
}

/// Where the replies of a flow that does not live on its birth worker go.
#[derive(Debug)]
enum Route {
    /// To this worker.
    Lives(usize),
    /// Nowhere yet: the connection is on its way from `from` to `to`; its replies wait here.
    Moving {
        from: usize,
        replies: ReplyBatch,
        /// Admin `close` asked for it meanwhile: closed once it arrives.
        close: bool,
    },
}

/// Why a move cannot begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MoveStart {
    /// It is moving already.
    InProgress,
    /// [`HELD_CONTROLS_MAX`] control messages wait for workers that are behind.
    Backlog,
    /// Its flow names no worker of this start.
    NoSuchFlow,
}

impl MoveStart {
    /// The reason as admin answers word it.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            MoveStart::InProgress => "the flow is moving already",
            MoveStart::Backlog => {
                "the workers are behind: too many moves and pins wait (try again)"
            }
            MoveStart::NoSuchFlow => "the flow names no worker of this start",
        }
    }
}

/// Routes MCP's records to workers.
#[derive(Debug)]
pub(crate) struct McpBridge {
    lane: Consumer,
    check: ResponseCheck,
    links: Vec<BridgeLink>,
    /// Per worker, the batch being filled.
    batches: Vec<ReplyBatch>,
    /// Per worker, the batches (and control messages) it could not take yet, oldest first.
    held: Vec<VecDeque<Outbound>>,
    /// Bytes of every held batch.
    held_bytes: usize,
    /// Control messages held.
    held_controls: usize,
    /// The flows that do not live on their birth worker.
    routes: HashMap<FlowId, Route>,
    /// UDP listener flows of the process this one took over from, by the flow of the same
    /// listener here: a reply to a datagram received before the takeover still goes out.
    udp_aliases: HashMap<FlowId, FlowId>,
    /// Bytes of replies waiting for connections on their way.
    moving_bytes: usize,
    /// Reading the response lane is stopped: held replies reached [`HELD_MAX`].
    lane_paused: bool,
    /// A takeover is handing everything to a new process: the response lane is not read (the
    /// new process continues at the head this one leaves).
    frozen: bool,
    /// The bridge's part of `limits.max_memory`: held and in-flight reply bytes.
    memory: Option<MemoryShare>,
    record: Vec<u8>,
    /// Custom records read in this drain, for the runtime to hand out.
    customs: Vec<CustomMcp>,
    /// The clock in the current drain, read at its first record; 0 until then.
    now_ns: u64,
    counters: BridgeCounters,
    /// How long replies waited in the response lane.
    lane_wait: Histogram,
    garbage_log: LogLimiter,
    hold_log: LogLimiter,
}

impl McpBridge {
    /// A bridge reading `lane` for ccsd start `epoch`, routing to `links` by worker index and
    /// dropping DATA replies older than `reply_max_age` (zero: none).
    pub(crate) fn new(
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
                adopted: false,
            },
            links,
            batches: (0..n).map(|_| ReplyBatch::default()).collect(),
            held: (0..n).map(|_| VecDeque::new()).collect(),
            held_bytes: 0,
            held_controls: 0,
            routes: HashMap::new(),
            udp_aliases: HashMap::new(),
            moving_bytes: 0,
            lane_paused: false,
            frozen: false,
            memory: None,
            record: Vec::new(),
            customs: Vec::new(),
            now_ns: 0,
            counters: BridgeCounters::default(),
            lane_wait: Histogram::default(),
            garbage_log: LogLimiter::default(),
            hold_log: LogLimiter::default(),
        }
    }

    /// Counts the replies held or in flight ([`reply_bytes`](McpBridge::reply_bytes)) in
    /// `share`, published at the end of every drain.
    pub(crate) fn with_memory_share(mut self, share: MemoryShare) -> McpBridge {
        self.memory = Some(share);
        self
    }

    /// Routes the flows of `adopted` (each with the worker that adopted it) that this process
    /// took over (hot restart): their replies reach them, whatever start their epoch names.
    pub(crate) fn adopt_flows(&mut self, adopted: impl IntoIterator<Item = (FlowId, usize)>) {
        self.check.adopted = true;
        for (flow, worker) in adopted {
            self.routes.insert(flow, Route::Lives(worker));
        }
    }

    /// Answers replies for the UDP flow `old` of the process this one took over from as if they
    /// were for `new`, this process's flow of the same listener.
    pub(crate) fn alias_udp_flow(&mut self, old: FlowId, new: FlowId) {
        self.check.adopted = true;
        self.udp_aliases.insert(old, new);
    }

    /// Applies a new `mcp.reply_max_age` (a reload); zero: replies never expire.
    pub(crate) fn set_reply_max_age(&mut self, reply_max_age: Duration) {
        self.check.reply_max_age_ns = u64::try_from(reply_max_age.as_nanos()).unwrap_or(u64::MAX);
    }

    /// The response lane's wake-up FIFO, to register in the main poller.
    pub(crate) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.lane.wake_fd()
    }

    /// What the bridge counted so far.
    pub(crate) fn counters(&self) -> BridgeCounters {
        let mut counters = self.counters;
        counters.held_bytes = (self.held_bytes + self.moving_bytes) as u64;
        counters.moved_flows = self.routes.len() as u64;
        counters
    }

    /// Whether replies or control messages wait in the bridge for a worker: the main loop must
    /// call [`drain`](McpBridge::drain) again within [`HELD_RETRY`] even if nothing else happens.
    pub(crate) fn holding(&self) -> bool {
        self.held_bytes > 0 || self.held_controls > 0
    }

    /// Stops reading the response lane (a takeover: see `frozen`); held batches are still offered
    /// to the workers ([`offer_held_now`](McpBridge::offer_held_now)).
    pub(crate) fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Reads the response lane again after [`freeze`](McpBridge::freeze), named its consumer
    /// again (the process that failed to take over wrote its own pid there).
    pub(crate) fn thaw(&mut self) {
        self.frozen = false;
        self.lane.lane().claim_consumer();
    }

    /// Offers the held batches and control messages to their workers now.
    pub(crate) fn offer_held_now(&mut self) {
        self.offer_held();
    }

    /// Whether a connection is on its way between workers.
    pub(crate) fn moving(&self) -> bool {
        self.routes
            .values()
            .any(|r| matches!(r, Route::Moving { .. }))
    }

    /// The response lane's read position (the head it publishes).
    pub(crate) fn lane_head(&self) -> u64 {
        self.lane.lane().head_position()
    }

    /// The worker that holds `flow` now, to send it a move or a pin; `Err` while it moves, when
    /// it names no worker, or when too many control messages wait already.
    pub(crate) fn owner(&self, flow: FlowId) -> Result<usize, MoveStart> {
        if self.held_controls >= HELD_CONTROLS_MAX {
            return Err(MoveStart::Backlog);
        }
        match self.routes.get(&flow) {
            Some(Route::Lives(w)) => Ok(*w),
            Some(Route::Moving { .. }) => Err(MoveStart::InProgress),
            None if flow.epoch() == self.check.epoch && flow.worker() < self.links.len() => {
                Ok(flow.worker())
            }
            None => Err(MoveStart::NoSuchFlow),
        }
    }

    /// Begins moving `flow` to worker `to` (a valid index): tells its worker, behind every reply
    /// already routed to it, to hand it over; from now on its replies wait here until it has.
    /// Returns the worker it leaves.
    pub(crate) fn begin_move(
        &mut self,
        flow: FlowId,
        to: usize,
        force: bool,
        token: u64,
    ) -> Result<usize, MoveStart> {
        let from = self.owner(flow)?;
        if from != to {
            let replies = self.links[from].recycle.try_recv().unwrap_or_default();
            self.routes.insert(
                flow,
                Route::Moving {
                    from,
                    replies,
                    close: false,
                },
            );
        }
        // Asked even when it is there already: only its worker knows whether it is still open.
        self.send_control(
            from,
            WorkerMsg::MoveOut {
                flow,
                to,
                force,
                token,
            },
        );
        Ok(from)
    }

    /// A connection left its worker: hands it to its new one, then the replies that waited for
    /// it, and routes its next replies there.
    pub(crate) fn on_departed(&mut self, departure: Box<Departure>) {
        let (flow, to) = (departure.state.flow, departure.to);
        let waiting = match self.routes.remove(&flow) {
            Some(Route::Moving { replies, close, .. }) => Some((replies, close)),
            _ => None,
        };
        if self.needs_route(flow, to) {
            self.routes.insert(flow, Route::Lives(to));
        }
        self.send_control(to, WorkerMsg::Arrive(departure));
        if let Some((replies, close)) = waiting {
            self.moving_bytes -= replies.record_bytes();
            self.send_after_control(to, replies);
            if close {
                self.send_control(to, WorkerMsg::Disconnect(Disconnect { flows: vec![flow] }));
            }
        }
    }

    /// A move ended without the connection reaching its new worker: the replies that waited go
    /// to the worker that kept it (or, if it closed, to its old worker, which drops them as
    /// stale), and the route follows.
    pub(crate) fn on_move_failed(&mut self, moved: &Moved) {
        let Err(refused) = moved.outcome else {
            return;
        };
        match refused {
            // The new worker closed it: nothing is routed anywhere special any more.
            MoveRefused::TableFull | MoveRefused::RegisterFailed => {
                if matches!(self.routes.get(&moved.flow), Some(Route::Lives(w)) if *w == moved.to) {
                    self.routes.remove(&moved.flow);
                }
            }
            MoveRefused::AlreadyThere => {}
            MoveRefused::Closed
            | MoveRefused::Pinned
            | MoveRefused::NotInWorkerSet
            | MoveRefused::Stopping => {
                let Some(Route::Moving {
                    from,
                    replies,
                    close,
                    ..
                }) = self.routes.remove(&moved.flow)
                else {
                    return;
                };
                if refused != MoveRefused::Closed && self.needs_route(moved.flow, from) {
                    self.routes.insert(moved.flow, Route::Lives(from));
                }
                self.moving_bytes -= replies.record_bytes();
                self.send_after_control(from, replies);
                if close {
                    let flows = vec![moved.flow];
                    self.send_control(from, WorkerMsg::Disconnect(Disconnect { flows }));
                }
            }
        }
    }

    /// Whether `flow`, living on `worker`, needs a route: it was born elsewhere, or in the
    /// process this one took over from.
    fn needs_route(&self, flow: FlowId, worker: usize) -> bool {
        flow.epoch() != self.check.epoch || flow.worker() != worker
    }

    /// Flows that had moved to `worker` closed there: their replies go nowhere special now.
    pub(crate) fn on_guests_closed(&mut self, worker: usize, flows: &[FlowId]) {
        for flow in flows {
            if matches!(self.routes.get(flow), Some(Route::Lives(w)) if *w == worker) {
                self.routes.remove(flow);
            }
        }
    }

    /// Asks whichever worker holds `flow` to close it (admin `close`); while it moves, it is
    /// closed once it arrives. False when the flow names no worker, or too many control messages
    /// wait for workers that are behind ([`HELD_CONTROLS_MAX`]).
    pub(crate) fn close_flow(&mut self, flow: FlowId) -> bool {
        match self.routes.get_mut(&flow) {
            Some(Route::Moving { close, .. }) => {
                *close = true;
                true
            }
            _ => match self.owner(flow) {
                Ok(w) => {
                    self.send_control(w, WorkerMsg::Disconnect(Disconnect { flows: vec![flow] }));
                    true
                }
                Err(_) => false,
            },
        }
    }

    /// Sends `msg` to worker `w` behind every reply routed to it so far.
    pub(crate) fn send_control(&mut self, w: usize, msg: WorkerMsg) {
        self.send_batch(w);
        if self.held[w].is_empty() {
            match self.links[w].mailbox.try_send(msg) {
                Ok(()) => return,
                Err(e) => {
                    self.held[w].push_back(Outbound::Control(e.into_inner()));
                }
            }
        } else {
            self.held[w].push_back(Outbound::Control(msg));
        }
        self.held_controls += 1;
    }

    /// Sends `replies` (the batch that waited for a moving connection) to worker `w` right after
    /// the control message just sent to it.
    fn send_after_control(&mut self, w: usize, replies: ReplyBatch) {
        if replies.is_empty() {
            return;
        }
        let held = if self.held[w].is_empty() {
            match self.hand_over(w, replies) {
                Ok(()) => return,
                Err(batch) => batch,
            }
        } else {
            replies
        };
        self.counters.replies_held += held.len() as u64;
        self.held_bytes += held.record_bytes();
        self.held[w].push_back(Outbound::Batch(held));
    }

    /// Whether the memory figure the bridge published counts replies the workers may have taken
    /// since, while `limits.max_memory` is on: the main loop should drain again within
    /// [`HELD_RETRY`] (announcing its sleep as usual), so that a stale figure does not keep ccsd
    /// over the ceiling after a burst.
    pub(crate) fn memory_recount_due(&self) -> bool {
        self.memory
            .as_ref()
            .is_some_and(|m| m.published() > 0 && m.budget().max() != 0)
    }

    /// Reply bytes on their way to the workers: held by the bridge, or in a worker's mailbox.
    pub(crate) fn reply_bytes(&self) -> usize {
        let in_flight: usize = self
            .links
            .iter()
            // SYNC POINT: Relaxed: a figure for the memory budget; no data is read through it.
            .map(|link| link.in_flight.load(Ordering::Relaxed))
            .sum();
        self.held_bytes + self.moving_bytes + in_flight
    }

    /// How long the replies read so far waited in the response lane (their header's timestamp to
    /// the drain that read them).
    pub(crate) fn response_lane_wait(&self) -> Histogram {
        self.lane_wait
    }

    /// Bytes MCP has written that the bridge has not read yet.
    pub(crate) fn lane_used_bytes(&self) -> u64 {
        self.lane.lane().used_bytes()
    }

    /// Tells MCP the bridge is about to sleep; false when records arrived meanwhile (do not sleep).
    pub(crate) fn prepare_sleep(&mut self) -> bool {
        self.lane.prepare_sleep()
    }

    /// The main loop woke for something else: withdraw the sleep announcement (no syscall).
    pub(crate) fn cancel_sleep(&mut self) {
        self.lane.cancel_sleep();
    }

    /// The wake-up FIFO became readable: clear it.
    ///
    /// # Errors
    /// Reading the FIFO failed.
    pub(crate) fn on_wake(&mut self) -> io::Result<()> {
        self.lane.after_wake()
    }

    /// Routes up to [`RECORDS_PER_TURN`] records and returns how many it read; when that is
    /// `RECORDS_PER_TURN`, more may be waiting. Records for flows of the main thread's lane go to
    /// `main_thread` (header and payload), in lane order.
    pub(crate) fn drain(&mut self, main_thread: &mut dyn FnMut(&RecordHeader, &[u8])) -> usize {
        self.offer_held();
        self.now_ns = 0;
        let mut taken = 0;
        while taken < RECORDS_PER_TURN && !self.frozen {
            if self.held_bytes + self.moving_bytes >= HELD_MAX {
                self.pause_lane();
                break;
            }
            self.lane_paused = false;
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
                    log_limited!(
                        self.garbage_log,
                        Level::Warn,
                        "response lane: {corrupt}; reading resumes when MCP publishes a tail in range"
                    );
                }
                Err(corrupt) => {
                    let skipped = self.lane.discard_all();
                    self.counters.lane_corruptions += 1;
                    self.counters.lane_corrupt_bytes += skipped;
                    log_limited!(
                        self.garbage_log,
                        Level::Warn,
                        "response lane: {corrupt}; discarded {skipped} bytes"
                    );
                }
            }
        }
        for w in 0..self.links.len() {
            self.send_batch(w);
        }
        let reply_bytes = self.reply_bytes() as u64;
        if let Some(memory) = &mut self.memory {
            memory.publish(reply_bytes);
        }
        taken
    }

    /// The custom records read since the last call, oldest first.
    pub(crate) fn take_customs(&mut self) -> Vec<CustomMcp> {
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
            Ok((mut header, Destination::Adopted)) => {
                if self.routes.contains_key(&header.flow) {
                    self.record_wait(&header);
                    // The route below decides where it goes (or that it waits for a move).
                    (header, usize::MAX)
                } else if let Some(&alias) = self.udp_aliases.get(&header.flow) {
                    self.record_wait(&header);
                    self.counters.records_udp += 1;
                    header.flow = alias;
                    main_thread(&header, &self.record[RECORD_HEADER_SIZE..]);
                    return;
                } else {
                    return self.count_rejection(Rejection::StaleEpoch);
                }
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
        let w = if self.routes.is_empty() {
            w
        } else {
            match self.routes.get_mut(&header.flow) {
                None => w,
                Some(Route::Lives(owner)) => *owner,
                Some(Route::Moving { replies, .. }) => {
                    // Its connection is on its way: the reply follows it (`on_departed`).
                    let payload = &self.record[RECORD_HEADER_SIZE..];
                    replies.push(&header, payload);
                    self.moving_bytes += RECORD_HEADER_SIZE + payload.len();
                    self.counters.records_routed += 1;
                    self.counters.replies_held_moving += 1;
                    return;
                }
            }
        };
        // The header goes to the worker decoded: it is not decoded again there.
        let batch = &mut self.batches[w];
        batch.push(&header, &self.record[RECORD_HEADER_SIZE..]);
        self.counters.records_routed += 1;
        if batch.record_bytes() >= BATCH_BYTES || batch.len() >= BATCH_RECORDS {
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
                log_limited!(
                    self.garbage_log,
                    Level::Warn,
                    "response lane: dropping a malformed record: {e}"
                );
            }
            Rejection::UnknownCloseMode(code) => {
                self.counters.dropped_malformed += 1;
                log_limited!(
                    self.garbage_log,
                    Level::Warn,
                    "response lane: dropping a CLOSE with unknown mode {code}"
                );
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

    /// Hands worker `w`'s batch over, or holds it behind the batches already held for `w`.
    fn send_batch(&mut self, w: usize) {
        if self.batches[w].is_empty() {
            return;
        }
        let fresh = self.links[w].recycle.try_recv().unwrap_or_default();
        let batch = mem::replace(&mut self.batches[w], fresh);
        let held = if self.held[w].is_empty() {
            match self.hand_over(w, batch) {
                Ok(()) => return,
                Err(batch) => batch,
            }
        } else {
            batch
        };
        self.counters.replies_held += held.len() as u64;
        self.held_bytes += held.record_bytes();
        self.held[w].push_back(Outbound::Batch(held));
    }

    /// Sends `held` to worker `w` unless replies fill three quarters of its mailbox (the rest is
    /// for connections and control messages) or it has [`IN_FLIGHT_MAX`] bytes still to take (a
    /// batch always goes when nothing is in flight, however large).
    fn hand_over(&mut self, w: usize, batch: ReplyBatch) -> Result<(), ReplyBatch> {
        let link = &self.links[w];
        let len = batch.record_bytes();
        let capacity = link.mailbox.capacity();
        if link.mailbox.len() >= capacity - capacity / 4 {
            return Err(batch);
        }
        // SYNC POINT: Relaxed: the count only paces the bridge; the batch itself reaches the
        // worker through the channel, which orders it. A stale (higher) value delays a batch by
        // one retry, never loses it. The add comes before the send so that the worker's
        // subtraction can never find the count lower than its batch.
        let in_flight = link.in_flight.load(Ordering::Relaxed);
        if in_flight > 0 && in_flight + len > IN_FLIGHT_MAX {
            return Err(batch);
        }
        link.in_flight.fetch_add(len, Ordering::Relaxed);
        match link
            .mailbox
            .try_send(WorkerMsg::DataTrans(DataTrans { batch }))
        {
            Ok(()) => Ok(()),
            Err(err) => {
                link.in_flight.fetch_sub(len, Ordering::Relaxed);
                let WorkerMsg::DataTrans(DataTrans { batch }) = err.into_inner() else {
                    unreachable!("a DataTrans was sent")
                };
                Err(batch)
            }
        }
    }

    /// Offers every worker its held batches and control messages again, oldest first, as far
    /// as it takes them.
    fn offer_held(&mut self) {
        for w in 0..self.held.len() {
            while let Some(held) = self.held[w].pop_front() {
                match held {
                    Outbound::Batch(batch) => {
                        let len = batch.record_bytes();
                        match self.hand_over(w, batch) {
                            Ok(()) => self.held_bytes -= len,
                            Err(batch) => {
                                self.held[w].push_front(Outbound::Batch(batch));
                                break;
                            }
                        }
                    }
                    Outbound::Control(msg) => match self.links[w].mailbox.try_send(msg) {
                        Ok(()) => self.held_controls -= 1,
                        Err(e) => {
                            self.held[w].push_front(Outbound::Control(e.into_inner()));
                            break;
                        }
                    },
                }
            }
        }
    }

    /// Stops reading the response lane until held replies drop below [`HELD_MAX`].
    fn pause_lane(&mut self) {
        if self.lane_paused {
            return;
        }
        self.lane_paused = true;
        self.counters.lane_pauses += 1;
        // The list of workers is only built when the line is logged.
        log_limited!(
            self.hold_log,
            Level::Warn,
            "workers {} are behind: holding {} bytes of replies, not reading the response lane until they catch up",
            self.workers_behind(),
            self.held_bytes
        );
    }

    /// The workers the bridge holds replies for, as "0, 2".
    fn workers_behind(&self) -> String {
        let behind: Vec<String> = (0..self.held.len())
            .filter(|&w| !self.held[w].is_empty())
            .map(|w| w.to_string())
            .collect();
        behind.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use polling::Poller;

    use super::*;
    use crate::flow::FlowId;
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

    /// A bridge of epoch 5 with one worker, reading a response lane of `lane_capacity` bytes that
    /// the test writes into as MCP; the worker's mailbox holds `mailbox_capacity` messages.
    struct OneWorker {
        bridge: McpBridge,
        mcp: Producer,
        inbox: crossbeam_channel::Receiver<WorkerMsg>,
        in_flight: Arc<AtomicUsize>,
        _recycle: crossbeam_channel::Sender<ReplyBatch>,
        _files: LaneFiles,
    }

    fn one_worker(test: &str, lane_capacity: u64, mailbox_capacity: usize) -> OneWorker {
        let files = LaneFiles(PathBuf::from(format!(
            "/dev/shm/ccsd-bridgetest-{test}-{}.rsp",
            std::process::id()
        )));
        let consumer = Lane::create_or_attach(&files.0, lane_capacity)
            .unwrap()
            .into_consumer();
        let mcp = Lane::attach(&files.0, None).unwrap().into_producer();
        let (mailbox, inbox) = mailbox(mailbox_capacity, Arc::new(Poller::new().unwrap()));
        let (recycle_tx, recycle) = crossbeam_channel::bounded(1);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let bridge = McpBridge::new(
            consumer,
            5,
            vec![BridgeLink {
                mailbox,
                recycle,
                in_flight: Arc::clone(&in_flight),
            }],
            Duration::ZERO,
        );
        OneWorker {
            bridge,
            mcp,
            inbox,
            in_flight,
            _recycle: recycle_tx,
            _files: files,
        }
    }

    #[test]
    fn replies_for_the_main_threads_lane_go_to_the_caller_and_beyond_it_are_dropped() {
        let OneWorker {
            mut bridge,
            mut mcp,
            inbox,
            in_flight: _,
            _recycle,
            _files,
        } = one_worker("main", 1 << 16, 4);
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
    fn replies_a_full_mailbox_cannot_take_are_held_and_delivered_in_order_once_it_has_room() {
        let OneWorker {
            mut bridge,
            mut mcp,
            inbox,
            in_flight,
            _recycle,
            _files,
        } = one_worker("held-order", 1 << 16, 1);
        let (a, b) = (FlowId::new(5, 0, 0, 1), FlowId::new(5, 0, 0, 2));

        reply(&mut mcp, a, b"a1");
        bridge.drain(&mut no_main_thread); // fills the one-message mailbox
        reply(&mut mcp, b, b"b1");
        bridge.drain(&mut no_main_thread); // mailbox full: b1 held
        reply(&mut mcp, b, b"b2");
        reply(&mut mcp, a, b"a2");
        bridge.drain(&mut no_main_thread); // still full: b2 and a2 held behind b1
        assert_eq!(bridge.counters().replies_held, 3);
        assert!(bridge.holding());
        let first_len = RECORD_HEADER_SIZE + 2;
        assert_eq!(in_flight.load(Ordering::Relaxed), first_len);
        assert_eq!(bridge.reply_bytes(), 4 * first_len);

        let take = |inbox: &Receiver<WorkerMsg>| -> Vec<(FlowId, Vec<u8>)> {
            let Ok(WorkerMsg::DataTrans(d)) = inbox.try_recv() else {
                panic!("a batch was delivered")
            };
            // What the worker does once it has queued a batch's replies.
            in_flight.fetch_sub(d.batch.record_bytes(), Ordering::Relaxed);
            d.batch
                .records()
                .map(|(h, p)| (h.flow, p.to_vec()))
                .collect()
        };
        assert_eq!(take(&inbox), [(a, b"a1".to_vec())]);
        let mut later = Vec::new();
        while bridge.holding() {
            bridge.drain(&mut no_main_thread); // room again: the held batches go, oldest first
            later.extend(take(&inbox));
        }
        assert_eq!(
            later,
            [
                (b, b"b1".to_vec()),
                (b, b"b2".to_vec()),
                (a, b"a2".to_vec())
            ]
        );
        assert_eq!(bridge.counters().held_bytes, 0);
        assert_eq!(bridge.reply_bytes(), 0);
        assert!(inbox.try_recv().is_err(), "nothing else was sent");
    }

    #[test]
    fn once_held_replies_reach_their_limit_the_response_lane_is_not_read_further() {
        let OneWorker {
            mut bridge,
            mut mcp,
            inbox,
            in_flight: _,
            _recycle,
            _files,
        } = one_worker("held-limit", 32 << 20, 1);
        let flow = FlowId::new(5, 0, 0, 1);
        let payload = vec![b'p'; 1 << 20];
        // The first fills the one-message mailbox; the next 16 are held (16 MiB and their
        // headers); the last 4 stay in the lane.
        for _ in 0..21 {
            reply(&mut mcp, flow, &payload);
        }
        bridge.drain(&mut no_main_thread);
        let counters = bridge.counters();
        assert_eq!(
            (
                counters.records_in,
                counters.replies_held,
                counters.lane_pauses
            ),
            (17, 16, 1)
        );
        assert_eq!(
            counters.held_bytes,
            16 * (RECORD_HEADER_SIZE as u64 + (1 << 20))
        );
        let left = 4 * (RECORD_HEADER_SIZE + (1 << 20));
        assert!(bridge.lane_used_bytes() >= left as u64);
        // Nothing changed: still paused, counted once.
        bridge.drain(&mut no_main_thread);
        assert_eq!(bridge.counters().lane_pauses, 1);
        assert_eq!(bridge.counters().records_in, 17);

        // The worker takes what it has: the bridge hands over, then reads the lane again.
        let Ok(WorkerMsg::DataTrans(_)) = inbox.try_recv() else {
            panic!("the first reply was delivered")
        };
        bridge.links[0].in_flight.store(0, Ordering::Relaxed);
        bridge.drain(&mut no_main_thread);
        assert_eq!(bridge.counters().records_in, 18, "one more read");
        assert_eq!(bridge.counters().lane_pauses, 2);
    }
}
