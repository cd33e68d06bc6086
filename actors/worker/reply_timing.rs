//! Request→reply latency: the replies still waiting, unwritten, in a connection's send buffer and
//! when their requests began.
//!
//! Every request carries in `echo0` the `CLOCK_MONOTONIC` time its first byte was read, and MCP
//! copies it into its replies. A reply's latency is measured when its last byte has been written
//! to the socket: `now - echo0`. Usually that is the turn the reply was queued in (the worker
//! writes every connection that got replies at the end of the turn), but a client that reads
//! slowly leaves replies in the send buffer for later turns. So each connection keeps, in stream
//! order, where each unwritten reply ends (as an offset into everything ever queued on the
//! connection, replies and broadcasts alike, which survives the buffer being compacted) and its
//! `echo0`. After every write the replies that end within the bytes written are recorded, with one
//! clock read for all of them.
//!
//! The list is bounded: at most [`MAX_ENTRIES`] entries, allocated on the connection's first reply
//! and reused (nothing is allocated per reply once warm). Past that (a client with more than 32
//! replies unread) a new reply joins the last entry, which then stands for several replies: they
//! are all recorded when the last of them is written, with the earliest `echo0` among them, so no
//! reply is lost from the count and their latencies are overestimated rather than hidden. A reply
//! whose `echo0` is 0 (MCP did not copy it) is not recorded, nor is one whose `echo0` lies in the
//! future (MCP wrote something else there).

use std::collections::VecDeque;

use crate::conn_state::{ReplyTiming, UnsentTiming};
use crate::stats::histogram::Histogram;

/// Unwritten replies a connection keeps apart; more are merged into the last one.
pub(crate) const MAX_ENTRIES: usize = 32;

// A moved connection's state carries at most as many entries as a connection keeps.
const _: () = assert!(MAX_ENTRIES == crate::conn_state::MAX_TIMING_ENTRIES);

/// One or more replies ending at the same place in the stream.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Stream offset just past the reply's last byte.
    end: u64,
    /// The earliest `echo0` of the replies it stands for.
    echo0_ns: u64,
    /// How many replies it stands for.
    replies: u32,
}

/// A connection's unwritten replies, oldest first.
#[derive(Debug, Default)]
pub(crate) struct UnsentReplies {
    /// Bytes ever queued on the connection: the stream offset of the end of its send buffer.
    queued: u64,
    entries: VecDeque<Entry>,
}

impl UnsentReplies {
    /// The list as a connection's state carries it when the connection moves.
    pub(crate) fn to_state(&self) -> UnsentTiming {
        UnsentTiming {
            queued: self.queued,
            entries: self
                .entries
                .iter()
                .map(|e| ReplyTiming {
                    end: e.end,
                    echo0_ns: e.echo0_ns,
                    replies: e.replies,
                })
                .collect(),
        }
    }

    /// The list a moved connection's state carries; entries past [`MAX_ENTRIES`] (from another
    /// version) join the last one, as a new reply would.
    pub(crate) fn from_state(state: &UnsentTiming) -> UnsentReplies {
        let mut entries: VecDeque<Entry> = VecDeque::new();
        for e in &state.entries {
            let full = entries.len() == MAX_ENTRIES;
            match entries.back_mut() {
                Some(last) if full => {
                    last.end = e.end;
                    last.echo0_ns = last.echo0_ns.min(e.echo0_ns);
                    last.replies = last.replies.saturating_add(e.replies);
                }
                _ => entries.push_back(Entry {
                    end: e.end,
                    echo0_ns: e.echo0_ns,
                    replies: e.replies,
                }),
            }
        }
        UnsentReplies {
            queued: state.queued,
            entries,
        }
    }

    /// `bytes` were appended to the connection's send buffer.
    pub(crate) fn queued(&mut self, bytes: usize) {
        self.queued += bytes as u64;
    }

    /// The bytes queued last end a reply to a request whose first byte was read at `echo0_ns`.
    pub(crate) fn reply_queued(&mut self, echo0_ns: u64) {
        if echo0_ns == 0 {
            return;
        }
        let end = self.queued;
        if self.entries.len() < MAX_ENTRIES {
            self.entries.push_back(Entry {
                end,
                echo0_ns,
                replies: 1,
            });
        } else if let Some(last) = self.entries.back_mut() {
            last.end = end;
            last.echo0_ns = last.echo0_ns.min(echo0_ns);
            last.replies += 1;
        }
    }

    /// The send buffer now holds `unwritten` bytes: records in `latency` every reply written in
    /// full, reading `clock` (nanoseconds) only if there is one.
    pub(crate) fn written(
        &mut self,
        unwritten: usize,
        clock: impl FnOnce() -> u64,
        latency: &mut Histogram,
    ) {
        let written = self.queued - unwritten as u64;
        if self.entries.front().is_none_or(|e| e.end > written) {
            return;
        }
        let now = clock();
        while let Some(entry) = self.entries.front().filter(|e| e.end <= written) {
            if entry.echo0_ns <= now {
                for _ in 0..entry.replies {
                    latency.record_ns(now - entry.echo0_ns);
                }
            }
            self.entries.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_recorded_once_their_last_byte_is_written() {
        let mut unsent = UnsentReplies::default();
        let mut h = Histogram::default();
        unsent.queued(10);
        unsent.reply_queued(1_000);
        unsent.queued(5); // a broadcast: no reply
        unsent.queued(10);
        unsent.reply_queued(2_000);
        // 9 of 25 bytes written: nothing complete, and the clock is not read.
        unsent.written(16, || panic!("clock read"), &mut h);
        assert_eq!(h.count(), 0);
        // 20 written: the first reply.
        unsent.written(5, || 101_000, &mut h);
        assert_eq!((h.count(), h.max_ns()), (1, 100_000));
        // Everything: the second one.
        unsent.written(0, || 102_000, &mut h);
        assert_eq!((h.count(), h.min_ns()), (2, 100_000));
        unsent.written(0, || panic!("clock read"), &mut h);
        assert_eq!(h.count(), 2);
    }

    #[test]
    fn unset_and_future_echo0_are_not_recorded() {
        let mut unsent = UnsentReplies::default();
        let mut h = Histogram::default();
        unsent.queued(1);
        unsent.reply_queued(0);
        unsent.queued(1);
        unsent.reply_queued(5_000);
        unsent.written(0, || 4_000, &mut h);
        assert_eq!(h.count(), 0);
        assert!(unsent.entries.is_empty());
    }

    #[test]
    fn replies_past_the_bound_join_the_last_entry_and_keep_their_count() {
        let mut unsent = UnsentReplies::default();
        let mut h = Histogram::default();
        for i in 0..MAX_ENTRIES as u64 + 10 {
            unsent.queued(1);
            unsent.reply_queued(1_000 + i);
        }
        assert_eq!(unsent.entries.len(), MAX_ENTRIES);
        let capacity = unsent.entries.capacity();
        unsent.written(0, || 1_000_000, &mut h);
        assert_eq!(h.count(), MAX_ENTRIES as u64 + 10);
        // The merged ones carry the earliest echo0 of their group.
        assert_eq!(h.min_ns(), 1_000_000 - (1_000 + MAX_ENTRIES as u64 - 1));
        assert_eq!(h.max_ns(), 1_000_000 - 1_000);
        for _ in 0..MAX_ENTRIES {
            unsent.queued(1);
            unsent.reply_queued(1);
        }
        assert_eq!(unsent.entries.capacity(), capacity, "reused, not grown");
    }
}
