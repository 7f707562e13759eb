#!/usr/bin/env bash
# Quick start: on a fresh Debian machine, installs and starts a local Kafka-compatible broker
# (tansu), an Iceberg REST catalog (rustberg) on a local S3 store (s3s-fs), produces sample events,
# runs `frazil flush`, and shows the rows that landed, read back by DuckDB.
# The first run builds the servers from crates.io (about 20-30 minutes on 2 cores); later runs take seconds.
#   KEEP=1 bash tests/quickstart.sh   # leave the servers running afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
state="$here/.frazil-dev"
mkdir -p "$state"

command -v cc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq build-essential; }
python3 -c 'import venv, ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }
bash tests/servers/install.sh
cargo build --locked --quiet --bin frazil
py="${FRAZIL_VENV:-$HOME/.cache/frazil/venv}/bin/python"

bash tests/servers/stop.sh "$state/servers" >/dev/null 2>&1 || true
rm -rf "$state/servers" "$state/spool"
bash tests/servers/start.sh "$state/servers" >/dev/null
[ -n "${KEEP:-}" ] || trap 'bash tests/servers/stop.sh "$state/servers" >/dev/null' EXIT
# shellcheck disable=SC1091
source "$state/servers/env"

# Owner-only: the file holds the S3 key, and frazil refuses a world-readable config with a secret.
touch "$state/frazil.toml" && chmod 600 "$state/frazil.toml"
cat >"$state/frazil.toml" <<TOML
[kafka]
brokers = ["$FRAZIL_KAFKA"]
topics = ["telemetry"]

[spool]
dir = "$state/spool"

[catalog]
uri = "$FRAZIL_CATALOG"
namespace = "edge"

[storage.s3]
endpoint = "$FRAZIL_S3_ENDPOINT"
region = "$FRAZIL_S3_REGION"
access_key_id = "$FRAZIL_S3_ACCESS_KEY"
secret_access_key = "$FRAZIL_S3_SECRET_KEY"
path_style = true
TOML

"$py" tests/check/produce.py --brokers "$FRAZIL_KAFKA" --topic telemetry --partitions 4 --count 10000
./target/debug/frazil flush --config "$state/frazil.toml"

"$py" tests/check/read_table.py --reader duckdb --catalog "$FRAZIL_CATALOG" --namespace edge --table telemetry \
  --s3-endpoint "$FRAZIL_S3_ENDPOINT" --s3-access-key "$FRAZIL_S3_ACCESS_KEY" --s3-secret-key "$FRAZIL_S3_SECRET_KEY" \
  --s3-region "$FRAZIL_S3_REGION" --out "$state/telemetry.jsonl" >"$state/summary.json"
echo
echo "edge.telemetry as DuckDB reads it: $("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$state/summary.json") rows; the first three:"
head -n 3 "$state/telemetry.jsonl"
echo
echo "config: $state/frazil.toml   spool: $state/spool"
