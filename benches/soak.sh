#!/usr/bin/env bash
# The soak benchmark (docs/benchmarks.md): ccsd + echo MCP for 10 minutes under 32 loaded and
# 2,000 idle connections, clients closing mid-packet; fails on any lost or misrouted reply or on
# memory growth. Builds in release mode first.
# Usage: benches/soak.sh [--duration SECS] [soak options; --help lists them]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins --examples
target/release/examples/soak "$@"
