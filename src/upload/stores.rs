//! Object stores by URL: S3 buckets (built lazily, cached, speaking HTTP through ureq) and local
//! paths, behind one `Stores` that the upload and commit stages share.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use crate::{Error, Result};

use super::storage::ObjectStoreStorageFactory;
use super::transport::UreqConnector;

const URL_FIX: &str = "use s3://bucket/key, s3a://bucket/key or file:///absolute/path";

/// How to reach S3 (or an S3-compatible store). Unset credentials and region fall back to the
/// standard `AWS_*` environment variables (and then to instance/container credentials).
#[derive(Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct S3Settings {
    /// `https://host[:port]`; unset means AWS (`s3.<region>.amazonaws.com`).
    pub endpoint: Option<String>,
    /// Defaults to `us-east-1`.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// `endpoint/bucket/key` instead of `bucket.endpoint/key` (needed by most local S3 servers).
    #[serde(default)]
    pub path_style: bool,
    /// Allow a plain `http://` endpoint.
    #[serde(default)]
    pub allow_http: bool,
    /// PEM CA certificates to trust for an `https://` endpoint (default: the system's).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

/// Debug without the secrets (settings end up in logs).
impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The S3 client options [`Stores::new`] uses: 5 s to connect and 30 s of silence (no byte read
/// or written) fail a request, but a whole exchange has no time limit. object_store's own default
/// (30 s for the whole request) would fail every upload of a large file over a slow edge link,
/// and the retries would fail the same way; a stalled connection is still caught by the idle limit.
pub fn default_client_options() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_read_timeout(Duration::from_secs(30))
        .with_timeout_disabled()
}

/// Object stores by URL scheme/bucket, built lazily and cached. Cheap to clone (clones share the
/// cache); `Send + Sync`.
#[derive(Clone)]
pub struct Stores {
    s3: Arc<S3Settings>,
    retry: RetryConfig,
    client: ClientOptions,
    local: Arc<dyn ObjectStore>,
    /// `"s3://bucket"` → store.
    cache: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buckets: Vec<String> = self.cache.lock().map(|c| c.keys().cloned().collect()).unwrap_or_default();
        f.debug_struct("Stores").field("s3", &self.s3).field("retry", &self.retry).field("cached", &buckets).finish()
    }
}

/// An object found by [`Stores::list`].
#[derive(Clone, Debug)]
pub struct Listed {
    pub url: String,
    pub modified: chrono::DateTime<chrono::Utc>,
    pub bytes: u64,
}

/// A URL taken apart: which store (`key` identifies it) and the path inside it.
pub(crate) struct Located {
    pub key: String,
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
}

impl Stores {
    pub fn new(s3: S3Settings) -> Self {
        Self {
            s3: Arc::new(s3),
            retry: RetryConfig::default(),
            client: default_client_options(),
            // fsync: an uploaded file must survive a crash before the catalog commit points at it.
            local: Arc::new(LocalFileSystem::new().with_fsync(true)),
            cache: Arc::default(),
        }
    }

    /// Replaces object_store's retry policy for S3 (default: 10 retries within 3 minutes).
    /// Call before first use; stores already built keep their policy, so this starts a new cache.
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self.cache = Arc::default();
        self
    }

    /// Replaces the HTTP client options for S3 (default: 5 s to connect, then at most 30 s
    /// without progress in either direction, and no cap on a whole exchange; see
    /// [`default_client_options`]). Call before first use; this starts a new cache.
    pub fn with_client_options(mut self, client: ClientOptions) -> Self {
        self.client = client;
        self.cache = Arc::default();
        self
    }

    /// The S3 settings these stores were made with.
    pub fn settings(&self) -> &S3Settings {
        &self.s3
    }

    /// "s3://bucket/key/..." (also s3a://), "file:///abs/path" → the store and the path inside it.
    pub fn resolve(&self, url: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
        let Located { store, path, .. } = self.locate(url)?;
        Ok((store, path))
    }

    pub(crate) fn locate(&self, url: &str) -> Result<Located> {
        let bad = |problem: String| Error::config("object store URL", problem, URL_FIX);
        let Some((scheme, rest)) = url.split_once(':') else {
            return Err(bad(format!("`{url}` has no scheme")));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "s3" | "s3a" => {
                let Some(rest) = rest.strip_prefix("//") else {
                    return Err(bad(format!("`{url}` is not of the form s3://bucket/key")));
                };
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad(format!("`{url}` names no bucket")));
                }
                if !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
                    return Err(bad(format!("`{url}`: `{bucket}` is not a valid bucket name")));
                }
                let path = Path::parse(key).map_err(|e| bad(format!("`{url}` has an invalid key: {e}")))?;
                let key = format!("s3://{bucket}");
                let store = self.s3_store(bucket, &key)?;
                Ok(Located { key, store, path })
            }
            "file" => {
                // file:///abs/path, or the Hadoop-style file:/abs/path; no remote hosts.
                let abs = match rest.strip_prefix("//") {
                    Some(after) if after.starts_with('/') => after,
                    Some(_) => return Err(bad(format!("`{url}` names a remote host; only local file:///paths work"))),
                    None if rest.starts_with('/') => rest,
                    None => return Err(bad(format!("`{url}` is not an absolute file:/// path"))),
                };
                let path = Path::parse(abs).map_err(|e| bad(format!("`{url}` has an invalid path: {e}")))?;
                if path.is_root() {
                    return Err(bad(format!("`{url}` is the filesystem root")));
                }
                Ok(Located { key: "file://".into(), store: self.local.clone(), path })
            }
            other => Err(bad(format!("`{url}` has the unsupported scheme `{other}`"))),
        }
    }

    fn s3_store(&self, bucket: &str, key: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(store) = cache.get(key) {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = Arc::new(self.build_s3(bucket)?);
        cache.insert(key.to_string(), store.clone());
        Ok(store)
    }

    fn build_s3(&self, bucket: &str) -> Result<object_store::aws::AmazonS3> {
        let s3 = &*self.s3;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_http_connector(UreqConnector::new(crate::tls::roots(s3.ca_file.as_deref(), "storage.s3.ca_file")?))
            .with_retry(self.retry.clone())
            .with_client_options(self.client.clone().with_allow_http(s3.allow_http))
            .with_allow_http(s3.allow_http)
            .with_virtual_hosted_style_request(!s3.path_style);
        if let Some(endpoint) = &s3.endpoint {
            let Some((scheme, host)) = endpoint.split_once("://") else {
                return Err(Error::config(
                    "s3.endpoint",
                    format!("`{endpoint}` has no scheme"),
                    "write it as https://host[:port] (or http:// with allow_http = true)",
                ));
            };
            if scheme.eq_ignore_ascii_case("http") && !s3.allow_http {
                return Err(Error::config(
                    "s3.allow_http",
                    format!("the endpoint `{endpoint}` is plain http but allow_http is false"),
                    "set allow_http = true, or use an https:// endpoint",
                ));
            }
            // object_store uses a virtual-hosted endpoint as is, so the bucket goes into the host.
            let endpoint = if s3.path_style { endpoint.clone() } else { format!("{scheme}://{bucket}.{host}") };
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        } else if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            builder = builder.with_region("us-east-1");
        }
        if let Some(v) = &s3.access_key_id {
            builder = builder.with_access_key_id(v);
        }
        if let Some(v) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(v);
        }
        if let Some(v) = &s3.session_token {
            builder = builder.with_token(v);
        }
        builder.build().map_err(|e| {
            Error::config("s3", format!("cannot set up S3 for bucket `{bucket}`: {e}"), "check the s3 settings")
        })
    }

    /// Writes the whole object (a PUT that overwrites; the same name retried overwrites itself).
    /// Poll inside Compat.
    pub async fn put(&self, url: &str, bytes: Bytes) -> Result<()> {
        let (store, path) = self.resolve(url)?;
        store.put(&path, PutPayload::from(bytes)).await.map_err(|e| Error::storage(format!("put {url}"), e))?;
        Ok(())
    }

    /// Uploads a local file, streamed in 5 MiB parts (one PUT when it is smaller), so memory stays
    /// bounded whatever the file's size: one part is read, then sent, and its buffer goes to the
    /// request without a copy. 5 MiB is the smallest part S3 accepts. A failed multipart upload is
    /// aborted. Poll inside Compat.
    pub async fn upload_file(&self, file: &std::path::Path, url: &str) -> Result<()> {
        use std::io::Read;
        const PART: usize = 5 << 20;
        let open = |e| Error::io(format!("read {}", file.display()), e);
        let len = std::fs::metadata(file).map_err(open)?.len();
        if len <= PART as u64 {
            let f = file.to_path_buf();
            let bytes = blocking::unblock(move || std::fs::read(f)).await.map_err(open)?;
            return self.put(url, Bytes::from(bytes)).await;
        }
        let (store, path) = self.resolve(url)?;
        let context = || format!("multipart upload {url}");
        let mut upload = store.put_multipart(&path).await.map_err(|e| Error::storage(context(), e))?;
        let mut f = std::fs::File::open(file).map_err(open)?;
        loop {
            let (read, back) = blocking::unblock(move || {
                let mut chunk = Vec::with_capacity(PART);
                let r = (&mut f).take(PART as u64).read_to_end(&mut chunk).map(|_| chunk);
                (r, f)
            })
            .await;
            f = back;
            let chunk = match read {
                Ok(c) => c,
                Err(e) => {
                    let _ = upload.abort().await;
                    return Err(open(e));
                }
            };
            if chunk.is_empty() {
                break;
            }
            if let Err(e) = upload.put_part(PutPayload::from(chunk)).await {
                let _ = upload.abort().await;
                return Err(Error::storage(context(), e));
            }
        }
        upload.complete().await.map_err(|e| Error::storage(context(), e))?;
        Ok(())
    }

    /// Removes an object (a missing one is fine). Poll inside Compat.
    pub async fn delete(&self, url: &str) -> Result<()> {
        let (store, path) = self.resolve(url)?;
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::storage(format!("delete {url}"), e)),
        }
    }

    /// Whether the object exists. Poll inside Compat.
    pub async fn exists(&self, url: &str) -> Result<bool> {
        let (store, path) = self.resolve(url)?;
        match store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::storage(format!("look for {url}"), e)),
        }
    }

    /// Copies the object into the local `file` (created or truncated), chunk by chunk as it
    /// arrives, so memory stays at one chunk whatever the object's size. Poll inside Compat.
    pub async fn download_file(&self, url: &str, file: &std::path::Path) -> Result<u64> {
        use futures::StreamExt;
        use std::io::Write;
        let (store, path) = self.resolve(url)?;
        let context = || format!("get {url}");
        let mut stream = store.get(&path).await.map_err(|e| Error::storage(context(), e))?.into_stream();
        let local = |e| Error::io(format!("write {}", file.display()), e);
        let mut out = std::io::BufWriter::new(std::fs::File::create(file).map_err(local)?);
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::storage(context(), e))?;
            out.write_all(&chunk).map_err(local)?;
            n += chunk.len() as u64;
        }
        out.flush().map_err(local)?;
        Ok(n)
    }

    /// Every object under the prefix `url` (a directory-like URL without a trailing slash), as
    /// URLs in `url`'s scheme with their last-modified time. Poll inside Compat.
    pub async fn list(&self, url: &str) -> Result<Vec<Listed>> {
        use futures::TryStreamExt;
        let Located { key, store, path } = self.locate(url)?;
        let objects: Vec<object_store::ObjectMeta> =
            store.list(Some(&path)).try_collect().await.map_err(|e| Error::storage(format!("list {url}"), e))?;
        let base = if key == "file://" { "file:///".to_string() } else { format!("{key}/") };
        Ok(objects
            .into_iter()
            .map(|o| Listed { url: format!("{base}{}", o.location), modified: o.last_modified, bytes: o.size })
            .collect())
    }

    /// Reads the whole object. Poll inside Compat.
    pub async fn get(&self, url: &str) -> Result<Bytes> {
        let (store, path) = self.resolve(url)?;
        let context = || format!("get {url}");
        let result = store.get(&path).await.map_err(|e| Error::storage(context(), e))?;
        result.bytes().await.map_err(|e| Error::storage(context(), e))
    }

    /// An iceberg FileIO whose storage is these stores, so iceberg writes manifests and manifest
    /// lists through them. It shares this `Stores`' cache.
    pub fn file_io(&self) -> iceberg::io::FileIO {
        iceberg::io::FileIOBuilder::new(Arc::new(ObjectStoreStorageFactory::new(self.clone()))).build()
    }
}

#[cfg(test)]
#[path = "stores_tests.rs"]
mod tests;
