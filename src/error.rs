//! frazil's one error type. Every variant carries the context a person needs to act on it:
//! which key, which topic/partition, which table, which URL.

use std::fmt;

/// Everything that can go wrong in the agent.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// The configuration is wrong: `key` names the setting, `problem` what is wrong, `fix` what to do.
    Config { key: String, problem: String, fix: String },
    /// The Kafka broker refused or could not be reached.
    Kafka { context: String, source: rskafka::client::error::Error },
    /// The broker answered, but not with what the agent needs (a configured topic is missing, ...).
    Source { context: String, reason: String },
    /// Records could not be turned into Arrow rows.
    Decode { context: String, reason: String },
    /// Something frazil writes could not be encoded: a spool file's Parquet or sort order, a
    /// DataFile or table metadata as JSON. A bug or a resource limit: retrying does not help.
    Encode { context: String, reason: String },
    /// Spool files could not be merged into one upload; they stay spooled.
    Merge { context: String, reason: String },
    /// A table's schema, partition spec or sort order cannot be decided, or the catalog's table
    /// disagrees with the spooled files: they are kept until the operator resolves it.
    Layout { table: String, reason: String },
    /// Rows could not be split by the table's partition spec.
    Partition { context: String, reason: String },
    /// The local spool failed.
    Spool(frazil_spool::SpoolError),
    /// The object store failed.
    Storage { context: String, source: object_store::Error },
    /// The REST catalog answered with an error status, or could not be reached (`status` is `None`).
    Catalog { context: String, status: Option<u16>, body: String },
    /// The schema registry did not answer with a schema or a final "no such id".
    Registry { context: String, status: Option<u16>, body: String },
    /// iceberg refused something (schema conversion, metadata, a transaction).
    Iceberg { context: String, source: Box<iceberg::Error> },
    /// A local I/O operation failed.
    Io { context: String, source: std::io::Error },
    /// A consumer group's fence refused a commit: another agent committed these partitions to
    /// `table` since this one started reading them. Nothing was applied.
    Fenced { table: String, partitions: Vec<crate::topic::TopicPartition> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn config(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Config { key: key.into(), problem: problem.into(), fix: fix.into() }
    }
    pub fn decode(context: impl Into<String>, reason: impl ToString) -> Self {
        Error::Decode { context: context.into(), reason: reason.to_string() }
    }
    pub fn encode(context: impl Into<String>, reason: impl ToString) -> Self {
        Error::Encode { context: context.into(), reason: reason.to_string() }
    }
    pub fn merge(context: impl Into<String>, reason: impl ToString) -> Self {
        Error::Merge { context: context.into(), reason: reason.to_string() }
    }
    pub fn layout(table: impl Into<String>, reason: impl ToString) -> Self {
        Error::Layout { table: table.into(), reason: reason.to_string() }
    }
    pub fn partition(context: impl Into<String>, reason: impl ToString) -> Self {
        Error::Partition { context: context.into(), reason: reason.to_string() }
    }
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
    pub fn iceberg(context: impl Into<String>, source: iceberg::Error) -> Self {
        Error::Iceberg { context: context.into(), source: Box::new(source) }
    }
    pub fn storage(context: impl Into<String>, source: object_store::Error) -> Self {
        Error::Storage { context: context.into(), source }
    }
    pub fn kafka(context: impl Into<String>, source: rskafka::client::error::Error) -> Self {
        Error::Kafka { context: context.into(), source }
    }
    /// Prefixes the context of a catalog error (keeps other errors as they are).
    pub(crate) fn with_context(self, what: &str) -> Error {
        match self {
            Error::Catalog { context, status, body } => {
                Error::Catalog { context: format!("{what}: {context}"), status, body }
            }
            other => other,
        }
    }
    /// True when the failure is about reaching a remote service, so retrying later may succeed
    /// and spooled data stays safe meanwhile.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kafka { .. } | Error::Source { .. } | Error::Registry { .. } => true,
            // A missing object or refused credentials will not fix themselves.
            Error::Storage { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
            ),
            Error::Catalog { status, .. } => status.is_none_or(|s| s >= 500 || s == 408 || s == 429),
            // e.g. a manifest write to the object store failing inside a transaction.
            Error::Iceberg { source, .. } => source.retryable(),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { key, problem, fix } => write!(f, "config key `{key}`: {problem}; {fix}"),
            Error::Kafka { context, source } => write!(f, "kafka: {context}: {source}"),
            Error::Source { context, reason } => write!(f, "kafka: {context}: {reason}"),
            Error::Decode { context, reason } => write!(f, "decode: {context}: {reason}"),
            Error::Encode { context, reason } => write!(f, "encode: {context}: {reason}"),
            Error::Merge { context, reason } => write!(f, "merge: {context}: {reason}"),
            Error::Layout { table, reason } => write!(f, "table {table}: {reason}"),
            Error::Partition { context, reason } => write!(f, "partitioning: {context}: {reason}"),
            Error::Spool(e) => write!(f, "spool: {e}"),
            Error::Storage { context, source } => write!(f, "object store: {context}: {source}"),
            Error::Catalog { context, status: Some(s), body } => write!(f, "catalog: {context}: HTTP {s}: {body}"),
            Error::Catalog { context, status: None, body } => write!(f, "catalog: {context}: {body}"),
            Error::Registry { context, status: Some(s), body } => {
                write!(f, "schema registry: {context}: HTTP {s}: {body}")
            }
            Error::Registry { context, status: None, body } => write!(f, "schema registry: {context}: {body}"),
            Error::Iceberg { context, source } => write!(f, "iceberg: {context}: {source}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Fenced { table, partitions } => {
                let list: Vec<String> = partitions.iter().map(|(t, p)| format!("{t}/{p}")).collect();
                write!(f, "table {table}: fenced: another agent of the group committed {} first", list.join(", "))
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Kafka { source, .. } => Some(source),
            Error::Spool(e) => Some(e),
            Error::Storage { source, .. } => Some(source),
            Error::Iceberg { source, .. } => Some(source),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<frazil_spool::SpoolError> for Error {
    fn from(e: frazil_spool::SpoolError) -> Self {
        Error::Spool(e)
    }
}
