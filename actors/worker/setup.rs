//! What a worker thread is started with ([`WorkerSetup`]), and what it knows about each
//! listener ([`ListenerInfo`]); the runtime builds both.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use polling::Poller;

use super::Fence;
use crate::conn_state::{ConnState, ListenerIdentity};
use crate::framing::Framer;
use crate::lane::Producer;
use crate::load::WorkerSet;
use crate::mailbox::Mailbox;
use crate::memory::MemoryBudget;
use crate::message::{MainMsg, ReplyBatch, WorkerMsg};
use crate::proxy_protocol::{Accepted, SourceNetwork};
use crate::rate_limit::RateLimiter;
use crate::settings::{LimitsSettings, ListenSettings, OnFull, ProxyProtocol};

/// What a worker needs to know about each listener.
#[derive(Debug, Clone)]
pub(crate) struct ListenerInfo {
    /// Finds packet boundaries for this listener's connections.
    pub framer: Arc<dyn Framer>,
    /// The listener's bound address.
    pub local: SocketAddr,
    /// The listener's local port, copied into every record header.
    pub port: u16,
    /// The listener's open connections (raised by the acceptor, lowered here on close).
    pub open: Arc<AtomicUsize>,
    /// `listen[i].max_requests_per_second`, shared by every worker; `None`: no limit.
    pub rate: Option<Arc<RateLimiter>>,
    /// `listen[i].proxy_protocol` and `proxy_from`; `None`: off.
    pub proxy: Option<ProxyRule>,
    /// `listen[i].workers`: where its connections may live (a move elsewhere must be forced).
    pub workers: WorkerSet,
}

impl ListenerInfo {
    /// Listener `index` as a moved connection's state names it.
    pub(crate) fn identity(&self, index: usize) -> ListenerIdentity {
        ListenerIdentity {
            index,
            framing: self.framer.name().to_owned(),
            local: self.local,
        }
    }
}

/// A listener whose connections start with a PROXY protocol header.
#[derive(Debug, Clone)]
pub(crate) struct ProxyRule {
    /// The header versions accepted.
    pub accepted: Accepted,
    /// The sources allowed to send it (`listen[i].proxy_from`).
    pub from: Vec<SourceNetwork>,
}

impl ProxyRule {
    /// `listen`'s rule, `None` when `proxy_protocol = "off"`.
    pub(crate) fn of(listen: &ListenSettings) -> Option<ProxyRule> {
        match listen.proxy_protocol {
            ProxyProtocol::Off => None,
            ProxyProtocol::On(accepted) => Some(ProxyRule {
                accepted,
                from: listen.proxy_from.clone(),
            }),
        }
    }

    /// Whether a connection from `ip` may send the header.
    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        self.from.iter().any(|net| net.contains(ip))
    }
}

/// Everything a worker thread is started with.
pub(crate) struct WorkerSetup {
    /// The worker's index (also the request lane's index and the flow id's worker field).
    pub id: usize,
    /// This ccsd start's epoch, carried in every flow id.
    pub epoch: u16,
    /// The worker's own poller; its mailbox senders notify it.
    pub poller: Arc<Poller>,
    /// The receiving end of the worker's mailbox.
    pub inbox: Receiver<WorkerMsg>,
    /// Where emptied reply batches go back to the MCP bridge.
    pub recycle: Sender<ReplyBatch>,
    /// Bytes of reply batches the bridge handed over and this worker has not taken yet
    /// (`BridgeLink::in_flight`): the worker subtracts each batch once its replies are queued.
    pub in_flight: Arc<AtomicUsize>,
    /// The main thread's mailbox, for `NotifyStat`.
    pub main: Mailbox<MainMsg>,
    /// The worker's request lane to MCP.
    pub lane: Producer,
    /// Listener details, by listener index.
    pub listeners: Vec<ListenerInfo>,
    /// What to do with a packet when the request lane is full.
    pub on_full: OnFull,
    /// Open connections of this worker, read by the acceptor's least-connections policy.
    pub open_gauge: Arc<AtomicUsize>,
    /// How often to send `NotifyStat`.
    pub stats_interval: Duration,
    /// How long to keep polling without sleeping after the last work (`broker.idle_spin`).
    pub idle_spin: Duration,
    /// The per-connection limits.
    pub limits: LimitsSettings,
    /// Tell MCP about every new connection (`mcp.connect_events`).
    pub connect_events: bool,
    /// With `mcp.when_down = "refuse"`: the MCP watch's verdict, true while MCP is down.
    pub mcp_down: Option<Arc<AtomicBool>>,
    /// `limits.max_memory`: the total every holder publishes into, and the ceiling.
    pub memory: Arc<MemoryBudget>,
    /// Connections to adopt before serving: handed over by the process this one took over from.
    pub adoptions: Vec<Adoption>,
    /// After a takeover: the worker waits for `true` (the old process let go) before it touches
    /// a socket or its lane; `false` or a closed channel ends it.
    pub gate: Option<Receiver<bool>>,
}

/// A connection a worker adopts when it starts (a hot restart).
#[derive(Debug)]
pub(crate) struct Adoption {
    /// The socket, as the old process handed it over.
    pub socket: TcpStream,
    /// Its state.
    pub state: ConnState,
    /// Where MCP must have read before it is read again (its old lane is not this worker's).
    pub fence: Option<Fence>,
    /// The worker it was on in the old process.
    pub from: usize,
}

impl std::fmt::Debug for WorkerSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSetup")
            .field("id", &self.id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}
