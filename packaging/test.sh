#!/usr/bin/env bash
# Builds the x86_64 .deb and .rpm, inspects every package in target/packages (files, modes, owners,
# scripts, dependencies), then installs the .deb on this machine, runs frazil as its user, checks
# that an upgrade keeps an edited config and a removal keeps the spool, and purges it.
#   bash packaging/test.sh             # build, then test
#   NO_BUILD=1 bash packaging/test.sh  # test the packages already in target/packages
# The install part needs root (or sudo without a password) and a machine without frazil installed;
# elsewhere it is skipped, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${NO_BUILD:-}" ] || bash packaging/build.sh x86_64-unknown-linux-gnu
# The inspecting tools: rpm(8) reads the .rpm headers, objdump the binary's glibc symbols.
source cross/lib.sh
apt_install rpm file binutils

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
out=target/packages
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
ok() { echo "ok   $*"; }
has() { # what text pattern: the text holds a line matching the extended regex
  if grep -Eq -- "$3" <<<"$2"; then ok "$1"; else fail "$1: no line matches /$3/ in:"; echo "$2" | sed 's/^/     /'; fi
}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"

# --- every .deb built for this version --------------------------------------------------------
for deb in "$out"/frazil_"${version}"-1_*.deb; do
  [ -e "$deb" ] || { fail "no .deb for $version in $out"; break; }
  name=$(basename "$deb")
  info=$(dpkg-deb -I "$deb")
  files=$(dpkg-deb -c "$deb")
  has "$name: Depends on glibc, libgcc and passwd (useradd)" "$info" '^ Depends: libc6 \(>= 2\.[0-9]+\), libgcc-s1, passwd$'
  # The glibc the binary asks for (its newest GLIBC_ symbol version) is no newer than Depends says.
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/frazil >"$tmp/frazil"
  needs=$(objdump -T "$tmp/frazil" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
  declared=$(dpkg-deb -f "$deb" Depends | sed -n 's/.*libc6 (>= \([0-9.]*\)).*/\1/p')
  if [ -z "$needs" ] || [ -z "$declared" ]; then
    fail "$name: could not read the glibc version the binary needs ('$needs') or Depends declares ('$declared')"
  else
    newest=$(printf '%s\n%s\n' "${needs#GLIBC_}" "$declared" | sort -V | tail -1)
    has "$name: the binary needs glibc ${needs#GLIBC_}, Depends says >= $declared" "$newest" "^${declared//./\\.}\$"
  fi
  machine=$(file -b "$tmp/frazil")
  has "$name: maintainer scripts" "$info" 'postinst'
  has "$name: prerm" "$info" ' prerm'
  has "$name: postrm" "$info" ' postrm'
  has "$name: the config is a conffile" "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" '^/etc/frazil/frazil.toml$'
  has "$name: /usr/bin/frazil 0755 root" "$files" '^-rwxr-xr-x (root/root|0/0) .* \./usr/bin/frazil$'
  has "$name: the config 0640" "$files" '^-rw-r----- (root/root|0/0) .* \./etc/frazil/frazil\.toml$'
  has "$name: package-setup 0755" "$files" '^-rwxr-xr-x (root/root|0/0) .* \./usr/lib/frazil/package-setup$'
  for unit in frazil.service frazil-flush.service frazil-flush.timer; do
    has "$name: $unit" "$files" "^-rw-r--r-- (root/root|0/0) .* \./usr/lib/systemd/system/$unit\$"
  done
  for doc in README.md LICENSE help.txt THIRD-PARTY.txt copyright; do
    has "$name: doc $doc" "$files" "\./usr/share/doc/frazil/$doc\$"
  done
  arch=$(dpkg-deb -f "$deb" Architecture)
  case "$arch" in
    amd64) has "$name: an x86-64 binary" "$machine" 'x86-64' ;;
    arm64) has "$name: an aarch64 binary" "$machine" 'aarch64' ;;
    armhf) has "$name: an ARM hard-float binary" "$machine" 'ARM, EABI5' ;;
    *) fail "$name: unexpected architecture $arch" ;;
  esac
done

# --- every .rpm built for this version --------------------------------------------------------
for rpm in "$out"/frazil-"${version}"-1.*.rpm; do
  case "$rpm" in *.x86_64.rpm|*.aarch64.rpm|*.armv7hl.rpm) ;; *) fail "$(basename "$rpm"): not an rpm architecture name" ;; esac
  [ -e "$rpm" ] || { fail "no .rpm for $version in $out"; break; }
  name=$(basename "$rpm")
  has "$name: name and license" "$(rpm -qip "$rpm" 2>/dev/null)" '^License *: Apache-2.0'
  modes=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm" 2>/dev/null)
  has "$name: /usr/bin/frazil 0755 root" "$modes" '^-rwxr-xr-x root root /usr/bin/frazil$'
  has "$name: the config 0640" "$modes" '^-rw-r----- root root /etc/frazil/frazil\.toml$'
  has "$name: frazil.service" "$modes" ' /usr/lib/systemd/system/frazil\.service$'
  has "$name: frazil-flush.timer" "$modes" ' /usr/lib/systemd/system/frazil-flush\.timer$'
  has "$name: the license" "$modes" ' /usr/share/licenses/frazil/LICENSE$'
  has "$name: the config is %config(noreplace)" \
    "$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" 2>/dev/null)" '^cn /etc/frazil/frazil\.toml$'
  scripts=$(rpm -qp --scripts "$rpm" 2>/dev/null)
  has "$name: %post runs package-setup" "$scripts" 'package-setup install'
  has "$name: %preun stops the units on erase" "$scripts" 'systemctl disable --now frazil.service'
  requires=$(rpm -qpR "$rpm" 2>/dev/null)
  has "$name: requires useradd" "$requires" '^/usr/sbin/useradd'
  has "$name: requires glibc" "$requires" '^libc\.so\.6'
done

# --- frazil-query's packages: the query engine beside the agent --------------------------------
for deb in "$out"/frazil-query_"${version}"-1_*.deb; do
  [ -e "$deb" ] || { fail "no frazil-query .deb for $version in $out"; break; }
  name=$(basename "$deb")
  has "$name: Depends on this version of frazil" "$(dpkg-deb -f "$deb" Depends)" "^frazil \\(= ${version//./\\.}-1\\), libc6"
  has "$name: /usr/bin/frazil-query 0755 root" "$(dpkg-deb -c "$deb")" '^-rwxr-xr-x (root/root|0/0) .* \./usr/bin/frazil-query$'
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/frazil-query >"$tmp/frazil-query"
  echo "     $name: frazil-query is $(stat -c %s "$tmp/frazil-query") bytes (stripped), frazil $(stat -c %s "$tmp/frazil" 2>/dev/null || echo '?')"
done
for rpm in "$out"/frazil-query-"${version}"-1.*.rpm; do
  [ -e "$rpm" ] || { fail "no frazil-query .rpm for $version in $out"; break; }
  name=$(basename "$rpm")
  has "$name: /usr/bin/frazil-query 0755 root" \
    "$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm" 2>/dev/null)" '^-rwxr-xr-x root root /usr/bin/frazil-query$'
  has "$name: requires frazil" "$(rpm -qpR "$rpm" 2>/dev/null)" "^frazil = ${version//./\\.}"
done

# --- install, use, upgrade, remove and purge the host's .deb -----------------------------------
install_checks() {
  deb=$(ls "$out"/frazil_"${version}"-1_"$(dpkg --print-architecture)".deb)
  as_frazil() { $sudo runuser -u frazil -- "$@"; }

  $sudo dpkg -i "$deb" >/dev/null
  has "user frazil: system user, home /var/lib/frazil, no login" "$(getent passwd frazil)" '^frazil:x:[0-9]+:[0-9]+:[^:]*:/var/lib/frazil:/usr/sbin/nologin$'
  has "group frazil" "$(getent group frazil)" '^frazil:x:'
  has "spool dir 0700 frazil:frazil" "$(stat -c '%a %U:%G' /var/lib/frazil)" '^700 frazil:frazil$'
  has "config 0640 root:frazil" "$(stat -c '%a %U:%G' /etc/frazil/frazil.toml)" '^640 root:frazil$'
  has "frazil --version as frazil" "$(as_frazil frazil --version)" "^frazil $version\$"
  set +e; checked=$(as_frazil frazil check 2>&1); code=$?; set -e
  has "frazil check as frazil: the packaged config is valid" "$checked" '^ok   config: /etc/frazil/frazil\.toml is valid'
  has "frazil check as frazil: the spool is usable" "$checked" '^ok   spool /var/lib/frazil:'
  # Nothing listens on the placeholder addresses here, so check reports the broker and exits 75.
  has "frazil check exits 75 with no broker" "$code" '^75$'
  has "the units are installed" "$(ls /usr/lib/systemd/system/)" '^frazil-flush\.timer$'

  # The query engine: `frazil query` finds it beside /usr/bin/frazil and answers (no spool yet,
  # no catalog asked: an empty local answer still runs the SQL).
  query_deb=$(ls "$out"/frazil-query_"${version}"-1_"$(dpkg --print-architecture)".deb)
  $sudo dpkg -i "$query_deb" >/dev/null
  has "frazil query --offline runs frazil-query as frazil" "$(as_frazil frazil query --offline 'SELECT 40 + 2 AS answer' 2>&1)" '\| 42 +\|'
  $sudo dpkg -r frazil-query >/dev/null
  has "frazil query without frazil-query says how to install it" "$(as_frazil frazil query 'SELECT 1' 2>&1 || true)" 'install the frazil-query package'

  # systemd's own checks of the units, now that /usr/bin/frazil exists.
  if command -v systemd-analyze >/dev/null; then
    for unit in frazil.service frazil-flush.service frazil-flush.timer; do
      if verify=$(systemd-analyze verify "/usr/lib/systemd/system/$unit" 2>&1) && [ -z "$verify" ]; then
        ok "systemd-analyze verify $unit"
      else
        fail "systemd-analyze verify $unit: $verify"
      fi
    done
    for unit in frazil.service frazil-flush.service; do
      score=$(systemd-analyze security --offline=true --no-pager "/usr/lib/systemd/system/$unit" 2>&1 | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) \(.*\)/\1 \2/p')
      echo "     systemd-analyze security $unit: $score"
      # 0 is a unit that can do nothing; anything under 2 is rated OK. A network agent cannot
      # drop its sockets, so this guards against a hardening line going missing.
      has "$unit exposure under 2.0" "$score" '^(0|1)\.[0-9] '
    done
  else
    echo "skip systemd-analyze: not installed"
  fi

  # An upgrade (the same package again) keeps an edited config, its mode, and the spool.
  echo '# edited on this gateway' | $sudo tee -a /etc/frazil/frazil.toml >/dev/null
  $sudo chmod 0600 /etc/frazil/frazil.toml
  $sudo chown frazil:frazil /etc/frazil/frazil.toml
  as_frazil touch /var/lib/frazil/kept
  $sudo dpkg -i "$deb" >/dev/null
  has "upgrade keeps the edited config" "$(cat /etc/frazil/frazil.toml)" '^# edited on this gateway$'
  has "upgrade keeps the config's owner and mode" "$(stat -c '%a %U:%G' /etc/frazil/frazil.toml)" '^600 frazil:frazil$'

  # Removal keeps the spool (it may hold events not yet committed), the user and the config.
  $sudo dpkg -r frazil >/dev/null
  has "remove: the binary is gone" "$(ls /usr/bin/frazil 2>&1 || true)" 'No such file'
  has "remove: the spool is kept" "$(ls /var/lib/frazil)" '^kept$'
  has "remove: the config is kept" "$(cat /etc/frazil/frazil.toml)" '^# edited on this gateway$'
  has "remove: the user is kept" "$(getent passwd frazil || true)" '^frazil:'

  # Purge deletes all of it.
  $sudo dpkg -P frazil >/dev/null
  has "purge: the spool is gone" "$(ls -d /var/lib/frazil 2>&1 || true)" 'No such file'
  has "purge: /etc/frazil is gone" "$(ls -d /etc/frazil 2>&1 || true)" 'No such file'
  has "purge: the user is gone" "$(getent passwd frazil || echo none)" '^none$'
  has "purge: the group is gone" "$(getent group frazil || echo none)" '^none$'
  has "purge: dpkg has no record of it" "$(dpkg -s frazil 2>&1 || true)" 'is not installed'
}

if [ -n "$sudo" ] && ! sudo -n true 2>/dev/null; then
  echo "skip install checks: they need root or passwordless sudo (dpkg -i)"
elif dpkg -s frazil >/dev/null 2>&1 || getent passwd frazil >/dev/null; then
  echo "skip install checks: frazil (or a frazil user) is already on this machine; purge it to run them"
else
  install_checks
fi

if [ "$failures" -gt 0 ]; then
  echo "packaging/test.sh: $failures check(s) failed"
  exit 1
fi
echo "packaging/test.sh: all checks passed"
