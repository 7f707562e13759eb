//! iceberg's pluggable `Storage`, backed by [`Stores`] (object_store), so iceberg reads and writes
//! metadata, manifests and manifest lists through the same S3/local stores as the data files.
//!
//! Both the storage and its factory serialize as the [`S3Settings`] (typetag needs them to be
//! serializable); deserializing builds a fresh [`Stores`] from those settings with the default
//! retry and client options. Note that the serialized form contains the credentials.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig, StorageFactory};
use iceberg::{Error as IcebergError, ErrorKind, Result as IcebergResult};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};

use super::stores::{Located, S3Settings, Stores};

/// Part size for writers that outgrow one PUT (S3 needs at least 5 MiB per part but the last).
const PART_SIZE: usize = 8 << 20;
/// How many deletes go to a store in one batch (S3's DeleteObjects takes up to 1000).
const DELETE_BATCH: usize = 1000;

/// An iceberg [`Storage`] over [`Stores`]: `s3://`, `s3a://` and `file://` locations.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(from = "S3Settings", into = "S3Settings")]
pub struct ObjectStoreStorage {
    stores: Stores,
}

impl ObjectStoreStorage {
    pub fn new(stores: Stores) -> Self {
        Self { stores }
    }

    fn locate(&self, url: &str) -> IcebergResult<Located> {
        self.stores.locate(url).map_err(|e| {
            IcebergError::new(ErrorKind::DataInvalid, format!("cannot use the location `{url}`")).with_source(e)
        })
    }
}

impl From<S3Settings> for ObjectStoreStorage {
    fn from(s3: S3Settings) -> Self {
        Self::new(Stores::new(s3))
    }
}

impl From<ObjectStoreStorage> for S3Settings {
    fn from(storage: ObjectStoreStorage) -> Self {
        storage.stores.settings().clone()
    }
}

/// An object_store failure as an iceberg error: which operation on which location, the
/// object_store error as the source, and whether retrying may help.
fn store_error(op: &str, url: &str, e: object_store::Error) -> IcebergError {
    let (kind, retryable) = match &e {
        object_store::Error::NotFound { .. } => (ErrorKind::DataInvalid, false),
        object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. } => {
            (ErrorKind::PreconditionFailed, false)
        }
        object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. } => {
            (ErrorKind::FeatureUnsupported, false)
        }
        _ => (ErrorKind::Unexpected, true),
    };
    IcebergError::new(kind, format!("object store: {op} {url}")).with_retryable(retryable).with_source(e)
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

#[async_trait::async_trait]
#[typetag::serde(name = "frazil-object-store")]
impl Storage for ObjectStoreStorage {
    async fn exists(&self, path: &str) -> IcebergResult<bool> {
        let at = self.locate(path)?;
        match at.store.head(&at.path).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(store_error("head", path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> IcebergResult<FileMetadata> {
        let at = self.locate(path)?;
        let meta = at.store.head(&at.path).await.map_err(|e| store_error("head", path, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> IcebergResult<Bytes> {
        let at = self.locate(path)?;
        let result = at.store.get(&at.path).await.map_err(|e| store_error("get", path, e))?;
        result.bytes().await.map_err(|e| store_error("get", path, e))
    }

    async fn reader(&self, path: &str) -> IcebergResult<Box<dyn FileRead>> {
        let at = self.locate(path)?;
        Ok(Box::new(ObjectRead { store: at.store, path: at.path, url: path.to_string() }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> IcebergResult<()> {
        let at = self.locate(path)?;
        at.store.put(&at.path, PutPayload::from(bs)).await.map_err(|e| store_error("put", path, e))?;
        Ok(())
    }

    async fn writer(&self, path: &str) -> IcebergResult<Box<dyn FileWrite>> {
        let at = self.locate(path)?;
        Ok(Box::new(ObjectWrite {
            store: at.store,
            path: at.path,
            url: path.to_string(),
            buffer: BytesMut::new(),
            upload: None,
            closed: false,
        }))
    }

    async fn delete(&self, path: &str) -> IcebergResult<()> {
        let at = self.locate(path)?;
        match at.store.delete(&at.path).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(store_error("delete", path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> IcebergResult<()> {
        let at = self.locate(path)?;
        // object_store lists by whole path segments: `dir` covers `dir/x`, not `dir2/x`.
        let listed = at.store.list(Some(&at.path)).map(|meta| meta.map(|m| m.location)).boxed();
        let mut deleted = at.store.delete_stream(listed);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(store_error("delete_prefix", path, e)),
            }
        }
        Ok(())
    }

    async fn delete_stream(&self, paths: BoxStream<'static, String>) -> IcebergResult<()> {
        let mut batches = paths.chunks(DELETE_BATCH);
        while let Some(urls) = batches.next().await {
            // Group the batch by store, keeping order; one batched delete per store.
            let mut groups: Vec<(String, Arc<dyn ObjectStore>, Vec<Path>)> = Vec::new();
            for url in &urls {
                let at = self.locate(url)?;
                match groups.iter_mut().find(|(key, ..)| *key == at.key) {
                    Some((.., paths)) => paths.push(at.path),
                    None => groups.push((at.key, at.store, vec![at.path])),
                }
            }
            for (key, store, paths) in groups {
                let input = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
                let mut deleted = store.delete_stream(input);
                while let Some(result) = deleted.next().await {
                    match result {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(store_error("delete", &key, e)),
                    }
                }
            }
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> IcebergResult<InputFile> {
        self.locate(path)?;
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> IcebergResult<OutputFile> {
        self.locate(path)?;
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

/// Ranged reads of one object.
#[derive(Debug)]
struct ObjectRead {
    store: Arc<dyn ObjectStore>,
    path: Path,
    url: String,
}

#[async_trait::async_trait]
impl FileRead for ObjectRead {
    async fn read(&self, range: Range<u64>) -> IcebergResult<Bytes> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        self.store.get_range(&self.path, range).await.map_err(|e| store_error("get range", &self.url, e))
    }
}

/// Buffers writes; a file that stays under [`PART_SIZE`] is one PUT on close, a larger one turns
/// into a multipart upload of `PART_SIZE` parts (so memory stays bounded). Nothing is visible
/// under the name before `close` succeeds.
struct ObjectWrite {
    store: Arc<dyn ObjectStore>,
    path: Path,
    url: String,
    buffer: BytesMut,
    upload: Option<Box<dyn MultipartUpload>>,
    closed: bool,
}

impl ObjectWrite {
    fn check_open(&self) -> IcebergResult<()> {
        if self.closed {
            return Err(IcebergError::new(ErrorKind::Unexpected, format!("{} is already closed", self.url)));
        }
        Ok(())
    }

    async fn send_part(&mut self, part: Bytes) -> IcebergResult<()> {
        let upload = match &mut self.upload {
            Some(upload) => upload,
            None => {
                let upload = self
                    .store
                    .put_multipart(&self.path)
                    .await
                    .map_err(|e| store_error("start multipart upload", &self.url, e))?;
                self.upload.insert(upload)
            }
        };
        if let Err(e) = upload.put_part(PutPayload::from(part)).await {
            self.abort().await;
            return Err(store_error("upload part", &self.url, e));
        }
        Ok(())
    }

    /// Gives up the multipart upload (best effort: a leftover is cleaned by the bucket's lifecycle rules).
    async fn abort(&mut self) {
        self.closed = true;
        if let Some(mut upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            log::warn!("could not abort the multipart upload of {}: {e}", self.url);
        }
    }
}

#[async_trait::async_trait]
impl FileWrite for ObjectWrite {
    async fn write(&mut self, bs: Bytes) -> IcebergResult<()> {
        self.check_open()?;
        self.buffer.extend_from_slice(&bs);
        while self.buffer.len() >= PART_SIZE {
            let part = self.buffer.split_to(PART_SIZE).freeze();
            self.send_part(part).await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> IcebergResult<()> {
        self.check_open()?;
        let rest = std::mem::take(&mut self.buffer).freeze();
        if self.upload.is_none() {
            self.closed = true;
            self.store.put(&self.path, PutPayload::from(rest)).await.map_err(|e| store_error("put", &self.url, e))?;
            return Ok(());
        }
        if !rest.is_empty() {
            self.send_part(rest).await?;
        }
        self.closed = true;
        let Some(upload) = self.upload.as_mut() else {
            return Err(IcebergError::new(ErrorKind::Unexpected, format!("{}: the upload was aborted", self.url)));
        };
        match upload.complete().await {
            Ok(_) => {
                self.upload = None;
                Ok(())
            }
            Err(e) => {
                self.abort().await;
                Err(store_error("complete multipart upload", &self.url, e))
            }
        }
    }
}

/// The [`StorageFactory`] behind [`Stores::file_io`]: hands out storage over the same [`Stores`]
/// (and so the same cached S3 clients). Serializes as its [`S3Settings`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(from = "S3Settings", into = "S3Settings")]
pub struct ObjectStoreStorageFactory {
    stores: Stores,
}

impl ObjectStoreStorageFactory {
    pub fn new(stores: Stores) -> Self {
        Self { stores }
    }
}

impl From<S3Settings> for ObjectStoreStorageFactory {
    fn from(s3: S3Settings) -> Self {
        Self::new(Stores::new(s3))
    }
}

impl From<ObjectStoreStorageFactory> for S3Settings {
    fn from(factory: ObjectStoreStorageFactory) -> Self {
        factory.stores.settings().clone()
    }
}

#[typetag::serde(name = "frazil-object-store")]
impl StorageFactory for ObjectStoreStorageFactory {
    fn build(&self, _config: &StorageConfig) -> IcebergResult<Arc<dyn Storage>> {
        Ok(Arc::new(ObjectStoreStorage::new(self.stores.clone())))
    }
}
