//! From the file as written ([`RawConfig`]) to a [`Config`]: defaults filled in, every value
//! checked. One function per section, called in the order the sections are checked, so the first
//! error a user sees stays the same whichever section it is in.

use std::path::PathBuf;
use std::time::Duration;

use super::access::{catalog_auth, kafka_sasl, kafka_tls, secret};
use super::raw::{RawCatalog, RawConfig, RawJson, RawKafka, RawRegistry, RawS3, RawSpool};
use super::{
    CatalogConfig, CatalogKind, Config, KafkaConfig, RegistryConfig, SpoolConfig, StartAt, duration, duration_opt,
    per_table, size,
};
use crate::decode::{EpochUnit, Format, TimeFields};
use crate::upload::S3Settings;
use crate::{Error, Result};

pub(super) fn validate(raw: RawConfig) -> Result<Config> {
    let agent_id = agent_id(raw.agent.id)?;
    let kafka = kafka(raw.kafka)?;
    let spool = spool(raw.spool)?;
    let catalog = catalog(raw.catalog)?;
    let s3 = s3(raw.storage.s3)?;
    let time_fields = time_fields(raw.json)?;
    let metrics_listen = metrics_listen(raw.metrics.listen.as_deref())?;
    let schema_registry = raw.schema_registry.map(schema_registry).transpose()?;
    check_registry_is_set(&kafka, schema_registry.as_ref())?;
    let tables = per_table::settings(raw.tables)?;
    let config = Config { agent_id, kafka, spool, catalog, s3, schema_registry, tables, time_fields, metrics_listen };
    check_given_schemas(&config)?;
    check_extra_is_for_json(&config)?;
    Ok(config)
}

/// A schema the operator gives is held to the rules a growing table is (`decode::guard`), with
/// the table's limits, and may not take the meta columns' names.
fn check_given_schemas(c: &Config) -> Result<()> {
    for (table, t) in &c.tables {
        let Some((schema, from)) = &t.given else { continue };
        let key = format!("tables.\"{table}\".{from}");
        if let Some(f) = schema.as_struct().fields().iter().find(|f| crate::decode::names::is_reserved(&f.name)) {
            return Err(Error::config(
                key,
                format!("column `{}` takes a name of frazil's meta columns", f.name),
                "rename it",
            ));
        }
        let arrow = iceberg::arrow::schema_to_arrow_schema(schema)
            .map_err(|e| Error::config(key.clone(), format!("cannot be written as Parquet: {e}"), "use other types"))?;
        crate::decode::guard::admit_fields(c.limits(table), &arrow_schema::Fields::empty(), arrow.fields())
            .map_err(|e| Error::config(key, e, "rename the column, or raise the limit it names for this table"))?;
    }
    Ok(())
}

/// Unknown keys kept as JSON are a JSON table's: an Avro or Protobuf writer's extra fields have no
/// JSON.
fn check_extra_is_for_json(c: &Config) -> Result<()> {
    for topic in &c.kafka.topics {
        let table = c.table_for(topic);
        let format = c.kafka.format_for(topic);
        if format.registered() && c.unknown_keys(&table) == crate::decode::UnknownKeys::Extra {
            let why = match format {
                Format::Avro => "the Avro topic {topic}, whose records have no JSON keys to keep",
                Format::Protobuf => "the Protobuf topic {topic}, whose records have no JSON keys to keep",
                _ => "the JSON Schema topic {topic}, whose columns are its registered schemas' properties",
            }
            .replace("{topic}", topic);
            return Err(Error::config(
                format!("tables.\"{table}\".unknown_keys"),
                format!("table {table} is fed by {why}"),
                "use unknown_keys = \"dead_letter\": records of a writer schema with fields the table lacks go to \
                 the dead-letter table",
            ));
        }
    }
    Ok(())
}

/// `agent.id`, else the host name: it is written into snapshot summaries and object paths, so only
/// characters that are safe in both.
fn agent_id(id: Option<String>) -> Result<String> {
    let agent_id = id.unwrap_or_else(hostname);
    if agent_id.is_empty() || !agent_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(Error::config(
            "agent.id",
            format!("`{agent_id}` is not a usable agent id"),
            "use letters, digits, '-', '_' or '.', e.g. \"gateway-7\"",
        ));
    }
    // The agent's tag `frazil-<id>` must not read as a consumer group's `frazil-group-<name>`.
    if agent_id.starts_with("group-") {
        return Err(Error::config(
            "agent.id",
            format!("`{agent_id}` starts with `group-`, which names consumer groups' tags in a table"),
            "choose another id, e.g. \"gateway-7\"",
        ));
    }
    Ok(agent_id)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "frazil".into())
}

fn kafka(k: RawKafka) -> Result<KafkaConfig> {
    check_brokers(&k.brokers)?;
    let topic_pattern = topic_pattern(k.topic_pattern.as_deref(), &k.topics)?;
    let start = start_at(k.start.as_deref())?;
    let (fetch_max_bytes, fetches_in_flight) = fetch_limits(k.fetch_max_bytes, k.fetches_in_flight)?;
    let fetch_max_wait = duration("kafka.fetch_max_wait", k.fetch_max_wait, "10ms")?;
    let partitions = super::group::partitions(k.partitions, &k.topics)?;
    Ok(KafkaConfig {
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
        fetch_max_wait,
        fetch_idle_wait: fetch_idle_wait(k.fetch_idle_wait, fetch_max_wait)?,
        request_timeout: duration("kafka.request_timeout", k.request_timeout, "30s")?,
        max_record_bytes: size("kafka.max_record_bytes", k.max_record_bytes, "1MiB")?,
        tls: kafka_tls(k.tls, k.ca_file, k.cert_file, k.key_file)?,
        sasl: kafka_sasl(k.sasl_mechanism, k.username, secret("kafka.password", k.password, k.password_file)?)?,
        group: super::group::group(k.group, k.session_timeout)?,
        partitions,
    })
}

fn check_brokers(brokers: &[String]) -> Result<()> {
    if brokers.is_empty() {
        return Err(Error::config(
            "kafka.brokers",
            "is empty",
            "list at least one broker, e.g. brokers = [\"127.0.0.1:9092\"]",
        ));
    }
    if let Some(b) = brokers.iter().find(|b| !b.contains(':')) {
        return Err(Error::config(
            "kafka.brokers",
            format!("`{b}` has no port"),
            "write host:port, e.g. \"127.0.0.1:9092\"",
        ));
    }
    Ok(())
}

/// The compiled `kafka.topic_pattern`; without one, `kafka.topics` must name something to read.
fn topic_pattern(pattern: Option<&str>, topics: &[String]) -> Result<Option<regex_lite::Regex>> {
    let topic_pattern = match pattern {
        None => None,
        Some(p) => Some(regex_lite::Regex::new(p).map_err(|e| {
            Error::config(
                "kafka.topic_pattern",
                format!("`{p}` is not a regular expression ({e})"),
                "write e.g. \"^sensors\\\\..*\" (TOML strings need \\\\ for a backslash)",
            )
        })?),
    };
    if topics.is_empty() && topic_pattern.is_none() {
        return Err(Error::config(
            "kafka.topics",
            "is empty and kafka.topic_pattern is not set",
            "list the topics to read, e.g. topics = [\"events\"], or set topic_pattern = \"^events_.*\"",
        ));
    }
    Ok(topic_pattern)
}

fn start_at(start: Option<&str>) -> Result<StartAt> {
    match start.unwrap_or("earliest") {
        "earliest" => Ok(StartAt::Earliest),
        "latest" => Ok(StartAt::Latest),
        other => Err(Error::config(
            "kafka.start",
            format!("`{other}` is not a start position"),
            "use \"earliest\" or \"latest\"",
        )),
    }
}

/// `kafka.fetch_max_bytes` and `kafka.fetches_in_flight`: together they bound the records held in
/// memory, and the broker takes the former as an i32.
fn fetch_limits(max_bytes: Option<String>, in_flight: Option<usize>) -> Result<(u64, usize)> {
    let fetch_max_bytes = size("kafka.fetch_max_bytes", max_bytes, "4MiB")?;
    if !(1024..=i32::MAX as u64).contains(&fetch_max_bytes) {
        return Err(Error::config(
            "kafka.fetch_max_bytes",
            format!("{fetch_max_bytes} bytes is out of range"),
            "use between 1KiB and 2GiB, e.g. \"4MiB\"",
        ));
    }
    let fetches_in_flight = in_flight.unwrap_or(2);
    if !(1..=256).contains(&fetches_in_flight) {
        return Err(Error::config(
            "kafka.fetches_in_flight",
            format!("{fetches_in_flight} is out of range"),
            "use between 1 and 256, e.g. 2",
        ));
    }
    Ok((fetch_max_bytes, fetches_in_flight))
}

/// `kafka.fetch_idle_wait`: at least the busy wait, and within what a broker holds a fetch for
/// (Kafka's `fetch.max.wait.ms` is an int; past a minute the request timeout would need to grow).
fn fetch_idle_wait(value: Option<String>, busy: Duration) -> Result<Duration> {
    let wait = duration("kafka.fetch_idle_wait", value, "1s")?;
    if wait < busy || wait > Duration::from_secs(60) {
        return Err(Error::config(
            "kafka.fetch_idle_wait",
            format!("{wait:?} is out of range"),
            format!("use between kafka.fetch_max_wait ({busy:?}) and 60s, e.g. \"1s\""),
        ));
    }
    Ok(wait)
}

fn format(key: &str, value: &str) -> Result<Format> {
    match value {
        "json" => Ok(Format::Json),
        "raw" => Ok(Format::Raw),
        "text" => Ok(Format::Text),
        "avro" => Ok(Format::Avro),
        "protobuf" => Ok(Format::Protobuf),
        "json_schema" => Ok(Format::JsonSchema),
        other => Err(Error::config(
            key,
            format!("`{other}` is not a format"),
            "use \"json\" (objects, schema inferred), \"avro\", \"protobuf\" or \"json_schema\" (Confluent wire \
             format, with [schema_registry]), \"raw\" (bytes) or \"text\" (UTF-8)",
        )),
    }
}

fn spool(s: RawSpool) -> Result<SpoolConfig> {
    let spool = SpoolConfig {
        dir: s.dir.unwrap_or_else(|| PathBuf::from("/var/lib/frazil")),
        file_max_bytes: size("spool.file_max_bytes", s.file_max_bytes, "16MiB")?,
        file_max_rows: s.file_max_rows.unwrap_or(100_000),
        file_max_age: duration("spool.file_max_age", s.file_max_age, "10s")?,
        buffer_max_bytes: size("spool.buffer_max_bytes", s.buffer_max_bytes, "8MiB")?,
        upload_target_bytes: size("spool.upload_target_size", s.upload_target_size, "128MiB")?,
        max_bytes: optional_size("spool.max_bytes", s.max_bytes, "4GiB")?,
        min_free: optional_size("spool.min_free", s.min_free, "256MiB")?,
        keep_committed: duration_opt("spool.keep_committed", s.keep_committed, "6h")?.unwrap_or_default(),
        keep_committed_bytes: size("spool.keep_committed_size", s.keep_committed_size, "256MiB")?,
    };
    if spool.file_max_rows == 0 {
        return Err(Error::config("spool.file_max_rows", "is 0", "use a positive number such as 100000"));
    }
    Ok(spool)
}

/// A limit that can be switched off with "none".
fn optional_size(key: &str, value: Option<String>, default: &str) -> Result<Option<u64>> {
    match value.as_deref() {
        Some("none") => Ok(None),
        _ => size(key, value, default).map(Some),
    }
}

fn catalog(c: RawCatalog) -> Result<CatalogConfig> {
    let kind = catalog_kind(c.kind.as_deref())?;
    let uri = catalog_uri(kind, c.uri)?;
    if kind == CatalogKind::Filesystem {
        check_warehouse(c.warehouse.as_deref().unwrap_or(""))?;
    }
    let namespace: Vec<String> = c.namespace.as_deref().unwrap_or("frazil").split('.').map(str::to_string).collect();
    if namespace.iter().any(|p| p.is_empty()) {
        return Err(Error::config("catalog.namespace", "has an empty level", "write e.g. \"edge\" or \"edge.site1\""));
    }
    let (table, dead_letter_table) = table_templates(c.table, c.dead_letter_table)?;
    check_table_names(&c.tables)?;
    if c.partition_by.is_some() {
        return Err(Error::config(
            "catalog.partition_by",
            "has moved to the per-table settings",
            "write [tables.\"<table>\"] (or [tables.\"*\"]) with partition_by = [\"day(_kafka_timestamp)\"]",
        ));
    }
    Ok(CatalogConfig {
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
    })
}

fn catalog_kind(kind: Option<&str>) -> Result<CatalogKind> {
    match kind.unwrap_or("rest") {
        "rest" => Ok(CatalogKind::Rest),
        "filesystem" => Ok(CatalogKind::Filesystem),
        other => Err(Error::config(
            "catalog.type",
            format!("`{other}` is not a catalog type"),
            "write \"rest\" (a REST catalog at catalog.uri) or \"filesystem\" (metadata kept in catalog.warehouse)",
        )),
    }
}

/// The REST catalog's base URL without a trailing `/` (a filesystem catalog needs none).
fn catalog_uri(kind: CatalogKind, uri: Option<String>) -> Result<String> {
    match (kind, uri) {
        (CatalogKind::Rest, None) => Err(Error::config(
            "catalog.uri",
            "is required for a REST catalog",
            "write the REST catalog's base URL, e.g. \"http://127.0.0.1:8181\", or set type = \"filesystem\"",
        )),
        (CatalogKind::Rest, Some(u)) if !(u.starts_with("http://") || u.starts_with("https://")) => Err(Error::config(
            "catalog.uri",
            format!("`{u}` is not an http(s) URL"),
            "write the REST catalog's base URL, e.g. \"http://127.0.0.1:8181\"",
        )),
        (_, u) => Ok(u.unwrap_or_default().trim_end_matches('/').to_string()),
    }
}

/// A filesystem catalog keeps its metadata in the warehouse, so it needs one it can write to.
fn check_warehouse(w: &str) -> Result<()> {
    if !(w.starts_with("file:///") || w.starts_with("s3://") || w.starts_with("s3a://")) {
        return Err(Error::config(
            "catalog.warehouse",
            format!("`{w}` is not a warehouse URL a filesystem catalog can keep tables in"),
            "write e.g. \"file:///var/lib/frazil/warehouse\" or \"s3://bucket/warehouse\"",
        ));
    }
    Ok(())
}

/// `catalog.table` and `catalog.dead_letter_table`: names within the namespace (no dots), and a
/// dead-letter table that cannot be the table itself.
fn table_templates(table: Option<String>, dead_letter_table: Option<String>) -> Result<(String, String)> {
    let table = table.unwrap_or_else(|| "{topic}".into());
    if table.is_empty() || table.contains('.') {
        return Err(Error::config(
            "catalog.table",
            format!("`{table}` is not a table name template"),
            "write e.g. \"{topic}\" or \"events_{topic}\" (no dots)",
        ));
    }
    let dead_letter_table = dead_letter_table.unwrap_or_else(|| "{table}__dlq".into());
    if dead_letter_table.is_empty() || dead_letter_table.contains('.') || dead_letter_table == "{table}" {
        return Err(Error::config(
            "catalog.dead_letter_table",
            format!("`{dead_letter_table}` is not a dead-letter table name template"),
            "write e.g. \"{table}__dlq\" (a name other than the table's own, no dots)",
        ));
    }
    Ok((table, dead_letter_table))
}

/// Explicit `catalog.tables` entries are used as written, so they must already be safe names.
fn check_table_names(tables: &std::collections::BTreeMap<String, String>) -> Result<()> {
    for (topic, t) in tables {
        if t.is_empty() || !t.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_') {
            return Err(Error::config(
                format!("catalog.tables.\"{topic}\""),
                format!("`{t}` is not a table name"),
                "use lowercase letters, digits and `_`, e.g. \"temperatures\"",
            ));
        }
    }
    Ok(())
}

fn s3(s3: RawS3) -> Result<S3Settings> {
    Ok(S3Settings {
        allow_http: s3.allow_http.unwrap_or_else(|| s3.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"))),
        endpoint: s3.endpoint,
        region: s3.region,
        access_key_id: s3.access_key_id,
        secret_access_key: secret("storage.s3.secret_access_key", s3.secret_access_key, s3.secret_access_key_file)?,
        session_token: secret("storage.s3.session_token", s3.session_token, s3.session_token_file)?,
        path_style: s3.path_style.unwrap_or(false),
        ca_file: s3.ca_file.filter(|p| !p.as_os_str().is_empty()),
    })
}

fn time_fields(json: RawJson) -> Result<TimeFields> {
    let epoch_unit = match json.epoch_unit.as_deref().unwrap_or("ms") {
        "s" => EpochUnit::Seconds,
        "ms" => EpochUnit::Millis,
        "us" => EpochUnit::Micros,
        other => {
            return Err(Error::config(
                "json.epoch_unit",
                format!("`{other}` is not a unit"),
                "use \"s\", \"ms\" or \"us\"",
            ));
        }
    };
    Ok(TimeFields { names: json.timestamp_fields, epoch_unit })
}

fn metrics_listen(listen: Option<&str>) -> Result<Option<std::net::SocketAddr>> {
    match listen {
        None | Some("") | Some("off") => Ok(None),
        Some(a) => Ok(Some(a.parse::<std::net::SocketAddr>().map_err(|e| {
            Error::config(
                "metrics.listen",
                format!("`{a}` is not an address and port ({e})"),
                "write e.g. \"127.0.0.1:9464\", or \"off\"",
            )
        })?)),
    }
}

fn schema_registry(r: RawRegistry) -> Result<RegistryConfig> {
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
    Ok(RegistryConfig {
        url: r.url,
        username: r.username,
        password: secret("schema_registry.password", r.password, r.password_file)?,
        ca_file: r.ca_file,
        request_timeout: duration("schema_registry.request_timeout", r.request_timeout, "30s")?,
    })
}

/// Avro and Protobuf values name their writer schema by id, so such a topic needs a registry to
/// look it up.
fn check_registry_is_set(kafka: &KafkaConfig, registry: Option<&RegistryConfig>) -> Result<()> {
    let registered = kafka.format.registered() || kafka.formats.values().any(|f| f.registered());
    if registered && registry.is_none() {
        return Err(Error::config(
            "schema_registry.url",
            "is not set but a topic's format is \"avro\", \"protobuf\" or \"json_schema\"",
            "add a [schema_registry] section with url = \"http://host:8081\"",
        ));
    }
    Ok(())
}
