#!/usr/bin/env bash
# The whole test suite: installs the pinned test servers and the Python readers (skipped when
# already installed), then runs every test in the workspace against them.
#   bash tests/run.sh            # everything
#   bash tests/run.sh e2e        # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/servers/install.sh
cargo test --workspace --locked "$@"
