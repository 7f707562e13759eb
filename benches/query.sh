#!/usr/bin/env bash
# `frazil query`'s figures against the real servers on loopback, printed, never asserted:
# - freshness: from the broker's acknowledgement of one event to `frazil query` counting it, under
#   `frazil run` at its default settings (commit_interval 60s, file_max_age 10s), median of FRESH;
# - query time over EVENTS rows spread across the tiers (half committed, the rest in spool files
#   and in memory), against DuckDB reading the committed half alone from the catalog;
# - the agent's peak RSS after serving the read state, beside its RSS before any query.
#   bash benches/query.sh                   # 1,000,000 events
#   EVENTS=100000 FRESH=3 bash benches/query.sh
#   TARGET=x86_64-unknown-linux-gnu bash benches/query.sh   # the builds packaging and the tests share
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${EVENTS:-1000000}"
FRESH="${FRESH:-5}"
t="${TARGET:-$(rustc -vV | sed -n 's/^host: //p')}"
cargo build --release --locked --quiet -p frazil --bin frazil --target "$t"
bash cross/build.sh --query "$t" >/dev/null
frazil="$PWD/target/$t/release/frazil"
export PATH="$PWD/target/$t/query:$PATH"
bash tests/servers/install.sh >/dev/null
py="${FRAZIL_VENV:-$HOME/.cache/frazil/venv}/bin/python"

work=$(mktemp -d /tmp/frazil-qbench.XXXXXX)
bash tests/servers/start.sh "$work/servers" >/dev/null
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; bash tests/servers/stop.sh "$work/servers" >/dev/null; rm -rf "$work"' EXIT
# shellcheck disable=SC1091
source "$work/servers/env"
# shellcheck source=benches/lib.sh
source benches/lib.sh
produce() { "$py" benches/telemetry.py --brokers "$FRAZIL_KAFKA" --topic "$1" --partitions 8 --count "$2" --start "$3"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
count() { "$frazil" query -q --format csv --config "$1" "SELECT count(*) AS n FROM $2${3:+ WHERE $3}" | tail -n 1; }
start_run() { FRAZIL_LOG=warn "$frazil" run --config "$1" 2>"$work/run.log" & pid=$!; }

# --- query time over the three tiers ---------------------------------------------------------------
half=$((EVENTS / 2))
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bench_config "$work/tiers" tiers tiers qbench $'[metrics]\nlisten = "127.0.0.1:'"$port"'"'
produce tiers "$half" 0
FRAZIL_LOG=warn "$frazil" flush --config "$work/tiers/frazil.toml"
# The second half: files of an eighth of it each, the rest in memory; nothing commits meanwhile.
sed -i "s/^dir = .*/&\nfile_max_rows = $((EVENTS / 64))\nfile_max_age = \"1h\"/; s/^namespace = .*/&\ncommit_interval = \"1h\"/" "$work/tiers/frazil.toml"
start_run "$work/tiers/frazil.toml"
produce tiers "$half" "$half"
until [ "$(count "$work/tiers/frazil.toml" tiers)" = "$EVENTS" ]; do sleep 0.5; done
rss_before=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
sql="SELECT site, count(*) AS n, avg(temp_c) AS t FROM tiers GROUP BY site"
for _ in 1 2 3; do
  s=$(now_ms); "$frazil" query -q --config "$work/tiers/frazil.toml" "$sql" >/dev/null; echo $(( $(now_ms) - s ))
done | median >"$work/query_ms"
tiers=$("$frazil" query --config "$work/tiers/frazil.toml" "SELECT 1" 2>&1 >/dev/null | grep -- '-- tiers:' || true)
for _ in 1 2 3; do
  s=$(now_ms)
  "$py" tests/check/read_table.py --reader duckdb --catalog "$FRAZIL_CATALOG" --namespace qbench --table tiers \
    --s3-endpoint "$FRAZIL_S3_ENDPOINT" --s3-access-key "$FRAZIL_S3_ACCESS_KEY" --s3-secret-key "$FRAZIL_S3_SECRET_KEY" \
    --s3-region "$FRAZIL_S3_REGION" --select site,temp_c >/dev/null
  echo $(( $(now_ms) - s ))
done | median >"$work/duckdb_ms"
rss_peak=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
metrics=$("$py" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' "http://127.0.0.1:$port/metrics")
pause=$(awk '/^frazil_read_state_pause_seconds_max / {printf "%.2f", $2 * 1000}' <<<"$metrics")
served=$(awk '/^frazil_read_state_requests_total / {print $2}' <<<"$metrics")
kill -TERM "$pid"; wait "$pid" || true; pid=""

# --- freshness at default settings ---------------------------------------------------------------
bench_config "$work/fresh" fresh fresh qbench
produce fresh 1000 0
start_run "$work/fresh/frazil.toml"
until [ "$(count "$work/fresh/frazil.toml" fresh)" = 1000 ]; do sleep 0.2; done
for i in $(seq 1 "$FRESH"); do
  seq=$((1000 + i))
  # The clock starts when the broker has acknowledged the event (the producer's start is Python's).
  produce fresh 1 "$seq" >/dev/null
  s=$(now_ms)
  until [ "$(count "$work/fresh/frazil.toml" fresh "seq = $seq")" = 1 ]; do :; done
  echo $(( $(now_ms) - s ))
done | median >"$work/fresh_ms"
s=$(now_ms); count "$work/fresh/frazil.toml" fresh >/dev/null; one_query=$(( $(now_ms) - s ))
kill -TERM "$pid"; wait "$pid" || true; pid=""

q=$(cat "$work/query_ms") d=$(cat "$work/duckdb_ms") f=$(cat "$work/fresh_ms")
echo
echo "frazil query, $EVENTS events ($half committed, the rest in spool files and memory), medians;"
echo "every time includes its process's start"
printf '  %-58s %8s ms\n' "query over all three tiers ($sql)" "$q"
printf '  %-58s %8s ms   (query / duckdb = %s)\n' "DuckDB (Python) reading the committed half (site, temp_c)" "$d" \
  "$(awk -v a="$q" -v b="$d" 'BEGIN {printf "%.2f", a / b}')"
echo "  ${tiers#-- }"
printf '  %-58s %8s ms   (commit_interval 60000 ms: %sx sooner)\n' "freshness: acknowledged by the broker -> counted by a query" "$f" \
  "$(awk -v f="$f" 'BEGIN {printf "%.0f", 60000 / f}')"
printf '  %-58s %8s ms\n' "one frazil query (process start, read state, plan, answer)" "$one_query"
printf '  %-58s %8s KiB -> peak %s KiB\n' "agent RSS before the queries" "$rss_before" "$rss_peak"
printf '  %-58s %8s ms   (over %s read-state requests)\n' "longest pause of fetching to copy the hot rows" "$pause" "$served"
