//! The broker through the real `ccsd` binary: clients on real sockets, MCP as an example process
//! or as the test itself on the real lanes. One module per behaviour; `common` is the shared
//! harness (unique queue names, port 0, the stats file, the example binaries built once).

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod connection_limits;
mod custom_mcp;
mod dispatch;
mod drain;
mod dual_stack;
mod echo_many_clients;
mod fd_limit;
mod flow_ids;
mod flow_lifecycle;
mod half_close;
mod hot_restart;
mod hot_restart_rollback;
mod hot_restart_upgrade;
mod idle_timeout;
mod listen_options;
mod listener_rate_limit;
mod lock_file_safety;
mod log_outputs;
mod log_reopen;
mod main_lane;
mod max_memory;
mod max_packet;
mod mcp_down_refuse;
mod mcp_garbage;
mod mcp_killed_under_load;
mod mcp_single_consumer;
mod mcp_watch;
mod migration;
mod non_reading_clients;
mod packet_timeout;
mod pid_file;
mod prometheus;
mod proxy_protocol;
mod queue_full;
mod rate_limit;
mod reply_expiry;
mod reply_latency;
mod restart;
mod sd_notify;
mod shm_space;
mod shutdown;
mod sighup_reload;
mod slow_client;
mod socket_activation;
mod stats_summary;
mod systemd_units;
mod udp;
mod worker_sets;
