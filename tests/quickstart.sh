#!/usr/bin/env bash
# Quick start: on a fresh Debian machine, installs and starts a local Kafka-compatible broker
# (tansu), produces sample events, runs `frazil flush` into an Iceberg table kept in a local
# directory (no catalog service: `catalog.type = "filesystem"`), and shows the rows that landed,
# read back by DuckDB.
# The first run builds the broker from crates.io (about 5 minutes on 2 cores); later runs take seconds.
#   KEEP=1 bash tests/quickstart.sh   # leave the broker running afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
state="$here/.frazil-dev"
mkdir -p "$state"

command -v cc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq build-essential; }
python3 -c 'import venv, ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }
ONLY="tansu python" bash tests/servers/install.sh
cargo build --locked --quiet --bin frazil
py="${FRAZIL_VENV:-$HOME/.cache/frazil/venv}/bin/python"

# The broker alone, on a free port, through the same launcher the tests use.
bash tests/servers/stop.sh "$state/servers" >/dev/null 2>&1 || true
rm -rf "$state/servers" "$state/spool" "$state/warehouse"
# shellcheck source=tests/servers/lib.sh
source tests/servers/lib.sh
broker_alone "$state/servers" "$py"
[ -n "${KEEP:-}" ] || trap 'bash tests/servers/stop.sh "$state/servers" >/dev/null' EXIT
kafka="$KAFKA"

cat >"$state/frazil.toml" <<TOML
[kafka]
brokers = ["$kafka"]
topics = ["telemetry"]

[spool]
dir = "$state/spool"

[catalog]
type = "filesystem"
warehouse = "file://$state/warehouse"
namespace = "edge"
TOML

"$py" tests/check/produce.py --brokers "$kafka" --topic telemetry --partitions 4 --count 10000
./target/debug/frazil flush --config "$state/frazil.toml"

# No catalog to ask: DuckDB's iceberg_scan follows the table's version hint.
table="file://$state/warehouse/edge/telemetry"
"$py" tests/check/read_table.py --reader duckdb --metadata "$table" --namespace edge --table telemetry \
  --s3-endpoint http://unused --s3-access-key - --s3-secret-key - --out "$state/telemetry.jsonl" >"$state/summary.json"
rows=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$state/summary.json")
echo
echo "edge.telemetry as DuckDB reads it: $rows rows; the first three:"
head -n 3 "$state/telemetry.jsonl"
echo
echo "config: $state/frazil.toml   spool: $state/spool   table: $state/warehouse/edge/telemetry"
if [ "$rows" != 10000 ]; then
  echo "quickstart: expected 10000 rows in edge.telemetry, DuckDB read $rows" >&2
  exit 1
fi
