#!/usr/bin/env bash
# Stops the servers tests/servers/start.sh STATE_DIR started: only the pids recorded in STATE_DIR/env,
# SIGTERM first, SIGKILL for any still alive after a short wait. Never matches processes by name.
# Leaves the data and logs in STATE_DIR; removes STATE_DIR/env once everything is gone.
set -euo pipefail

[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
ENV_FILE="$1/env"
GRACE_SECS="${FRAZIL_STOP_GRACE:-5}"

if [ ! -f "$ENV_FILE" ]; then
  echo "stop.sh: no $ENV_FILE; nothing to stop" >&2
  exit 0
fi

# shellcheck source=tests/servers/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pids=""
for entry in FRAZIL_KAFKA_PID:tansu FRAZIL_CATALOG_PID:rustberg FRAZIL_S3_PID:s3s-fs; do
  key=${entry%%:*} name=${entry#*:}
  pid="$(sed -n "s/^$key=//p" "$ENV_FILE" | tail -n1)"
  case "$pid" in
    '' ) ;;
    *[!0-9]* ) echo "stop.sh: ignoring malformed $key=$pid in $ENV_FILE" >&2 ;;
    * )
      if ! alive "$pid"; then
        : # already gone
      elif ours "$pid" "$name"; then
        pids="$pids $pid"
      else
        echo "stop.sh: pid $pid ($key) now runs something other than $name; not touching it" >&2
      fi ;;
  esac
done

for pid in $pids; do
  if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
done

deadline=$((SECONDS + GRACE_SECS))
while :; do
  left=""
  for pid in $pids; do
    if alive "$pid"; then left="$left $pid"; fi
  done
  [ -n "$left" ] || break
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "stop.sh: still alive after ${GRACE_SECS}s, sending SIGKILL:$left" >&2
    for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
    sleep 0.2
    break
  fi
  sleep 0.1
done

left=""
for pid in $pids; do
  if alive "$pid"; then left="$left $pid"; fi
done
if [ -n "$left" ]; then
  echo "stop.sh: could not stop:$left" >&2
  exit 1
fi
rm -f "$ENV_FILE"
echo "stop.sh: stopped$pids" >&2
