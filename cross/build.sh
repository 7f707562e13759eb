#!/usr/bin/env bash
# Release builds of frazil for gateway targets, then the size of each binary.
#   bash cross/build.sh                      # every target below
#   bash cross/build.sh aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
#   bash cross/build.sh --query x86_64-unknown-linux-gnu   # frazil-query instead (profile `query`),
#                                   # into target/<triple>/query/; the tests and the package share it
# Installs what a target needs when it is missing: its rustup target, and on Debian its C cross
# compiler, musl-tools and qemu-user-static (the emulator cross/test.sh runs foreign tests with).
# The settings live in cross/config.toml, so plain cargo works too once these are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

crate=frazil profile=release
if [ "${1:-}" = "--query" ]; then
  crate=frazil-query profile=query
  shift
fi
ALL=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl x86_64-unknown-linux-musl)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")

source cross/lib.sh
for t in "${targets[@]}"; do
  cross_setup "$t"
done
for t in "${targets[@]}"; do
  echo "cross: building $crate for $t"
  cargo build --profile "$profile" --locked --config cross/config.toml --target "$t" -p "$crate" --bin "$crate"
done

echo
printf '%-34s %10s  %s\n' target bytes linking
for t in "${targets[@]}"; do
  bin="target/$t/$profile/$crate"
  printf '%-34s %10s  %s\n' "$t" "$(stat -c %s "$bin")" "$(file -b "$bin" | grep -o 'static-pie linked\|statically linked\|dynamically linked' || echo '?')"
done
