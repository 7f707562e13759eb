#!/usr/bin/env bash
# frazil's speed and footprint beside its ceilings and a Python baseline, all measured in one run
# against the real servers on loopback (tansu, rustberg, s3s-fs), printed as one table of medians
# with ratios. Nothing here asserts a figure: machines are noisy, so the bench prints and the
# README quotes the latest numbers with the machine they came from.
#   bash benches/run.sh                     # 1,000,000 events over 8 partitions, 3 rounds
#   EVENTS=10000000 ROUNDS=5 bash benches/run.sh
#   bash benches/run.sh --json figures.json # also the figures as JSON (CI keeps it as an artifact)
#   TARGET=x86_64-unknown-linux-gnu bash benches/run.sh  # build for that target (shares packaging's build)
# Per round: the fetch-only ceiling (benches/pipeline.rs), `frazil flush` into a fresh table, and
# the Python baseline's best form (benches/baseline.py); the naive form runs NAIVE_ROUNDS times
# (default 1: it is slow). Then once: the raw encode rate, and the footprint figures.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${EVENTS:-1000000}"
ROUNDS="${ROUNDS:-3}"
NAIVE_ROUNDS="${NAIVE_ROUNDS:-1}"
json_out=""
[ "${1:-}" != "--json" ] || json_out="$(realpath -m "$2")"
[ -z "$json_out" ] || mkdir -p "$(dirname "$json_out")"

# shellcheck source=benches/lib.sh
source benches/lib.sh
bench_tools

work=$(mktemp -d /tmp/frazil-bench.XXXXXX)
bash tests/servers/start.sh "$work/servers" >/dev/null
registry=""
trap '[ -z "$registry" ] || kill "$registry" 2>/dev/null; bash tests/servers/stop.sh "$work/servers" >/dev/null; rm -rf "$work"' EXIT
# shellcheck disable=SC1091
source "$work/servers/env"
results="$work/results"

produce() { # topic partitions count [--format avro|protobuf]
  "$py" benches/telemetry.py --brokers "$FRAZIL_KAFKA" --topic "$1" --partitions "$2" --count "$3" "${@:4}"
}
# measure NAME CMD...: one line in results: name, wall, user, sys, peak RSS KiB, the command's last stdout line
measure() {
  local name=$1; shift
  /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
    local code=$?
    # 75 from frazil: data left in the spool on purpose (the recovery step) is not a failure.
    if [ "$code" -ne 75 ]; then echo "bench: $name failed ($code):" >&2; tail -20 "$work/err" >&2; exit 1; fi
  }
  echo "$name $(tail -1 "$work/time") $(tail -1 "$work/out" 2>/dev/null)" >>"$results"
}
config() { bench_config "$1" "$2" "$3" bench "${4:-}"; } # dir topic table [extra toml]
baseline=("$py" benches/baseline.py --brokers "$FRAZIL_KAFKA" --topic telemetry --catalog "$FRAZIL_CATALOG"
  --namespace bench --commits 10 --s3-endpoint "$FRAZIL_S3_ENDPOINT" --s3-access-key "$FRAZIL_S3_ACCESS_KEY"
  --s3-secret-key "$FRAZIL_S3_SECRET_KEY" --s3-region "$FRAZIL_S3_REGION")

echo "bench: producing $EVENTS events to 8 partitions, as JSON, as Avro and as Protobuf"
produce telemetry 8 "$EVENTS"
produce telemetry_avro 8 "$EVENTS" --format avro
produce telemetry_proto 8 "$EVENTS" --format protobuf
# The writer schemas, served as ids 1 (Avro) and 2 (Protobuf) by benches/registry.py.
"$py" benches/telemetry.py --avro-schema >"$work/telemetry.avsc"
"$py" benches/telemetry.py --proto-schema >"$work/telemetry.proto"
"$py" benches/registry.py "$work/telemetry.avsc" "$work/registry.port" "$work/telemetry.proto" &
registry=$!
until [ -s "$work/registry.port" ]; do sleep 0.05; done
registry_toml=$'[schema_registry]\nurl = "http://127.0.0.1:'"$(cat "$work/registry.port")"$'"'
avro_toml=$'[kafka.formats]\n"telemetry_avro" = "avro"\n'"$registry_toml"
proto_toml=$'[kafka.formats]\n"telemetry_proto" = "protobuf"\n'"$registry_toml"
for round in $(seq "$ROUNDS"); do
  echo "bench: round $round of $ROUNDS"
  measure ceiling "$pipeline" fetch "$FRAZIL_KAFKA" telemetry
  config "$work/r$round" telemetry "frazil_r$round"
  FRAZIL_LOG=warn measure frazil "$frazil" flush --config "$work/r$round/frazil.toml"
  measure python_best "${baseline[@]}" --form best --table "best_r$round"
  [ "$round" -gt "$NAIVE_ROUNDS" ] || measure python_naive "${baseline[@]}" --form naive --table "naive_r$round"
  measure ceiling_avro "$pipeline" fetch "$FRAZIL_KAFKA" telemetry_avro
  config "$work/avro_r$round" telemetry_avro "avro_r$round" "$avro_toml"
  FRAZIL_LOG=warn measure frazil_avro "$frazil" flush --config "$work/avro_r$round/frazil.toml"
  measure ceiling_proto "$pipeline" fetch "$FRAZIL_KAFKA" telemetry_proto
  config "$work/proto_r$round" telemetry_proto "proto_r$round" "$proto_toml"
  FRAZIL_LOG=warn measure frazil_proto "$frazil" flush --config "$work/proto_r$round/frazil.toml"
done
measure encode "$pipeline" encode "$FRAZIL_KAFKA" telemetry 200000
# Memory is set by configuration, not by the backlog: the same flush with small fetches and buffers.
config "$work/lean" telemetry frazil_lean
sed -i 's/^topics = .*/&\nfetch_max_bytes = "1MiB"/; s/^dir = .*/&\nbuffer_max_bytes = "2MiB"/' "$work/lean/frazil.toml"
FRAZIL_LOG=warn measure frazil_lean "$frazil" flush --config "$work/lean/frazil.toml"

echo "bench: footprint"
# Idle: `frazil run` on an empty topic, after it settles.
produce idle 1 0
config "$work/idle" idle idle
FRAZIL_LOG=info "$frazil" run --config "$work/idle/frazil.toml" 2>"$work/idle/log" &
pid=$!
started=$(date +%s%N)
until grep -q "starting at offset" "$work/idle/log" 2>/dev/null; do
  kill -0 $pid 2>/dev/null || { echo "bench: frazil run exited:" >&2; cat "$work/idle/log" >&2; exit 1; }
  sleep 0.005
done
echo "startup $(( ($(date +%s%N) - started) / 1000 ))" >>"$results"
sleep 5
# RssAnon: the agent's own memory; the rest of RSS is the mapped binary and libraries (clean pages).
echo "idle $(awk '/^VmRSS/ {print $2}' /proc/$pid/status) $(awk '/^Threads/ {print $2}' /proc/$pid/status) $(awk '/^RssAnon/ {print $2}' /proc/$pid/status)" >>"$results"
kill -TERM $pid; wait $pid || true

# Peak RSS with 64 partitions.
produce wide 64 "$((EVENTS / 4))"
config "$work/wide" wide wide
FRAZIL_LOG=warn measure wide64 "$frazil" flush --config "$work/wide/frazil.toml"

# The backlog must not set the peak: a tenth of the events pending, against all of them above.
produce tenth 8 "$((EVENTS / 10))"
config "$work/tenth" tenth tenth
FRAZIL_LOG=warn measure tenth "$frazil" flush --config "$work/tenth/frazil.toml"

# Recovery: hundreds of spool files waiting (small fetches, small files, the object store unreachable), then the time to
# open the spool and list them (`status --offline`) and to drain them all.
produce backlog 8 100000
config "$work/backlog" backlog backlog $'[tables."*"]\ncommit_interval = "1s"'
sed -i "s/^dir = .*/&\nfile_max_rows = 50/; s/^topics = .*/&\nfetch_max_bytes = \"32KiB\"/" "$work/backlog/frazil.toml"
sed "s|^endpoint = .*|endpoint = \"http://127.0.0.1:9\"|" "$work/backlog/frazil.toml" >"$work/backlog/offline.toml"
chmod 600 "$work/backlog/offline.toml"
FRAZIL_LOG=error "$frazil" flush --config "$work/backlog/offline.toml" 2>/dev/null || true
files=$("$frazil" status --offline --json --config "$work/backlog/frazil.toml" | "$py" -c 'import json,sys; s=json.load(sys.stdin); print(sum(t["files_written"] + t["files_uploaded"] for t in s["tables"]))' 2>/dev/null || echo "?")
measure status_backlog "$frazil" status --offline --config "$work/backlog/frazil.toml"
FRAZIL_LOG=warn measure drain_backlog "$frazil" flush --config "$work/backlog/frazil.toml"
echo "spooled_files $files" >>"$results"

for t in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl x86_64-unknown-linux-musl; do
  [ -f "target/$t/release/frazil" ] && echo "size $t $(stat -c %s "target/$t/release/frazil")" >>"$results"
done
echo "size release $(stat -c %s "$frazil")" >>"$results"

"$py" benches/report.py "$results" "$EVENTS" "$ROUNDS" "$json_out"
