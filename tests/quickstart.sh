#!/usr/bin/env bash
# Quick start: on a fresh Debian machine, installs and starts a local Kafka-compatible broker
# (tansu), produces sample events, runs `frazil flush` into an Iceberg table kept in a local
# directory (no catalog service: `catalog.type = "filesystem"`), and shows the rows that landed,
# read back by DuckDB. Then it starts `frazil run`, produces more, and `frazil query` shows the
# newest events while they are still arriving, before any commit.
# The first run builds the broker and the query engine from crates.io (about 15 minutes on 2
# cores); later runs take seconds.
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
# The query engine (DataFusion), as its package builds it; `frazil query` runs it.
host=$(rustc -vV | sed -n 's/^host: //p')
bash cross/build.sh --query "$host" >/dev/null
export FRAZIL_QUERY_BIN="$here/target/$host/query/frazil-query"
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

# Live: `frazil run` takes new events at once and commits every 10 minutes; `frazil query` answers
# from the table plus what the agent holds in memory and in its spool, each event once.
sed -i 's/^namespace = "edge"$/namespace = "edge"\ncommit_interval = "10m"/' "$state/frazil.toml"
./target/debug/frazil run --config "$state/frazil.toml" 2>"$state/run.log" &
run_pid=$!
trap 'kill $run_pid 2>/dev/null || true; [ -n "${KEEP:-}" ] || bash tests/servers/stop.sh "$state/servers" >/dev/null' EXIT
"$py" tests/check/produce.py --brokers "$kafka" --topic telemetry --partitions 4 --count 2000 --start 10000
echo
echo "frazil run is taking 2,000 more events; frazil query sees them before any commit:"
for _ in $(seq 1 60); do
  live=$(./target/debug/frazil query --config "$state/frazil.toml" --format csv -q \
    'SELECT count(*) AS n FROM telemetry' | tail -n 1)
  [ "$live" = 12000 ] && break
  sleep 1
done
./target/debug/frazil query --config "$state/frazil.toml" \
  'SELECT _kafka_partition, _kafka_offset, _kafka_timestamp FROM telemetry ORDER BY _kafka_timestamp DESC LIMIT 3'
echo "SELECT count(*) FROM telemetry: $live"
# The same rows for a DuckDB with no extensions: a view over the table's files, the spool and memory.
./target/debug/frazil query --config "$state/frazil.toml" --duckdb-view telemetry >"$state/view.sql"
viewed=$("$py" -c 'import duckdb, sys; c = duckdb.connect(); c.execute(open(sys.argv[1]).read()); print(c.execute("SELECT count(*) FROM telemetry").fetchone()[0])' "$state/view.sql")
echo "DuckDB through \`frazil query --duckdb-view telemetry\` ($state/view.sql): $viewed rows"
kill -TERM $run_pid
wait $run_pid || { cat "$state/run.log" >&2; exit 1; }
if [ "$live" != 12000 ] || [ "$viewed" != 12000 ]; then
  echo "quickstart: expected 12000 events from frazil query ($live) and from its DuckDB view ($viewed)" >&2
  exit 1
fi
