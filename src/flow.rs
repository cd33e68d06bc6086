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
//! - `epoch` changes at every ccsd start, so a reply addressed to a connection of an earlier run
//!   (left in the response lane across a restart) is recognised as stale.
//! - `worker` is the owning worker; the MCP bridge routes a reply by this field alone.
//! - `slot` indexes the owner's [`FlowTable`]; `generation` counts how often that slot was reused,
//!   so a late reply for a closed connection never reaches the next occupant of its slot.
//!
//! Freed slots are reused first-in first-out, so a slot comes back only after every other free
//! slot did; with 20 generation bits a misroute would need a reply to wait through about a million
//! reuses of one slot.

use std::collections::VecDeque;
use std::fmt;

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

    /// The worker that owns the connection.
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
pub enum StaleFlow {
    /// The flow belongs to another ccsd start.
    OtherEpoch,
    /// The flow belongs to another worker.
    OtherWorker,
    /// The slot is free, or holds a later connection.
    Closed,
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// One worker's connections, indexed by slot, each behind a generation-checked [`FlowId`].
pub struct FlowTable<T> {
    epoch: u16,
    worker: u8,
    slots: Vec<Slot<T>>,
    free: VecDeque<u32>,
    len: usize,
}

impl<T> fmt::Debug for FlowTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("epoch", &self.epoch)
            .field("worker", &self.worker)
            .field("len", &self.len)
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl<T> FlowTable<T> {
    /// An empty table for `worker` in ccsd start `epoch`.
    pub fn new(epoch: u16, worker: u8) -> FlowTable<T> {
        FlowTable {
            epoch,
            worker,
            slots: Vec::new(),
            free: VecDeque::new(),
            len: 0,
        }
    }

    /// Live connections.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no connection.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` in a free slot and returns its new flow id, or `None` when all
    /// [`MAX_SLOTS`] slots are taken.
    pub fn insert(&mut self, value: T) -> Option<FlowId> {
        let slot = match self.free.pop_front() {
            Some(slot) => slot as usize,
            None if self.slots.len() < MAX_SLOTS => {
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                self.slots.len() - 1
            }
            None => return None,
        };
        let entry = &mut self.slots[slot];
        entry.value = Some(value);
        self.len += 1;
        Some(FlowId::new(
            self.epoch,
            self.worker,
            entry.generation,
            slot as u32,
        ))
    }

    /// Checks that `flow` names a live connection of this table.
    pub fn check(&self, flow: FlowId) -> Result<(), StaleFlow> {
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
    pub fn get_mut(&mut self, flow: FlowId) -> Result<&mut T, StaleFlow> {
        self.check(flow)?;
        Ok(self.slots[flow.slot()]
            .value
            .as_mut()
            .expect("check() saw the slot occupied"))
    }

    /// The connection `flow` names, read-only, if it is still open.
    pub fn peek(&self, flow: FlowId) -> Option<&T> {
        self.check(flow).ok()?;
        self.slots[flow.slot()].value.as_ref()
    }

    /// The connection in `slot` (a poller key) with its flow id, if the slot is occupied.
    pub fn by_slot_mut(&mut self, slot: usize) -> Option<(FlowId, &mut T)> {
        let (epoch, worker) = (self.epoch, self.worker);
        let s = self.slots.get_mut(slot)?;
        let flow = FlowId::new(epoch, worker, s.generation, slot as u32);
        s.value.as_mut().map(|v| (flow, v))
    }

    /// Removes the connection `flow` names; its slot goes to the back of the free list with the
    /// next generation.
    pub fn remove(&mut self, flow: FlowId) -> Option<T> {
        self.check(flow).ok()?;
        let s = &mut self.slots[flow.slot()];
        let value = s.value.take();
        s.generation = (s.generation + 1) & GENERATION_MASK as u32;
        self.free.push_back(flow.slot() as u32);
        self.len -= 1;
        value
    }

    /// Every live flow id, in slot order.
    pub fn flows(&self) -> impl Iterator<Item = FlowId> + '_ {
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
    fn generation_wraps_within_its_width() {
        let mut t = FlowTable::new(0, 0);
        let mut last = t.insert(()).unwrap();
        for _ in 0..(1u32 << GENERATION_BITS) {
            t.remove(last);
            last = t.insert(()).unwrap();
        }
        assert_eq!(last.generation(), 0);
        assert_eq!(last.slot(), 0);
    }
}
