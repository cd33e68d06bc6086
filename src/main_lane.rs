//! The main thread's request lane: the one request lane the main thread produces into.
//!
//! Workers each own request lane `{name}.req.{i}` for `i` in `0..workers`; the main thread owns
//! one more, `{name}.req.{workers}`, so that every lane keeps a single producer. Its records are
//! UDP datagrams (the UDP actor) and the acceptor's overload notices. Flows of the main thread
//! carry this lane's index in their worker field, which is how the MCP bridge knows that a reply
//! belongs to the main thread.
//!
//! Records are pushed during a loop turn and published once at its end, as workers do.

use log::Level;

use crate::lane::Producer;
use crate::logging::{LogLimiter, log_limited};
use crate::stats::MainLaneCounters;

/// The main thread's end of its request lane.
#[derive(Debug)]
pub(crate) struct MainLane {
    producer: Producer,
    index: u8,
    counters: MainLaneCounters,
    error_log: LogLimiter,
}

impl MainLane {
    /// The main thread's lane: `producer` is request lane `index` (the number of workers).
    pub(crate) fn new(producer: Producer, index: u8) -> MainLane {
        MainLane {
            producer,
            index,
            counters: MainLaneCounters::default(),
            error_log: LogLimiter::default(),
        }
    }

    /// The lane's index, which flows of the main thread carry in their worker field.
    pub(crate) fn index(&self) -> u8 {
        self.index
    }

    /// Writes one record made of `parts` (visible to MCP at the next [`publish`](Self::publish));
    /// false when the lane has no room for it. Callers count their own losses.
    pub(crate) fn try_push(&mut self, parts: &[&[u8]]) -> bool {
        self.producer.try_push(parts).is_ok()
    }

    /// Names this process the lane's producer again (after a hot restart that rolled back).
    pub(crate) fn claim(&self) {
        self.producer.lane().claim_producer();
    }

    /// Makes the records pushed this turn visible, waking MCP if it sleeps.
    pub(crate) fn publish(&mut self) {
        if !self.producer.has_unpublished() {
            return;
        }
        match self.producer.publish() {
            Ok(woke) => {
                self.counters.lane_publishes += 1;
                self.counters.lane_wakeups += u64::from(woke);
            }
            Err(e) => {
                log_limited!(
                    self.error_log,
                    Level::Warn,
                    "main lane: cannot wake MCP: {e}"
                );
            }
        }
    }

    /// Bytes waiting in the lane for MCP.
    pub(crate) fn used_bytes(&self) -> u64 {
        self.producer.lane().used_bytes()
    }

    /// What the lane counted so far.
    pub(crate) fn counters(&self) -> MainLaneCounters {
        self.counters
    }
}
