#!/usr/bin/env bash
# Consumer groups' figures against the real servers on loopback, printed, never asserted:
# - events per second and CPU per event of one, two and three `frazil run` agents in one group
#   draining the same backlog on a 12-partition topic, beside the fetch-only ceiling (one rskafka
#   consumer, benches/pipeline.rs) measured in the same run;
# - the pause a rebalance causes: a third agent joins two that are reading a topic produced to
#   without pause; how long until it reads, and how long each partition it takes over goes unread.
#   bash benches/group.sh                    # 600,000 events
#   EVENTS=60000 bash benches/group.sh
#   LOGS=dir bash benches/group.sh           # keep the agents' logs there
#   TARGET=x86_64-unknown-linux-gnu bash benches/group.sh   # the build run.sh and packaging share
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${EVENTS:-600000}"
PARTITIONS=12
# shellcheck source=benches/lib.sh
source benches/lib.sh
bench_tools

work=$(mktemp -d /tmp/frazil-gbench.XXXXXX)
bash tests/servers/start.sh "$work/servers" >/dev/null
producer=""
finish() {
  [ -z "$producer" ] || kill "$producer" 2>/dev/null || true
  pkill -f "$work/" 2>/dev/null || true
  [ -z "${LOGS:-}" ] || { mkdir -p "$LOGS"; cp "$work"/*.log "$LOGS/" 2>/dev/null || true; }
  bash tests/servers/stop.sh "$work/servers" >/dev/null
  rm -rf "$work"
}
trap finish EXIT
# shellcheck disable=SC1091
source "$work/servers/env"
results="$work/results"
produce() { "$py" benches/telemetry.py --brokers "$FRAZIL_KAFKA" --topic "$1" --partitions "$PARTITIONS" --count "$2" --start "${3:-0}"; }

# member DIR GROUP ID TABLE TOPIC: a group member's config.
member() {
  bench_config "$1" "$5" "$4" bench $'[tables."*"]\ncommit_interval = "1s"'
  sed -i "s/^id = .*/id = \"$3\"/; s/^topics = .*/&\ngroup = \"$2\"\nsession_timeout = \"6s\"/; s/^dir = .*/&\nfile_max_age = \"1s\"/" "$1/frazil.toml"
}
# start NAME CONFIG: `frazil run` under /usr/bin/time (its figures go to NAME.time, its log to NAME.log).
start() {
  FRAZIL_LOG="${FRAZIL_LOG:-info}" /usr/bin/time -f '%e %U %S %M' -o "$work/$1.time" "$frazil" run --config "$2" 2>"$work/$1.log" &
}
# stop_all: SIGTERM every agent (the children of the time processes) and wait for them.
stop_all() {
  pkill -TERM -f "^$frazil run --config $work/" || true
  wait
}
# drained CONFIG: true when the group's offsets in the table reach every high watermark.
drained() {
  "$frazil" status --json --config "$1" 2>/dev/null | "$py" -c '
import json, sys
s = json.load(sys.stdin)
ps = s["partitions"]
sys.exit(0 if len(ps) == '"$PARTITIONS"' and all(p["committed"] is not None and p["committed"] == p["high_watermark"] for p in ps) else 1)'
}

echo "bench: producing $EVENTS events to $PARTITIONS partitions"
produce backlog "$EVENTS"
/usr/bin/time -f '%e %U %S %M' -o "$work/ceiling.time" "$pipeline" fetch "$FRAZIL_KAFKA" backlog >"$work/ceiling.out"
echo "ceiling $(cat "$work/ceiling.time") $(tail -1 "$work/ceiling.out")" >>"$results"

for n in 1 2 3; do
  echo "bench: $n agent(s) in one group"
  for i in $(seq "$n"); do member "$work/n$n-$i" "drain-$n" "agent-$n-$i" "drain_$n" backlog; done
  # Watched through a spool of its own: `frazil status` on a member's spool would keep it out.
  member "$work/watch-$n" "drain-$n" "watch-$n" "drain_$n" backlog
  t0=$(date +%s.%N)
  for i in $(seq "$n"); do start "n$n-$i" "$work/n$n-$i/frazil.toml"; done
  deadline=$((SECONDS + 900))
  until drained "$work/watch-$n/frazil.toml"; do
    [ $SECONDS -lt $deadline ] && [ "$(pgrep -fc "^$frazil run --config $work/")" -eq "$n" ] ||
      { echo "bench: $n agents did not drain:" >&2; tail -n 20 "$work"/n"$n"-*.log >&2; exit 1; }
    sleep 0.25
  done
  t1=$(date +%s.%N)
  stop_all
  echo "agents $n $t0 $t1 $(for i in $(seq "$n"); do printf '%s,' "$(tr ' ' ':' <"$work/n$n-$i.time")"; done)" >>"$results"
done

echo "bench: a third agent joins two under load"
produce steady 0
for i in 1 2 3; do member "$work/rb-$i" rebalance "member-$i" steady steady; done
start rb-1 "$work/rb-1/frazil.toml"; start rb-2 "$work/rb-2/frazil.toml"
# About 10,000 events a second while the group changes.
( seq=0; while [ ! -f "$work/stop" ]; do produce steady 5000 "$seq" >/dev/null; seq=$((seq + 5000)); sleep 0.3; done ) &
producer=$!
until grep -q " data files (" "$work/rb-1.log" "$work/rb-2.log" 2>/dev/null; do sleep 0.2; done
sleep 3
echo "join $(date +%s.%N)" >>"$results"
start rb-3 "$work/rb-3/frazil.toml"
deadline=$((SECONDS + 120))
# Its partitions come with its first assignment ("starting at offset") when the coordinator
# hands them over in the same generation, else with a later one ("assigned to this agent").
until grep -qE "assigned to this agent|: starting at offset" "$work/rb-3.log" 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || { echo "bench: the third agent got no partition:" >&2; tail -n 20 "$work"/rb-*.log >&2; exit 1; }
  sleep 0.2
done
sleep 5
touch "$work/stop"
sleep 1
wait "$producer"; producer=""
stop_all
"$py" benches/group.py "$work" "$EVENTS"
