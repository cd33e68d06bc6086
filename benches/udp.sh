#!/usr/bin/env bash
# UDP against TCP through the same ccsd (2 workers) and echo MCP (docs/benchmarks.md, "UDP and
# TCP side by side"): round trips of 68-byte requests (a 68-byte datagram; a 4-byte length and
# 64 bytes), one request in flight per socket or
# connection, 1 and 16 clients, alternating UDP and TCP for ROUNDS rounds. Prints one JSON line
# per run (examples/udp_load and examples/loadgen --json), prefixed with what ran.
# Usage: benches/udp.sh [ROUNDS] [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
REQUESTS=${2:-200000}
cargo build -q --release --bins --examples
WORK=$(mktemp -d)
NAME="ccsd-udpbench-$$"
trap 'kill $CCSD $MCP 2>/dev/null; rm -rf "$WORK"; rm -f /dev/shm/$NAME.*' EXIT
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
TCP=$(free_port)
UDP=$(free_port)
cat >"$WORK/ccsd.toml" <<EOF
[broker]
workers = 2
[queues]
dir = "/dev/shm"
name = "$NAME"
[admin]
enabled = false
[[listen]]
addr = "127.0.0.1:$TCP"
[[listen]]
addr = "127.0.0.1:$UDP"
proto = "udp"
EOF
target/release/ccsd --config "$WORK/ccsd.toml" 2>"$WORK/ccsd.log" &
CCSD=$!
until (exec 3<>"/dev/tcp/127.0.0.1/$TCP") 2>/dev/null; do
    kill -0 $CCSD 2>/dev/null || { cat "$WORK/ccsd.log"; exit 1; }
done
target/release/examples/echo_mcp --config "$WORK/ccsd.toml" 2>"$WORK/mcp.log" &
MCP=$!
for _ in $(seq "$ROUNDS"); do
    for clients in 1 16; do
        echo -n "udp $clients "
        target/release/examples/udp_load --addr "127.0.0.1:$UDP" --sockets "$clients" \
            --size 68 --requests "$REQUESTS" --json
        echo -n "tcp $clients "
        target/release/examples/loadgen --addr "127.0.0.1:$TCP" --protocol length \
            --connections "$clients" --pipeline 1 --value-size 64 --requests "$REQUESTS" --json
    done
done
