#!/usr/bin/env bash
# Release builds of frazil for gateway targets, then the size of each binary.
#   bash cross/build.sh                      # every target below
#   bash cross/build.sh aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
# Installs what a target needs when it is missing: its rustup target, and on Debian its C cross
# compiler, musl-tools and qemu-user-static (the emulator cross/test.sh runs foreign tests with).
# The settings live in cross/config.toml, so plain cargo works too once these are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl x86_64-unknown-linux-musl)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")

source cross/lib.sh
for t in "${targets[@]}"; do
  cross_setup "$t"
done
for t in "${targets[@]}"; do
  echo "cross: building $t"
  cargo build --release --locked --config cross/config.toml --target "$t" -p frazil --bin frazil
done

echo
printf '%-34s %10s  %s\n' target bytes linking
for t in "${targets[@]}"; do
  bin="target/$t/release/frazil"
  printf '%-34s %10s  %s\n' "$t" "$(stat -c %s "$bin")" "$(file -b "$bin" | grep -o 'static-pie linked\|statically linked\|dynamically linked' || echo '?')"
done
