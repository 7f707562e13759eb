//! The TOML configuration: parsed strictly (unknown keys are errors), then validated into
//! [`Config`], whose every field has a working default except the endpoints.
//! Every error names the key, the bad value and the fix.

mod access;
pub mod columns;
mod group;
mod load;
pub mod partition;
pub mod per_table;
mod raw;
mod units;
mod validate;

pub use load::ENV_PREFIX;
use load::{check_secret_file, fix_for, guess_key, parse_error};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use access::{CatalogAuth, KafkaSasl, KafkaTls, SaslMechanism};
pub use units::{parse_duration, parse_size};

use raw::RawConfig;
use validate::validate;

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
    /// How long the broker may hold a fetch open when it has nothing new, while records flow.
    pub fetch_max_wait: Duration,
    /// While every partition comes back empty, fetches wait longer, up to this, and every
    /// partition is asked in one request (one per broker), so an idle agent sleeps instead of
    /// polling: the most a partition that wakes up waits before it is read. Never below
    /// `fetch_max_wait`.
    pub fetch_idle_wait: Duration,
    /// Our own bound on any single broker request (rskafka has none).
    pub request_timeout: Duration,
    /// A record whose key and value together are larger goes to the dead-letter table.
    pub max_record_bytes: u64,
    /// TLS to the brokers (`None`: plaintext).
    pub tls: Option<KafkaTls>,
    pub sasl: Option<KafkaSasl>,
    /// `kafka.group`: the consumer group this agent shares its topics' partitions with.
    pub group: Option<GroupConfig>,
    /// `kafka.partitions`: per topic, the partitions to read, whatever the group assigns.
    pub partitions: BTreeMap<String, Vec<i32>>,
}

/// Membership of a Kafka consumer group (`kafka.group`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    pub name: String,
    /// The coordinator drops a member it has not heard from for this long.
    pub session_timeout: Duration,
    /// How often a member says it is alive (and hears of a rebalance): every 3 s, or a third of
    /// a shorter session timeout.
    pub heartbeat_interval: Duration,
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
    /// The hot buffers of all partitions together: past this much memory (rows in Arrow
    /// columns, dead letters, and the bytes of records not yet decoded), the largest buffer rolls
    /// into a spool file. This, not the backlog, bounds the agent's memory.
    pub buffer_max_bytes: u64,
    /// Spool files of a table are merged into uploads of about this size.
    pub upload_target_bytes: u64,
    /// Fetching pauses while the spool holds this many bytes (Kafka keeps the rest meanwhile).
    pub max_bytes: Option<u64>,
    /// Fetching also pauses while the spool's filesystem has less than this free.
    pub min_free: Option<u64>,
    /// Committed spool files are kept this long (by their age) for queries while offline; zero
    /// removes them at once. Kept files never pause fetching: they go first when room is needed.
    pub keep_committed: Duration,
    /// ...and at most this many bytes of them, the oldest removed first.
    pub keep_committed_bytes: u64,
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

// The unit parsers below serve both `validate` and `per_table`, so they live here, above both.

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

    /// How far `table`'s schema may grow, each limit from `[tables."<table>"]`, else `"*"`, else
    /// the default (`decode::guard`).
    pub fn limits(&self, table: &str) -> crate::decode::Limits {
        let d = crate::decode::Limits::default();
        let get = |key: fn(&per_table::TableSettings) -> Option<&usize>, default| {
            self.table_setting(table, key).copied().unwrap_or(default)
        };
        crate::decode::Limits {
            max_columns: get(|t| t.max_columns.as_ref(), d.max_columns),
            max_new_fields: get(|t| t.max_new_fields.as_ref(), d.max_new_fields),
            max_depth: get(|t| t.max_depth.as_ref(), d.max_depth),
            max_name_length: get(|t| t.max_name_length.as_ref(), d.max_name_length),
        }
    }

    /// What `table` does with a JSON key it has no column for (default: it grows a column).
    pub fn unknown_keys(&self, table: &str) -> crate::decode::UnknownKeys {
        self.table_setting(table, |t| t.unknown_keys.as_ref()).copied().unwrap_or_default()
    }

    /// The user columns the operator gave for `table`, when a new table is not to be inferred.
    pub fn given_schema(&self, table: &str) -> Option<&std::sync::Arc<iceberg::spec::Schema>> {
        self.table_setting(table, |t| t.given.as_ref()).map(|(s, _)| s)
    }

    /// How often `run` uploads and commits `table`.
    pub fn commit_interval(&self, table: &str) -> Duration {
        self.table_setting(table, |t| t.commit_interval.as_ref()).copied().unwrap_or(self.catalog.commit_interval)
    }

    /// How `table` is maintained: each key from `[tables."<table>"]`, else `"*"`, else the
    /// default (`maintain::Policy::default`).
    pub fn maintenance(&self, table: &str) -> crate::maintain::Policy {
        let d = crate::maintain::Policy::default();
        crate::maintain::Policy {
            interval: self.table_setting(table, |t| t.maintain_interval.as_ref()).copied().unwrap_or(d.interval),
            max_manifests: self.table_setting(table, |t| t.max_manifests.as_ref()).copied().unwrap_or(d.max_manifests),
            manifest_target_bytes: self
                .table_setting(table, |t| t.manifest_target_bytes.as_ref())
                .copied()
                .unwrap_or(d.manifest_target_bytes),
            expire_after: self.table_setting(table, |t| t.expire_after.as_ref()).copied().unwrap_or(d.expire_after),
            keep_snapshots: self
                .table_setting(table, |t| t.keep_snapshots.as_ref())
                .copied()
                .unwrap_or(d.keep_snapshots),
            retired_after: (self.commit_interval(table) * 10).max(Duration::from_secs(600)),
            file_target_bytes: self.upload_target_bytes(table),
            compact_bytes_per_pass: self
                .table_setting(table, |t| t.compact_bytes_per_pass.as_ref())
                .copied()
                .unwrap_or(d.compact_bytes_per_pass),
            orphan_after: self.table_setting(table, |t| t.orphan_after.as_ref()).copied().unwrap_or(d.orphan_after),
        }
    }

    /// The tables of the configured topics and of the explicit `[catalog.tables]` entries (tables
    /// of topics found through `topic_pattern` are known only once seen).
    pub fn configured_tables(&self) -> std::collections::BTreeSet<String> {
        self.kafka.topics.iter().chain(self.catalog.tables.keys()).map(|t| self.table_for(t)).collect()
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
    /// The partitions of `topic` that `kafka.partitions` fixes, if it names the topic.
    pub fn static_partitions(&self, topic: &str) -> Option<&[i32]> {
        self.partitions.get(topic).map(Vec::as_slice)
    }

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
