//! The TOML configuration: parsed strictly (unknown keys are errors), then validated into
//! [`Config`], whose every field has a working default except the endpoints.
//! Every error names the key, the bad value and the fix.

mod access;
mod load;
pub mod partition;
pub mod per_table;
mod raw;
mod units;

pub use load::ENV_PREFIX;
use load::{check_secret_file, fix_for, guess_key, parse_error};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use access::{CatalogAuth, KafkaSasl, KafkaTls, SaslMechanism};
use access::{catalog_auth, kafka_sasl, kafka_tls, secret};
pub use units::{parse_duration, parse_size};

use raw::RawConfig;

use crate::upload::S3Settings;
use crate::{Error, Result};

/// Where to start a partition that neither the spool index nor the table has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
}

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    pub brokers: Vec<String>,
    /// Topics read by name: each must exist.
    pub topics: Vec<String>,
    /// Topics read because their name matches (internal `__` topics never do).
    pub topic_pattern: Option<regex_lite::Regex>,
    /// How often `run` looks for new topics and partitions.
    pub refresh_interval: Duration,
    /// How values are encoded: `format` for every topic, `formats` per topic.
    pub format: crate::decode::Format,
    pub formats: BTreeMap<String, crate::decode::Format>,
    pub start: StartAt,
    pub client_id: String,
    /// Upper bound of one fetch response (one partition's records).
    pub fetch_max_bytes: u64,
    /// Fetches kept in flight at once, each for another partition: records arrive while earlier
    /// ones are decoded. Records in memory are bounded by this times `fetch_max_bytes`.
    pub fetches_in_flight: usize,
    /// How long the broker may hold a fetch open when it has nothing new.
    pub fetch_max_wait: Duration,
    /// Our own bound on any single broker request (rskafka has none).
    pub request_timeout: Duration,
    /// A record whose key and value together are larger goes to the dead-letter table.
    pub max_record_bytes: u64,
    /// TLS to the brokers (`None`: plaintext).
    pub tls: Option<KafkaTls>,
    pub sasl: Option<KafkaSasl>,
}

/// Where Avro topics' writer schemas come from.
#[derive(Clone)]
pub struct RegistryConfig {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA certificates trusted for an https URL (default: the system's CA store).
    pub ca_file: Option<PathBuf>,
    pub request_timeout: Duration,
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| access::REDACTED))
            .field("ca_file", &self.ca_file)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Roll the hot buffer of a partition into a spool file when its input reaches this many bytes...
    pub file_max_bytes: u64,
    /// ...or this many rows...
    pub file_max_rows: usize,
    /// ...or when its oldest row has waited this long.
    pub file_max_age: Duration,
    /// The hot buffers of all partitions together: past this many bytes of input, the largest
    /// buffer rolls into a spool file. This, not the backlog, bounds the agent's memory.
    pub buffer_max_bytes: u64,
    /// Spool files of a table are merged into uploads of about this size.
    pub upload_target_bytes: u64,
    /// Fetching pauses while the spool holds this many bytes (Kafka keeps the rest meanwhile).
    pub max_bytes: Option<u64>,
    /// Fetching also pauses while the spool's filesystem has less than this free.
    pub min_free: Option<u64>,
}

/// Where table metadata is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogKind {
    /// An Iceberg REST catalog at `uri`.
    Rest,
    /// Metadata files in the warehouse itself, committed with create-if-absent writes.
    Filesystem,
}

#[derive(Clone, Debug)]
pub struct CatalogConfig {
    pub kind: CatalogKind,
    /// The REST catalog's base URL (empty for a filesystem catalog).
    pub uri: String,
    /// Sent as `warehouse` to a REST catalog (`None` sends nothing); a filesystem catalog's root.
    pub warehouse: Option<String>,
    pub namespace: Vec<String>,
    /// Table name template; `{topic}` is replaced by the topic name made safe for Iceberg.
    pub table: String,
    /// Dead-letter table name template; `{table}` is replaced by the table's name.
    pub dead_letter_table: String,
    /// Explicit topic → table entries; they win over the template.
    pub tables: BTreeMap<String, String>,
    pub commit_interval: Duration,
    pub request_timeout: Duration,
    /// PEM CA certificates trusted for an https URI (default: the system's CA store).
    pub ca_file: Option<PathBuf>,
    pub auth: CatalogAuth,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// This agent's name, recorded in every snapshot it commits. Offsets are kept per agent, so
    /// two gateways with their own brokers can feed one table. Defaults to the host name.
    pub agent_id: String,
    pub kafka: KafkaConfig,
    pub spool: SpoolConfig,
    pub catalog: CatalogConfig,
    pub s3: S3Settings,
    /// Needed when some topic is Avro.
    pub schema_registry: Option<RegistryConfig>,
    /// `[tables."<table>"]` entries (`"*"`: every table without its own value for a key).
    pub tables: BTreeMap<String, per_table::TableSettings>,
    /// JSON fields that hold times.
    pub time_fields: crate::decode::TimeFields,
    /// Where `run` serves Prometheus metrics and its health check; `None`: nowhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

pub const DEFAULT_PATH: &str = "/etc/frazil/frazil.toml";

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(
                "--config",
                format!("cannot read {}: {e}", path.display()),
                "pass --config with the path of a readable frazil.toml",
            )
        })?;
        let cfg = Config::parse_with_env(&text, std::env::vars()).map_err(|e| match e {
            Error::Config { key, problem, fix } => {
                Error::Config { key, problem: format!("{problem} (in {})", path.display()), fix }
            }
            other => other,
        })?;
        check_secret_file(path, &text)?;
        Ok(cfg)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config> {
        Config::parse_with_env(text, std::iter::empty())
    }

    /// Parses TOML text with environment overrides: `FRAZIL__<SECTION>__<KEY>=value` (double
    /// underscores between levels, any case) sets that key, e.g. `FRAZIL__STORAGE__S3__SECRET_ACCESS_KEY`
    /// or `FRAZIL__KAFKA__BROKERS='["10.0.0.5:9092"]'`. A value is read as TOML when it is one (a
    /// number, a boolean, an array), else as a string. Other variables are ignored.
    pub fn parse_with_env(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config> {
        let overrides: Vec<(Vec<String>, String)> = env
            .into_iter()
            .filter_map(|(k, v)| {
                let path = k.strip_prefix(ENV_PREFIX)?;
                Some((path.split("__").map(str::to_ascii_lowercase).collect(), v))
            })
            .collect();
        if overrides.is_empty() {
            return Config::parse_text(text);
        }
        let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_error(text, &e))?;
        for (path, value) in overrides {
            let key = path.join(".");
            if path.iter().any(String::is_empty) {
                return Err(Error::config(
                    key,
                    "is not a key (an empty level between double underscores)",
                    "write e.g. FRAZIL__KAFKA__BROKERS",
                ));
            }
            let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            let (last, parents) = path.split_last().expect("split gives at least one part");
            let mut at = &mut table;
            for p in parents {
                let entry = at.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                at = entry.as_table_mut().ok_or_else(|| {
                    Error::config(
                        key.clone(),
                        format!("`{p}` is not a section"),
                        "point the variable at a key inside a section",
                    )
                })?;
            }
            at.insert(last.clone(), parsed);
        }
        let raw: RawConfig = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            Error::config(
                guess_key(e.message()).unwrap_or_else(|| "(environment)".into()),
                format!("with FRAZIL__* overrides: {}", e.message().trim()),
                fix_for(e.message()),
            )
        })?;
        validate(raw)
    }

    fn parse_text(text: &str) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| parse_error(text, &e))?;
        validate(raw)
    }
}

fn format(key: &str, value: &str) -> Result<crate::decode::Format> {
    use crate::decode::Format;
    match value {
        "json" => Ok(Format::Json),
        "raw" => Ok(Format::Raw),
        "text" => Ok(Format::Text),
        "avro" => Ok(Format::Avro),
        other => Err(Error::config(
            key,
            format!("`{other}` is not a format"),
            "use \"json\" (objects, schema inferred), \"avro\" (Confluent wire format, with [schema_registry]), \"raw\" (bytes) or \"text\" (UTF-8)",
        )),
    }
}

fn duration(key: &str, value: Option<String>, default: &str) -> Result<Duration> {
    let v = value.unwrap_or_else(|| default.to_string());
    parse_duration(&v).map_err(|p| Error::config(key, p, format!("write a duration such as \"{default}\"")))
}

/// A duration that may be left unset (`None`), else parsed as [`duration`] does.
fn duration_opt(key: &str, value: Option<String>, example: &str) -> Result<Option<Duration>> {
    value.map(|v| duration(key, Some(v), example)).transpose()
}

/// A size that may be left unset (`None`), else parsed as [`size`] does.
fn size_opt(key: &str, value: Option<String>, example: &str) -> Result<Option<u64>> {
    value.map(|v| size(key, Some(v), example)).transpose()
}

fn size(key: &str, value: Option<String>, default: &str) -> Result<u64> {
    let v = value.unwrap_or_else(|| default.to_string());
    parse_size(&v).map_err(|p| Error::config(key, p, format!("write a size such as \"{default}\"")))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "frazil".into())
}

/// A limit that can be switched off with "none".
fn optional_size(key: &str, value: Option<String>, default: &str) -> Result<Option<u64>> {
    match value.as_deref() {
        Some("none") => Ok(None),
        _ => size(key, value, default).map(Some),
    }
}

fn validate(raw: RawConfig) -> Result<Config> {
    let agent_id = raw.agent.id.unwrap_or_else(hostname);
    if agent_id.is_empty() || !agent_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(Error::config(
            "agent.id",
            format!("`{agent_id}` is not a usable agent id"),
            "use letters, digits, '-', '_' or '.', e.g. \"gateway-7\"",
        ));
    }
    let k = raw.kafka;
    if k.brokers.is_empty() {
        return Err(Error::config(
            "kafka.brokers",
            "is empty",
            "list at least one broker, e.g. brokers = [\"127.0.0.1:9092\"]",
        ));
    }
    if let Some(b) = k.brokers.iter().find(|b| !b.contains(':')) {
        return Err(Error::config(
            "kafka.brokers",
            format!("`{b}` has no port"),
            "write host:port, e.g. \"127.0.0.1:9092\"",
        ));
    }
    let topic_pattern = match k.topic_pattern.as_deref() {
        None => None,
        Some(p) => Some(regex_lite::Regex::new(p).map_err(|e| {
            Error::config(
                "kafka.topic_pattern",
                format!("`{p}` is not a regular expression ({e})"),
                "write e.g. \"^sensors\\\\..*\" (TOML strings need \\\\ for a backslash)",
            )
        })?),
    };
    if k.topics.is_empty() && topic_pattern.is_none() {
        return Err(Error::config(
            "kafka.topics",
            "is empty and kafka.topic_pattern is not set",
            "list the topics to read, e.g. topics = [\"events\"], or set topic_pattern = \"^events_.*\"",
        ));
    }
    let start = match k.start.as_deref().unwrap_or("earliest") {
        "earliest" => StartAt::Earliest,
        "latest" => StartAt::Latest,
        other => {
            return Err(Error::config(
                "kafka.start",
                format!("`{other}` is not a start position"),
                "use \"earliest\" or \"latest\"",
            ));
        }
    };
    let fetch_max_bytes = size("kafka.fetch_max_bytes", k.fetch_max_bytes, "4MiB")?;
    if !(1024..=i32::MAX as u64).contains(&fetch_max_bytes) {
        return Err(Error::config(
            "kafka.fetch_max_bytes",
            format!("{fetch_max_bytes} bytes is out of range"),
            "use between 1KiB and 2GiB, e.g. \"4MiB\"",
        ));
    }
    let fetches_in_flight = k.fetches_in_flight.unwrap_or(2);
    if !(1..=256).contains(&fetches_in_flight) {
        return Err(Error::config(
            "kafka.fetches_in_flight",
            format!("{fetches_in_flight} is out of range"),
            "use between 1 and 256, e.g. 2",
        ));
    }
    let kafka = KafkaConfig {
        brokers: k.brokers,
        topics: k.topics,
        topic_pattern,
        refresh_interval: duration("kafka.refresh_interval", k.refresh_interval, "30s")?,
        format: format("kafka.format", k.format.as_deref().unwrap_or("json"))?,
        formats: k
            .formats
            .iter()
            .map(|(t, f)| Ok((t.clone(), format(&format!("kafka.formats.\"{t}\""), f)?)))
            .collect::<Result<_>>()?,
        start,
        client_id: k.client_id.unwrap_or_else(|| "frazil".into()),
        fetch_max_bytes,
        fetches_in_flight,
        fetch_max_wait: duration("kafka.fetch_max_wait", k.fetch_max_wait, "10ms")?,
        request_timeout: duration("kafka.request_timeout", k.request_timeout, "30s")?,
        max_record_bytes: size("kafka.max_record_bytes", k.max_record_bytes, "1MiB")?,
        tls: kafka_tls(k.tls, k.ca_file, k.cert_file, k.key_file)?,
        sasl: kafka_sasl(k.sasl_mechanism, k.username, secret("kafka.password", k.password, k.password_file)?)?,
    };

    let s = raw.spool;
    let spool = SpoolConfig {
        dir: s.dir.unwrap_or_else(|| PathBuf::from("/var/lib/frazil")),
        file_max_bytes: size("spool.file_max_bytes", s.file_max_bytes, "16MiB")?,
        file_max_rows: s.file_max_rows.unwrap_or(100_000),
        file_max_age: duration("spool.file_max_age", s.file_max_age, "10s")?,
        buffer_max_bytes: size("spool.buffer_max_bytes", s.buffer_max_bytes, "8MiB")?,
        upload_target_bytes: size("spool.upload_target_size", s.upload_target_size, "128MiB")?,
        max_bytes: optional_size("spool.max_bytes", s.max_bytes, "4GiB")?,
        min_free: optional_size("spool.min_free", s.min_free, "256MiB")?,
    };
    if spool.file_max_rows == 0 {
        return Err(Error::config("spool.file_max_rows", "is 0", "use a positive number such as 100000"));
    }

    let c = raw.catalog;
    let kind = match c.kind.as_deref().unwrap_or("rest") {
        "rest" => CatalogKind::Rest,
        "filesystem" => CatalogKind::Filesystem,
        other => {
            return Err(Error::config(
                "catalog.type",
                format!("`{other}` is not a catalog type"),
                "write \"rest\" (a REST catalog at catalog.uri) or \"filesystem\" (metadata kept in catalog.warehouse)",
            ));
        }
    };
    let uri = match (&kind, c.uri) {
        (CatalogKind::Rest, None) => {
            return Err(Error::config(
                "catalog.uri",
                "is required for a REST catalog",
                "write the REST catalog's base URL, e.g. \"http://127.0.0.1:8181\", or set type = \"filesystem\"",
            ));
        }
        (CatalogKind::Rest, Some(u)) if !(u.starts_with("http://") || u.starts_with("https://")) => {
            return Err(Error::config(
                "catalog.uri",
                format!("`{u}` is not an http(s) URL"),
                "write the REST catalog's base URL, e.g. \"http://127.0.0.1:8181\"",
            ));
        }
        (_, u) => u.unwrap_or_default().trim_end_matches('/').to_string(),
    };
    if kind == CatalogKind::Filesystem {
        let w = c.warehouse.as_deref().unwrap_or("");
        if !(w.starts_with("file:///") || w.starts_with("s3://") || w.starts_with("s3a://")) {
            return Err(Error::config(
                "catalog.warehouse",
                format!("`{w}` is not a warehouse URL a filesystem catalog can keep tables in"),
                "write e.g. \"file:///var/lib/frazil/warehouse\" or \"s3://bucket/warehouse\"",
            ));
        }
    }
    let namespace: Vec<String> = c.namespace.as_deref().unwrap_or("frazil").split('.').map(str::to_string).collect();
    if namespace.iter().any(|p| p.is_empty()) {
        return Err(Error::config("catalog.namespace", "has an empty level", "write e.g. \"edge\" or \"edge.site1\""));
    }
    let table = c.table.unwrap_or_else(|| "{topic}".into());
    if table.is_empty() || table.contains('.') {
        return Err(Error::config(
            "catalog.table",
            format!("`{table}` is not a table name template"),
            "write e.g. \"{topic}\" or \"events_{topic}\" (no dots)",
        ));
    }
    let dead_letter_table = c.dead_letter_table.unwrap_or_else(|| "{table}__dlq".into());
    if dead_letter_table.is_empty() || dead_letter_table.contains('.') || dead_letter_table == "{table}" {
        return Err(Error::config(
            "catalog.dead_letter_table",
            format!("`{dead_letter_table}` is not a dead-letter table name template"),
            "write e.g. \"{table}__dlq\" (a name other than the table's own, no dots)",
        ));
    }
    for (topic, t) in &c.tables {
        if t.is_empty() || !t.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_') {
            return Err(Error::config(
                format!("catalog.tables.\"{topic}\""),
                format!("`{t}` is not a table name"),
                "use lowercase letters, digits and `_`, e.g. \"temperatures\"",
            ));
        }
    }
    if c.partition_by.is_some() {
        return Err(Error::config(
            "catalog.partition_by",
            "has moved to the per-table settings",
            "write [tables.\"<table>\"] (or [tables.\"*\"]) with partition_by = [\"day(_kafka_timestamp)\"]",
        ));
    }
    let catalog = CatalogConfig {
        kind,
        warehouse: c.warehouse.filter(|w| !w.is_empty()),
        namespace,
        table,
        dead_letter_table,
        tables: c.tables,
        commit_interval: duration("catalog.commit_interval", c.commit_interval, "60s")?,
        request_timeout: duration("catalog.request_timeout", c.request_timeout, "30s")?,
        ca_file: c.ca_file,
        auth: catalog_auth(&uri, c.token, c.token_file, c.credential, c.credential_file, c.oauth2_server_uri, c.scope)?,
        uri,
    };

    let s3 = raw.storage.s3;
    let s3 = S3Settings {
        allow_http: s3.allow_http.unwrap_or_else(|| s3.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"))),
        endpoint: s3.endpoint,
        region: s3.region,
        access_key_id: s3.access_key_id,
        secret_access_key: secret("storage.s3.secret_access_key", s3.secret_access_key, s3.secret_access_key_file)?,
        session_token: secret("storage.s3.session_token", s3.session_token, s3.session_token_file)?,
        path_style: s3.path_style.unwrap_or(false),
        ca_file: s3.ca_file.filter(|p| !p.as_os_str().is_empty()),
    };
    let epoch_unit = match raw.json.epoch_unit.as_deref().unwrap_or("ms") {
        "s" => crate::decode::EpochUnit::Seconds,
        "ms" => crate::decode::EpochUnit::Millis,
        "us" => crate::decode::EpochUnit::Micros,
        other => {
            return Err(Error::config(
                "json.epoch_unit",
                format!("`{other}` is not a unit"),
                "use \"s\", \"ms\" or \"us\"",
            ));
        }
    };
    let time_fields = crate::decode::TimeFields { names: raw.json.timestamp_fields, epoch_unit };
    let metrics_listen = match raw.metrics.listen.as_deref() {
        None | Some("") | Some("off") => None,
        Some(a) => Some(a.parse::<std::net::SocketAddr>().map_err(|e| {
            Error::config(
                "metrics.listen",
                format!("`{a}` is not an address and port ({e})"),
                "write e.g. \"127.0.0.1:9464\", or \"off\"",
            )
        })?),
    };
    let schema_registry = match raw.schema_registry {
        Some(r) => {
            if !(r.url.starts_with("http://") || r.url.starts_with("https://")) {
                return Err(Error::config(
                    "schema_registry.url",
                    format!("`{}` is not an http(s) URL", r.url),
                    "write the registry's base URL, e.g. \"http://127.0.0.1:8081\"",
                ));
            }
            if r.password.is_some() && r.username.is_none() || r.password_file.is_some() && r.username.is_none() {
                return Err(Error::config(
                    "schema_registry.username",
                    "is not set but a password is",
                    "set username too (basic auth sends both)",
                ));
            }
            Some(RegistryConfig {
                url: r.url,
                username: r.username,
                password: secret("schema_registry.password", r.password, r.password_file)?,
                ca_file: r.ca_file,
                request_timeout: duration("schema_registry.request_timeout", r.request_timeout, "30s")?,
            })
        }
        None => None,
    };
    let avro = kafka.format == crate::decode::Format::Avro
        || kafka.formats.values().any(|f| *f == crate::decode::Format::Avro);
    if avro && schema_registry.is_none() {
        return Err(Error::config(
            "schema_registry.url",
            "is not set but a topic's format is \"avro\"",
            "add a [schema_registry] section with url = \"http://host:8081\"",
        ));
    }
    let tables = per_table::settings(raw.tables)?;
    Ok(Config { agent_id, kafka, spool, catalog, s3, schema_registry, tables, time_fields, metrics_listen })
}

impl Config {
    /// The partition fields frazil creates `table` with: its own entry, else `"*"`'s (not for
    /// dead-letter tables, which the caller asks about with `dead_letter: true`).
    pub fn partition_fields(&self, table: &str, dead_letter: bool) -> &[partition::PartitionField] {
        if dead_letter {
            return &[];
        }
        self.table_setting(table, |t| t.partition_by.as_ref()).map_or(&[], Vec::as_slice)
    }

    /// The sort order frazil creates `table` with and writes each spool file's rows in (none for
    /// dead-letter tables).
    pub fn sort_keys(&self, table: &str, dead_letter: bool) -> &[per_table::SortKey] {
        if dead_letter {
            return &[];
        }
        self.table_setting(table, |t| t.sort_by.as_ref()).map_or(&[], Vec::as_slice)
    }

    /// The size `table`'s spool files are merged up to for upload.
    pub fn upload_target_bytes(&self, table: &str) -> u64 {
        self.table_setting(table, |t| t.upload_target_bytes.as_ref()).copied().unwrap_or(self.spool.upload_target_bytes)
    }

    /// How often `run` uploads and commits `table`.
    pub fn commit_interval(&self, table: &str) -> Duration {
        self.table_setting(table, |t| t.commit_interval.as_ref()).copied().unwrap_or(self.catalog.commit_interval)
    }

    /// The shortest commit interval of any table: how often `run` looks for tables that are due.
    pub fn shortest_commit_interval(&self) -> Duration {
        self.tables.values().filter_map(|t| t.commit_interval).fold(self.catalog.commit_interval, Duration::min)
    }

    /// A key of `[tables."<table>"]`, else of `[tables."*"]`.
    fn table_setting<'a, T>(
        &'a self,
        table: &str,
        key: impl Fn(&'a per_table::TableSettings) -> Option<&'a T>,
    ) -> Option<&'a T> {
        self.tables.get(table).and_then(&key).or_else(|| self.tables.get("*").and_then(&key))
    }

    /// The table `topic` goes to: its explicit entry in `catalog.tables`, else the template.
    pub fn table_for(&self, topic: &str) -> String {
        match self.catalog.tables.get(topic) {
            Some(t) => t.clone(),
            None => table_name(&self.catalog.table, topic),
        }
    }
}

impl KafkaConfig {
    /// How `topic`'s values are encoded.
    pub fn format_for(&self, topic: &str) -> crate::decode::Format {
        self.formats.get(topic).copied().unwrap_or(self.format)
    }

    /// Whether `topic` is read: listed by name, or matching the pattern (never an internal `__` topic).
    pub fn reads(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
            || (!topic.starts_with("__") && self.topic_pattern.as_ref().is_some_and(|p| p.is_match(topic)))
    }
}

/// The dead-letter table of `table` (a name [`table_name`] made).
pub fn dead_letter_table_name(template: &str, table: &str) -> String {
    table_name(&template.replace("{table}", table), "")
}

/// The table name for a topic: the template with `{topic}` replaced, keeping only characters every
/// Iceberg catalog and engine accepts unquoted (letters, digits, `_`); anything else becomes `_`.
pub fn table_name(template: &str, topic: &str) -> String {
    template
        .replace("{topic}", topic)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c.to_ascii_lowercase() } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests;
