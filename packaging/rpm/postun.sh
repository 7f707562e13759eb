# %postun: rpm has no purge, so an erase keeps the spool (it may hold events not yet committed)
# and the frazil user; delete /var/lib/frazil and `userdel frazil` by hand when done with them.
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
