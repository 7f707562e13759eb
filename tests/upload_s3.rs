//! `frazil::upload` against a real S3 server (s3s-fs), on the agent's runtime: a smol executor
//! with object_store/iceberg futures polled inside `async_compat::Compat`.
//!
//! s3s-fs is installed by `tests/servers/install.sh`; each test starts its own server on a free
//! port over a temporary directory and kills it on drop.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use frazil::Error;
use frazil::upload::{S3Settings, Stores};
use iceberg::io::FileRead;
use object_store::{BackoffConfig, RetryConfig};

#[path = "common/tls.rs"]
#[allow(dead_code)]
mod tls;

const BUCKET: &str = "warehouse";

fn s3s_fs() -> PathBuf {
    let tools = std::env::var_os("FRAZIL_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/frazil/tools"));
    let bin = tools.join("bin/s3s-fs");
    assert!(
        bin.is_file(),
        "s3s-fs is not installed at {}: run tests/servers/install.sh (it builds s3s-fs into \
         ${{FRAZIL_TOOLS:-$HOME/.cache/frazil/tools}})",
        bin.display()
    );
    bin
}

/// One s3s-fs process on 127.0.0.1, killed (this process only) on drop.
struct S3Server {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl S3Server {
    fn start() -> S3Server {
        let bin = s3s_fs();
        let root = tempfile::Builder::new().prefix("frazil-s3s-").tempdir().expect("temp dir");
        std::fs::create_dir(root.path().join(BUCKET)).expect("create the bucket directory");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", "test", "--secret-key", "test"])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut server = S3Server { child, port, root };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait().expect("poll s3s-fs") {
                panic!("s3s-fs exited at start-up: {status}");
            }
            assert!(Instant::now() < deadline, "s3s-fs did not listen on 127.0.0.1:{port} within 15 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn settings(&self) -> S3Settings {
        settings_for(self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The agent's runtime: smol on this thread, tokio-needing futures inside Compat.
/// The settings for an s3s-fs on `port` with the test credentials.
fn settings_for(port: u16) -> S3Settings {
    S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        session_token: None,
        path_style: true,
        allow_http: true,
        ca_file: None,
    }
}

fn run<T>(future: impl Future<Output = T>) -> T {
    smol::block_on(async_compat::Compat::new(future))
}

fn pattern(len: usize, seed: u64) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut data = vec![0u8; len];
    rng.fill(&mut data);
    Bytes::from(data)
}

#[test]
fn put_get_round_trip_and_overwrite() {
    let server = S3Server::start();
    let stores = Stores::new(server.settings());
    let url = format!("s3://{BUCKET}/data/part-0.parquet");
    run(async {
        let big = pattern(5 << 20, 1);
        stores.put(&url, big.clone()).await.expect("put 5 MiB");
        assert_eq!(stores.get(&url).await.expect("get"), big);
        // Path-style addressing put it where s3s-fs keeps bucket/key.
        let on_disk = std::fs::read(server.root.path().join(BUCKET).join("data/part-0.parquet")).unwrap();
        assert_eq!(on_disk.len(), big.len());

        // The same name again (a retried upload) overwrites, also with other content and size.
        let smaller = pattern(3 << 20, 2);
        stores.put(&url, smaller.clone()).await.expect("overwrite");
        assert_eq!(stores.get(&url).await.expect("get after overwrite"), smaller);
        stores.put(&url, smaller.clone()).await.expect("identical overwrite");

        // s3a:// is the same store and object.
        assert_eq!(stores.get(&format!("s3a://{BUCKET}/data/part-0.parquet")).await.unwrap(), smaller);

        // A missing object is a storage error (an HTTP 404 answered, not retried).
        let e = stores.get(&format!("s3://{BUCKET}/data/missing")).await.unwrap_err();
        assert!(matches!(&e, Error::Storage { source: object_store::Error::NotFound { .. }, .. }), "{e}");
        let e = stores.get("s3://no-such-bucket/x").await.unwrap_err();
        assert!(matches!(&e, Error::Storage { .. }), "{e}");
    });

    // Wrong credentials: the 403 comes back as an error promptly (object_store does not retry 4xx).
    let wrong = Stores::new(S3Settings { secret_access_key: Some("wrong".into()), ..server.settings() });
    let started = Instant::now();
    let e = run(wrong.put(&url, Bytes::from_static(b"x"))).unwrap_err();
    assert!(matches!(&e, Error::Storage { .. }), "{e}");
    assert!(e.to_string().contains("403"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn upload_file_streams_small_and_multipart_files() {
    let server = S3Server::start();
    let stores = Stores::new(server.settings());
    let dir = tempfile::tempdir().unwrap();
    for (name, len) in [("small", 100_000usize), ("big", (19 << 20) + 12345)] {
        let data = pattern(len, len as u64);
        let path = dir.path().join(name);
        std::fs::write(&path, &data).unwrap();
        let url = format!("s3://{BUCKET}/data/{name}.parquet");
        run(stores.upload_file(&path, &url)).expect("upload_file");
        assert_eq!(run(stores.get(&url)).expect("get"), data, "{name}");
        // Again, as a retry would: the same name is overwritten, not doubled.
        run(stores.upload_file(&path, &url)).expect("upload_file again");
        assert_eq!(run(stores.get(&url)).expect("get"), data, "{name} after retry");
    }
    let missing = run(stores.upload_file(&dir.path().join("nope"), &format!("s3://{BUCKET}/data/nope"))).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing}");
}

#[test]
fn file_io_write_read_exists_delete() {
    let server = S3Server::start();
    let stores = Stores::new(server.settings());
    let io = stores.file_io();
    let base = format!("s3://{BUCKET}/wh/db/events/metadata");
    run(async {
        let location = format!("{base}/snap-1-manifest-list.avro");
        let out = io.new_output(&location).expect("new_output");
        assert!(!out.exists().await.expect("exists before write"));
        let content = pattern(100_000, 3);
        out.write(content.clone()).await.expect("OutputFile::write");
        assert!(out.exists().await.expect("exists after write"));

        let input = out.to_input_file();
        assert!(input.exists().await.unwrap());
        assert_eq!(input.metadata().await.expect("metadata").size, content.len() as u64);
        assert_eq!(input.read().await.expect("InputFile::read"), content);
        let reader = input.reader().await.expect("reader");
        assert_eq!(reader.read(1_000..1_100).await.expect("ranged read"), content.slice(1_000..1_100));
        assert_eq!(reader.read(99_990..100_000).await.unwrap(), content.slice(99_990..));

        // A streaming writer that stays small: one PUT on close.
        let small = format!("{base}/00001-manifest.avro");
        let mut w = io.new_output(&small).unwrap().writer().await.expect("writer");
        w.write(content.slice(..40_000)).await.unwrap();
        w.write(content.slice(40_000..)).await.unwrap();
        assert!(!io.exists(&small).await.unwrap(), "nothing visible before close");
        w.close().await.expect("close");
        assert_eq!(io.new_input(&small).unwrap().read().await.unwrap(), content);

        // A writer that outgrows one part: a multipart upload.
        let large = format!("{base}/large.bin");
        let big = pattern(19 << 20, 4);
        let mut w = io.new_output(&large).unwrap().writer().await.unwrap();
        for chunk in big.chunks(3 << 20) {
            w.write(big.slice_ref(chunk)).await.expect("write part");
        }
        // s3s-fs keeps uploaded parts as `.upload_id-<id>.part-<n>` in its root until completion.
        let parts = std::fs::read_dir(server.root.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".upload_id-"))
            .count();
        assert_eq!(parts, 2, "two full 8 MiB parts were uploaded before close");
        assert!(!io.exists(&large).await.unwrap(), "nothing visible before close");
        w.close().await.expect("complete multipart upload");
        assert_eq!(stores.get(&large).await.unwrap(), big);

        // Delete: the object goes, deleting it again is fine.
        let input = io.new_input(&location).unwrap();
        io.delete(&location).await.expect("delete");
        assert!(!input.exists().await.unwrap());
        io.delete(&location).await.expect("delete a missing file");

        // delete_stream and delete_prefix.
        io.delete_stream(futures::stream::iter(vec![small.clone(), format!("{base}/never-written")]))
            .await
            .expect("delete_stream");
        assert!(!io.exists(&small).await.unwrap());
        let keep = format!("s3://{BUCKET}/wh/db/events-other/keep");
        io.new_output(&keep).unwrap().write(Bytes::from_static(b"k")).await.unwrap();
        io.delete_prefix(format!("s3://{BUCKET}/wh/db/events")).await.expect("delete_prefix");
        assert!(!io.exists(&large).await.unwrap());
        assert!(io.exists(&keep).await.unwrap(), "a sibling with a common string prefix stays");
    });
}

#[test]
fn put_to_a_stopped_server_fails_instead_of_hanging() {
    let mut server = S3Server::start();
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(5),
    };
    let stores = Stores::new(server.settings()).with_retry(retry);
    let url = format!("s3://{BUCKET}/spool/upload.parquet");
    run(stores.put(&url, pattern(1 << 20, 5))).expect("put while the server runs");

    server.stop();
    let started = Instant::now();
    let e = run(stores.put(&url, pattern(1 << 20, 6))).expect_err("put to a stopped server");
    let elapsed = started.elapsed();
    assert!(matches!(&e, Error::Storage { .. }), "{e}");
    assert!(e.is_transient(), "a connection failure is transient: {e}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}: {e}");
    let text = format!("{e} {:?}", std::error::Error::source(&e));
    assert!(text.contains("after 2 retries"), "retried before giving up: {text}");
    eprintln!("stopped server: failed after {elapsed:?}: {e}");
}

#[test]
fn a_silent_server_times_out_instead_of_hanging() {
    // Accepts connections (the kernel does, from the backlog) and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let settings = settings_for(port);
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            base: 2.0,
        },
        max_retries: 1,
        retry_timeout: Duration::from_secs(5),
    };
    let client = frazil::upload::default_client_options().with_read_timeout(Duration::from_millis(300));
    let stores = Stores::new(settings).with_retry(retry).with_client_options(client);
    let started = Instant::now();
    let e = run(stores.get(&format!("s3://{BUCKET}/x"))).expect_err("get from a silent server");
    let elapsed = started.elapsed();
    assert!(matches!(&e, Error::Storage { .. }), "{e}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}: {e}");
    eprintln!("silent server: get failed after {elapsed:?}: {e}");
    drop(listener);
}

#[test]
fn an_https_endpoint_is_trusted_through_the_configured_ca_only() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let proxy = tls::TlsProxy::start(format!("127.0.0.1:{}", server.port).parse().unwrap(), dir.path());
    let https = |ca_file: Option<PathBuf>| S3Settings {
        endpoint: Some(proxy.url()),
        allow_http: false,
        ca_file,
        ..settings_for(server.port)
    };
    let url = format!("s3://{BUCKET}/tls/object");
    let stores = Stores::new(https(Some(proxy.ca_file.clone())));
    run(stores.put(&url, Bytes::from_static(b"over TLS"))).expect("put through the TLS endpoint");
    assert_eq!(run(stores.get(&url)).expect("get"), Bytes::from_static(b"over TLS"));

    // Without the CA file the system's roots are trusted, and they do not know the test CA.
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            base: 2.0,
        },
        max_retries: 1,
        retry_timeout: Duration::from_secs(5),
    };
    let other = format!("s3://{BUCKET}/tls/refused");
    let err = run(Stores::new(https(None)).with_retry(retry).put(&other, Bytes::from_static(b"x")))
        .expect_err("an unknown CA is refused");
    let text = format!("{err:?}");
    assert!(text.contains("certificate") || text.contains("UnknownIssuer"), "{text}");
    assert!(!server.root.path().join(BUCKET).join("tls/refused").exists());
}
