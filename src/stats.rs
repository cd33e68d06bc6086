//! Counters: plain per-thread numbers, collected by message, never shared under a lock.
//!
//! Each thread owns its counter struct and bumps fields directly. Workers send a copy to the
//! main thread in a `NotifyStat` message at every stats interval; the stats reporter adds them up.

pub mod histogram;

use histogram::Histogram;

/// Declares a counter struct of `u64` fields with a visitor over `(name, value)` pairs.
macro_rules! counters {
    ($(#[$meta:meta])* $name:ident { $($(#[doc = $fdoc:literal])* $field:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            $($(#[doc = $fdoc])* pub $field: u64,)*
        }

        impl $name {
            /// Calls `f` with every counter's name and value, in declaration order.
            pub fn for_each(&self, mut f: impl FnMut(&'static str, u64)) {
                $(f(stringify!($field), self.$field);)*
            }

            /// Calls `f` with every counter's name, its doc comment (the `# HELP` text of
            /// `/metrics`, lines joined, leading space included) and value, in declaration order.
            pub fn for_each_described(&self, mut f: impl FnMut(&'static str, &'static str, u64)) {
                $(f(stringify!($field), concat!($($fdoc),*), self.$field);)*
            }

            /// Adds every counter of `other` to this one.
            pub fn add(&mut self, other: &$name) {
                $(self.$field += other.$field;)*
            }
        }
    };
}

counters! {
    /// What one worker did since it started.
    WorkerCounters {
        /// Connections handed to this worker by the acceptor.
        connections_opened,
        /// Connections open now (a gauge).
        connections_open,
        /// Closed because the client closed its side.
        closed_peer,
        /// Closed on a socket error.
        closed_error,
        /// Closed because the client broke the framing protocol (malformed packet).
        closed_protocol,
        /// Closed because a packet was longer than the listener's `max_packet`.
        closed_oversize,
        /// Closed at MCP's request.
        closed_by_mcp,
        /// Closed because the request lane was full and `queues.on_full = "close"`.
        closed_queue_full,
        /// Closed because the worker's connection table was full.
        closed_table_full,
        /// Closed because ccsd was stopping.
        closed_shutdown,
        /// Closed after `limits.idle_timeout` without a read or a write.
        closed_idle,
        /// Closed because its unfinished packet began more than `limits.packet_timeout` ago.
        closed_packet_timeout,
        /// Closed as one of the largest holders while ccsd held more than `limits.max_memory`.
        closed_max_memory,
        /// Connections on a `proxy_protocol` listener whose PROXY header was accepted.
        proxy_headers_accepted,
        /// Closed on a `proxy_protocol` listener: the first bytes were not a PROXY header of an
        /// accepted version.
        closed_proxy_missing,
        /// Closed on a `proxy_protocol` listener: a PROXY header that breaks the specification.
        closed_proxy_malformed,
        /// Closed on a `proxy_protocol` listener: the source is not in `proxy_from`.
        closed_proxy_untrusted,
        /// Closed on a `proxy_protocol` listener: no whole PROXY header within
        /// `limits.packet_timeout`.
        closed_proxy_timeout,
        /// Times a connection stopped being read because ccsd held more than `limits.max_memory`.
        memory_pauses,
        /// Bytes its connections' receive and send buffers hold now (their capacity; a gauge).
        buffered_bytes,
        /// Closed because its unwritten replies exceeded `limits.max_send_buffer`.
        closed_slow_client,
        /// Closed for sending more than `limits.max_requests_per_second` packets in a second.
        closed_rate_limited,
        /// Closed for a packet that took its listener over `listen[i].max_requests_per_second`.
        closed_listener_rate_limited,
        /// Times a client shut down its side with requests unanswered and the connection was
        /// kept to write their replies (its close then counts in `closed_peer`).
        half_closes,
        /// Of those, the ones closed at `limits.half_close_timeout` with replies missing.
        half_close_timeouts,
        /// Complete packets written to the request lane.
        packets_in,
        /// Bytes of those packets.
        bytes_in,
        /// Interim responses a framer asked for and ccsd sent before the packet was complete
        /// (the `http` framing's `100 Continue`, `listen[i].http_continue`).
        interim_responses_sent,
        /// Interim responses not sent because the connection still waited for a reply to an
        /// earlier request (the interim response would have overtaken it).
        interim_responses_skipped,
        /// Packets dropped because the request lane was full (`queues.on_full = "drop"`).
        dropped_queue_full,
        /// Packets dropped because MCP was down and `mcp.when_down = "refuse"`.
        dropped_mcp_down,
        /// Times a connection stopped being read because the request lane was full
        /// (`queues.on_full = "backpressure"`).
        backpressure_pauses,
        /// Disconnect notices that could not be written because the request lane was full.
        dropped_disconnect_notices,
        /// Connect notices (`mcp.connect_events`) lost to a full request lane.
        dropped_connect_notices,
        /// Broadcast payloads (custom record or custom actor) queued to a connection.
        broadcast_writes,
        /// Replies written in full to their client.
        replies_out,
        /// Bytes written to clients.
        bytes_out,
        /// Replies or close requests for a flow that is closed or belongs to another start.
        dropped_stale_flow,
        /// Records of a kind a worker does not act on.
        dropped_unexpected_kind,
        /// Times the request lane was published (one per loop turn with new records).
        lane_publishes,
        /// Times publishing woke a sleeping MCP through the FIFO.
        lane_wakeups,
        /// Times the worker continued writing its request lane at MCP's head because that head
        /// could not follow its tail (MCP or another writer broke the lane protocol).
        lane_resyncs,
        /// Connections this worker handed over to another worker (migration).
        migrations_out,
        /// Connections this worker adopted from another worker (migration).
        migrations_in,
        /// Of those, the ones that had to wait for MCP to read their earlier packets from the
        /// old worker's lane before they were read here.
        migration_fence_waits,
        /// Migrations refused because the connection had closed (or never existed).
        migrations_refused_closed,
        /// Migrations refused because the connection is pinned and the move was not forced.
        migrations_refused_pinned,
        /// Migrations refused because ccsd was stopping.
        migrations_refused_stopping,
        /// Migrations refused because the new worker is not in the listener's `workers` and the
        /// move was not forced.
        migrations_refused_worker_set,
        /// Connections that left their worker but could not be adopted by the new one (no free
        /// slot, or its poller refused the socket): closed, and counted in their `closed_*`.
        migrations_failed,
    }
}

counters! {
    /// What the acceptor did since start.
    AcceptorCounters {
        /// Connections accepted.
        accepted,
        /// Accepted connections closed at once because the chosen worker's mailbox was full.
        refused_mailbox_full,
        /// Accepted connections closed at once because `broker.max_connections` or the
        /// listener's `max_connections` was reached.
        refused_max_connections,
        /// `accept` failures other than "would block" and running out of descriptors.
        accept_errors,
        /// Times accepting was paused because `accept` found no file descriptor (EMFILE, ENFILE)
        /// or socket memory (ENOBUFS, ENOMEM) left: the listeners leave the poller for a pause
        /// that doubles from 10 ms up to 1 s.
        accept_pauses,
        /// Accepted connections closed at once because ccsd held more than `limits.max_memory`.
        refused_max_memory,
        /// Overload notices (`mcp.overload_notices`) written to the main thread's lane.
        overload_notices,
        /// Overload notices lost to a full main-thread lane.
        dropped_overload_notices,
    }
}

counters! {
    /// What the MCP bridge did since start.
    BridgeCounters {
        /// Records read from the response lane.
        records_in,
        /// Records put into a worker's batch.
        records_routed,
        /// Records whose flow belongs to an earlier ccsd start.
        dropped_stale_epoch,
        /// Records naming a worker that does not exist.
        dropped_bad_worker,
        /// Records with a malformed header (bad magic, version, kind or length).
        dropped_malformed,
        /// Records of a kind ccsd does not take from MCP.
        dropped_unexpected_kind,
        /// Replies (records) that waited in the bridge because their worker could not take them
        /// yet (mailbox full, or too many reply bytes in flight to it).
        replies_held,
        /// Bytes of replies the bridge holds now (a gauge).
        held_bytes,
        /// Times the bridge stopped reading the response lane because the replies it held
        /// reached its limit (push-back on MCP).
        lane_pauses,
        /// DATA replies older than `mcp.reply_max_age` when read.
        dropped_expired,
        /// Times the response lane held a corrupt frame and its published contents were discarded.
        lane_corruptions,
        /// Bytes discarded with those corrupt frames.
        lane_corrupt_bytes,
        /// Times MCP published a response-lane tail behind ccsd's head or more than the capacity
        /// ahead of it (once per value): nothing is read, nothing is delivered twice.
        lane_bad_tails,
        /// Custom records from MCP, handed to the main thread's actors.
        custom_records,
        /// Records for flows of the main thread's lane (UDP peers), handed to the UDP actor.
        records_udp,
        /// Replies that waited in the bridge because their connection was moving to another
        /// worker (delivered right after it arrived).
        replies_held_moving,
        /// Connections living on a worker other than the one they were born on: the bridge's
        /// routes (a gauge).
        moved_flows,
    }
}

counters! {
    /// What the main thread did with control requests (custom records from MCP, custom actors).
    ControlCounters {
        /// Custom records with a reserved `code` this build does not know (handed to actors only).
        custom_unknown_op,
        /// Application custom records that no custom actor was there to receive.
        custom_unhandled,
        /// Migrate, pin and unpin custom records that could not be carried out at once (a worker
        /// that does not exist, a flow moving already or of no worker of this start, a payload
        /// that names no worker).
        custom_refused,
        /// Listen-port commands (close, broadcast) delivered to a worker.
        port_commands,
        /// Listen-port commands dropped: a worker's mailbox stayed full and the retry queue was full.
        dropped_port_commands,
        /// Connection migrations begun (admin `migrate`, the rebalancer, MCP's custom record).
        migrations_started,
        /// Of those, the ones whose connection is served by its new worker now.
        migrations_done,
        /// Migrations refused before they began: the worker does not exist or is outside the
        /// listener's `workers`, the flow is moving already, is on that worker already, or names
        /// no worker.
        migrations_refused,
        /// Migrations that began and did not complete: the connection had closed, was pinned,
        /// ccsd was stopping, or its new worker could not adopt it (the workers' `migrations_*`
        /// counters say which).
        migrations_failed,
        /// Rebalancing rounds that planned at least one migration (automatic, or admin `rebalance`).
        rebalance_rounds,
        /// Migrations the rebalancer started (also counted in `migrations_started`).
        rebalance_migrations,
        /// Pin and unpin requests carried out (admin `pin`/`unpin`, MCP's custom record).
        pin_requests,
        /// Hot restarts refused before anything was frozen: the new process's hello did not
        /// come or did not decode, it names other queues or another lane capacity, this ccsd is
        /// stopping, or connections were moving between workers.
        takeovers_refused,
        /// Hot restarts that failed after this ccsd froze (the new process died, hung past the
        /// step timeout, gave up, or a worker could not copy its connections): this ccsd thawed
        /// and serves on with everything it had.
        takeovers_rolled_back,
    }
}

counters! {
    /// What the UDP actor did since start, over every UDP listener.
    UdpCounters {
        /// Datagrams written to the main thread's request lane.
        datagrams_in,
        /// Bytes of those datagrams.
        bytes_in,
        /// Datagrams larger than their listener's `max_packet`, dropped.
        dropped_truncated,
        /// Datagrams dropped because the main thread's request lane was full.
        dropped_queue_full,
        /// Datagrams over their listener's `max_requests_per_second`, dropped.
        dropped_rate_limited,
        /// Datagrams dropped while MCP was down with `mcp.when_down = "refuse"`.
        dropped_mcp_down,
        /// `recvfrom` failures other than "would block".
        recv_errors,
        /// Replies sent to their peer.
        datagrams_out,
        /// Bytes of those replies.
        bytes_out,
        /// Replies that found the socket unable to take them and waited in its send queue.
        send_queued,
        /// Replies dropped because the send queue was full (`udp_send_queue`).
        dropped_send_queue_full,
        /// Replies dropped after waiting `udp_send_timeout` in the send queue.
        dropped_send_expired,
        /// Replies dropped because `sendto` failed (other than "would block").
        send_errors,
        /// Replies whose flow names no UDP listener, or whose `listen_port` is not its port.
        dropped_bad_listener,
        /// CLOSE records for a UDP flow (there is no connection to close), dropped.
        dropped_close,
    }
}

counters! {
    /// What the main thread's request lane did since start (its records are counted by the
    /// actors that write them: the UDP actor, the acceptor's overload notices).
    MainLaneCounters {
        /// Times the main lane was published (one per loop turn with new records).
        lane_publishes,
        /// Times publishing woke a sleeping MCP through the FIFO.
        lane_wakeups,
    }
}

counters! {
    /// What the MCP watch saw since start.
    McpWatchCounters {
        /// 1 while MCP is attached to every request lane and reading it, else 0 (a gauge).
        mcp_alive,
        /// Times MCP went from alive to down (process gone, or a request lane stalled).
        mcp_down_events,
        /// Checks that found another process attached to a lane as MCP, after the previous one
        /// exited or gave up the MCP lock (an MCP restart).
        mcp_consumer_changes,
        /// Checks that found a second MCP on the lanes: a process attached while the previous
        /// consumer still runs, without holding the MCP lock.
        mcp_consumer_contention,
    }
}

counters! {
    /// What the admin port (and the admin Unix socket) did since start.
    AdminCounters {
        /// Admin clients accepted (TCP and Unix socket).
        clients_accepted,
        /// Clients closed for not authenticating (with a token) or not sending a command
        /// (without) within `admin.login_timeout`.
        closed_login_timeout,
        /// Clients closed after `admin.idle_timeout` without sending anything.
        closed_idle,
        /// Idle clients closed to make room for a new client when every slot was taken.
        evicted_idle,
        /// New clients closed at once because every slot held a client being served.
        refused_busy,
        /// `auth` lines (or HTTP requests) with a wrong or missing token.
        auth_failures,
        /// `close`, `loglevel`, `reload` or `shutdown` refused on the TCP port because
        /// `admin.unix` is set and `admin.token` is not.
        denied_commands,
        /// Times a client got in only thanks to the reserve descriptor (out of descriptors).
        reserve_used,
        /// Times the admin listeners were paused because no descriptor was left.
        accept_pauses,
        /// 1 once the node drains (admin `drain`, or a graceful stop began): `health` answers
        /// `DOWN draining` (a gauge).
        draining,
    }
}

counters! {
    /// What the process did on signals since start.
    ProcessCounters {
        /// Times the log file was reopened on SIGUSR1.
        log_reopens,
        /// Times it could not be (lines kept going to the old file).
        log_reopen_errors,
        /// Times SIGUSR2 (reserved for hot restart) was received and ignored; several arriving
        /// before the main loop looks count once.
        ignored_signals,
    }
}

/// The main thread's counters at report time: every main-thread actor's counters and gauges,
/// as the stats reporter writes them and a custom actor receives them
/// ([`crate::actor::StatsSnapshot`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct MainCounters {
    /// The acceptor's counters.
    pub acceptor: AcceptorCounters,
    /// The UDP actor's counters.
    pub udp: UdpCounters,
    /// The MCP bridge's counters.
    pub bridge: BridgeCounters,
    /// The MCP watch's gauge and counter.
    pub mcp_watch: McpWatchCounters,
    /// Control requests: custom records and listen-port commands.
    pub control: ControlCounters,
    /// What the process did on signals.
    pub process: ProcessCounters,
    /// The admin port's clients (all zero without an admin port).
    pub admin: AdminCounters,
    /// The main thread's request lane.
    pub main_lane: MainLaneCounters,
    /// Bytes in the response lane not read yet.
    pub response_lane_used_bytes: u64,
    /// Bytes in the main thread's request lane not read by MCP yet.
    pub main_lane_used_bytes: u64,
    /// Bytes each lane holds (`queues.capacity`), for the lanes' fill in `/metrics`.
    pub lane_capacity_bytes: u64,
    /// How long replies waited in the response lane (the MCP bridge's histogram).
    pub response_lane_wait: Histogram,
    /// Bytes the connections' buffers and the replies on their way to the workers hold
    /// (`limits.max_memory`'s total, as last published by each holder).
    pub memory_held_bytes: u64,
    /// `limits.max_memory` in bytes; 0: no ceiling.
    pub max_memory_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sums_every_field_and_for_each_names_them() {
        let mut a = AcceptorCounters {
            accepted: 1,
            refused_mailbox_full: 2,
            refused_max_connections: 4,
            accept_errors: 3,
            ..AcceptorCounters::default()
        };
        a.add(&a.clone());
        let mut seen = Vec::new();
        a.for_each(|k, v| seen.push((k, v)));
        assert_eq!(
            seen,
            [
                ("accepted", 2),
                ("refused_mailbox_full", 4),
                ("refused_max_connections", 8),
                ("accept_errors", 6),
                ("accept_pauses", 0),
                ("refused_max_memory", 0),
                ("overload_notices", 0),
                ("dropped_overload_notices", 0)
            ]
        );
    }
}
