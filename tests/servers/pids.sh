# Sourced by start.sh and stop.sh: how a recorded pid is judged.

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
