#!/usr/bin/env bash
# Hot restart's stall (docs/benchmarks.md, "Hot restart: the stall"): the longest time any client
# waits across one `ccsd --takeover`, at 1,000, 5,000 and as many connections as the open-file
# limit and the local port range allow, 3 runs each, alternating; 200 connections keep doing round
# trips, every other one sends a probe at the freeze; fails if any connection is lost or answered
# wrongly. Builds in release mode; about 30 s after the build.
# Usage: benches/takeover.sh [takeover_bench options]   (target/release/examples/takeover_bench --help)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins --examples
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with local changes)'), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), open files $(ulimit -Sn)/$(ulimit -Hn)"
target/release/examples/takeover_bench "$@"
