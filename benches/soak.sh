#!/usr/bin/env bash
# The soak benchmark (docs/benchmarks.md): ccsd + echo MCP for 10 minutes under 32 loaded and
# 2,000 idle connections, clients closing mid-packet; fails on any lost or misrouted reply or on
# memory growth. Builds in release mode first. With --takeover-every SECS, ccsd is hot-restarted
# (`ccsd --takeover`) every SECS of the load, e.g. `benches/soak.sh --takeover-every 120`.
# Usage: benches/soak.sh [--duration SECS] [--takeover-every SECS] [soak options; --help lists them]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins --examples
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with local changes)'), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/examples/soak "$@"
