//! Main-thread actors added by the user's own binary: the [`MainActor`] trait they implement and
//! the [`ActorContext`] the runtime lends them.
//!
//! A custom actor lives on the main thread next to the acceptor and the MCP bridge. It can watch
//! its own file descriptors on the main poller ([`ActorContext::register`]), ask for a timer
//! ([`MainActor::next_deadline`]), receive MCP's custom records ([`CustomMcp`]) and the collected
//! counters at every stats interval ([`StatsSnapshot`], built from the workers' `NotifyStat`), and
//! act on connections through the context (close a flow, close or broadcast to a listen port, stop
//! ccsd). Callbacks run on the main loop: they must not block, or every connection waits.
//!
//! Registering an fd hands the runtime a shared reference to it, so the fd cannot be closed while
//! the poller still watches it; [`ActorContext::deregister`] gives the reference back.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polling::{Event, Poller};

use crate::flow::FlowId;
use crate::record::CloseMode;
use crate::stats::MainCounters;
use crate::stats::WorkerCounters;
use crate::watched::Watched;

// The messages a custom actor receives, public here so that the actor interface is one module.
pub use crate::message::{CustomMcp, NotifyStat};

/// Poller keys at or above this belong to custom actors.
pub(crate) const ACTOR_KEY_BASE: usize = 1 << 30;
/// Poller keys each custom actor owns; its tokens must be below this.
pub const ACTOR_TOKENS: usize = 1 << 16;

/// An fd a custom actor watches; the runtime holds it while it is registered.
pub type ActorSource = Arc<dyn AsFd + Send + Sync>;

/// A custom actor on the main thread. Every method but [`name`](MainActor::name) has a default
/// that does nothing, so an actor implements only what it uses.
pub trait MainActor: Send {
    /// A short name for logs.
    fn name(&self) -> &str;

    /// Called once when the broker starts, after the workers and listeners are up: register fds
    /// here. An error stops the start ([`crate::runtime::StartError::Actor`]).
    ///
    /// # Errors
    /// Whatever keeps the actor from working.
    fn start(&mut self, ctx: &mut ActorContext<'_>) -> io::Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// A source the actor registered under `token` is ready (`readable`/`writable` as asked).
    fn on_ready(
        &mut self,
        token: usize,
        readable: bool,
        writable: bool,
        ctx: &mut ActorContext<'_>,
    ) {
        let _ = (token, readable, writable, ctx);
    }

    /// When [`on_timer`](MainActor::on_timer) should next run; `None` for no timer. Asked after
    /// every callback, so an actor can move its deadline at any time.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// The deadline from [`next_deadline`](MainActor::next_deadline) has passed.
    fn on_timer(&mut self, now: Instant, ctx: &mut ActorContext<'_>) {
        let _ = (now, ctx);
    }

    /// A custom record from MCP (every one, including those ccsd acts on itself).
    fn on_custom(&mut self, msg: &CustomMcp, ctx: &mut ActorContext<'_>) {
        let _ = (msg, ctx);
    }

    /// The counters collected at a stats interval.
    fn on_stats(&mut self, stats: &StatsSnapshot<'_>, ctx: &mut ActorContext<'_>) {
        let _ = (stats, ctx);
    }

    /// ccsd is stopping (listeners are closed; connections are being drained).
    fn on_stop(&mut self, ctx: &mut ActorContext<'_>) {
        let _ = ctx;
    }
}

/// Something a custom actor asked the runtime to do; carried out right after the callback.
#[derive(Debug, Clone)]
pub(crate) enum ActorRequest {
    /// Close one connection.
    CloseFlow(FlowId),
    /// Close every connection accepted on a listen port.
    ClosePort(u16, CloseMode),
    /// Write a payload to every connection accepted on a listen port.
    Broadcast(u16, Arc<[u8]>),
    /// Begin a graceful stop.
    Stop,
}

/// The counters as collected at a stats interval.
#[derive(Debug, Clone, Copy)]
pub struct StatsSnapshot<'a> {
    /// The sum over every worker.
    pub totals: WorkerCounters,
    /// The last `NotifyStat` of each worker (`None` before its first).
    pub workers: &'a [Option<NotifyStat>],
    /// The main thread's own counters.
    pub main: &'a MainCounters,
    /// Time since the broker started.
    pub uptime: Duration,
}

/// The fds one actor registered, by token.
#[derive(Default)]
pub(crate) struct Registrations {
    sources: HashMap<usize, Watched<ActorSource>>,
}

impl fmt::Debug for Registrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registrations")
            .field("tokens", &self.sources.len())
            .finish()
    }
}

/// What the runtime lends an actor during a callback.
pub struct ActorContext<'a> {
    pub(crate) poller: &'a Arc<Poller>,
    pub(crate) key_base: usize,
    pub(crate) registrations: &'a mut Registrations,
    pub(crate) requests: &'a mut Vec<ActorRequest>,
    pub(crate) local_addrs: &'a [std::net::SocketAddr],
}

impl fmt::Debug for ActorContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorContext")
            .field("key_base", &self.key_base)
            .field("registrations", &self.registrations)
            .finish_non_exhaustive()
    }
}

impl ActorContext<'_> {
    /// Watches `source` on the main poller (level-triggered) and reports its readiness to
    /// [`MainActor::on_ready`] with `token`. Registering a token again replaces its source.
    ///
    /// # Errors
    /// `token` is not below [`ACTOR_TOKENS`], or the poller refused the fd.
    pub fn register(
        &mut self,
        token: usize,
        source: ActorSource,
        readable: bool,
        writable: bool,
    ) -> io::Result<()> {
        let key = self.key(token)?;
        self.deregister(token)?;
        let watched = Watched::new(self.poller, source, Event::new(key, readable, writable))?;
        self.registrations.sources.insert(token, watched);
        Ok(())
    }

    /// Changes what the runtime watches `token`'s source for.
    ///
    /// # Errors
    /// `token` is not registered, or the poller refused.
    pub fn set_interest(&mut self, token: usize, readable: bool, writable: bool) -> io::Result<()> {
        self.key(token)?;
        let source = self.registrations.sources.get_mut(&token).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("token {token} is not registered"),
            )
        })?;
        source.set_interest(readable, writable)
    }

    /// Stops watching `token`'s source and drops the runtime's reference to it. Unknown tokens
    /// are ignored.
    ///
    /// # Errors
    /// The poller refused to delete the fd (it is forgotten anyway).
    pub fn deregister(&mut self, token: usize) -> io::Result<()> {
        match self.registrations.sources.remove(&token) {
            Some(mut watched) => watched.pause(),
            None => Ok(()),
        }
    }

    /// Closes one connection (as the admin's `close FLOW` does); MCP gets the disconnect notice
    /// with reason `local`.
    pub fn close_flow(&mut self, flow: FlowId) {
        self.requests.push(ActorRequest::CloseFlow(flow));
    }

    /// Closes every connection accepted on listen port `port`.
    pub fn close_port(&mut self, port: u16, mode: CloseMode) {
        self.requests.push(ActorRequest::ClosePort(port, mode));
    }

    /// Writes `payload` to every connection accepted on listen port `port`.
    pub fn broadcast(&mut self, port: u16, payload: Arc<[u8]>) {
        self.requests.push(ActorRequest::Broadcast(port, payload));
    }

    /// Begins a graceful stop, as SIGTERM does.
    pub fn stop(&mut self) {
        self.requests.push(ActorRequest::Stop);
    }

    /// The bound address of each listener, in `Settings::listen` order.
    pub fn listen_addrs(&self) -> &[std::net::SocketAddr] {
        self.local_addrs
    }

    fn key(&self, token: usize) -> io::Result<usize> {
        if token >= ACTOR_TOKENS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("actor token {token} is not below {ACTOR_TOKENS}"),
            ));
        }
        Ok(self.key_base + token)
    }
}
