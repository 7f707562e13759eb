//! Tests of `stores.rs`: URL parsing, settings, and the FileIO bridge.

use iceberg::io::FileRead;

use super::*;

fn stores() -> Stores {
    Stores::new(S3Settings {
        endpoint: Some("http://127.0.0.1:9".into()),
        region: Some("us-east-1".into()),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        path_style: true,
        allow_http: true,
        ..Default::default()
    })
}

fn config_error(url: &str) -> String {
    match stores().resolve(url) {
        Err(e @ Error::Config { .. }) => e.to_string(),
        Err(e) => panic!("{url}: expected a config error, got {e}"),
        Ok((store, path)) => panic!("{url}: expected an error, got {store} {path}"),
    }
}

#[test]
fn resolves_s3_urls() {
    let s = stores();
    let (store, path) = s.resolve("s3://bucket/a/b").unwrap();
    assert_eq!(path.as_ref(), "a/b");
    assert!(store.to_string().contains("bucket"), "{store}");

    let (store2, path) = s.resolve("s3a://bucket/a/b/c.parquet").unwrap();
    assert_eq!(path.as_ref(), "a/b/c.parquet");
    assert!(Arc::ptr_eq(&store, &store2), "one cached store per bucket");

    let (other, path) = s.resolve("s3://other-bucket").unwrap();
    assert!(path.is_root());
    assert!(!Arc::ptr_eq(&store, &other));

    let (_, path) = s.resolve("s3://bucket/dir/").unwrap();
    assert_eq!(path.as_ref(), "dir");
    // Clones share the cache.
    let (store3, _) = s.clone().resolve("s3://bucket/x").unwrap();
    assert!(Arc::ptr_eq(&store, &store3));
}

#[test]
fn resolves_file_urls() {
    let s = stores();
    let (store, path) = s.resolve("file:///x/y").unwrap();
    assert_eq!(path.as_ref(), "x/y");
    assert!(store.to_string().contains("LocalFileSystem"), "{store}");
    let (_, path) = s.resolve("file:/x/y/z.avro").unwrap();
    assert_eq!(path.as_ref(), "x/y/z.avro");
}

#[test]
fn rejects_bad_urls_naming_them() {
    for url in [
        "ftp://host/x",
        "gs://bucket/x",
        "/plain/path",
        "s3://",
        "s3:///key",
        "s3:bucket/key",
        "s3://bucket/a//b",
        "s3://bu cket/a",
        "file://host/x",
        "file:relative/x",
        "file:///",
    ] {
        let message = config_error(url);
        assert!(message.contains(url), "{message}");
        assert!(message.contains("s3://bucket/key"), "{message}");
    }
    assert!(config_error("ftp://host/x").contains("unsupported scheme `ftp`"));
}

#[test]
fn rejects_http_endpoint_without_allow_http() {
    let s = Stores::new(S3Settings { endpoint: Some("http://127.0.0.1:9".into()), ..Default::default() });
    let e = s.resolve("s3://bucket/x").unwrap_err();
    assert!(matches!(&e, Error::Config { key, .. } if key == "s3.allow_http"), "{e}");
    let s = Stores::new(S3Settings { endpoint: Some("127.0.0.1:9".into()), ..Default::default() });
    let e = s.resolve("s3://bucket/x").unwrap_err();
    assert!(matches!(&e, Error::Config { key, .. } if key == "s3.endpoint"), "{e}");
}

#[test]
fn stores_are_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Stores>();
    check::<S3Settings>();
}

#[test]
fn debug_hides_secrets() {
    let s = S3Settings {
        secret_access_key: Some("SECRET1".into()),
        session_token: Some("SECRET2".into()),
        ..Default::default()
    };
    let text = format!("{s:?} {:?}", Stores::new(s.clone()));
    assert!(!text.contains("SECRET"), "{text}");
}

#[test]
fn local_put_get_and_file_io() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!("file://{}", dir.path().display());
    let s = stores();
    smol::block_on(async_compat::Compat::new(async {
        // Parent directories are created.
        let url = format!("{base}/a/b/c.bin");
        s.put(&url, Bytes::from_static(b"one")).await.unwrap();
        s.put(&url, Bytes::from_static(b"two")).await.unwrap();
        assert_eq!(s.get(&url).await.unwrap(), Bytes::from_static(b"two"));
        let e = s.get(&format!("{base}/missing")).await.unwrap_err();
        assert!(matches!(e, Error::Storage { source: object_store::Error::NotFound { .. }, .. }), "{e}");

        let io = s.file_io();
        let out = io.new_output(format!("{base}/m/x.avro")).unwrap();
        out.write(Bytes::from_static(b"manifest")).await.unwrap();
        let input = io.new_input(format!("{base}/m/x.avro")).unwrap();
        assert!(input.exists().await.unwrap());
        assert_eq!(input.metadata().await.unwrap().size, 8);
        assert_eq!(input.read().await.unwrap(), Bytes::from_static(b"manifest"));
        let reader = input.reader().await.unwrap();
        assert_eq!(reader.read(2..6).await.unwrap(), Bytes::from_static(b"nife"));

        let mut w = io.new_output(format!("{base}/m/y.avro")).unwrap().writer().await.unwrap();
        w.write(Bytes::from_static(b"ab")).await.unwrap();
        w.write(Bytes::from_static(b"cd")).await.unwrap();
        w.close().await.unwrap();
        assert!(w.close().await.is_err(), "second close fails");
        assert_eq!(s.get(&format!("{base}/m/y.avro")).await.unwrap(), Bytes::from_static(b"abcd"));

        io.delete(format!("{base}/m/x.avro")).await.unwrap();
        io.delete(format!("{base}/m/x.avro")).await.unwrap(); // missing: no error
        assert!(!io.exists(format!("{base}/m/x.avro")).await.unwrap());

        io.delete_prefix(format!("{base}/a")).await.unwrap();
        assert!(!io.exists(&url).await.unwrap());
        assert!(io.exists(format!("{base}/m/y.avro")).await.unwrap());
        io.delete_prefix(format!("{base}/nothing-here")).await.unwrap();

        io.delete_stream(futures::stream::iter(vec![format!("{base}/m/y.avro"), format!("{base}/m/none")]))
            .await
            .unwrap();
        assert!(!io.exists(format!("{base}/m/y.avro")).await.unwrap());

        assert!(io.new_input("ftp://x/y").is_err());
    }));
}

#[test]
fn storage_serializes_without_losing_settings() {
    let s = stores();
    let factory: Box<dyn iceberg::io::StorageFactory> = Box::new(ObjectStoreStorageFactory::new(s.clone()));
    let json = serde_json::to_string(&factory).unwrap();
    let back: Box<dyn iceberg::io::StorageFactory> = serde_json::from_str(&json).unwrap();
    let storage = back.build(&iceberg::io::StorageConfig::new()).unwrap();
    let json2 = serde_json::to_string(&*storage).unwrap();
    let back2: Box<dyn iceberg::io::Storage> = serde_json::from_str(&json2).unwrap();
    assert!(format!("{back2:?}").contains("127.0.0.1:9"), "{back2:?}");
}
