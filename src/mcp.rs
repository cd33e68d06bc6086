//! The MCP side of the lanes: what a business process written in Rust links against.
//!
//! [`McpEndpoint`] attaches to the lanes a running (or later) ccsd created, reads requests from
//! every request lane in turn, and writes replies and close requests to the response lane.
//!
//! ```no_run
//! use ccsd::mcp::{McpEndpoint, Message};
//! use ccsd::record::Kind;
//! use ccsd::settings::Settings;
//! use std::time::Duration;
//!
//! let settings = Settings::load(None)?;
//! let mut mcp = McpEndpoint::attach_wait(&settings, Duration::from_secs(10))?;
//! let mut msg = Message::new();
//! loop {
//!     mcp.recv(&mut msg, None)?;            // blocks until a record arrives
//!     if msg.header().kind == Kind::Data {
//!         mcp.reply(msg.header(), msg.payload())?;
//!     }
//!     if !mcp.has_pending_requests() {
//!         mcp.flush()?;                    // publish replies, wake ccsd if it sleeps
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Only one MCP consumes a set of lanes at a time: [`McpEndpoint::attach`] first takes the lock
//! `{queues.dir}/{queues.name}.mcp.lock` and fails with [`McpError::Busy`], naming the holder's pid,
//! while another process holds it.
//!
//! What happens to a request MCP took but had not answered when it died is chosen with
//! [`McpEndpoint::set_delivery`]: [`Delivery::AtMostOnce`] (the default) hands its space back to
//! ccsd as soon as it is read, so it is lost; [`Delivery::AtLeastOnce`] hands it back only once
//! the replies queued for it are published, so the next MCP gets it again (`docs/protocol.md`,
//! "Delivery guarantees").
//!
//! Replies are not visible to ccsd until [`McpEndpoint::flush`] (or until 16 have been queued,
//! when the endpoint publishes by itself, so a busy MCP never holds replies back for long);
//! flushing once per batch of requests (when no more are pending) saves a fence and a possible
//! syscall per reply.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::flow::FlowId;
use crate::lane::{Consumer, HeldRecord, Lane, LaneCorrupt, LaneError, Producer, PushError};
use crate::record::{CloseMode, Kind, RECORD_HEADER_SIZE, RecordError, RecordHeader};
use crate::settings::Settings;

pub(crate) mod consumer_lock;
pub mod demo;
pub mod service;

use consumer_lock::ConsumerLock;

/// Why an MCP operation failed.
#[derive(Debug)]
pub enum McpError {
    /// A lane could not be attached.
    Lane(LaneError),
    /// The lanes exist but ccsd has not finished setting them up.
    NotReady(PathBuf),
    /// The response lane is full: ccsd is not reading. Flush, wait and retry.
    Full,
    /// A reply longer than a lane can carry.
    TooLarge(usize),
    /// Waiting on the wake-up FIFOs failed.
    Io(io::Error),
    /// Another MCP consumes these lanes: it holds their MCP lock.
    Busy {
        /// The lock file.
        lock: PathBuf,
        /// The pid the holder wrote into it, if readable.
        pid: Option<u32>,
    },
    /// The MCP lock file is not a regular file of ours.
    UnsafeLock {
        /// The lock file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The MCP lock file could not be opened, locked or written.
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What we were doing.
        op: &'static str,
        /// The error from the system.
        source: io::Error,
    },
}

impl fmt::Display for McpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            McpError::Lane(e) => write!(f, "{e}"),
            McpError::NotReady(p) => write!(
                f,
                "{}: ccsd has not finished creating the lanes",
                p.display()
            ),
            McpError::Full => write!(f, "response lane full"),
            McpError::TooLarge(n) => write!(f, "a reply of {n} bytes does not fit in a lane"),
            McpError::Io(e) => write!(f, "waiting for requests: {e}"),
            McpError::Busy { lock, pid } => {
                match pid {
                    Some(pid) => write!(f, "another MCP (pid {pid})")?,
                    None => write!(f, "another MCP")?,
                }
                write!(
                    f,
                    " already consumes these lanes ({} is locked): a lane has one consumer at a \
                     time; stop that one first",
                    lock.display()
                )
            }
            McpError::UnsafeLock { path, reason } => write!(
                f,
                "MCP lock {}: {reason}: refusing to use it",
                path.display()
            ),
            McpError::Lock { path, op, source } => {
                write!(f, "MCP lock {}: {op} failed: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for McpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            McpError::Lane(e) => Some(e),
            McpError::Io(e) | McpError::Lock { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

impl McpError {
    /// True when the lanes are missing or not set up yet: ccsd may still be starting.
    pub fn is_not_ready(&self) -> bool {
        match self {
            McpError::Lane(e) => e.is_not_ready(),
            McpError::NotReady(_) => true,
            _ => false,
        }
    }
}

impl From<io::Error> for McpError {
    fn from(e: io::Error) -> Self {
        McpError::Io(e)
    }
}

impl From<PushError> for McpError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Full => McpError::Full,
            PushError::TooLarge { len, .. } => McpError::TooLarge(len),
        }
    }
}

/// A received record: its header and payload, copied out of shared memory into a reusable buffer.
#[derive(Debug)]
pub struct Message {
    header: RecordHeader,
    bytes: Vec<u8>,
}

impl Message {
    /// An empty message buffer to receive into.
    pub fn new() -> Message {
        Message {
            header: RecordHeader::new(Kind::Data, FlowId(0)),
            bytes: Vec::with_capacity(64 * 1024),
        }
    }

    /// The record's header.
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// The record's payload (for data records, the whole client packet).
    pub fn payload(&self) -> &[u8] {
        self.bytes.get(RECORD_HEADER_SIZE..).unwrap_or_default()
    }
}

impl Default for Message {
    fn default() -> Self {
        Message::new()
    }
}

/// A record [`McpEndpoint::try_recv_held`] took, its payload still in the lane.
#[derive(Debug, Clone, Copy)]
pub struct HeldMessage {
    header: RecordHeader,
    record: HeldRecord,
}

impl HeldMessage {
    /// The record's header (copied out of the lane).
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// The payload's first byte, in the lane's shared memory: valid until the endpoint's next
    /// receive, commit or delivery change. Hand it to code that copies or reads it through the
    /// pointer (a C caller); never make a Rust reference of it.
    pub fn payload_ptr(&self) -> *const u8 {
        self.record.as_ptr().wrapping_add(RECORD_HEADER_SIZE)
    }

    /// Bytes of payload at [`payload_ptr`](HeldMessage::payload_ptr).
    pub fn payload_len(&self) -> usize {
        self.record.len() - RECORD_HEADER_SIZE
    }
}

/// Replies queued before [`McpEndpoint::send`] publishes them by itself.
const PUBLISH_EVERY: usize = 16;

/// How often attaching a request lane that ccsd announced but that fails is retried.
const LANE_RETRY: Duration = Duration::from_millis(100);

/// The directory, queue name and expected capacity of a set of lanes.
#[derive(Debug, Clone)]
struct LanePaths {
    dir: PathBuf,
    name: String,
    capacity: Option<u64>,
}

impl LanePaths {
    fn request(&self, lane: usize) -> PathBuf {
        self.dir.join(format!("{}.req.{lane}", self.name))
    }

    fn response(&self) -> PathBuf {
        self.dir.join(format!("{}.rsp", self.name))
    }
}

/// Records an endpoint skipped because they were not valid.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EndpointCounters {
    /// Records with a malformed header.
    pub malformed_records: u64,
    /// Times a request lane held a corrupt frame and was emptied.
    pub lane_corruptions: u64,
    /// Times a request lane's published tail was behind our head or more than the capacity
    /// ahead (once per value): nothing was read from it and nothing is read twice.
    pub lane_bad_tails: u64,
    /// Times ccsd's head in the response lane could not follow our tail, and we continued
    /// writing at ccsd's head.
    pub response_resyncs: u64,
    /// Request lanes attached after a ccsd restart with more workers announced them.
    pub lanes_added: u64,
}

/// What becomes of a request MCP took when MCP dies before answering it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A request's space goes back to ccsd as soon as it is read: a request taken but not
    /// answered when MCP dies is lost, and no request is ever handed to MCP twice.
    #[default]
    AtMostOnce,
    /// A request's space goes back to ccsd only once the replies queued for it are published
    /// (at a flush, which [`McpEndpoint::recv`] does before it sleeps and [`McpEndpoint::send`]
    /// every 16 records): after MCP dies, the next MCP receives every request the dead one had
    /// not published replies for. A request counts as answered when MCP asks for the next one
    /// or calls [`McpEndpoint::commit`]. Requests whose replies were published but whose release
    /// was not stored yet (MCP died between the two) are delivered twice.
    AtLeastOnce,
}

/// MCP's end of ccsd's lanes.
#[derive(Debug)]
pub struct McpEndpoint {
    requests: Vec<Consumer>,
    responses: Producer,
    next_lane: usize,
    counters: EndpointCounters,
    idle_spin: Duration,
    last_record: Instant,
    /// Per request lane: did its FIFO fire in the last sleep (reused between sleeps).
    fired: Vec<bool>,
    /// Records queued since the last publish.
    unpublished: usize,
    delivery: Delivery,
    /// At least once: the request being answered (its lane and the position before it), which
    /// a flush does not release yet.
    answering: Option<(usize, u64)>,
    /// Where the lanes are, to attach the ones a ccsd restarted with more workers creates.
    lanes_at: LanePaths,
    /// When a `request_lanes` we do not have yet was last tried (failures retry at most every
    /// [`LANE_RETRY`]).
    lanes_tried: Option<Instant>,
    /// Held while this endpoint consumes the lanes.
    _lock: ConsumerLock,
}

impl McpEndpoint {
    /// Attaches to the lanes named by `settings` (`queues.dir`, `queues.name`, `queues.capacity`).
    /// The number of request lanes is read from the response lane, where ccsd wrote it.
    ///
    /// # Errors
    /// [`McpError::Busy`] when another MCP holds the lanes' MCP lock; a lane is missing, not
    /// ready, or of another version or capacity.
    pub fn attach(settings: &Settings) -> Result<McpEndpoint, McpError> {
        McpEndpoint::attach_at(
            &settings.queues.dir,
            &settings.queues.name,
            Some(settings.queues.capacity.bytes()),
        )
    }

    /// Attaches to the lanes `queues.name` = `name` in `queues.dir` = `dir` names, without a
    /// settings file. With `capacity`, every lane must have exactly that capacity; without, the
    /// lanes' own headers say it.
    ///
    /// # Errors
    /// As [`attach`](McpEndpoint::attach).
    pub fn attach_at(
        dir: &Path,
        name: &str,
        capacity: Option<u64>,
    ) -> Result<McpEndpoint, McpError> {
        // Before any lane: attaching as consumer writes consumer_pid, which is ccsd's to watch.
        let lock = ConsumerLock::acquire(&consumer_lock::lock_path_in(dir, name))?;
        let lanes_at = LanePaths {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            capacity,
        };
        let response = Lane::attach(&lanes_at.response(), capacity).map_err(McpError::Lane)?;
        let lanes = response.request_lanes() as usize;
        if lanes == 0 {
            return Err(McpError::NotReady(response.path().to_path_buf()));
        }
        let mut requests = Vec::with_capacity(lanes);
        for w in 0..lanes {
            let lane = Lane::attach(&lanes_at.request(w), capacity).map_err(McpError::Lane)?;
            requests.push(lane.into_consumer());
        }
        Ok(McpEndpoint {
            requests,
            responses: response.into_producer(),
            next_lane: 0,
            counters: EndpointCounters::default(),
            idle_spin: Duration::ZERO,
            last_record: Instant::now(),
            fired: vec![false; lanes],
            unpublished: 0,
            delivery: Delivery::AtMostOnce,
            answering: None,
            lanes_at,
            lanes_tried: None,
            _lock: lock,
        })
    }

    /// Like [`attach`](McpEndpoint::attach), retrying for up to `timeout` while ccsd has not
    /// created the lanes yet.
    ///
    /// # Errors
    /// The lanes did not appear in time, or exist but are unusable.
    pub fn attach_wait(settings: &Settings, timeout: Duration) -> Result<McpEndpoint, McpError> {
        let deadline = Instant::now() + timeout;
        loop {
            match McpEndpoint::attach(settings) {
                Err(e) if e.is_not_ready() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// After the last record it received, [`recv`](McpEndpoint::recv) keeps polling the lanes
    /// for `spin` before it sleeps on the FIFOs (ccsd's `broker.idle_spin`; zero: sleep at once).
    /// Spinning saves a sleep and a wake-up per request under steady traffic, and costs CPU.
    pub fn set_idle_spin(&mut self, spin: Duration) {
        self.idle_spin = spin;
    }

    /// Chooses what becomes of requests taken but not answered when MCP dies (see [`Delivery`]).
    /// Switching to [`Delivery::AtMostOnce`] releases every request read so far.
    pub fn set_delivery(&mut self, delivery: Delivery) {
        self.delivery = delivery;
        self.answering = None;
        let hold = delivery == Delivery::AtLeastOnce;
        for lane in &mut self.requests {
            lane.hold_release(hold);
        }
    }

    /// The delivery guarantee in force.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// At least once: declares every request taken so far answered, publishes the replies
    /// queued and then releases those requests. Needed only by an MCP that answers a request
    /// after it took the next one, or wants the release before its next
    /// [`recv`](McpEndpoint::recv); at most once, the same as [`flush`](McpEndpoint::flush).
    ///
    /// # Errors
    /// Writing the wake-up FIFO failed.
    pub fn commit(&mut self) -> Result<(), McpError> {
        self.answering = None;
        self.flush()
    }

    /// Attaches the request lanes a ccsd restarted with more workers announced in the response
    /// lane's `request_lanes` (one relaxed load when nothing changed). Lanes beyond a smaller
    /// count are kept: no one produces into them any more, and what they still hold is read.
    /// A lane that cannot be attached yet is retried at most every [`LANE_RETRY`].
    fn follow_new_lanes(&mut self) {
        let announced = self.responses.lane().request_lanes() as usize;
        if announced <= self.requests.len()
            || self.lanes_tried.is_some_and(|t| t.elapsed() < LANE_RETRY)
        {
            return;
        }
        self.lanes_tried = Some(Instant::now());
        for w in self.requests.len()..announced {
            match Lane::attach(&self.lanes_at.request(w), self.lanes_at.capacity) {
                Ok(lane) => {
                    let mut consumer = lane.into_consumer();
                    consumer.hold_release(self.delivery == Delivery::AtLeastOnce);
                    self.requests.push(consumer);
                    self.fired.push(false);
                    self.counters.lanes_added += 1;
                }
                Err(_) => return,
            }
        }
        self.lanes_tried = None;
    }

    /// Number of request lanes (ccsd workers).
    pub fn request_lanes(&self) -> usize {
        self.requests.len()
    }

    /// The ccsd start that created the flows now arriving (the low 16 bits go into flow ids).
    pub fn epoch(&self) -> u64 {
        self.responses.lane().epoch()
    }

    /// Records skipped as invalid so far.
    pub fn counters(&self) -> EndpointCounters {
        EndpointCounters {
            response_resyncs: self.responses.resyncs(),
            ..self.counters
        }
    }

    /// Whether any request lane has published frames not read yet. This may be true for a lane
    /// that holds only a PAD frame, so use it to batch flushes, not to decide whether to sleep
    /// ([`recv`](McpEndpoint::recv) flushes before sleeping anyway).
    pub fn has_pending_requests(&self) -> bool {
        self.requests.iter().any(Consumer::has_records)
    }

    /// Takes the next valid record from the request lanes (visiting them in turn), if any.
    ///
    /// Invalid records are skipped and counted in [`counters`](McpEndpoint::counters).
    pub fn try_recv(&mut self, msg: &mut Message) -> bool {
        let bytes = &mut msg.bytes;
        let taken = self.take_next(|lane| {
            bytes.clear();
            Ok(lane.pop_into(bytes)?.map(|_| RecordHeader::decode(bytes)))
        });
        match taken {
            Some(header) => {
                msg.header = header;
                true
            }
            None => false,
        }
    }

    /// At least once only: takes the next valid record like [`try_recv`](McpEndpoint::try_recv)
    /// but leaves its payload in the lane, uncopied ([`HeldMessage`]); it stays there, untouched
    /// by ccsd, until the next receive, [`commit`](McpEndpoint::commit) or
    /// [`set_delivery`](McpEndpoint::set_delivery). None when no record waits, and always at
    /// most once (a record read is handed back to ccsd at once then: copy it with `try_recv`).
    pub fn try_recv_held(&mut self) -> Option<HeldMessage> {
        if self.delivery != Delivery::AtLeastOnce {
            return None;
        }
        let mut head = [0u8; RECORD_HEADER_SIZE];
        let mut held = None;
        let header = self.take_next(|lane| {
            Ok(lane.pop_held(&mut head)?.map(|record| {
                held = Some(record);
                if record.len() < RECORD_HEADER_SIZE {
                    return Err(RecordError::TooShort(record.len()));
                }
                RecordHeader::decode_with_len(&head, record.len())
            }))
        })?;
        Some(HeldMessage {
            header,
            record: held?,
        })
    }

    /// Takes the next valid record from the request lanes, visiting them in turn, with `pop`
    /// (which takes one record from a lane and decodes its header). Invalid records and lane
    /// faults are skipped and counted. Asking for the next request says the last one is
    /// answered.
    fn take_next(
        &mut self,
        mut pop: impl FnMut(
            &mut Consumer,
        ) -> Result<Option<Result<RecordHeader, RecordError>>, LaneCorrupt>,
    ) -> Option<RecordHeader> {
        self.answering = None;
        self.follow_new_lanes();
        let lanes = self.requests.len();
        for i in 0..lanes {
            let idx = (self.next_lane + i) % lanes;
            loop {
                let before = self.requests[idx].position();
                match pop(&mut self.requests[idx]) {
                    Ok(Some(Ok(header))) => {
                        if self.delivery == Delivery::AtLeastOnce {
                            self.answering = Some((idx, before));
                        }
                        self.next_lane = (idx + 1) % lanes;
                        if !self.idle_spin.is_zero() {
                            self.last_record = Instant::now();
                        }
                        return Some(header);
                    }
                    Ok(Some(Err(_))) => self.counters.malformed_records += 1,
                    Ok(None) => break,
                    // The head stays: moving it back would hand us requests again.
                    Err(corrupt) if corrupt.tail_out_of_range => self.counters.lane_bad_tails += 1,
                    Err(_) => {
                        self.requests[idx].discard_all();
                        self.counters.lane_corruptions += 1;
                    }
                }
            }
        }
        None
    }

    /// Takes the next record, sleeping on the wake-up FIFOs up to `timeout` (`None`: forever)
    /// while every lane is empty. Returns false on timeout. Before it sleeps it publishes the
    /// replies queued so far, so a reply is never held back while MCP waits.
    ///
    /// # Errors
    /// Waiting on a FIFO failed.
    pub fn recv(&mut self, msg: &mut Message, timeout: Option<Duration>) -> Result<bool, McpError> {
        self.wait_for(timeout, |mcp| mcp.try_recv(msg))
    }

    /// [`recv`](McpEndpoint::recv) for [`try_recv_held`](McpEndpoint::try_recv_held): at least
    /// once, the next record with its payload left in the lane; None on timeout (and always at
    /// most once).
    ///
    /// # Errors
    /// Waiting on a FIFO failed.
    pub fn recv_held(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<HeldMessage>, McpError> {
        if self.delivery != Delivery::AtLeastOnce {
            return Ok(None);
        }
        let mut held = None;
        self.wait_for(timeout, |mcp| {
            held = mcp.try_recv_held();
            held.is_some()
        })?;
        Ok(held)
    }

    /// Runs `take` until it takes a record, spinning then sleeping while the lanes are empty,
    /// up to `timeout`. Returns false on timeout.
    fn wait_for(
        &mut self,
        timeout: Option<Duration>,
        mut take: impl FnMut(&mut McpEndpoint) -> bool,
    ) -> Result<bool, McpError> {
        self.answering = None;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if take(self) {
                return Ok(true);
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(false),
                },
                None => None,
            };
            if self.last_record.elapsed() < self.idle_spin {
                self.flush()?;
                std::hint::spin_loop();
                continue;
            }
            self.sleep(left)?;
        }
    }

    /// Sleeps until a request lane is signalled or `timeout` passes, unless records are there.
    /// Queued replies are published first: ccsd may be waiting for them to send more requests.
    fn sleep(&mut self, timeout: Option<Duration>) -> Result<(), McpError> {
        self.flush()?;
        self.follow_new_lanes();
        // Announce the sleep on every lane first; any lane that got records meanwhile cancels it.
        let mut all_empty = true;
        for lane in &mut self.requests {
            all_empty &= lane.prepare_sleep();
        }
        self.fired.fill(false);
        if all_empty {
            let mut fds: Vec<PollFd<'_>> = self
                .requests
                .iter()
                .map(|l| PollFd::from_borrowed_fd(l.wake_fd(), PollFlags::IN))
                .collect();
            let ts = timeout.map(|t| Timespec {
                tv_sec: t.as_secs() as i64,
                tv_nsec: i64::from(t.subsec_nanos()),
            });
            match poll(&mut fds, ts.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(io::Error::from(e).into()),
            }
            for (f, fd) in self.fired.iter_mut().zip(&fds) {
                *f = fd.revents().contains(PollFlags::IN);
            }
        }
        // Only a FIFO that fired holds bytes to read; the others just withdraw the announcement.
        for (lane, &fired) in self.requests.iter_mut().zip(&self.fired) {
            if fired {
                lane.after_wake()?;
            } else {
                lane.cancel_sleep();
            }
        }
        Ok(())
    }

    /// Queues a data reply to the connection `request` came from (same flow, echo values, peer).
    ///
    /// # Errors
    /// [`McpError::Full`] when the response lane has no room (flush and retry later).
    pub fn reply(&mut self, request: &RecordHeader, payload: &[u8]) -> Result<(), McpError> {
        let len = u32::try_from(payload.len()).map_err(|_| McpError::TooLarge(payload.len()))?;
        let header = RecordHeader::reply_to(request, Kind::Data, len);
        self.send(&header, payload)
    }

    /// Queues a request to close `flow`.
    ///
    /// # Errors
    /// [`McpError::Full`] when the response lane has no room.
    pub fn close(&mut self, flow: FlowId, mode: CloseMode) -> Result<(), McpError> {
        let mut header = RecordHeader::new(Kind::Close, flow);
        header.code = mode as u8;
        self.send(&header, &[])
    }

    /// Queues any record: `header` (its `payload_len` must match) then `payload`.
    ///
    /// # Errors
    /// [`McpError::Full`] or [`McpError::TooLarge`].
    pub fn send(&mut self, header: &RecordHeader, payload: &[u8]) -> Result<(), McpError> {
        let mut header = *header;
        header.timestamp_ns = crate::clock::monotonic_ns();
        self.responses.try_push(&[&header.encode(), payload])?;
        self.unpublished += 1;
        // Under steady load the request lanes never run dry, so a caller that flushes "when no
        // more requests wait" would hold replies back indefinitely: bound the batch here.
        if self.unpublished >= PUBLISH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    /// Runs `queue` (a reply, a close, any send) until the response lane has room for it: while
    /// the lane is full (ccsd is not reading), publishes what is queued and retries after a pause
    /// that doubles from 50 µs up to 20 ms, so nothing is lost and no core is burnt.
    ///
    /// # Errors
    /// Any error of `queue` other than [`McpError::Full`], or a failed flush.
    pub fn when_room(
        &mut self,
        mut queue: impl FnMut(&mut McpEndpoint) -> Result<(), McpError>,
    ) -> Result<(), McpError> {
        let mut pause = Duration::from_micros(50);
        loop {
            match queue(self) {
                Err(McpError::Full) => {
                    self.flush()?;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Makes queued replies visible to ccsd and wakes it if it sleeps; at least once, then
    /// releases the requests answered so far (all taken but the one being answered).
    ///
    /// # Errors
    /// Writing the wake-up FIFO failed.
    pub fn flush(&mut self) -> Result<(), McpError> {
        if self.responses.has_unpublished() {
            self.responses.publish()?;
        }
        self.unpublished = 0;
        if self.delivery == Delivery::AtLeastOnce {
            // The replies are in the header's tail (Release store in publish) before any
            // request they answer is released below: a reader of our head that sees a request
            // gone sees its replies too.
            for (idx, lane) in self.requests.iter_mut().enumerate() {
                match self.answering {
                    Some((lane_idx, before)) if lane_idx == idx => lane.release_to(before),
                    _ => lane.release_to(lane.position()),
                }
            }
        }
        Ok(())
    }

    /// For an MCP with its own event loop: announces that it is about to sleep on
    /// [`wake_fds`](McpEndpoint::wake_fds), after publishing queued replies. Returns false
    /// when a request lane holds records (do not sleep: receive them); true when any record
    /// published from now on makes a wake-up descriptor readable. Call
    /// [`finish_wait`](McpEndpoint::finish_wait) after the sleep, before receiving.
    ///
    /// # Errors
    /// Publishing the replies failed.
    pub fn prepare_wait(&mut self) -> Result<bool, McpError> {
        self.flush()?;
        self.follow_new_lanes();
        let mut all_empty = true;
        for lane in &mut self.requests {
            all_empty &= lane.prepare_sleep();
        }
        if !all_empty {
            for lane in &mut self.requests {
                lane.cancel_sleep();
            }
        }
        Ok(all_empty)
    }

    /// Ends a sleep announced by [`prepare_wait`](McpEndpoint::prepare_wait): withdraws the
    /// announcement and empties the wake-up FIFOs.
    ///
    /// # Errors
    /// Reading a FIFO failed.
    pub fn finish_wait(&mut self) -> Result<(), McpError> {
        for lane in &mut self.requests {
            lane.after_wake()?;
        }
        Ok(())
    }

    /// The wake-up FIFOs of the request lanes, to watch for readability in one's own event loop
    /// (see [`prepare_wait`](McpEndpoint::prepare_wait)).
    pub fn wake_fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.requests.iter().map(Consumer::wake_fd)
    }
}
