#!/usr/bin/env bash
# The whole test suite: checks formatting and lints, installs the pinned test servers and the
# Python readers (skipped when already installed), runs every test in the workspace against them,
# then the README's quick start, the aarch64 build under qemu-user and the packages.
#   bash tests/run.sh            # everything
#   bash tests/run.sh e2e        # extra arguments go to `cargo test`, and only it runs
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  cargo fmt --all --check
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi
bash tests/servers/install.sh
# The query engine (DataFusion) is built once, as its package builds it; tests/query.rs runs it.
host=$(rustc -vV | sed -n 's/^host: //p')
bash cross/build.sh --query "$host"
# Its own unit tests, on the dependencies that build made.
cargo test --locked --profile query --config cross/config.toml --target "$host" -p frazil-query
cargo test --workspace --exclude frazil-query --locked "$@"
if [ $# -eq 0 ]; then
  bash tests/quickstart.sh
  bash cross/test.sh
  bash packaging/test.sh
fi
