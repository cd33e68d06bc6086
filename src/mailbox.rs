//! Mailboxes: how actors on different threads talk.
//!
//! A mailbox is a bounded crossbeam channel plus the receiving thread's [`Poller`]. Sending never
//! blocks: [`Mailbox::try_send`] hands the message back when the mailbox is full, and the caller
//! decides what that costs (a counted drop, a close). A successful send wakes the receiver's poller
//! with `notify()`, which is coalesced, so a burst of sends costs one wake-up. The receiver drains
//! its channel with `try_recv()` after every `wait`, whatever events it saw (a worker takes at
//! most a bounded number per turn and then notifies its own poller, so the next wait returns at
//! once).

use std::fmt;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use polling::Poller;

/// The sending half of an actor's mailbox.
pub(crate) struct Mailbox<M> {
    tx: Sender<M>,
    poller: Arc<Poller>,
}

impl<M> Clone for Mailbox<M> {
    fn clone(&self) -> Self {
        Mailbox {
            tx: self.tx.clone(),
            poller: Arc::clone(&self.poller),
        }
    }
}

impl<M> fmt::Debug for Mailbox<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("len", &self.tx.len())
            .field("capacity", &self.tx.capacity())
            .finish()
    }
}

/// A mailbox of `capacity` messages for the thread that waits on `poller`.
pub(crate) fn mailbox<M>(capacity: usize, poller: Arc<Poller>) -> (Mailbox<M>, Receiver<M>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    (Mailbox { tx, poller }, rx)
}

impl<M> Mailbox<M> {
    /// Queues `msg` and wakes the receiver.
    ///
    /// # Errors
    /// The message comes back when the mailbox is full or its receiver is gone.
    pub(crate) fn try_send(&self, msg: M) -> Result<(), TrySendError<M>> {
        self.tx.try_send(msg)?;
        // A failed notify means the receiver's poller is broken; its thread reports that itself.
        let _ = self.poller.notify();
        Ok(())
    }

    /// Messages waiting in the mailbox.
    pub(crate) fn len(&self) -> usize {
        self.tx.len()
    }

    /// The most messages the mailbox holds.
    pub(crate) fn capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(usize::MAX)
    }
}
