//! The shared-memory lanes: the ring in one process, attaching and refusing bad files, a corrupt
//! producer, the wake-up protocol, and a producer in another process.

#[path = "../common/mod.rs"]
mod common;
mod records;
mod shm_files;

mod attach;
mod corrupt;
mod processes;
mod ring;
mod wakeup;
