#!/usr/bin/env bash
# Installs libccsd_mcp (shared and static), include/ccsd_mcp.h and the pkg-config file
# ccsd_mcp.pc under PREFIX (lib/, include/, lib/pkgconfig/).
#   ccsd-mcp/install.sh PREFIX [PROFILE]     PROFILE: release (default) or debug
# Builds the library first (cargo build -p ccsd-mcp). Then:
#   PKG_CONFIG_PATH=PREFIX/lib/pkgconfig cc my_mcp.c $(pkg-config --cflags --libs ccsd_mcp)
# (link statically with `pkg-config --static` and PREFIX/lib/libccsd_mcp.a).
set -euo pipefail
prefix=${1:?usage: install.sh PREFIX [release|debug]}
profile=${2:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
flag=()
[ "$profile" = release ] && flag=(--release)
"${CARGO:-cargo}" build --quiet --manifest-path "$root/Cargo.toml" -p ccsd-mcp "${flag[@]}"
target=${CARGO_TARGET_DIR:-$root/target}/$profile
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/ccsd-mcp/Cargo.toml" | head -n1)
# What a C program linking the static library needs besides it (rustc's list for this target),
# from an empty static library built in a scratch directory (rustc replaces its output file, so
# never point -o at a device).
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
: >"$scratch/probe.rs"
native=$("${RUSTC:-rustc}" --crate-type staticlib --print native-static-libs --out-dir "$scratch" \
    "$scratch/probe.rs" 2>&1 | sed -n 's/.*native-static-libs: //p')
mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
# install(1) replaces files (unlink, then create): a running MCP keeps its mapping intact.
install -m 0644 "$target/libccsd_mcp.so" "$target/libccsd_mcp.a" "$prefix/lib/"
install -m 0644 "$root/include/ccsd_mcp.h" "$prefix/include/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" -e "s|@NATIVE_STATIC_LIBS@|$native|" \
    "$root/ccsd-mcp/ccsd_mcp.pc.in" >"$prefix/lib/pkgconfig/ccsd_mcp.pc"
echo "installed libccsd_mcp $version under $prefix"
