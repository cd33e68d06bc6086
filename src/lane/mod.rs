//! Lanes: single-producer/single-consumer byte rings in shared-memory files.
//!
//! ccsd and MCP (an external process, possibly written in C) exchange records through *lanes*.
//! A lane is a file (normally in `/dev/shm`) holding a 512-byte header and a power-of-two data
//! area used as a ring of 8-aligned frames, plus a FIFO at `{lane path}.fifo` that wakes a
//! sleeping consumer. Exactly one process produces into a lane and exactly one consumes from it.
//! The byte layout and the wake-up protocol are a public contract, specified in
//! `docs/protocol.md`; this module is ccsd's implementation of both sides.
//!
//! Shared memory is only ever touched through raw pointers and atomics, never through Rust
//! references to bytes the peer may write, and nothing the peer wrote is trusted: the consumer
//! checks every frame against the capacity and the published tail before it copies a byte.
//!
//! ```no_run
//! use ccsd::lane::Lane;
//! use std::path::Path;
//!
//! let path = Path::new("/dev/shm/example.req.0");
//! let mut producer = Lane::create_or_attach(path, 1 << 20)?.into_producer();
//! producer.try_push(&[b"header", b"payload"])?;
//! producer.publish()?;
//!
//! let mut consumer = Lane::attach(path, None)?.into_consumer();
//! let mut record = Vec::new();
//! while consumer.pop_into(&mut record)?.is_none() {
//!     consumer.wait(None)?;
//! }
//! assert_eq!(record, b"headerpayload");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod consumer;
mod error;
mod file;
mod layout;
mod producer;

pub use consumer::{Consumer, HeldRecord, LaneCorrupt};
pub use error::LaneError;
pub use file::{HeadWatch, Lane};
pub use layout::{FRAME_HEADER_SIZE, LANE_HEADER_SIZE, LANE_MAGIC, LANE_VERSION};
pub use producer::{Producer, PushError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_ends_can_move_to_other_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Lane>();
        assert_send::<Producer>();
        assert_send::<Consumer>();
    }
}
