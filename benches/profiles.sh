#!/usr/bin/env bash
# The release profile's opt-level, measured before choosing it: builds frazil with opt-level 3, "s"
# and "z" (the rest of [profile.release] unchanged), then runs `frazil flush` of the same events
# (benches/telemetry.py) from a local tansu into a table with no catalog service, the builds taking turns, and prints
# medians and ratios against opt-level 3 measured in the same run.
#   bash benches/profiles.sh                      # 200,000 events over 8 partitions, 3 rounds
#   EVENTS=1000000 ROUNDS=5 bash benches/profiles.sh
# Wall time is bound by the broker (tansu serves ~40k events/s on 2 cores); frazil's own CPU
# seconds (user + sys, from GNU time) are the figure that compares.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${EVENTS:-200000}"
ROUNDS="${ROUNDS:-3}"
LEVELS=(3 s z)

for lvl in "${LEVELS[@]}"; do
  echo "profiles: building opt-level $lvl"
  CARGO_PROFILE_RELEASE_OPT_LEVEL="$lvl" cargo build --release --locked --quiet -p frazil --bin frazil --target-dir "target/opt-$lvl"
done
ONLY="tansu python" bash tests/servers/install.sh >/dev/null
py="${FRAZIL_VENV:-$HOME/.cache/frazil/venv}/bin/python"

work=$(mktemp -d /tmp/frazil-profiles.XXXXXX)
# shellcheck source=tests/servers/lib.sh
source tests/servers/lib.sh
broker_alone "$work/servers" "$py"
trap 'bash tests/servers/stop.sh "$work/servers" >/dev/null; rm -rf "$work"' EXIT
"$py" benches/telemetry.py --brokers "$KAFKA" --topic telemetry --partitions 8 --count "$EVENTS"

results="$work/results"
for round in $(seq "$ROUNDS"); do
  for lvl in "${LEVELS[@]}"; do
    run="$work/run-$lvl-$round"
    mkdir -p "$run"
    cat >"$run/frazil.toml" <<TOML
[kafka]
brokers = ["$KAFKA"]
topics = ["telemetry"]
[spool]
dir = "$run/spool"
[catalog]
type = "filesystem"
warehouse = "file://$run/warehouse"
namespace = "bench"
TOML
    FRAZIL_LOG=warn /usr/bin/time -f '%e %U %S %M' -o "$run/time" "target/opt-$lvl/release/frazil" flush --config "$run/frazil.toml"
    echo "$lvl $(stat -c %s "target/opt-$lvl/release/frazil") $(cat "$run/time")" >>"$results"
    rm -rf "$run"
  done
done

"$py" - "$results" "$EVENTS" "$ROUNDS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
events, rounds = int(sys.argv[2]), sys.argv[3]
by = {}
for lvl, size, wall, user, sys_, rss in rows:
    b = by.setdefault(lvl, {"size": int(size), "wall": [], "cpu": [], "rss": []})
    b["wall"].append(float(wall)); b["cpu"].append(float(user) + float(sys_)); b["rss"].append(int(rss) / 1024)
med = {l: {k: (statistics.median(v) if isinstance(v, list) else v) for k, v in b.items()} for l, b in by.items()}
base = med["3"]
print(f"\n`frazil flush` of {events:,} events, median of {rounds} rounds; ratios against opt-level 3 in this run")
print("| opt-level | binary | CPU (user+sys) | CPU per event | wall | peak RSS | CPU vs 3 | size vs 3 |")
print("|---|---|---|---|---|---|---|---|")
for l, m in med.items():
    print(f'| {l} | {m["size"] / 2**20:.1f} MiB | {m["cpu"]:.2f} s | {m["cpu"] / events * 1e6:.2f} µs | {m["wall"]:.1f} s '
          f'| {m["rss"]:.0f} MiB | {m["cpu"] / base["cpu"]:.2f}x | {m["size"] / base["size"]:.2f}x |')
PY
