//! The checks the MCP bridge applies to every record it reads from the response lane, as one pure
//! function: unit tests and the `record` fuzz target (`fuzz/`) run exactly the code the bridge
//! runs. MCP is not trusted: every field that routing depends on is checked here, and each way a
//! record can fail has its own [`Rejection`] (and bridge counter).

use crate::record::{CloseMode, Kind, RecordError, RecordHeader};

/// What the bridge judges a record against: this ccsd start, its workers, the reply age limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCheck {
    /// The epoch of this ccsd start; flows of any other epoch are stale.
    pub epoch: u16,
    /// Number of workers; a flow naming index `workers` belongs to the main thread's lane, one
    /// naming an index past it is dropped.
    pub workers: usize,
    /// `mcp.reply_max_age` in nanoseconds; 0: replies never expire.
    pub reply_max_age_ns: u64,
    /// This process took over connections of earlier starts (hot restart, possibly several in a
    /// row): a flow of another epoch may be one of them, which only the bridge's routes know.
    pub adopted: bool,
}

/// Where an accepted record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A DATA or CLOSE, for the worker (by index) that owns the record's flow.
    Worker(usize),
    /// A DATA or CLOSE for a flow of the main thread's lane (index `workers`): a UDP peer.
    MainLane,
    /// A CUSTOM record, for the main thread's actors (whatever its flow).
    Custom,
    /// A DATA or CLOSE for a flow of another epoch while this process holds adopted connections
    /// (a hot restart): routed by the bridge's routes of adopted flows, stale if it has none.
    Adopted,
}

/// Why the bridge drops a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The header does not decode (`dropped_malformed`).
    Malformed(RecordError),
    /// CONNECT or DISCONNECT: kinds only ccsd sends (`dropped_unexpected_kind`).
    UnexpectedKind(Kind),
    /// A CLOSE whose `code` is no close mode (`dropped_malformed`).
    UnknownCloseMode(u8),
    /// The flow belongs to another ccsd start (`dropped_stale_epoch`).
    StaleEpoch,
    /// A DATA reply older than `reply_max_age` (`dropped_expired`), after waiting this long.
    Expired {
        /// Nanoseconds between MCP's timestamp and the bridge's clock.
        waited_ns: u64,
    },
    /// The flow names neither a worker nor the main thread's lane (`dropped_bad_worker`).
    BadWorker,
}

impl ResponseCheck {
    /// Judges `record`, one whole record (header and payload) read from the response lane at
    /// `now_ns` (`CLOCK_MONOTONIC`; only looked at when replies can expire).
    ///
    /// # Errors
    /// The [`Rejection`] that drops the record; the checks run in the order of its variants.
    pub fn classify(
        &self,
        record: &[u8],
        now_ns: u64,
    ) -> Result<(RecordHeader, Destination), Rejection> {
        let header = RecordHeader::decode(record).map_err(Rejection::Malformed)?;
        match header.kind {
            Kind::Data | Kind::Close => {}
            Kind::Custom => return Ok((header, Destination::Custom)),
            Kind::Connect | Kind::Disconnect => return Err(Rejection::UnexpectedKind(header.kind)),
        }
        if header.kind == Kind::Close && header.code > CloseMode::Force as u8 {
            return Err(Rejection::UnknownCloseMode(header.code));
        }
        let other_epoch = header.flow.epoch() != self.epoch;
        if other_epoch && !self.adopted {
            return Err(Rejection::StaleEpoch);
        }
        // A timestamp ahead of our clock (MCP read it later than we did) is not expired.
        let waited_ns = now_ns.saturating_sub(header.timestamp_ns);
        if self.reply_max_age_ns != 0
            && header.kind == Kind::Data
            && waited_ns > self.reply_max_age_ns
        {
            return Err(Rejection::Expired { waited_ns });
        }
        if other_epoch {
            return Ok((header, Destination::Adopted));
        }
        let worker = header.flow.worker();
        match worker.cmp(&self.workers) {
            std::cmp::Ordering::Less => Ok((header, Destination::Worker(worker))),
            std::cmp::Ordering::Equal => Ok((header, Destination::MainLane)),
            std::cmp::Ordering::Greater => Err(Rejection::BadWorker),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowId;

    const CHECK: ResponseCheck = ResponseCheck {
        epoch: 7,
        workers: 2,
        reply_max_age_ns: 1_000,
        adopted: false,
    };

    fn record(kind: Kind, flow: FlowId, timestamp_ns: u64) -> Vec<u8> {
        let mut h = RecordHeader::new(kind, flow);
        h.timestamp_ns = timestamp_ns;
        h.payload_len = 2;
        let mut r = h.encode().to_vec();
        r.extend_from_slice(b"ok");
        r
    }

    fn verdict(r: &[u8]) -> Result<Destination, Rejection> {
        CHECK.classify(r, 10_000).map(|(_, to)| to)
    }

    #[test]
    fn data_and_close_go_to_the_worker_their_flow_names() {
        let flow = FlowId::new(7, 1, 3, 4);
        assert_eq!(
            verdict(&record(Kind::Data, flow, 9_500)),
            Ok(Destination::Worker(1))
        );
        assert_eq!(
            verdict(&record(Kind::Close, flow, 0)),
            Ok(Destination::Worker(1)),
            "a CLOSE never expires"
        );
    }

    #[test]
    fn replies_to_flows_of_the_main_threads_lane_go_to_the_main_thread() {
        let udp_flow = FlowId::new(7, 2, 0, 0);
        assert_eq!(
            verdict(&record(Kind::Data, udp_flow, 9_500)),
            Ok(Destination::MainLane)
        );
    }

    #[test]
    fn custom_records_go_to_the_main_thread_whatever_their_flow() {
        let foreign = FlowId::new(8, 200, 0, 0);
        assert_eq!(
            verdict(&record(Kind::Custom, foreign, 0)),
            Ok(Destination::Custom)
        );
    }

    #[test]
    fn each_rejection_names_the_check_that_failed() {
        let flow = FlowId::new(7, 0, 0, 1);
        let mut garbage = record(Kind::Data, flow, 9_500);
        garbage.push(0);
        assert!(matches!(
            verdict(&garbage),
            Err(Rejection::Malformed(RecordError::LengthMismatch { .. }))
        ));
        assert_eq!(
            verdict(&record(Kind::Disconnect, flow, 9_500)),
            Err(Rejection::UnexpectedKind(Kind::Disconnect))
        );
        let mut close = RecordHeader::new(Kind::Close, flow);
        close.code = 2;
        assert_eq!(
            verdict(&close.encode()),
            Err(Rejection::UnknownCloseMode(2))
        );
        assert_eq!(
            verdict(&record(Kind::Data, FlowId::new(6, 0, 0, 1), 9_500)),
            Err(Rejection::StaleEpoch)
        );
        assert_eq!(
            verdict(&record(Kind::Data, flow, 8_999)),
            Err(Rejection::Expired { waited_ns: 1_001 })
        );
        assert_eq!(
            verdict(&record(Kind::Data, FlowId::new(7, 3, 0, 1), 9_500)),
            Err(Rejection::BadWorker)
        );
    }

    #[test]
    fn after_a_takeover_other_epochs_go_to_the_bridges_routes_instead_of_being_stale() {
        let old = FlowId::new(3, 1, 0, 9);
        assert_eq!(
            verdict(&record(Kind::Data, old, 9_500)),
            Err(Rejection::StaleEpoch)
        );
        let adopting = ResponseCheck {
            adopted: true,
            ..CHECK
        };
        assert_eq!(
            adopting
                .classify(&record(Kind::Data, old, 9_500), 10_000)
                .map(|(_, to)| to),
            Ok(Destination::Adopted)
        );
        let current = FlowId::new(7, 1, 0, 9);
        assert_eq!(
            adopting
                .classify(&record(Kind::Close, current, 9_500), 10_000)
                .map(|(_, to)| to),
            Ok(Destination::Worker(1))
        );
    }

    #[test]
    fn replies_stamped_ahead_of_the_clock_or_without_an_age_limit_do_not_expire() {
        let flow = FlowId::new(7, 0, 0, 1);
        assert_eq!(
            verdict(&record(Kind::Data, flow, 20_000)),
            Ok(Destination::Worker(0))
        );
        let no_limit = ResponseCheck {
            reply_max_age_ns: 0,
            ..CHECK
        };
        assert_eq!(
            no_limit
                .classify(&record(Kind::Data, flow, 0), u64::MAX)
                .map(|(_, to)| to),
            Ok(Destination::Worker(0))
        );
    }
}
