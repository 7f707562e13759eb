#!/usr/bin/env bash
# Tests an aarch64 (or other foreign) build under qemu-user:
#   bash cross/test.sh              # the unit tests and the spool's kill -9 crash test, built for aarch64
#   bash cross/test.sh --e2e        # also the end-to-end suite with the aarch64 release binary:
#                                   # the test harness, servers and readers stay native, every
#                                   # frazil it starts runs under qemu
#   TARGET=armv7-unknown-linux-gnueabihf bash cross/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source cross/lib.sh

t="${TARGET:-aarch64-unknown-linux-gnu}"
cross_setup "$t"
case "$t" in
  aarch64-unknown-linux-gnu) runner="qemu-aarch64-static -L /usr/aarch64-linux-gnu" ;;
  armv7-unknown-linux-gnueabihf) runner="qemu-arm-static -L /usr/arm-linux-gnueabihf" ;;
  aarch64-unknown-linux-musl) runner="qemu-aarch64-static" ;;
  *) echo "cross/test.sh: $t is not a foreign target" >&2; exit 2 ;;
esac

# Each test binary runs through the runner in cross/config.toml. The crash test re-executes
# itself as the child it kills, so it is told the runner too (no binfmt_misc here).
# Emulation is ~10x slower: fewer crash cycles than natively, each still a real kill -9.
cross_test() { cargo test --locked --config cross/config.toml --target "$t" "$@"; }
# The power cuts are left to the native run: their FUSE server is the test process itself, and
# the filesystem model it serves is the same on every architecture.
FRAZIL_RUNNER="$runner" FRAZIL_CRASH_CYCLES="${FRAZIL_CRASH_CYCLES:-60}" cross_test -p frazil-spool -- --skip power_cut_cycles
cross_test -p frazil --lib

if [ "${1:-}" = "--e2e" ]; then
  bash cross/build.sh "$t"
  bash tests/servers/install.sh
  FRAZIL_BIN="$PWD/target/$t/release/frazil" FRAZIL_RUNNER="$runner" cargo test --locked -p frazil --test e2e
fi
