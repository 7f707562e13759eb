# Sourced by start.sh, stop.sh and ctl.sh: how a recorded pid is judged, and how each server is
# launched. The launch_* functions need STATE (the state dir), BIN (where the binaries are) and
# WAIT_SECS; each starts one server in the background with its output appended to
# STATE/logs/<name>.log, waits until its port accepts connections (exiting 1 with the log's tail
# if it does not), and leaves its pid in LAUNCHED_PID.

# alive PID: running and not a zombie.
alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/stat" ]; then
    local stat; stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ] || return 1
  fi
}

# ours PID NAME: the pid still runs the named binary (a recorded pid may have been reused since).
ours() {
  [ -r "/proc/$1/cmdline" ] || return 0 # no procfs: trust the recorded pid
  local argv0; argv0="$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | head -n1)"
  [ "$(basename -- "$argv0")" = "$2" ]
}

# wait_port NAME PID PORT LOG: bounded wait until 127.0.0.1:PORT accepts a TCP connection.
wait_port() {
  local name=$1 pid=$2 port=$3 log=$4 deadline=$((SECONDS + WAIT_SECS))
  while :; do
    if ! alive "$pid"; then
      echo "$name (pid $pid) exited before listening on 127.0.0.1:$port; last lines of $log:" >&2
      tail -n 30 "$log" >&2 || true
      exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$name (pid $pid) did not accept connections on 127.0.0.1:$port within ${WAIT_SECS}s; last lines of $log:" >&2
      tail -n 30 "$log" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
}

# launch_s3 PORT: s3s-fs with root STATE/s3. A bucket is a subdirectory of the root; s3s-fs also
# keeps .bucket-*.json sidecar files next to the bucket directories.
launch_s3() {
  local log="$STATE/logs/s3s-fs.log"
  "$BIN/s3s-fs" --host 127.0.0.1 --port "$1" --access-key test --secret-key test "$STATE/s3" \
    </dev/null >>"$log" 2>&1 &
  LAUNCHED_PID=$!
  wait_port s3s-fs "$LAUNCHED_PID" "$1" "$log"
}

# launch_catalog PORT: rustberg with the config start.sh wrote to STATE/rustberg.toml (which names
# PORT). --no-auth is refused without --dev; plain HTTP needs --insecure-http. RUSTBERG_* variables
# would outrank the config file, so they are cleared; NO_COLOR keeps ANSI escapes out of the log.
launch_catalog() {
  local log="$STATE/logs/rustberg.log"
  (
    cd "$STATE/catalog"
    exec env -u RUSTBERG_CONFIG -u RUSTBERG_HOST -u RUSTBERG_PORT -u RUSTBERG_WAREHOUSE -u RUSTBERG_CATALOG_URL \
      -u RUSTBERG_TENANT_ID -u RUSTBERG_TLS_CERT -u RUSTBERG_TLS_KEY NO_COLOR=1 RUST_LOG="${FRAZIL_CATALOG_LOG_LEVEL:-info}" \
      "$BIN/rustberg" --dev --no-auth --insecure-http --config "$STATE/rustberg.toml"
  ) </dev/null >>"$log" 2>&1 &
  LAUNCHED_PID=$!
  wait_port rustberg "$LAUNCHED_PID" "$1" "$log"
}

# launch_kafka PORT: tansu with the sqlite engine in STATE/tansu. The sqlite path is relative to
# the working directory, so it starts from its data directory. Variables tansu would otherwise
# pick up are unset. FRAZIL_KAFKA_ADVERTISED (host:port) makes it advertise another address, e.g.
# a TLS proxy in front of it; with FRAZIL_KAFKA_AUTH=1 it requires a SASL login.
launch_kafka() {
  local log="$STATE/logs/tansu.log"
  local advertised="${FRAZIL_KAFKA_ADVERTISED:-127.0.0.1:$1}"
  local extra=()
  if [ "${FRAZIL_KAFKA_AUTH:-}" = 1 ]; then
    extra+=(--authentication)
  fi
  (
    cd "$STATE/tansu"
    exec env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT -u DATA_LAKE -u CLUSTER_ID NO_COLOR=1 \
      "$BIN/tansu" broker \
      --listener-url "tcp://127.0.0.1:$1" \
      --advertised-listener-url "tcp://$advertised" \
      --storage-engine "sqlite://tansu.db" "${extra[@]}"
  ) </dev/null >>"$log" 2>&1 &
  LAUNCHED_PID=$!
  wait_port tansu "$LAUNCHED_PID" "$1" "$log"
}

# broker_alone DIR PYTHON: tansu alone on a free 127.0.0.1 port, its state in DIR (stop it with
# `tests/servers/stop.sh DIR`); for the quick start and the benches, which need no catalog or
# store. Sets KAFKA to its address.
broker_alone() {
  STATE="$1"
  BIN="${FRAZIL_TOOLS:-$HOME/.cache/frazil/tools}/bin"
  WAIT_SECS=30
  mkdir -p "$STATE/tansu" "$STATE/logs"
  local port
  port=$("$2" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  launch_kafka "$port"
  printf 'FRAZIL_KAFKA=127.0.0.1:%s\nFRAZIL_KAFKA_PID=%s\n' "$port" "$LAUNCHED_PID" >"$STATE/env"
  KAFKA="127.0.0.1:$port"
}
