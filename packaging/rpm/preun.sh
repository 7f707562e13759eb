# %preun: on the last erase ($1 = 0) stop the daemon and the timer; an upgrade leaves them running.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
  systemctl disable --now frazil.service frazil-flush.timer >/dev/null 2>&1 || true
fi
