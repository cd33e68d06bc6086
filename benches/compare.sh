#!/usr/bin/env bash
# ccsd + kv_mcp against memcached, side by side in one run, then the shared-memory lane against a
# Unix socketpair (docs/benchmarks.md). Installs memcached if missing, builds in release mode.
# Usage: benches/compare.sh [--duration SECS] [--rounds N]   (defaults: 10 s, 3 rounds: ~3 min)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v memcached >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq memcached
fi
cargo build --release --bins --examples
target/release/examples/bench_compare "$@"
echo
target/release/examples/lane_bench
