#!/usr/bin/env bash
# A/B of two ccsd builds on the same fixed load, alternating A B A B so the machine's drift hits
# both alike (docs/benchmarks.md, "Two commits side by side"). Each run starts that build's ccsd
# (2 workers) and echo MCP, sends 400,000 length-framed requests over 16 connections, 8 in flight
# each, with the current build's loadgen, then stops both; /usr/bin/time measures the whole run.
# Prints per build the medians of wall and CPU seconds (ccsd + MCP + loadgen), throughput and
# latency, and the A/B ratios of the medians.
#
# Usage: benches/ab.sh A_TARGET_DIR B_TARGET_DIR [ROUNDS]
#   e.g. git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release --bins --examples)
#        cargo build --release --bins --examples
#        benches/ab.sh target/release /tmp/old/target/release 8
set -euo pipefail
cd "$(dirname "$0")/.."
A=$(realpath "$1")
B=$(realpath "$2")
ROUNDS=${3:-8}
LOADGEN=$(realpath target/release/examples/loadgen)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; rm -f /dev/shm/ccsd-ab-$$-*' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# one_run DIR LABEL: appends "wall cpu throughput p50 p99" to $WORK/LABEL
one_run() {
    local dir=$1 label=$2 port name cfg
    port=$(free_port)
    name="ccsd-ab-$$-$label"
    cfg="$WORK/$label.toml"
    printf '[broker]\nworkers = 2\n[queues]\ndir = "/dev/shm"\nname = "%s"\n[admin]\nenabled = false\n[[listen]]\naddr = "127.0.0.1:%s"\n' \
        "$name" "$port" >"$cfg"
    /usr/bin/time -f '%e %U %S' -o "$WORK/time" bash -c '
        "$1/ccsd" --config "$2" 2>/dev/null & c=$!
        until (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null; do
            kill -0 $c 2>/dev/null || exit 1
        done
        "$1/examples/echo_mcp" --config "$2" 2>/dev/null & m=$!
        "$4" --addr "127.0.0.1:$3" --protocol length --connections 16 --pipeline 8 \
            --requests 400000 --json >"$5"
        kill $c $m
        wait $c $m || true' _ "$dir" "$cfg" "$port" "$LOADGEN" "$WORK/load.json"
    rm -f /dev/shm/"$name".*
    read -r wall user sys <"$WORK/time"
    python3 - "$WORK/load.json" "$wall" "$user" "$sys" >>"$WORK/$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
wall, cpu = float(sys.argv[2]), float(sys.argv[3]) + float(sys.argv[4])
assert r["errors"] == 0, r["first_errors"]
print(wall, cpu, r["throughput"], r["latency_us"]["p50"], r["latency_us"]["p99"])
PY
}

one_run "$A" warmup-a
one_run "$B" warmup-b
for _ in $(seq "$ROUNDS"); do
    one_run "$A" a
    one_run "$B" b
done
python3 - "$WORK/a" "$WORK/b" "$A" "$B" "$ROUNDS" <<'PY'
import statistics, sys
names = ["wall s", "cpu s", "req/s", "p50 us", "p99 us"]
cols = []
for path in sys.argv[1:3]:
    rows = [list(map(float, l.split())) for l in open(path)]
    cols.append([statistics.median(r[i] for r in rows) for i in range(len(names))])
print(f"A = {sys.argv[3]}\nB = {sys.argv[4]}\n{sys.argv[5]} rounds, medians:")
print(f"{'':8}{'A':>12}{'B':>12}{'A/B':>8}")
for n, a, b in zip(names, *cols):
    print(f"{n:8}{a:12.3f}{b:12.3f}{a / b:8.3f}")
PY
