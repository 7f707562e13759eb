# Shared by the bench scripts: the builds and tools they run, and a frazil config for the
# servers on loopback (bench_config, called after tests/servers' env is sourced).

# bench_tools: builds frazil (release, for $TARGET when set) and the fetch-only ceiling
# (benches/pipeline.rs), installs the servers, and sets `frazil`, `pipeline` and `py`.
bench_tools() {
  local target=()
  [ -z "${TARGET:-}" ] || target=(--target "$TARGET")
  cargo build --release --locked --quiet -p frazil --bin frazil "${target[@]}"
  pipeline=$(cargo bench --locked --bench pipeline --no-run "${target[@]}" 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
  frazil="$PWD/target/${TARGET:+$TARGET/}release/frazil"
  bash tests/servers/install.sh >/dev/null
  py="${FRAZIL_VENV:-$HOME/.cache/frazil/venv}/bin/python"
}

# bench_config DIR TOPIC TABLE NAMESPACE [EXTRA-TOML]: writes DIR/frazil.toml (mode 600).
bench_config() {
  mkdir -p "$1"
  cat >"$1/frazil.toml" <<TOML
[agent]
id = "bench"
[kafka]
brokers = ["$FRAZIL_KAFKA"]
topics = ["$2"]
[spool]
dir = "$1/spool"
[catalog]
uri = "$FRAZIL_CATALOG"
namespace = "$4"
[catalog.tables]
"$2" = "$3"
[storage.s3]
endpoint = "$FRAZIL_S3_ENDPOINT"
region = "$FRAZIL_S3_REGION"
access_key_id = "$FRAZIL_S3_ACCESS_KEY"
secret_access_key = "$FRAZIL_S3_SECRET_KEY"
path_style = true
${5:-}
TOML
  chmod 600 "$1/frazil.toml"
}
