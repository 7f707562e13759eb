#!/bin/sh
# Installed as /usr/lib/frazil/package-setup and run by the .deb postinst and the .rpm %post after
# every install or upgrade: the system user, the spool directory and the config's owner.
#   package-setup install    # first install: also gives the packaged config to root:frazil 0640
#   package-setup upgrade    # keeps whatever owner and mode the operator gave the config
# Idempotent; plain sh, because it runs wherever the package does.
set -e

if ! getent group frazil >/dev/null; then
  groupadd --system frazil
fi
if ! getent passwd frazil >/dev/null; then
  nologin=/usr/sbin/nologin
  [ -x "$nologin" ] || nologin=/sbin/nologin
  useradd --system --gid frazil --home-dir /var/lib/frazil --no-create-home \
    --shell "$nologin" --comment "frazil agent" frazil
fi

# The spool: only frazil may read it (it holds the events); 0700 on every upgrade too.
install -d -o frazil -g frazil -m 0700 /var/lib/frazil
# The config may hold secrets: readable by frazil, writable by root only.
if [ "${1:-install}" = install ] && [ -f /etc/frazil/frazil.toml ]; then
  chown root:frazil /etc/frazil/frazil.toml
  chmod 0640 /etc/frazil/frazil.toml
fi

# systemd, when it runs (containers and chroots have none): see the new units, and restart a
# running daemon so an upgrade takes effect. A fresh install starts nothing: the default config
# points at placeholder servers until someone edits it.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  systemctl try-restart frazil.service || true
fi
