//! One client thread: drives its connections on its own `polling::Poller`, first through the
//! preload (if asked), then, once every thread is ready, through the measured run.

use std::io;
use std::net::TcpStream;
use std::num::NonZeroUsize;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use polling::{Events, Poller};

use crate::args::{Args, Protocol, Stop};
use crate::conn::{Conn, ReadOutcome};
use crate::protocol::{Codec, Fault, Op};
use crate::report::Totals;
use crate::rng::Rng;

/// Longest poller wait, and how often request timeouts are checked.
const TICK: Duration = Duration::from_millis(100);

/// What all threads share.
#[derive(Debug)]
pub struct Shared<'a> {
    /// The options.
    pub args: &'a Args,
    /// Request encoder and reply parser.
    pub codec: &'a Codec,
    /// Connections that are open, over all threads.
    pub live: usize,
    /// Every thread waits here after its preload, so measuring starts together.
    pub ready: Barrier,
    /// When the run (warm-up first) started.
    pub start: OnceLock<Instant>,
}

/// A connected socket and its number among all open connections.
#[derive(Debug)]
pub struct Assigned {
    /// Position among all open connections: picks its preload keys, seed and rate offset.
    pub slot: usize,
    /// The connected socket.
    pub stream: TcpStream,
}

/// What a thread hands back.
#[derive(Debug)]
pub struct Outcome {
    /// Its counts and latencies.
    pub totals: Totals,
    /// When its last connection finished.
    pub finished: Instant,
}

/// Runs one thread's connections to the end; returns what they counted.
pub fn run_thread(shared: &Shared<'_>, assigned: Vec<Assigned>) -> Outcome {
    let mut totals = Totals::new();
    let driver = Driver::new(shared, assigned);
    if let Err(e) = &driver {
        totals.error(|| format!("client thread cannot start: {e}"));
    }
    let mut driver = driver.ok();
    if let Some(d) = driver.as_mut().filter(|_| shared.args.preload) {
        d.drive(&mut totals, Phase::Preload);
    }
    shared.ready.wait();
    let start = *shared.start.get_or_init(Instant::now);
    if let Some(d) = driver.as_mut() {
        let phase = d.run_phase(start);
        d.drive(&mut totals, phase);
    }
    Outcome {
        totals,
        finished: Instant::now(),
    }
}

/// What the connections are doing.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// SET every key once; nothing recorded.
    Preload,
    /// The run: requests sent before `measure_from` are not recorded; none is sent after
    /// `until`.
    Run {
        measure_from: Instant,
        until: Option<Instant>,
    },
}

/// A connection and where its load stands.
#[derive(Debug)]
struct Client {
    conn: Conn,
    /// Position among all open connections.
    slot: u64,
    open: bool,
    rng: Rng,
    /// Preload: the next key to SET (keys are dealt out to connections by slot).
    next_key: u64,
    /// `--requests`: measured requests this connection still sends.
    budget: u64,
    /// `--rate`: when the next request is due.
    due: Instant,
}

/// One thread's poller and connections.
struct Driver<'a> {
    shared: &'a Shared<'a>,
    poller: Poller,
    clients: Vec<Client>,
    /// `--rate`: time between two requests of one connection.
    interval: Option<Duration>,
    /// When `expire` next looks at the connections.
    next_expiry_check: Instant,
}

impl<'a> Driver<'a> {
    fn new(shared: &'a Shared<'a>, assigned: Vec<Assigned>) -> io::Result<Driver<'a>> {
        let args = shared.args;
        let poller = Poller::new()?;
        let request_len = args.value_size + 64;
        let live = shared.live as u64;
        let clients = assigned
            .into_iter()
            .enumerate()
            .map(|(key, a)| {
                let conn = Conn::new(a.stream, &poller, key, args.pipeline, request_len)?;
                let slot = a.slot as u64;
                let budget = match args.stop {
                    Stop::Requests(n) => n / live + u64::from(slot < n % live),
                    Stop::After(_) => u64::MAX,
                };
                Ok(Client {
                    conn,
                    slot,
                    open: true,
                    rng: Rng::new(args.seed, slot),
                    next_key: slot,
                    budget,
                    due: Instant::now(),
                })
            })
            .collect::<io::Result<_>>()?;
        let interval = args
            .rate
            .map(|rate| Duration::from_secs_f64(shared.live as f64 / rate));
        Ok(Driver {
            shared,
            poller,
            clients,
            interval,
            next_expiry_check: Instant::now(),
        })
    }

    /// The measured phase for a run that starts at `start`; staggers open-loop schedules.
    fn run_phase(&mut self, start: Instant) -> Phase {
        let args = self.shared.args;
        let measure_from = start + args.warmup;
        if let Some(interval) = self.interval {
            let live = self.shared.live as u32;
            for c in &mut self.clients {
                c.due = start + interval * (c.slot as u32) / live;
            }
        }
        let until = match args.stop {
            Stop::After(d) => Some(measure_from + d),
            Stop::Requests(_) => None,
        };
        Phase::Run {
            measure_from,
            until,
        }
    }

    /// Sends, reads and checks until every connection is done with `phase` or has failed.
    fn drive(&mut self, totals: &mut Totals, phase: Phase) {
        let mut events = Events::with_capacity(NonZeroUsize::new(1024).expect("nonzero"));
        for i in 0..self.clients.len() {
            self.pump(i, totals, phase);
        }
        loop {
            let now = Instant::now();
            self.expire(totals, now);
            if self
                .clients
                .iter()
                .all(|c| !c.open || self.finished(c, phase, now))
            {
                return;
            }
            events.clear();
            if let Err(e) = self
                .poller
                .wait(&mut events, Some(self.wait_time(phase, now)))
            {
                totals.error(|| format!("poller wait failed: {e}"));
                return;
            }
            for ev in events.iter() {
                if ev.readable {
                    self.receive(ev.key, totals);
                }
                self.pump(ev.key, totals, phase);
            }
            if self.interval.is_some() {
                for i in 0..self.clients.len() {
                    self.pump(i, totals, phase);
                }
            }
        }
    }

    /// Nothing left to send in `phase`, and nothing in flight.
    fn finished(&self, c: &Client, phase: Phase, now: Instant) -> bool {
        c.conn.is_idle() && !self.may_send(c, phase, now)
    }

    /// Whether `phase` still has requests for this connection (due or not).
    fn may_send(&self, c: &Client, phase: Phase, now: Instant) -> bool {
        match phase {
            Phase::Preload => c.next_key < self.shared.args.keys,
            Phase::Run {
                measure_from,
                until,
            } => {
                let at = if self.interval.is_some() { c.due } else { now };
                until.is_none_or(|until| at < until) && (c.budget > 0 || at < measure_from)
            }
        }
    }

    /// How long the poller may sleep: until the next open-loop request is due, at most a tick.
    fn wait_time(&self, phase: Phase, now: Instant) -> Duration {
        let mut wait = TICK;
        if self.interval.is_some() {
            let pipeline = self.shared.args.pipeline;
            for c in &self.clients {
                if c.open && c.conn.in_flight() < pipeline && self.may_send(c, phase, now) {
                    wait = wait.min(c.due.saturating_duration_since(now));
                }
            }
        }
        wait
    }

    /// Reads connection `i` and retires every request whose reply is complete.
    fn receive(&mut self, i: usize, totals: &mut Totals) {
        let codec = self.shared.codec;
        let c = &mut self.clients[i];
        if !c.open {
            return;
        }
        let outcome = match c.conn.read() {
            Ok(outcome) => outcome,
            Err(e) => return self.fail(i, totals, format!("read failed: {e}")),
        };
        let now = Instant::now();
        if outcome == ReadOutcome::Data {
            c.conn.last_progress = now;
        }
        while let Some((pending, bytes)) = c.conn.front() {
            match codec.parse(&pending.req, bytes) {
                Ok(None) => break,
                Ok(Some((len, reply))) => {
                    let p = c.conn.pop(len);
                    if p.measured {
                        totals.record(reply, now.saturating_duration_since(p.sent));
                    }
                }
                Err(Fault::Wrong(len, msg)) => {
                    c.conn.pop(len);
                    totals.error(|| format!("connection {}: {msg}", c.slot));
                }
                Err(Fault::Broken(msg)) => return self.fail(i, totals, msg),
            }
        }
        let c = &self.clients[i];
        if c.conn.in_flight() == 0 && c.conn.unconsumed() > 0 {
            return self.fail(i, totals, "reply bytes with no request in flight".into());
        }
        if outcome == ReadOutcome::Closed {
            self.fail(i, totals, "closed by the server".into());
        }
    }

    /// Sends connection `i` every request `phase` allows now, up to the pipeline depth.
    fn pump(&mut self, i: usize, totals: &mut Totals, phase: Phase) {
        let now = Instant::now();
        let args = self.shared.args;
        while self.clients[i].open
            && self.clients[i].conn.in_flight() < args.pipeline
            && self.may_send(&self.clients[i], phase, now)
        {
            let interval = self.interval;
            let c = &mut self.clients[i];
            let (op, key, sent, measured) = match phase {
                Phase::Preload => {
                    let key = c.next_key;
                    c.next_key += self.shared.live as u64;
                    (Op::Set, key, now, false)
                }
                Phase::Run { measure_from, .. } => {
                    let sent = match interval {
                        Some(_) if c.due > now => break,
                        Some(interval) => {
                            let scheduled = c.due;
                            c.due += interval;
                            scheduled
                        }
                        None => now,
                    };
                    let measured = sent >= measure_from;
                    if measured {
                        c.budget -= 1;
                    }
                    let (op, key) = next_request(&mut c.rng, args);
                    (op, key, sent, measured)
                }
            };
            c.conn.push(self.shared.codec, op, key, sent, measured);
        }
        let c = &mut self.clients[i];
        if c.open
            && let Err(e) = c.conn.flush(&self.poller)
        {
            self.fail(i, totals, format!("write failed: {e}"));
        }
    }

    /// Fails every connection whose requests saw no reply byte for `--timeout`.
    fn expire(&mut self, totals: &mut Totals, now: Instant) {
        if now < self.next_expiry_check {
            return;
        }
        self.next_expiry_check = now + TICK;
        let timeout = self.shared.args.timeout;
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            if c.open
                && c.conn.in_flight() > 0
                && now.saturating_duration_since(c.conn.last_progress) > timeout
            {
                let msg = format!("no reply for {timeout:?}");
                self.fail(i, totals, msg);
            }
        }
    }

    /// Counts an error on connection `i` and closes it; its requests in flight are lost.
    fn fail(&mut self, i: usize, totals: &mut Totals, msg: String) {
        let c = &mut self.clients[i];
        let lost = c.conn.in_flight();
        totals.error(|| format!("connection {}: {msg} ({lost} requests lost)", c.slot));
        c.conn.close(&self.poller);
        c.open = false;
    }
}

/// The next request of a connection: an echo for `length`, else GET or SET by `--ratio`, of a
/// random key.
fn next_request(rng: &mut Rng, args: &Args) -> (Op, u64) {
    let key = rng.next() % args.keys;
    if args.protocol == Protocol::Length {
        return (Op::Echo, key);
    }
    let weights = u64::from(args.get_weight) + u64::from(args.set_weight);
    let op = if rng.next() % weights < u64::from(args.get_weight) {
        Op::Get
    } else {
        Op::Set
    };
    (op, key)
}
