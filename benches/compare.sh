#!/usr/bin/env bash
# ccsd + kv_mcp against memcached, side by side in one run (docs/benchmarks.md).
# Installs memcached if missing, builds in release mode, runs examples/bench_compare.
# Usage: benches/compare.sh [--duration SECS] [--rounds N]   (defaults: 10 s, 3 rounds: ~2 min)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v memcached >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq memcached
fi
cargo build --release --bins --examples
exec target/release/examples/bench_compare "$@"
