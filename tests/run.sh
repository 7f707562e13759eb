#!/usr/bin/env bash
# The whole test suite: checks formatting and lints, installs the pinned test servers and the
# Python readers (skipped when already installed), runs every test in the workspace against them,
# then the README's quick start, the aarch64 build under qemu-user and the packages.
#   bash tests/run.sh            # everything
#   bash tests/run.sh e2e        # extra arguments go to `cargo test`, and only it runs
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step prints what it took, so a slow CI run says where its time went.
step() { local t0=$SECONDS; "$@"; echo "run.sh: $* took $((SECONDS - t0))s" >&2; }
if [ $# -eq 0 ]; then
  step cargo fmt --all --check
  step cargo clippy --workspace --all-targets --locked -- -D warnings
fi
step bash tests/servers/install.sh
# The query engine (DataFusion) is built once, as its package builds it; tests/query.rs runs it.
host=$(rustc -vV | sed -n 's/^host: //p')
step bash cross/build.sh --query "$host"
# Its own unit tests, on the dependencies that build made.
step cargo test --locked --profile query --config cross/config.toml --target "$host" -p frazil-query
step cargo test --workspace --exclude frazil-query --locked "$@"
if [ $# -eq 0 ]; then
  step bash tests/quickstart.sh
  step bash cross/test.sh
  step bash packaging/test.sh
fi
