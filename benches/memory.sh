#!/usr/bin/env bash
# What the memory settings cost and save: `frazil flush` of the bench workload (JSON, 8
# partitions) at each pair of kafka.fetch_max_bytes and spool.buffer_max_bytes in FETCH x BUFFER,
# beside the fetch-only ceiling (benches/pipeline.rs), in interleaved rounds so that the machine's
# drift hits every setting alike. Prints, per setting, the medians of peak RSS, wall time against
# the ceiling measured in the same round, and CPU per event. Nothing is asserted.
#   bash benches/memory.sh
#   EVENTS=500000 ROUNDS=3 FETCH="4MiB 1MiB" BUFFER="8MiB 2MiB" bash benches/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${EVENTS:-300000}"
ROUNDS="${ROUNDS:-2}"
FETCH="${FETCH:-4MiB 2MiB 1MiB}"
BUFFER="${BUFFER:-8MiB 4MiB 2MiB}"
# shellcheck source=benches/lib.sh
source benches/lib.sh
bench_tools

work=$(mktemp -d /tmp/frazil-mbench.XXXXXX)
bash tests/servers/start.sh "$work/servers" >/dev/null
trap 'bash tests/servers/stop.sh "$work/servers" >/dev/null; rm -rf "$work"' EXIT
# shellcheck disable=SC1091
source "$work/servers/env"
"$py" benches/telemetry.py --brokers "$FRAZIL_KAFKA" --topic telemetry --partitions 8 --count "$EVENTS"

results="$work/results"
n=0
for round in $(seq "$ROUNDS"); do
  /usr/bin/time -f '%e' -o "$work/time" "$pipeline" fetch "$FRAZIL_KAFKA" telemetry >/dev/null
  ceiling=$(tail -1 "$work/time")
  for f in $FETCH; do
    for b in $BUFFER; do
      n=$((n + 1))
      dir="$work/m$n"
      bench_config "$dir" telemetry "m$n" memory
      sed -i "s/^topics = .*/&\nfetch_max_bytes = \"$f\"/; s/^dir = .*/&\nbuffer_max_bytes = \"$b\"/" "$dir/frazil.toml"
      FRAZIL_LOG=warn /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$frazil" flush --config "$dir/frazil.toml" >/dev/null
      read -r wall user sys rss <"$work/time"
      echo "$f $b $ceiling $wall $user $sys $rss" >>"$results"
      printf 'memory: round %s, fetch %s, buffers %s: wall %ss (ceiling %ss), peak %s MiB\n' \
        "$round" "$f" "$b" "$wall" "$ceiling" "$((rss / 1024))"
    done
  done
done

"$py" - "$results" "$EVENTS" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    f, b, ceiling, wall, user, sys_, rss = line.split()
    rows[(f, b)].append((float(ceiling), float(wall), float(user) + float(sys_), int(rss)))
events = int(sys.argv[2])
print(f"\nmemory settings, {events} events over 8 partitions, medians of {len(next(iter(rows.values())))} rounds")
print(f"{'fetch_max_bytes':>16} {'buffer_max_bytes':>17} {'peak RSS MiB':>13} {'wall/ceiling':>13} {'CPU us/event':>13}")
for (f, b), runs in rows.items():
    med = lambda xs: statistics.median(xs)
    peak = med([r[3] for r in runs]) / 1024
    ratio = med([r[0] / r[1] for r in runs])
    cpu = med([r[2] for r in runs]) / events * 1e6
    print(f"{f:>16} {b:>17} {peak:>13.1f} {ratio:>13.2f} {cpu:>13.2f}")
PY
