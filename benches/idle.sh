#!/usr/bin/env bash
# What an idle agent costs, against the real broker on loopback, printed beside the targets, never
# asserted:
# - CPU (% of one core), wake-ups per second (context switches of all its threads) and RSS of
#   `frazil run` on PARTITIONS empty partitions over IDLE_SECONDS, with the idle backoff (the
#   default kafka.fetch_idle_wait) and, as the baseline in the same run, without it
#   (fetch_idle_wait = fetch_max_wait: every fetch held 10 ms, as before the backoff);
# - the time from the broker's acknowledgement of one event produced to a partition, after the
#   agent has idled, until the event is in the spool (`frazil status --offline` polled every 20 ms), SAMPLES times. It includes the
#   roll (spool.file_max_age = 50ms here) and the status process's start.
#   bash benches/idle.sh
#   IDLE_SECONDS=60 PARTITIONS=64 bash benches/idle.sh
#   TARGET=x86_64-unknown-linux-gnu bash benches/idle.sh   # the build run.sh and packaging share
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE_SECONDS="${IDLE_SECONDS:-30}"
PARTITIONS="${PARTITIONS:-8}"
SAMPLES="${SAMPLES:-6}"
# shellcheck source=benches/lib.sh
source benches/lib.sh
bench_tools

work=$(mktemp -d /tmp/frazil-ibench.XXXXXX)
bash tests/servers/start.sh "$work/servers" >/dev/null
finish() {
  pkill -f "$work/" 2>/dev/null || true
  bash tests/servers/stop.sh "$work/servers" >/dev/null
  rm -rf "$work"
}
trap finish EXIT
# shellcheck disable=SC1091
source "$work/servers/env"
produce() { "$py" benches/telemetry.py --brokers "$FRAZIL_KAFKA" --topic idle --partitions "$PARTITIONS" --count "$1" --start "${2:-0}" 2>/dev/null; }
produce 0

# counters PID: "ticks switches rss_kib" of the process and all its threads.
counters() {
  local ticks switches=0 t
  ticks=$(awk '{print $14 + $15}' "/proc/$1/stat")
  for t in /proc/"$1"/task/*/status; do
    switches=$((switches + $(awk '/^(voluntary|nonvoluntary)_ctxt_switches/ {s += $2} END {print s}' "$t")))
  done
  echo "$ticks $switches $(awk '/^VmRSS/ {print $2}' "/proc/$1/status")"
}

# measure NAME EXTRA-KAFKA-TOML: runs an agent idle for IDLE_SECONDS, prints its figures.
measure() {
  local dir="$work/$1"
  bench_config "$dir" idle "idle_$1" bench
  sed -i "s/^topics = .*/&\n$2/; s/^dir = .*/&\nfile_max_age = \"50ms\"/" "$dir/frazil.toml"
  "$frazil" run --config "$dir/frazil.toml" 2>"$dir/log" &
  local pid=$!
  sleep 3 # connected, partitions found, the wait grown
  local a b
  a=$(counters "$pid")
  sleep "$IDLE_SECONDS"
  b=$(counters "$pid")
  echo "$1 $IDLE_SECONDS $(getconf CLK_TCK) $a $b" >>"$work/results"
  if [ "$1" = backoff ]; then
    local i p want t0 t1
    for i in $(seq "$SAMPLES"); do
      sleep 2 # idle again
      p=$((i % PARTITIONS))
      want=$(("$("$frazil" status --offline --json --config "$dir/frazil.toml" | "$py" -c "
import json, sys
ps = {q['partition']: q['spooled'] for q in json.load(sys.stdin)['partitions']}
print(ps.get($p) or 0)")" + 1))
      t0=$(date +%s.%N)
      produce 1 "$((1000 + i * PARTITIONS + p))"
      t1=$(date +%s.%N)
      until "$frazil" status --offline --json --config "$dir/frazil.toml" 2>/dev/null | "$py" -c "
import json, sys
ps = {q['partition']: q['spooled'] for q in json.load(sys.stdin)['partitions']}
sys.exit(0 if (ps.get($p) or 0) >= $want else 1)"; do
        sleep 0.02
      done
      echo "wake $t0 $t1 $(date +%s.%N)" >>"$work/results"
    done
  fi
  kill -TERM "$pid"
  wait "$pid" || true
}

echo "bench: $PARTITIONS idle partitions, ${IDLE_SECONDS}s each way"
measure baseline 'fetch_idle_wait = "10ms"'
measure backoff ''

"$py" - "$work/results" "$PARTITIONS" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
partitions = int(sys.argv[2])
fig = {}
for r in rows:
    if r[0] in ("baseline", "backoff"):
        secs, hz = float(r[1]), float(r[2])
        t0, s0, _, t1, s1, rss = (float(x) for x in r[3:9])
        fig[r[0]] = ((t1 - t0) / hz / secs * 100, (s1 - s0) / secs, rss / 1024)
# From the producer's acknowledgement (the event is in the log) to the event in the spool; the
# producer's own start is left out.
wakes = sorted(float(r[3]) - float(r[2]) for r in rows if r[0] == "wake")
b, o = fig["baseline"], fig["backoff"]
print(f"idle agent, {partitions} empty partitions           baseline (10 ms waits)   backoff       ratio   target")
print(f"  CPU, % of one core                          {b[0]:10.3f}             {o[0]:8.3f}     {o[0] / max(b[0], 1e-9):5.3f}x   <= 0.1")
print(f"  wake-ups per second (context switches)      {b[1]:10.1f}             {o[1]:8.1f}     {o[1] / max(b[1], 1e-9):5.3f}x   <= 20")
print(f"  RSS, MiB                                    {b[2]:10.1f}             {o[2]:8.1f}")
if wakes:
    print(f"  produce -> spool after idling, s: median {wakes[len(wakes) // 2]:.2f}, max {wakes[-1]:.2f} "
          f"({len(wakes)} samples; target: within kafka.fetch_idle_wait, 1 s, plus the 50 ms roll)")
PY
