#!/usr/bin/env bash
# Where the agent's binary size goes: the release build (same profile: opt-level "s", fat LTO),
# kept unstripped in its own target directory so cargo-bloat can attribute code to crates, then
# the sections of the stripped copy (code, constants, unwind tables) beside the size target.
#   bash benches/size.sh                              # the host
#   TARGET=aarch64-unknown-linux-gnu bash benches/size.sh   # a gateway target (cross/build.sh's setup)
# Not in CI: it is one more fat-LTO build (about 6 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="${FRAZIL_TOOLS:-$HOME/.cache/frazil/tools}"
export PATH="$TOOLS/bin:$PATH"
command -v cargo-bloat >/dev/null || cargo install --locked --root "$TOOLS" --version 0.12.1 cargo-bloat
target=()
strip=strip
if [ -n "${TARGET:-}" ]; then
  source cross/lib.sh
  cross_setup "$TARGET"
  target=(--target "$TARGET" --config cross/config.toml)
  case "$TARGET" in
    aarch64-*) strip=aarch64-linux-gnu-strip ;;
    armv7-*) strip=arm-linux-gnueabihf-strip ;;
  esac
fi
dir=target/size
CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=$dir \
  cargo bloat --release --locked -p frazil --bin frazil "${target[@]}" --crates -n 30 | tee "$dir.crates.txt"
bin="$dir/${TARGET:+$TARGET/}release/frazil"
"$strip" -o "$dir/frazil.stripped" "$bin"
bytes=$(stat -c %s "$dir/frazil.stripped")
echo
echo "stripped: $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }')), target 10 MiB for aarch64"
# Sections by size: .text is code; .eh_frame and .gcc_except_table are the unwind tables that
# panic = "unwind" keeps (spool/src/index.rs turns a panic inside redb into a quarantined index).
size -A "$dir/frazil.stripped" | awk 'NR > 2 && $2 > 100000 { printf "  %-20s %6.2f MiB\n", $1, $2 / 1048576 }' | sort -k2 -n -r
