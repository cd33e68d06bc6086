//! The main poller's keys: which source an event is for. Keys are made and read only here.
//!
//! `0..L` the listeners (listener `i` under key `i`: the acceptor's when TCP, the UDP actor's when
//! UDP), `L` the response lane's FIFO, `L+1` the signal socket, from `L+2` the admin's listeners
//! and clients (the admin numbers them from there), `ACTOR_KEY_BASE - 1` the handover socket (hot
//! restart), and from [`ACTOR_KEY_BASE`] the custom actors:
//! actor `i` owns [`ACTOR_TOKENS`] keys from `ACTOR_KEY_BASE + i * ACTOR_TOKENS`.

use crate::actor::{ACTOR_KEY_BASE, ACTOR_TOKENS};

/// What an event of the main poller is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MainKey {
    /// Listener `i` (in `listen` order).
    Listener(usize),
    /// The response lane's wake-up FIFO.
    ResponseLane,
    /// The socket the signal handlers write to.
    Signals,
    /// One of the admin's sources; the key is handed to the admin as it is.
    Admin(usize),
    /// The handover socket a process taking over connects to (hot restart).
    Handover,
    /// Custom actor `actor`'s source `token`.
    Actor {
        /// Index of the actor, in the order they were added.
        actor: usize,
        /// The token the actor registered the source with.
        token: usize,
    },
}

/// The main poller's key layout for `listeners` listeners.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MainKeys {
    listeners: usize,
}

impl MainKeys {
    pub(crate) fn new(listeners: usize) -> MainKeys {
        MainKeys { listeners }
    }

    pub(crate) fn listener(self, i: usize) -> usize {
        debug_assert!(i < self.listeners);
        i
    }

    pub(crate) fn response_lane(self) -> usize {
        self.listeners
    }

    pub(crate) fn signals(self) -> usize {
        self.listeners + 1
    }

    /// The first of the admin's keys.
    pub(crate) fn admin(self) -> usize {
        self.listeners + 2
    }

    /// The handover socket's key: just below the custom actors' (above every admin key).
    pub(crate) fn handover(self) -> usize {
        ACTOR_KEY_BASE - 1
    }

    /// The first of custom actor `actor`'s keys.
    pub(crate) fn actor_base(actor: usize) -> usize {
        ACTOR_KEY_BASE + actor * ACTOR_TOKENS
    }

    /// What `key` is for.
    pub(crate) fn decode(self, key: usize) -> MainKey {
        let l = self.listeners;
        match key {
            k if k < l => MainKey::Listener(k),
            k if k == l => MainKey::ResponseLane,
            k if k == l + 1 => MainKey::Signals,
            k if k == ACTOR_KEY_BASE - 1 => MainKey::Handover,
            k if k < ACTOR_KEY_BASE => MainKey::Admin(k),
            k => MainKey::Actor {
                actor: (k - ACTOR_KEY_BASE) / ACTOR_TOKENS,
                token: (k - ACTOR_KEY_BASE) % ACTOR_TOKENS,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_made_here_decodes_to_what_it_was_made_for() {
        let keys = MainKeys::new(3);
        assert_eq!(keys.decode(keys.listener(0)), MainKey::Listener(0));
        assert_eq!(keys.decode(keys.listener(2)), MainKey::Listener(2));
        assert_eq!(keys.decode(keys.response_lane()), MainKey::ResponseLane);
        assert_eq!(keys.decode(keys.signals()), MainKey::Signals);
        assert_eq!(keys.decode(keys.admin()), MainKey::Admin(keys.admin()));
        assert_eq!(
            keys.decode(keys.admin() + 70),
            MainKey::Admin(keys.admin() + 70)
        );
        assert_eq!(
            keys.decode(MainKeys::actor_base(2) + 5),
            MainKey::Actor { actor: 2, token: 5 }
        );
        assert_eq!(
            keys.decode(MainKeys::actor_base(0) + ACTOR_TOKENS - 1),
            MainKey::Actor {
                actor: 0,
                token: ACTOR_TOKENS - 1
            }
        );
    }
}
