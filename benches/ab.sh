#!/usr/bin/env bash
# Two builds of frazil side by side: `frazil flush` of the bench workload (JSON, 8 partitions)
# by the build of BASE (a git revision) and by the working tree's, in interleaved rounds (A B B A
# A B ...) so that the machine's drift hits both alike. Prints each round and the medians of
# CPU (user + sys), wall time and peak RSS, with B/A ratios. Nothing is asserted.
#   bash benches/ab.sh BASE                 # 1,000,000 events, 6 rounds
#   EVENTS=200000 ROUNDS=4 bash benches/ab.sh HEAD~3
#   AB_BASE_BIN=path/to/frazil bash benches/ab.sh HEAD~3   # A is that binary, already built from BASE
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${1:?usage: bash benches/ab.sh BASE-REVISION}"
EVENTS="${EVENTS:-1000000}"
ROUNDS="${ROUNDS:-6}"
py="${FRAZIL_VENV:-$HOME/.cache/frazil/venv}/bin/python"

work=$(mktemp -d /tmp/frazil-ab.XXXXXX)
cleanup() {
  bash tests/servers/stop.sh "$work/servers" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# The base is built from its own worktree into its own target directory, with the same profile;
# both stay under target/ab, so a second comparison with the same base builds nothing again.
rev=$(git rev-parse --short "$BASE")
a="${AB_BASE_BIN:-$PWD/target/ab/target/release/frazil}"
if [ -z "${AB_BASE_BIN:-}" ]; then
  base="$PWD/target/ab/src-$rev"
  [ -d "$base" ] || git worktree add --detach --quiet "$base" "$rev"
  echo "ab: building $rev (A)"
  (cd "$base" && CARGO_TARGET_DIR="$PWD/../target" cargo build --release --locked --quiet -p frazil --bin frazil)
fi
echo "ab: building the working tree (B)"
cargo build --release --locked --quiet -p frazil --bin frazil
b="$PWD/target/release/frazil"

bash tests/servers/install.sh >/dev/null
bash tests/servers/start.sh "$work/servers" >/dev/null
# shellcheck disable=SC1091
source "$work/servers/env"
"$py" benches/telemetry.py --brokers "$FRAZIL_KAFKA" --topic telemetry --partitions 8 --count "$EVENTS"

# shellcheck source=benches/lib.sh
source benches/lib.sh

results="$work/results"
run() { # A|B round
  local bin=$a
  [ "$1" = A ] || bin=$b
  bench_config "$work/$1$2" telemetry "t_${1,,}$2" ab
  FRAZIL_LOG=warn /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$bin" flush --config "$work/$1$2/frazil.toml" >/dev/null
  read -r wall user sys rss <"$work/time"
  echo "$1 $wall $user $sys $rss" >>"$results"
  printf 'ab: round %s %s: wall %ss, cpu %ss, peak %s MiB\n' "$2" "$1" "$wall" \
    "$(awk "BEGIN { print $user + $sys }")" "$((rss / 1024))"
}
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then run A "$round"; run B "$round"; else run B "$round"; run A "$round"; fi
done

"$py" - "$results" "$EVENTS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
events = int(sys.argv[2])
def med(side, f):
    return statistics.median(f(r) for r in rows if r[0] == side)
figures = {
    "cpu per event (us)": lambda r: (float(r[2]) + float(r[3])) / events * 1e6,
    "wall (s)": lambda r: float(r[1]),
    "peak RSS (MiB)": lambda r: int(r[4]) / 1024,
}
print(f"{'median of ' + str(len(rows) // 2) + ' rounds':24} {'A (base)':>10} {'B (tree)':>10} {'B/A':>6}")
for name, f in figures.items():
    a, b = med("A", f), med("B", f)
    print(f"{name:24} {a:10.2f} {b:10.2f} {b / a:6.2f}")
PY
