//! The file as written, as serde reads it: strict (unknown keys are errors), every key optional
//! where a default exists. `validate.rs` turns it into a [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::per_table;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) agent: RawAgent,
    pub(super) kafka: RawKafka,
    #[serde(default)]
    pub(super) spool: RawSpool,
    pub(super) catalog: RawCatalog,
    #[serde(default)]
    pub(super) storage: RawStorage,
    #[serde(default)]
    pub(super) json: RawJson,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    pub(super) schema_registry: Option<RawRegistry>,
    #[serde(default)]
    pub(super) tables: BTreeMap<String, per_table::RawTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistry {
    pub(super) url: String,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) request_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJson {
    #[serde(default)]
    pub(super) timestamp_fields: Vec<String>,
    pub(super) epoch_unit: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKafka {
    pub(super) brokers: Vec<String>,
    #[serde(default)]
    pub(super) topics: Vec<String>,
    pub(super) topic_pattern: Option<String>,
    pub(super) refresh_interval: Option<String>,
    pub(super) format: Option<String>,
    #[serde(default)]
    pub(super) formats: BTreeMap<String, String>,
    pub(super) start: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) fetch_max_bytes: Option<String>,
    pub(super) fetches_in_flight: Option<usize>,
    pub(super) fetch_max_wait: Option<String>,
    pub(super) fetch_idle_wait: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) max_record_bytes: Option<String>,
    pub(super) tls: Option<bool>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) sasl_mechanism: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) group: Option<String>,
    pub(super) session_timeout: Option<String>,
    #[serde(default)]
    pub(super) partitions: BTreeMap<String, Vec<i32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpool {
    pub(super) dir: Option<PathBuf>,
    pub(super) file_max_bytes: Option<String>,
    pub(super) file_max_rows: Option<usize>,
    pub(super) file_max_age: Option<String>,
    pub(super) buffer_max_bytes: Option<String>,
    pub(super) max_bytes: Option<String>,
    pub(super) min_free: Option<String>,
    pub(super) upload_target_size: Option<String>,
    pub(super) keep_committed: Option<String>,
    pub(super) keep_committed_size: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCatalog {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) uri: Option<String>,
    pub(super) warehouse: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) table: Option<String>,
    pub(super) dead_letter_table: Option<String>,
    #[serde(default)]
    pub(super) tables: BTreeMap<String, String>,
    /// Moved to `[tables."<table>"] partition_by`; kept here only to say so.
    pub(super) partition_by: Option<toml::Value>,
    pub(super) commit_interval: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) token: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) credential: Option<String>,
    pub(super) credential_file: Option<PathBuf>,
    pub(super) oauth2_server_uri: Option<String>,
    pub(super) scope: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    #[serde(default)]
    pub(super) s3: RawS3,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS3 {
    pub(super) endpoint: Option<String>,
    pub(super) region: Option<String>,
    pub(super) access_key_id: Option<String>,
    pub(super) secret_access_key: Option<String>,
    pub(super) secret_access_key_file: Option<PathBuf>,
    pub(super) session_token: Option<String>,
    pub(super) session_token_file: Option<PathBuf>,
    pub(super) path_style: Option<bool>,
    pub(super) allow_http: Option<bool>,
    pub(super) ca_file: Option<PathBuf>,
}
