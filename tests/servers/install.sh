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

install() { # name version features...
  local name=$1 version=$2; shift 2
  if installed "$name" "$version"; then
    echo "install.sh: $name $version already installed"
    return
  fi
  echo "install.sh: building $name $version (this takes minutes the first time)"
  CARGO_TARGET_DIR="$TARGET" cargo install --locked --root "$TOOLS" --version "$version" "$@" "$name"
}

want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

want s3s-fs && install s3s-fs 0.14.1 --features binary
want tansu && install tansu 0.6.0 --features dynostore,libsql
want rustberg && install rustberg 0.3.0 --no-default-features --features cli,storage-s3

# The independent reader: pyiceberg and DuckDB in a virtualenv of their own.
VENV="${FRAZIL_VENV:-$HOME/.cache/frazil/venv}"
if want python; then
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c 'import pyiceberg, duckdb, duckdb_ext, confluent_kafka, fastavro' 2>/dev/null; then
    "$VENV/bin/pip" install --quiet \
      "pyiceberg[pyarrow,pyiceberg-core]==0.12.*" "duckdb==1.4.4" "duckdb-ext[iceberg,avro,httpfs]==0.1.2" \
      "confluent-kafka==2.16.*" "fastavro==1.13.*"
  fi
  echo "install.sh: python reader ready in $VENV"
fi
