#!/usr/bin/env bash
# Moving connections between workers (docs/benchmarks.md, "Moving connections between workers"):
# the client-side gap of one `migrate` (one client, 1 and then 16 requests in flight, 300 moves
# each, alternating with phases without moves), then a skewed load (4 pipelining clients all on
# worker 0) with broker.rebalance off and on, alternating over 3 rounds. Builds in release mode;
# about a minute after the build.
# Usage: benches/migrate.sh [migrate_bench options]   (target/release/examples/migrate_bench --help)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins --examples
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with local changes)'), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/examples/migrate_bench "$@"
