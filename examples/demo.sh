#!/usr/bin/env bash
# Starts ccsd with one of the example MCPs and shows how to talk to it with stock clients.
#   examples/demo.sh echo   length-framed echo on 7300 (the same as `ccsd --demo`)
#   examples/demo.sh kv     memcached protocol on 11311, Redis protocol on 6380 (examples/kv_mcp)
#   examples/demo.sh http   HTTP/1.1 on 8080 (examples/http_mcp)
# Ctrl-C stops both processes. The binaries are found in cargo's target directory (so
# CARGO_TARGET_DIR is honoured); each demo's admin port is picked by the kernel (printed below),
# so demos of different kinds run side by side. It exits 1 with one line saying why when ccsd or
# the MCP does not start.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-echo}"
case "$which" in
    echo) config=settings/default.toml; mcp=echo_mcp
          try="exec 3<>/dev/tcp/127.0.0.1/7300; printf '\\0\\0\\0\\5hello' >&3; head -c 9 <&3 | od -c" ;;
    kv)   config=settings/kv.toml; mcp=kv_mcp
          try="redis-cli -p 6380 SET greeting hello; memccat --servers=127.0.0.1:11311 greeting" ;;
    http) config=settings/http.toml; mcp=http_mcp
          try="curl -s http://127.0.0.1:8080/; curl -s --data-binary 'echo me' http://127.0.0.1:8080/" ;;
    -h|--help) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "usage: $0 echo|kv|http" >&2; exit 2 ;;
esac
fail() { echo "demo.sh: $*" >&2; exit 1; }

cargo build --release --bin ccsd --example "$mcp"
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || fail "cannot find cargo's target directory (cargo metadata)"
bin="$target_dir/release"

log=$(mktemp "${TMPDIR:-/tmp}/ccsd-demo.XXXXXX")
ccsd_pid=""
mcp_pid=""
trap 'kill $mcp_pid $ccsd_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -f "$log"' EXIT
trap 'exit 130' INT TERM

# started: true once "$1" (a pid) is alive and "$2" (a command) succeeds, within 10 s;
# otherwise "$3" (a name) failed to start and the script ends with its exit status.
started() {
    local pid=$1 ready=$2 what=$3 code
    for _ in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            code=0; wait "$pid" || code=$?
            fail "$what failed to start (exit $code); its messages are above"
        fi
        if eval "$ready"; then return 0; fi
        sleep 0.1
    done
    fail "$what did not become ready within 10 s"
}

# ccsd logs to stderr (shown) and a copy goes to $log, where its admin address is read.
CCSD_ADMIN__ADDR=127.0.0.1:0 "$bin/ccsd" --config "$config" 2> >(tee "$log" >&2) &
ccsd_pid=$!
admin_of_log() { sed -n 's/.*admin on tcp:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -n 1; }
started "$ccsd_pid" '[ -n "$(admin_of_log)" ]' ccsd
admin=$(admin_of_log)

"$bin/examples/$mcp" --config "$config" &
mcp_pid=$!
# The MCP is up once ccsd's admin `stats` reports it alive (refreshed every stats.interval).
mcp_alive() {
    local line
    exec 4<>"/dev/tcp/${admin%:*}/${admin##*:}" || return 1
    printf 'stats\r\n' >&4
    while IFS= read -r -t 5 line <&4; do
        case "$line" in
            "STAT mcp_watch_mcp_alive 1"*) exec 4<&-; return 0 ;;
            END*) break ;;
        esac
    done
    exec 4<&-
    return 1
}
started "$mcp_pid" mcp_alive "$mcp"

echo
echo "ccsd and $mcp are running (admin: nc ${admin%:*} ${admin##*:}). Try:"
echo "  $try"
wait
