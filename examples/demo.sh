#!/usr/bin/env bash
# Starts ccsd with one of the example MCPs and shows how to talk to it with stock clients.
#   examples/demo.sh echo   length-framed echo on 7300 (the same as `ccsd --demo`)
#   examples/demo.sh kv     memcached protocol on 11311, Redis protocol on 6380 (examples/kv_mcp)
#   examples/demo.sh http   HTTP/1.1 on 8080 (examples/http_mcp)
# Ctrl-C stops both processes.
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
    *) echo "usage: $0 echo|kv|http" >&2; exit 2 ;;
esac
cargo build --release --bin ccsd --example "$mcp"
target/release/ccsd --config "$config" &
ccsd_pid=$!
target/release/examples/"$mcp" --config "$config" &
mcp_pid=$!
trap 'kill $mcp_pid $ccsd_pid 2>/dev/null; wait' INT TERM EXIT
echo
echo "ccsd and $mcp are running. Try:"
echo "  $try"
wait
