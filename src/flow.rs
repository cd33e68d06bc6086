//! Flow ids and the connection table that hands them out.
//!
//! A [`FlowId`] names one connection for its whole life and never another one:
//!
//! ```text
//!  63        48 47     40 39            20 19             0
//! +------------+---------+----------------+----------------+
//! |   epoch    | worker  |   generation   |      slot      |
//! +------------+---------+----------------+----------------+
//! ```
//!
//! - `epoch` is this ccsd start, counted in the lane headers (1 for the first start on new lane
//!   files, then one more at every start; see `next_epoch`), so a reply addressed to a
//!   connection of an earlier run (left in the response lane across a restart) is recognised as
//!   stale.
//! - `worker` is the worker the connection was born on; the MCP bridge routes a reply by it.
//! - `slot` indexes the owner's `FlowTable`; `generation` counts how often that slot was used
//!   before, so a late reply for a closed connection never reaches the next occupant of its slot.
//!
//! **No flow id is issued twice within the life of the lane files.** The argument, which
//! `docs/protocol.md` states for MCP authors:
//!
//! 1. Two starts on the same lane files never share an epoch: each start stores its epoch in the
//!    lane headers before it issues a flow, the next start takes the stored value plus one, and a
//!    start that would need an epoch past [`MAX_EPOCH`] refuses to run (`next_epoch`) instead
//!    of wrapping. Epoch 0 is never used, so no flow id is 0 (flow 0 means "no connection").
//! 2. Within one start, a worker issues flows only of its own index.
//! 3. Within one worker, a slot's generation only grows: it goes up by one each time the slot
//!    is freed, and a slot whose next generation would not fit the field is *retired* (never
//!    used again in this start) instead of wrapping to 0. So a (slot, generation) pair is
//!    issued at most once.
//!
//! Retiring costs O(1) and a slot is retired only after 2^20 connections went through it, so a
//! worker can issue about 2^40 flows per start; when every slot is live or retired, new
//! connections are refused (`closed_table_full`) until a restart opens a new epoch.
//!
//! Freed slots are reused first-in first-out, so a slot comes back only after every other free
//! slot did.
//!
//! **Connections that moved.** A connection keeps its flow id when it moves to another worker
//! (admin `migrate`, the rebalancer): MCP knows it only by that id. Its new worker *adopts* it
//! ([`FlowTable::adopt`]): the connection takes a slot of the new table under a *local* id (as a
//! connection born there would get, used for the poller key and the worker's own lists), and the
//! table maps its *public* id (the one MCP uses) to that local id. [`FlowTable::resolve`] turns
//! the flow id of a record from MCP into the local id; a slot holding an adopted connection never
//! answers to a public id of its own worker, so a guessed id cannot reach it. So the worker field
//! of a flow id names the worker the connection was *born* on; the MCP bridge keeps a map of the
//! flows that live elsewhere.
//!
//! For tests, the environment variable [`GENERATIONS_ENV`] makes slots retire after fewer
//! generations, so that the retirement is reachable without a million connections.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::Path;

use log::{Level, warn};
use once_cell::sync::Lazy;

use crate::lane::LaneError;
use crate::logging::{LogLimiter, log_limited};

const SLOT_BITS: u32 = 20;
const GENERATION_BITS: u32 = 20;
const WORKER_BITS: u32 = 8;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const GENERATION_MASK: u64 = (1 << GENERATION_BITS) - 1;
const WORKER_MASK: u64 = (1 << WORKER_BITS) - 1;

/// Most connections one worker can hold (slots per table).
pub const MAX_SLOTS: usize = 1 << SLOT_BITS;
/// Most workers a flow id can name.
pub const MAX_WORKERS: usize = 1 << WORKER_BITS;
/// Generations a slot serves before it is retired: every value of the generation field.
pub const SLOT_GENERATIONS: u32 = 1 << GENERATION_BITS;
/// The last epoch a flow id can carry; a start that would need the next one refuses to run.
pub const MAX_EPOCH: u16 = u16::MAX;

/// Below this many starts left, every start warns that the lane files must be recreated soon.
const EPOCHS_LEFT_WARNING: u16 = 1000;

/// Test-only: when set to a number from 1 to 2^20, slots retire after that many generations
/// instead of [`SLOT_GENERATIONS`], so tests reach the retirement without a million
/// connections. Not a setting: nothing else changes, and a warning is logged when it is used.
/// Public for `tests/broker/flow_ids.rs` only.
#[doc(hidden)]
pub const GENERATIONS_ENV: &str = "CCSDTEST_SLOT_GENERATIONS";

/// The generations per slot of every [`FlowTable`] of this process ([`GENERATIONS_ENV`]).
static GENERATIONS: Lazy<u32> = Lazy::new(|| {
    let Some(value) = std::env::var_os(GENERATIONS_ENV) else {
        return SLOT_GENERATIONS;
    };
    match value.to_str().and_then(|v| v.parse::<u32>().ok()) {
        Some(n @ 1..=SLOT_GENERATIONS) => {
            warn!(
                "{GENERATIONS_ENV}={n}: flow slots retire after {n} generations (for tests only)"
            );
            n
        }
        _ => {
            warn!("{GENERATIONS_ENV} ignored: not a number from 1 to {SLOT_GENERATIONS}");
            SLOT_GENERATIONS
        }
    }
});

/// The epoch of the start after the one whose epoch count the lane header at `lane` holds
/// (`previous`: 0 on new lane files).
///
/// # Errors
/// [`LaneError::EpochsExhausted`] when `previous` is [`MAX_EPOCH`] or more: these lane files
/// have served every epoch a flow id can carry, and another would repeat flow ids of an earlier
/// start.
pub(crate) fn next_epoch(previous: u64, lane: &Path) -> Result<u16, LaneError> {
    match u16::try_from(previous.saturating_add(1)) {
        Ok(epoch) => {
            let left = MAX_EPOCH - epoch;
            if left < EPOCHS_LEFT_WARNING {
                warn!(
                    "lane {}: {left} ccsd starts left before these lane files must be removed \
                     (flow ids carry 16 bits of epoch)",
                    lane.display()
                );
            }
            Ok(epoch)
        }
        Err(_) => Err(LaneError::EpochsExhausted {
            path: lane.to_path_buf(),
            starts: previous,
        }),
    }
}

/// The id of one connection: epoch, owning worker, generation and slot packed in a `u64`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

impl FlowId {
    /// Packs the four fields; each is truncated to its width.
    pub fn new(epoch: u16, worker: u8, generation: u32, slot: u32) -> FlowId {
        FlowId(
            (u64::from(epoch) << 48)
                | (u64::from(worker) << 40)
                | ((u64::from(generation) & GENERATION_MASK) << SLOT_BITS)
                | (u64::from(slot) & SLOT_MASK),
        )
    }

    /// The ccsd start this flow belongs to.
    pub fn epoch(self) -> u16 {
        (self.0 >> 48) as u16
    }

    /// The worker the connection was born on (it may have moved since; see [`FlowTable`]).
    pub fn worker(self) -> usize {
        ((self.0 >> 40) & WORKER_MASK) as usize
    }

    /// How many times the slot had been reused when this flow was opened.
    pub fn generation(self) -> u32 {
        ((self.0 >> SLOT_BITS) & GENERATION_MASK) as u32
    }

    /// Index of the connection in its worker's table.
    pub fn slot(self) -> usize {
        (self.0 & SLOT_MASK) as usize
    }
}

impl fmt::Debug for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FlowId({:#018x}: epoch {} worker {} gen {} slot {})",
            self.0,
            self.epoch(),
            self.worker(),
            self.generation(),
            self.slot()
        )
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

/// Why a flow id does not name a live connection of this table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StaleFlow {
    /// The flow belongs to another ccsd start.
    OtherEpoch,
    /// The flow belongs to another worker.
    OtherWorker,
    /// The slot is free, or holds a later connection.
    Closed,
}

struct Slot<T> {
    /// The generation of the flow in the slot, or of the next one; `generations` once retired.
    generation: u32,
    value: Option<T>,
    /// The public id of the adopted connection in the slot (born on another worker, or born here
    /// and come back); `None` when the slot's own id is its public id.
    adopted: Option<FlowId>,
}

/// One worker's connections, indexed by slot, each behind a generation-checked [`FlowId`].
pub(crate) struct FlowTable<T> {
    epoch: u16,
    worker: u8,
    slots: Vec<Slot<T>>,
    free: VecDeque<u32>,
    len: usize,
    /// Generations a slot serves before it is retired.
    generations: u32,
    /// Slots retired so far.
    retired: usize,
    /// The adopted connections: public id to local id.
    adopted: HashMap<FlowId, FlowId>,
    exhausted_log: LogLimiter,
}

impl<T> fmt::Debug for FlowTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("epoch", &self.epoch)
            .field("worker", &self.worker)
            .field("len", &self.len)
            .field("slots", &self.slots.len())
            .field("retired", &self.retired)
            .finish()
    }
}

impl<T> FlowTable<T> {
    /// An empty table for `worker` in ccsd start `epoch`.
    pub(crate) fn new(epoch: u16, worker: u8) -> FlowTable<T> {
        FlowTable::with_generations(epoch, worker, *GENERATIONS)
    }

    /// An empty table whose slots retire after `generations` (1 to [`SLOT_GENERATIONS`]).
    fn with_generations(epoch: u16, worker: u8, generations: u32) -> FlowTable<T> {
        debug_assert!((1..=SLOT_GENERATIONS).contains(&generations));
        FlowTable {
            epoch,
            worker,
            slots: Vec::new(),
            free: VecDeque::new(),
            len: 0,
            generations,
            retired: 0,
            adopted: HashMap::new(),
            exhausted_log: LogLimiter::default(),
        }
    }

    /// Live connections.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no connection.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` in a free slot and returns its new flow id, or `None` when all
    /// [`MAX_SLOTS`] slots are live or retired.
    pub(crate) fn insert(&mut self, value: T) -> Option<FlowId> {
        self.occupy(value, None)
    }

    /// Stores `value`, a connection that moved here and keeps its flow id `public`, in a free
    /// slot and returns its local id; `None` when all [`MAX_SLOTS`] slots are live or retired, or
    /// when `public` is already here.
    pub(crate) fn adopt(&mut self, public: FlowId, value: T) -> Option<FlowId> {
        if self.resolve(public).is_ok() {
            return None;
        }
        let local = self.occupy(value, Some(public))?;
        self.adopted.insert(public, local);
        Some(local)
    }

    /// The local id of the connection whose public id (the one MCP uses) is `public`.
    pub(crate) fn resolve(&self, public: FlowId) -> Result<FlowId, StaleFlow> {
        if !self.adopted.is_empty() {
            if let Some(&local) = self.adopted.get(&public) {
                return Ok(local);
            }
        }
        match self.check(public) {
            Ok(()) if self.slots[public.slot()].adopted.is_some() => Err(StaleFlow::Closed),
            checked => checked.map(|()| public),
        }
    }

    /// The public id of the connection whose local id is `local` (itself unless adopted).
    pub(crate) fn public(&self, local: FlowId) -> FlowId {
        self.slots
            .get(local.slot())
            .and_then(|s| s.adopted)
            .unwrap_or(local)
    }

    fn occupy(&mut self, value: T, adopted: Option<FlowId>) -> Option<FlowId> {
        let slot = match self.free.pop_front() {
            Some(slot) => slot as usize,
            None if self.slots.len() < MAX_SLOTS => {
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                    adopted: None,
                });
                self.slots.len() - 1
            }
            None => {
                if self.retired > 0 {
                    log_limited!(
                        self.exhausted_log,
                        Level::Warn,
                        "worker {}: every flow id of epoch {} is live or issued ({} slots retired); \
                         refusing connections until a restart opens a new epoch",
                        self.worker,
                        self.epoch,
                        self.retired
                    );
                }
                return None;
            }
        };
        let entry = &mut self.slots[slot];
        entry.value = Some(value);
        entry.adopted = adopted;
        self.len += 1;
        Some(FlowId::new(
            self.epoch,
            self.worker,
            entry.generation,
            slot as u32,
        ))
    }

    /// Checks that `flow` names a live connection of this table by its local id.
    pub(crate) fn check(&self, flow: FlowId) -> Result<(), StaleFlow> {
        if flow.epoch() != self.epoch {
            return Err(StaleFlow::OtherEpoch);
        }
        if flow.worker() != usize::from(self.worker) {
            return Err(StaleFlow::OtherWorker);
        }
        match self.slots.get(flow.slot()) {
            Some(s) if s.value.is_some() && s.generation == flow.generation() => Ok(()),
            _ => Err(StaleFlow::Closed),
        }
    }

    /// The connection `flow` names, if it is still open.
    pub(crate) fn get_mut(&mut self, flow: FlowId) -> Result<&mut T, StaleFlow> {
        self.check(flow)?;
        Ok(self.slots[flow.slot()]
            .value
            .as_mut()
            .expect("check() saw the slot occupied"))
    }

    /// The connection `flow` names, read-only, if it is still open.
    pub(crate) fn peek(&self, flow: FlowId) -> Option<&T> {
        self.check(flow).ok()?;
        self.slots[flow.slot()].value.as_ref()
    }

    /// The connection in `slot` (a poller key) with its flow id, if the slot is occupied.
    pub(crate) fn by_slot_mut(&mut self, slot: usize) -> Option<(FlowId, &mut T)> {
        let (epoch, worker) = (self.epoch, self.worker);
        let s = self.slots.get_mut(slot)?;
        let flow = FlowId::new(epoch, worker, s.generation, slot as u32);
        s.value.as_mut().map(|v| (flow, v))
    }

    /// Removes the connection `flow` names; its slot goes to the back of the free list with the
    /// next generation, or is retired when that generation would not fit (see the module
    /// header: a (slot, generation) pair is never issued twice).
    pub(crate) fn remove(&mut self, flow: FlowId) -> Option<T> {
        self.check(flow).ok()?;
        let s = &mut self.slots[flow.slot()];
        let value = s.value.take();
        if let Some(public) = s.adopted.take() {
            self.adopted.remove(&public);
        }
        s.generation += 1;
        if s.generation < self.generations {
            self.free.push_back(flow.slot() as u32);
        } else {
            self.retired += 1;
        }
        self.len -= 1;
        value
    }

    /// Every live connection with its public id, in slot order.
    pub(crate) fn iter_public_mut(&mut self) -> impl Iterator<Item = (FlowId, &mut T)> + '_ {
        let (epoch, worker) = (self.epoch, self.worker);
        self.slots.iter_mut().enumerate().filter_map(move |(i, s)| {
            let own = FlowId::new(epoch, worker, s.generation, i as u32);
            let public = s.adopted.unwrap_or(own);
            s.value.as_mut().map(|v| (public, v))
        })
    }

    /// Every live local id, in slot order.
    pub(crate) fn flows(&self) -> impl Iterator<Item = FlowId> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.value
                .as_ref()
                .map(|_| FlowId::new(self.epoch, self.worker, s.generation, i as u32))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_through_the_packed_id() {
        let f = FlowId::new(0xBEEF, 200, 0xABCDE, 0x12345);
        assert_eq!(f.epoch(), 0xBEEF);
        assert_eq!(f.worker(), 200);
        assert_eq!(f.generation(), 0xABCDE);
        assert_eq!(f.slot(), 0x12345);
    }

    #[test]
    fn reused_slot_rejects_the_old_flow() {
        let mut t = FlowTable::new(7, 1);
        let a = t.insert("a").unwrap();
        assert_eq!(t.remove(a), Some("a"));
        let b = t.insert("b").unwrap();
        assert_eq!(a.slot(), b.slot(), "the only free slot is reused");
        assert_eq!(t.get_mut(a), Err(StaleFlow::Closed));
        assert_eq!(t.get_mut(b).map(|v| *v), Ok("b"));
        assert_eq!(t.remove(a), None, "a stale id removes nothing");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn flows_of_another_epoch_or_worker_are_stale() {
        let mut t = FlowTable::new(7, 1);
        let a = t.insert(()).unwrap();
        let other_epoch = FlowId::new(8, 1, a.generation(), a.slot() as u32);
        let other_worker = FlowId::new(7, 2, a.generation(), a.slot() as u32);
        assert_eq!(t.check(other_epoch), Err(StaleFlow::OtherEpoch));
        assert_eq!(t.check(other_worker), Err(StaleFlow::OtherWorker));
    }

    #[test]
    fn an_adopted_connection_answers_to_its_public_id_and_its_slot_to_no_other() {
        let mut t = FlowTable::new(7, 1);
        let home = t.insert("home").unwrap();
        let guest_public = FlowId::new(7, 0, 3, 9);
        let guest = t.adopt(guest_public, "guest").unwrap();
        assert_eq!(guest.worker(), 1, "the local id is one of this table");
        assert_eq!(t.resolve(guest_public), Ok(guest));
        assert_eq!(t.resolve(home), Ok(home));
        assert_eq!(t.public(guest), guest_public);
        assert_eq!(t.public(home), home);
        assert_eq!(
            t.resolve(guest),
            Err(StaleFlow::Closed),
            "a guessed local id does not reach the guest"
        );
        assert_eq!(t.adopt(guest_public, "twice"), None);
        assert_eq!(t.remove(guest), Some("guest"));
        assert_eq!(t.resolve(guest_public), Err(StaleFlow::OtherWorker));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_connection_that_left_and_came_back_is_found_by_its_public_id() {
        let mut t = FlowTable::new(7, 1);
        let born = t.insert("conn").unwrap();
        let conn = t.remove(born).unwrap();
        let other = t.insert("other").unwrap();
        assert_eq!(
            other.slot(),
            born.slot(),
            "its old slot went to another connection"
        );
        let back = t.adopt(born, conn).unwrap();
        assert_eq!(t.resolve(born), Ok(back));
        assert_eq!(t.get_mut(back).map(|v| *v), Ok("conn"));
        assert_eq!(t.resolve(other), Ok(other));
    }

    #[test]
    fn freed_slots_are_reused_oldest_first() {
        let mut t = FlowTable::new(0, 0);
        let ids: Vec<_> = (0..4).map(|i| t.insert(i).unwrap()).collect();
        t.remove(ids[2]);
        t.remove(ids[0]);
        assert_eq!(t.insert(10).unwrap().slot(), ids[2].slot());
        assert_eq!(t.insert(11).unwrap().slot(), ids[0].slot());
        assert_eq!(t.insert(12).unwrap().slot(), 4);
    }

    #[test]
    fn a_slot_is_retired_instead_of_wrapping_its_generation() {
        let mut t = FlowTable::with_generations(1, 0, 3);
        let mut seen = std::collections::HashSet::new();
        let mut last = t.insert(()).unwrap();
        seen.insert(last);
        for _ in 0..10 {
            t.remove(last);
            last = t.insert(()).unwrap();
            assert!(seen.insert(last), "{last:?} was issued twice");
        }
        assert_eq!(t.retired, 3, "slots 0, 1 and 2 served 3 generations each");
        assert_eq!((last.slot(), last.generation()), (3, 1));
    }

    #[test]
    fn the_full_generation_field_is_used_before_a_slot_retires() {
        let mut t = FlowTable::with_generations(1, 0, SLOT_GENERATIONS);
        let mut last = t.insert(()).unwrap();
        for _ in 1..SLOT_GENERATIONS {
            t.remove(last);
            last = t.insert(()).unwrap();
        }
        assert_eq!((last.slot(), last.generation()), (0, SLOT_GENERATIONS - 1));
        t.remove(last);
        let next = t.insert(()).unwrap();
        assert_eq!((next.slot(), next.generation()), (1, 0));
        assert_eq!(t.retired, 1);
        assert_eq!(t.check(last), Err(StaleFlow::Closed));
    }

    #[test]
    fn a_table_whose_slots_are_all_live_or_retired_refuses() {
        let mut t = FlowTable::with_generations(1, 0, 1);
        t.slots.reserve_exact(MAX_SLOTS);
        for _ in 0..MAX_SLOTS - 1 {
            let f = t.insert(()).unwrap();
            t.remove(f);
        }
        let live = t.insert(()).unwrap();
        assert_eq!(live.slot(), MAX_SLOTS - 1);
        assert_eq!(t.insert(()), None);
        t.remove(live);
        assert_eq!(t.insert(()), None, "a retired slot is never reused");
        assert_eq!(t.retired, MAX_SLOTS);
    }

    #[test]
    fn epochs_run_from_1_to_the_last_one_a_flow_id_carries() {
        let lane = Path::new("/dev/shm/x.rsp");
        assert_eq!(next_epoch(0, lane).unwrap(), 1);
        assert_eq!(
            next_epoch(u64::from(MAX_EPOCH) - 1, lane).unwrap(),
            MAX_EPOCH
        );
        for exhausted in [u64::from(MAX_EPOCH), 1 << 20, u64::MAX] {
            let err = next_epoch(exhausted, lane).unwrap_err();
            assert!(
                matches!(err, LaneError::EpochsExhausted { starts, .. } if starts == exhausted)
            );
            assert!(err.to_string().contains("/dev/shm/x.rsp"), "{err}");
        }
    }
}
