#!/usr/bin/env bash
# The echo MCP written in Rust (examples/echo_mcp), in C against libccsd_mcp
# (examples/c/echo_mcp.c) [and in Python, when ccsd_mcp.py exists], side by side on the same
# load, alternating MCPs within each round so the machine's drift hits all alike
# (docs/benchmarks.md, "The echo MCP in Rust, C and Python").
# Each run starts a release ccsd (2 workers) and one echo MCP, then loadgen twice:
#   throughput: 16 connections, 8 requests in flight each, 200,000 64-byte requests;
#   latency:    1 connection, 1 request in flight, 20,000 requests (round-trip p50 and p99).
# Prints the medians per MCP and their ratio to the Rust MCP.
#
# Usage: cargo build --release --bins --examples && benches/mcp_langs.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
REL=$(realpath target/release)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; rm -f /dev/shm/ccsd-langs-$$-*' EXIT
ccsd-mcp/install.sh "$WORK/prefix" release >/dev/null
export PKG_CONFIG_PATH="$WORK/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 -O2 -o "$WORK/c_echo_mcp" examples/c/echo_mcp.c $(pkg-config --cflags --libs ccsd_mcp) \
    -Wl,-rpath,"$WORK/prefix/lib"
MCPS=(rust c)
if [ -f python/ccsd_mcp.py ]; then MCPS+=(python); fi

mcp_cmd() { # mcp_cmd NAME CONFIG
    case $1 in
    rust) echo "$REL/examples/echo_mcp --config $2" ;;
    c) echo "$WORK/c_echo_mcp $2" ;;
    python) echo "env LIBCCSD_MCP_PATH=$WORK/prefix/lib/libccsd_mcp.so PYTHONPATH=$PWD/python python3 $PWD/python/examples/echo_mcp.py $2" ;;
    esac
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# one_run MCP: appends "throughput p50 p99" to $WORK/MCP
one_run() {
    local mcp=$1 port name cfg c m
    port=$(free_port)
    name="ccsd-langs-$$-$mcp"
    cfg="$WORK/$mcp.toml"
    printf '[broker]\nworkers = 2\n[queues]\ndir = "/dev/shm"\nname = "%s"\n[admin]\nenabled = false\n[log]\nlevel = "warn"\n[[listen]]\naddr = "127.0.0.1:%s"\n' \
        "$name" "$port" >"$cfg"
    "$REL/ccsd" --config "$cfg" 2>/dev/null &
    c=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 $c 2>/dev/null || { echo "ccsd did not start" >&2; exit 1; }
    done
    # shellcheck disable=SC2046
    $(mcp_cmd "$mcp" "$cfg") 2>/dev/null &
    m=$!
    "$REL/examples/loadgen" --addr "127.0.0.1:$port" --protocol length --connections 16 \
        --pipeline 8 --value-size 64 --requests 200000 --json >"$WORK/tput.json"
    "$REL/examples/loadgen" --addr "127.0.0.1:$port" --protocol length --connections 1 \
        --value-size 64 --requests 20000 --json >"$WORK/lat.json"
    kill $c $m
    wait $c $m 2>/dev/null || true
    rm -f /dev/shm/"$name".*
    python3 - "$WORK/tput.json" "$WORK/lat.json" >>"$WORK/$mcp" <<'PY'
import json, sys
t, l = (json.load(open(p)) for p in sys.argv[1:3])
assert t["errors"] == 0 and l["errors"] == 0, (t["first_errors"], l["first_errors"])
print(t["throughput"], l["latency_us"]["p50"], l["latency_us"]["p99"])
PY
}

for mcp in "${MCPS[@]}"; do one_run "$mcp"; : >"$WORK/$mcp"; done # warm-up
for _ in $(seq "$ROUNDS"); do
    for mcp in "${MCPS[@]}"; do one_run "$mcp"; done
done
python3 - "$WORK" "$ROUNDS" "${MCPS[@]}" <<'PY'
import statistics, sys
work, rounds, mcps = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = {m: [list(map(float, l.split())) for l in open(f"{work}/{m}")] for m in mcps}
med = {m: [statistics.median(r[i] for r in rows) for i in range(3)] for m, rows in runs.items()}
print(f"{rounds} rounds; median [min-max] of the runs, and the ratio of the medians to Rust's")
print(f"{'MCP':8}{'requests/s':>32}{'p50 us':>22}{'p99 us':>24}")
for m in mcps:
    cells = []
    for i, fmt in enumerate(["{:,.0f}", "{:.0f}", "{:.0f}"]):
        vals = [r[i] for r in runs[m]]
        cells.append(f"{fmt.format(med[m][i])} [{fmt.format(min(vals))}-{fmt.format(max(vals))}] ({med[m][i] / med['rust'][i]:.2f})")
    print(f"{m:8}{cells[0]:>32}{cells[1]:>22}{cells[2]:>24}")
PY
