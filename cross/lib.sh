# Sourced by cross/build.sh and cross/test.sh: installs what one target needs, when missing.

apt_install() { # debian packages...
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  echo "cross: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

cross_setup() { # target triple
  local t=$1
  case "$t" in
    x86_64-unknown-linux-gnu) ;;
    aarch64-unknown-linux-gnu|aarch64-unknown-linux-musl) apt_install gcc-aarch64-linux-gnu qemu-user-static file ;;
    armv7-unknown-linux-gnueabihf) apt_install gcc-arm-linux-gnueabihf qemu-user-static file ;;
    x86_64-unknown-linux-musl) apt_install musl-tools file ;;
    *) echo "cross: unknown target $t" >&2; return 2 ;;
  esac
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
}

cross_run() { # target binary args...: runs a binary built for target, through qemu-user when foreign
  local t=$1; shift
  case "$t" in
    x86_64-*) "$@" ;;
    aarch64-unknown-linux-gnu) qemu-aarch64-static -L /usr/aarch64-linux-gnu "$@" ;;
    aarch64-unknown-linux-musl) qemu-aarch64-static "$@" ;;
    armv7-unknown-linux-gnueabihf) qemu-arm-static -L /usr/arm-linux-gnueabihf "$@" ;;
  esac
}
