#!/usr/bin/env bash
# Stops or starts again ONE of the servers tests/servers/start.sh STATE_DIR started, on the same
# port and with the same data, so a test can take a server away and bring it back:
#   ctl.sh STATE_DIR stop  s3|catalog|kafka [--kill]   SIGTERM (or SIGKILL), and waits until it is gone
#   ctl.sh STATE_DIR start s3|catalog|kafka            starts it again; records its new pid in STATE_DIR/env
set -euo pipefail

usage() { echo "usage: $0 STATE_DIR stop|start s3|catalog|kafka [--kill]" >&2; exit 2; }
[ $# -ge 3 ] && [ $# -le 4 ] || usage
STATE="$(cd "$1" && pwd -P)"
ENV_FILE="$STATE/env"
TOOLS="${FRAZIL_TOOLS:-$HOME/.cache/frazil/tools}"
BIN="$TOOLS/bin"
WAIT_SECS="${FRAZIL_START_TIMEOUT:-30}"
die() { echo "ctl.sh: $*" >&2; exit 1; }

# shellcheck source=tests/servers/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ -f "$ENV_FILE" ] || die "no $ENV_FILE: start the servers with start.sh first"
get() { sed -n "s/^$1=//p" "$ENV_FILE" | tail -n1; }
case "$3" in
  s3) KEY=FRAZIL_S3_PID NAME=s3s-fs URL="$(get FRAZIL_S3_ENDPOINT)" ;;
  catalog) KEY=FRAZIL_CATALOG_PID NAME=rustberg URL="$(get FRAZIL_CATALOG)" ;;
  kafka) KEY=FRAZIL_KAFKA_PID NAME=tansu URL="$(get FRAZIL_KAFKA)" ;;
  *) usage ;;
esac
PORT="${URL##*:}"
PID="$(get "$KEY")"

case "$2" in
  stop)
    SIG=TERM
    case "${4:-}" in '') ;; --kill) SIG=KILL ;; *) usage ;; esac
    if alive "$PID" && ours "$PID" "$NAME"; then
      kill -"$SIG" "$PID" 2>/dev/null || true
      deadline=$((SECONDS + 20))
      while alive "$PID"; do
        if [ "$SECONDS" -ge "$deadline" ]; then kill -KILL "$PID" 2>/dev/null || true; fi
        sleep 0.05
      done
    fi
    echo "ctl.sh: $NAME stopped (SIG$SIG)" >&2 ;;
  start)
    [ $# -eq 3 ] || usage
    if alive "$PID" && ours "$PID" "$NAME"; then die "$NAME (pid $PID) is still running"; fi
    "launch_$3" "$PORT"
    sed "s/^$KEY=.*/$KEY=$LAUNCHED_PID/" "$ENV_FILE" >"$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
    echo "ctl.sh: $NAME started again on port $PORT (pid $LAUNCHED_PID)" >&2 ;;
  *) usage ;;
esac
