//! The idle list: a worker's connections ordered by their last activity, for `limits.idle_timeout`.
//!
//! An intrusive doubly linked list threaded through one node per table slot (the poller key), so
//! marking a connection active is O(1) (unlink, append at the tail) and finding the expired ones
//! is O(expired): they are exactly the nodes at the head whose last activity is older than the
//! timeout. Nothing is allocated per activity; the node vector grows with the slot table.

use std::time::{Duration, Instant};

/// No slot: the end of the list.
const NIL: u32 = u32::MAX;

/// One slot's place in the list.
#[derive(Debug, Clone, Copy)]
struct Node {
    prev: u32,
    next: u32,
    last_active: Instant,
    linked: bool,
}

/// Slots ordered by last activity, least recent first.
#[derive(Debug)]
pub(crate) struct IdleList {
    /// Zero: the timeout is off and the list stays empty.
    timeout: Duration,
    nodes: Vec<Node>,
    head: u32,
    tail: u32,
}

impl IdleList {
    /// An empty list for connections that expire after `timeout` without activity (zero: never).
    pub(crate) fn new(timeout: Duration) -> IdleList {
        IdleList {
            timeout,
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    /// Whether the timeout is on (not zero).
    pub(crate) fn is_on(&self) -> bool {
        !self.timeout.is_zero()
    }

    /// Changes the timeout (a reload). The order by last activity stays valid for any timeout;
    /// turning it off empties the list, and after turning it on the caller touches every slot
    /// that should be watched.
    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        if timeout.is_zero() {
            for node in &mut self.nodes {
                node.linked = false;
            }
            self.head = NIL;
            self.tail = NIL;
        }
    }

    /// Records activity on `slot` at `now`: it moves to the tail (joining the list if it was not
    /// in it). Does nothing when the timeout is off.
    pub(crate) fn touch(&mut self, slot: usize, now: Instant) {
        if self.timeout.is_zero() {
            return;
        }
        if slot >= self.nodes.len() {
            let blank = Node {
                prev: NIL,
                next: NIL,
                last_active: now,
                linked: false,
            };
            self.nodes.resize(slot + 1, blank);
        }
        self.remove(slot);
        let index = slot as u32;
        let node = &mut self.nodes[slot];
        node.last_active = now;
        node.linked = true;
        node.prev = self.tail;
        node.next = NIL;
        match self.tail {
            NIL => self.head = index,
            tail => self.nodes[tail as usize].next = index,
        }
        self.tail = index;
    }

    /// When `slot` was last active, if it is in the list.
    pub(crate) fn last_active(&self, slot: usize) -> Option<Instant> {
        self.nodes
            .get(slot)
            .filter(|n| n.linked)
            .map(|n| n.last_active)
    }

    /// Puts `slot` in the list as last active at `when`, which may be earlier than the last
    /// touch (a connection that moved here keeps its age): it goes behind every slot active no
    /// later than `when`. Costs one step per slot active after `when`, so a recently active
    /// connection (the kind the rebalancer moves) costs little.
    pub(crate) fn insert_at(&mut self, slot: usize, when: Instant) {
        if self.timeout.is_zero() {
            return;
        }
        self.touch(slot, when);
        // Walk it back past the slots active after `when`.
        let index = slot as u32;
        let mut before = self.nodes[slot].prev;
        while before != NIL && self.nodes[before as usize].last_active > when {
            before = self.nodes[before as usize].prev;
        }
        if before == self.nodes[slot].prev {
            return;
        }
        self.remove(slot);
        let after = match before {
            NIL => self.head,
            b => self.nodes[b as usize].next,
        };
        let node = &mut self.nodes[slot];
        node.linked = true;
        node.prev = before;
        node.next = after;
        match before {
            NIL => self.head = index,
            b => self.nodes[b as usize].next = index,
        }
        match after {
            NIL => self.tail = index,
            a => self.nodes[a as usize].prev = index,
        }
    }

    /// Takes `slot` out of the list (a closed or paused connection); nothing if it is not in it.
    pub(crate) fn remove(&mut self, slot: usize) {
        let Some(node) = self.nodes.get_mut(slot).filter(|n| n.linked) else {
            return;
        };
        node.linked = false;
        let (prev, next) = (node.prev, node.next);
        match prev {
            NIL => self.head = next,
            prev => self.nodes[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.nodes[next as usize].prev = prev,
        }
    }

    /// The least recently active slot, if it has been inactive for the whole timeout at `now`.
    pub(crate) fn expired(&self, now: Instant) -> Option<usize> {
        let head = self.nodes.get(self.head as usize)?;
        (now.saturating_duration_since(head.last_active) >= self.timeout)
            .then_some(self.head as usize)
    }

    /// How long after `now` the least recently active slot expires (zero if it already has);
    /// `None` when the list is empty.
    pub(crate) fn until_next_expiry(&self, now: Instant) -> Option<Duration> {
        let head = self.nodes.get(self.head as usize)?;
        Some((head.last_active + self.timeout).saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn drain_expired(list: &mut IdleList, now: Instant) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some(slot) = list.expired(now) {
            list.remove(slot);
            out.push(slot);
        }
        out
    }

    #[test]
    fn touched_slot_moves_behind_the_others() {
        let t = Instant::now();
        let mut list = IdleList::new(MINUTE);
        for slot in 0..4 {
            list.touch(slot, t);
        }
        list.touch(1, t + Duration::from_secs(10));
        assert_eq!(drain_expired(&mut list, t + MINUTE), [0, 2, 3]);
        assert_eq!(
            list.until_next_expiry(t + MINUTE),
            Some(Duration::from_secs(10))
        );
        assert_eq!(drain_expired(&mut list, t + MINUTE * 2), [1]);
        assert_eq!(list.until_next_expiry(t), None);
    }

    #[test]
    fn a_slot_inserted_with_an_earlier_time_expires_in_its_turn() {
        let t = Instant::now();
        let mut list = IdleList::new(MINUTE);
        for (slot, secs) in [(0, 0), (1, 10), (2, 20)] {
            list.touch(slot, t + Duration::from_secs(secs));
        }
        list.insert_at(7, t + Duration::from_secs(15));
        list.insert_at(8, t);
        list.insert_at(9, t + Duration::from_secs(30));
        assert_eq!(list.last_active(7), Some(t + Duration::from_secs(15)));
        let order = drain_expired(&mut list, t + MINUTE * 2);
        assert_eq!(order, [0, 8, 1, 7, 2, 9]);
        assert_eq!(list.last_active(7), None, "not in the list any more");
    }

    #[test]
    fn removed_slots_never_expire_and_can_rejoin() {
        let t = Instant::now();
        let mut list = IdleList::new(MINUTE);
        for slot in [5, 2, 9] {
            list.touch(slot, t);
        }
        list.remove(2);
        list.remove(2);
        assert_eq!(drain_expired(&mut list, t + MINUTE), [5, 9]);
        list.touch(2, t + MINUTE);
        assert_eq!(list.expired(t + MINUTE), None);
        assert_eq!(drain_expired(&mut list, t + MINUTE * 2), [2]);
    }

    #[test]
    fn a_new_timeout_applies_to_the_listed_slots_and_zero_empties_the_list() {
        let t = Instant::now();
        let mut list = IdleList::new(MINUTE);
        list.touch(1, t);
        list.touch(2, t + Duration::from_secs(5));
        list.set_timeout(Duration::from_secs(10));
        assert_eq!(drain_expired(&mut list, t + Duration::from_secs(12)), [1]);
        list.set_timeout(Duration::ZERO);
        assert!(!list.is_on());
        assert_eq!(list.until_next_expiry(t), None);
        list.touch(2, t);
        assert_eq!(list.expired(t + MINUTE), None, "off: nothing joins");
        list.set_timeout(MINUTE);
        list.touch(3, t);
        list.touch(2, t + Duration::from_secs(1));
        assert_eq!(drain_expired(&mut list, t + MINUTE * 2), [3, 2]);
    }

    #[test]
    fn zero_timeout_keeps_the_list_empty() {
        let t = Instant::now();
        let mut list = IdleList::new(Duration::ZERO);
        list.touch(0, t);
        assert_eq!(list.expired(t + MINUTE), None);
        assert_eq!(list.until_next_expiry(t), None);
    }
}
