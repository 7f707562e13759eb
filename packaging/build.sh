#!/usr/bin/env bash
# .deb and .rpm packages of frazil and of frazil-query (query/Cargo.toml), from the metadata in
# their Cargo.toml, into target/packages/.
#   bash packaging/build.sh                  # x86_64, aarch64 and armv7
#   bash packaging/build.sh x86_64-unknown-linux-gnu
#   NO_BUILD=1 bash packaging/build.sh       # package the binaries already in target/<triple>/release
# Builds each target's release binary first (cross/build.sh), and installs cargo-deb and
# cargo-generate-rpm (pinned) into the same tools root as the test servers when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

TOOLS="${FRAZIL_TOOLS:-$HOME/.cache/frazil/tools}"
export PATH="$TOOLS/bin:$PATH"
tool() { # crate version   (build tools: compiled quickly, as tests/servers/install.sh does)
  if ! grep -q "\"$1 $2 " "$TOOLS/.crates.toml" 2>/dev/null; then
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
      CARGO_TARGET_DIR="${FRAZIL_TOOLS_TARGET:-$HOME/.cache/frazil/tools-target}" \
      cargo install --locked --root "$TOOLS" --version "$2" "$1"
  fi
}
tool cargo-deb 3.8.0
tool cargo-generate-rpm 0.21.0

if [ -z "${NO_BUILD:-}" ]; then
  bash cross/build.sh "${targets[@]}"
  bash cross/build.sh --query "${targets[@]}"
fi
source cross/lib.sh

out=target/packages
mkdir -p target/packaging "$out"
for t in "${targets[@]}"; do
  bin="target/$t/release/frazil"
  # Docs made from this build: the --help of every command, and every crate linked in with its license.
  {
    cross_run "$t" "$bin" --help
    for cmd in run flush status check; do echo; cross_run "$t" "$bin" "$cmd" --help; done
  } > target/packaging/help.txt
  cargo metadata --locked --format-version 1 --filter-platform "$t" | python3 packaging/third_party.py > target/packaging/THIRD-PARTY.txt

  cargo deb -p frazil --no-build --no-strip --target "$t" --output "$out/"
  # rpm names 32-bit hard-float ARM armv7hl; cargo-generate-rpm would say armv7.
  arch=()
  [ "$t" != armv7-unknown-linux-gnueabihf ] || arch=(--arch armv7hl)
  cargo generate-rpm -p . --target "$t" "${arch[@]}" --output "$out/"
  # frazil-query is built with its own profile; the packagers look in target/<triple>/release.
  cp "target/$t/query/frazil-query" "target/$t/release/frazil-query"
  cargo deb -p frazil-query --no-build --no-strip --target "$t" --output "$out/"
  cargo generate-rpm -p query --target "$t" "${arch[@]}" --output "$out/"
done
ls -l "$out"
