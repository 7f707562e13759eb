#!/usr/bin/env bash
# Installs the real servers the integration tests talk to, pinned, into one tools root.
# Idempotent: a server whose pinned version is already installed there is skipped in milliseconds.
# All three share one cargo target directory so common crates (tokio, rustls, ...) build once.
set -euo pipefail

TOOLS="${FRAZIL_TOOLS:-$HOME/.cache/frazil/tools}"
TARGET="${FRAZIL_TOOLS_TARGET:-$HOME/.cache/frazil/tools-target}"
mkdir -p "$TOOLS/bin"

installed() { # name version -> true when cargo's own record says that version is in $TOOLS
  [ -x "$TOOLS/bin/$1" ] && grep -q "\"$1 $2 " "$TOOLS/.crates.toml" 2>/dev/null
}

install() { # name version features...   (OPT=<opt-level> before it: that opt-level)
  local name=$1 version=$2; shift 2
  if installed "$name" "$version"; then
    echo "install.sh: $name $version already installed"
    return
  fi
  echo "install.sh: building $name $version (this takes minutes the first time)"
  # Test servers, not shipped: no fat LTO and parallel codegen (rustberg's own release profile
  # asks for both, which made it the slowest install), and one panic strategy for all three, so
  # the crates they share in $TARGET build once.
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_PANIC=unwind \
    CARGO_PROFILE_RELEASE_OPT_LEVEL="${OPT:-3}" CARGO_TARGET_DIR="$TARGET" cargo install --locked --root "$TOOLS" --version "$version" "$@" "$name"
}

want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

# The independent reader: pyiceberg and DuckDB in a virtualenv of their own. Mostly downloads, so
# it runs beside the compiles below.
VENV="${FRAZIL_VENV:-$HOME/.cache/frazil/venv}"
python_ready() { "$VENV/bin/python" -c 'import pyiceberg, duckdb, duckdb_ext, confluent_kafka, fastavro, grpc_tools, jsonschema' 2>/dev/null; }
pip_pid=""
if want python && ! python_ready; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet \
    "pyiceberg[pyarrow,pyiceberg-core]==0.12.*" "duckdb==1.4.4" "duckdb-ext[iceberg,avro,httpfs]==0.1.2" \
    "confluent-kafka==2.16.*" "fastavro==1.13.*" "grpcio-tools==1.85.*" "jsonschema==4.*" &
  pip_pid=$!
fi

want s3s-fs && install s3s-fs 0.14.1 --features binary
want tansu && install tansu 0.6.0 --features dynostore,libsql
# The catalog answers a few hundred commits per test run: opt-level 1 serves them as well.
want rustberg && OPT=1 install rustberg 0.3.0 --no-default-features --features cli,storage-s3

if want python; then
  [ -z "$pip_pid" ] || wait "$pip_pid" || { echo "install.sh: pip install failed" >&2; exit 1; }
  python_ready || { echo "install.sh: the python reader does not import after pip install" >&2; exit 1; }
  echo "install.sh: python reader ready in $VENV"
fi
