# Shared by the bench scripts (sourced after tests/servers' env): a frazil config for the
# servers on loopback.
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
