//! The upload stage: spool files become objects in the table's warehouse.
//!
//! - [`Uploader`] takes a table's written spool files, packs them into groups near the table's
//!   target size ([`groups`]), merges each group's row groups into one Parquet object without
//!   decoding them ([`merge`]), names it deterministically ([`names`]) and marks its files
//!   uploaded in one index transaction. It also gives the commit stage each object's DataFile.
//! - [`Stores`] turns `s3://bucket/key` (also `s3a://`) and `file:///abs/path` into an object_store
//!   and the path inside it. S3 stores are built lazily, one per bucket, and cached; they speak
//!   HTTP through ureq ([`transport::UreqConnector`]) on the `blocking` thread pool.
//! - [`Stores::file_io`] gives iceberg a `FileIO` backed by the same stores
//!   ([`storage::ObjectStoreStorage`]), so manifests and manifest lists go the same way as data.
//!
//! Runtime contract: every future here (and every future of a store returned by
//! [`Stores::resolve`]) must be polled inside `async_compat::Compat`. object_store sleeps between
//! retries with tokio timers and runs local file I/O with tokio's `spawn_blocking`, both of which
//! need the tokio context Compat provides. Network I/O itself never runs on the executor thread.

mod groups;
pub mod merge;
mod names;
mod spooled;
mod storage;
mod stores;
mod transport;

pub use self::spooled::Uploader;
pub use self::storage::{ObjectStoreStorage, ObjectStoreStorageFactory};
pub use self::stores::{Listed, S3Settings, Stores, default_client_options};
pub use self::transport::UreqConnector;
