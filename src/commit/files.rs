//! A catalog kept in the warehouse itself, for sites with no catalog service
//! (`catalog.type = "filesystem"`): each table's metadata lives next to its data as
//! `<warehouse>/<namespace levels>/<table>/metadata/v<N>.metadata.json`, and
//! `metadata/version-hint.text` holds the latest N for readers (DuckDB's `iceberg_scan` on the
//! table directory; pyiceberg's `StaticTable` takes a metadata file).
//!
//! A commit reads the current version N, checks the requirements against it, applies the
//! updates with iceberg's `TableMetadataBuilder`, and writes version N+1 with a create-if-absent
//! put (`PutMode::Create`: an `If-None-Match: *` PUT on S3, a hard link on a local disk). Of two
//! writers that both read N, exactly one creates N+1; the other gets a conflict, reloads and
//! rebases, as with a REST catalog's 409. The hint is only a starting point: the current version
//! is the highest N whose file exists, found by probing upwards from the hint, so a hint left
//! behind by a crash costs one more probe, never a lost commit.

use std::collections::HashMap;

use async_compat::Compat;
use bytes::Bytes;
use iceberg::spec::{PartitionSpec, Schema, SortOrder, TableMetadata, TableMetadataBuilder};
use iceberg::{NamespaceIdent, TableCreation, TableIdent, TableRequirement, TableUpdate};
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use super::rest::{CommitAnswer, LoadedTable};
use crate::upload::Stores;
use crate::{Error, Result};

pub struct FilesCatalog {
    /// The warehouse URL without a trailing slash, e.g. `s3://lake/wh` or `file:///var/lib/lake`.
    warehouse: String,
    stores: Stores,
    properties: HashMap<String, String>,
}

/// `v12.metadata.json` → 12.
fn version_name(n: u64) -> String {
    format!("v{n}.metadata.json")
}

impl FilesCatalog {
    pub fn new(warehouse: &str, stores: Stores) -> Result<FilesCatalog> {
        let warehouse = warehouse.trim_end_matches('/').to_string();
        // Fails early on a URL the stores cannot serve.
        stores.resolve(&format!("{warehouse}/x"))?;
        Ok(FilesCatalog { warehouse, stores, properties: HashMap::new() })
    }

    fn table_location(&self, ident: &TableIdent) -> String {
        format!("{}/{}/{}", self.warehouse, ident.namespace().as_ref().join("/"), ident.name())
    }

    fn run<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        smol::block_on(Compat::new(f))
    }

    async fn exists(&self, url: &str) -> Result<bool> {
        self.stores.exists(url).await
    }

    /// The latest version number of a table, `None` when it has no metadata.
    async fn latest(&self, location: &str) -> Result<Option<u64>> {
        let hint_url = format!("{location}/metadata/version-hint.text");
        let hint = match self.stores.get(&hint_url).await {
            Ok(b) => String::from_utf8_lossy(&b).trim().parse::<u64>().ok(),
            Err(Error::Storage { source: object_store::Error::NotFound { .. }, .. }) => None,
            Err(e) => return Err(e),
        };
        let mut n = match hint {
            Some(n) if self.exists(&format!("{location}/metadata/{}", version_name(n))).await? => n,
            // No hint, or one that points nowhere (a hand-edited table): start from the first.
            _ => {
                if !self.exists(&format!("{location}/metadata/{}", version_name(1))).await? {
                    return Ok(None);
                }
                1
            }
        };
        while self.exists(&format!("{location}/metadata/{}", version_name(n + 1))).await? {
            n += 1;
        }
        Ok(Some(n))
    }

    async fn load(&self, ident: &TableIdent) -> Result<Option<(u64, LoadedTable)>> {
        let location = self.table_location(ident);
        let Some(n) = self.latest(&location).await? else { return Ok(None) };
        let url = format!("{location}/metadata/{}", version_name(n));
        let bytes = self.stores.get(&url).await?;
        let metadata: TableMetadata =
            serde_json::from_slice(&bytes).map_err(|e| Error::decode(format!("table metadata {url}"), e))?;
        Ok(Some((n, LoadedTable { metadata_location: Some(url), metadata, config: HashMap::new() })))
    }

    /// Writes version `n` if no writer has; `Ok(false)` when one has.
    async fn create_version(&self, location: &str, n: u64, metadata: &TableMetadata) -> Result<bool> {
        let url = format!("{location}/metadata/{}", version_name(n));
        let json = serde_json::to_vec(metadata).map_err(|e| Error::encode(format!("encode {url}"), e))?;
        let (store, path) = self.stores.resolve(&url)?;
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match store.put_opts(&path, PutPayload::from(Bytes::from(json)), opts).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                return Ok(false);
            }
            Err(e) => return Err(Error::storage(format!("create {url}"), e)),
        }
        // The hint may lag behind (a crash here, or another writer's newer hint overwritten by
        // this older one): readers that use it see an older version, and `latest` probes past it.
        let hint = format!("{location}/metadata/version-hint.text");
        if let Err(e) = self.stores.put(&hint, Bytes::from(n.to_string())).await {
            log::warn!("{hint}: {e}; readers that follow the hint see an older version until the next commit");
        }
        Ok(true)
    }

    fn loaded(location: &str, n: u64, metadata: TableMetadata) -> LoadedTable {
        LoadedTable {
            metadata_location: Some(format!("{location}/metadata/{}", version_name(n))),
            metadata,
            config: HashMap::new(),
        }
    }
}

impl super::backend::Backend for FilesCatalog {
    fn ensure_namespace(&self, _: &NamespaceIdent) -> Result<()> {
        Ok(()) // a namespace is a directory, made by the first object written under it
    }

    fn load_table(&self, ident: &TableIdent) -> Result<Option<LoadedTable>> {
        self.run(async { Ok(self.load(ident).await?.map(|(_, t)| t)) })
    }

    fn create_table(
        &self,
        ident: &TableIdent,
        schema: &Schema,
        spec: &PartitionSpec,
        order: &SortOrder,
    ) -> Result<(LoadedTable, bool)> {
        let location = self.table_location(ident);
        let creation = TableCreation::builder()
            .name(ident.name().to_string())
            .location(location.clone())
            .schema(schema.clone())
            .partition_spec(spec.clone().into_unbound())
            .sort_order(order.clone())
            .properties([("write.parquet.compression-codec".to_string(), "zstd".to_string())])
            .build();
        let metadata = TableMetadataBuilder::from_table_creation(creation)
            .and_then(|b| b.build())
            .map_err(|e| Error::iceberg(format!("metadata of new table {ident}"), e))?
            .metadata;
        self.run(async {
            if self.create_version(&location, 1, &metadata).await? {
                return Ok((Self::loaded(&location, 1, metadata), true));
            }
            let theirs = self.load(ident).await?.ok_or_else(|| Error::Catalog {
                context: format!("create table {ident}"),
                status: None,
                body: "another writer created its first metadata file, which cannot be read back".into(),
            })?;
            Ok((theirs.1, false))
        })
    }

    fn commit(
        &self,
        ident: &TableIdent,
        requirements: &[TableRequirement],
        updates: &[TableUpdate],
    ) -> Result<CommitAnswer> {
        let location = self.table_location(ident);
        self.run(async {
            let current = self.load(ident).await?;
            let (n, current) = match current {
                Some((n, t)) => (n, t),
                None => return Ok(CommitAnswer::Conflict(format!("table {ident} has no metadata in {location}"))),
            };
            for r in requirements {
                if let Err(e) = r.check(Some(&current.metadata)) {
                    return Ok(CommitAnswer::Conflict(e.to_string()));
                }
            }
            let mut builder = TableMetadataBuilder::new_from_metadata(current.metadata, current.metadata_location);
            for u in updates {
                builder =
                    u.clone().apply(builder).map_err(|e| Error::iceberg(format!("apply a commit to {ident}"), e))?;
            }
            let next = builder.build().map_err(|e| Error::iceberg(format!("metadata of {ident}"), e))?.metadata;
            match self.create_version(&location, n + 1, &next).await {
                Ok(true) => Ok(CommitAnswer::Applied(Box::new(Self::loaded(&location, n + 1, next)))),
                Ok(false) => {
                    Ok(CommitAnswer::Conflict(format!("another writer created {} first", version_name(n + 1))))
                }
                // The create may have landed: the caller looks for its commit id before retrying.
                Err(e) => Ok(CommitAnswer::Unknown(e)),
            }
        })
    }

    fn properties(&self) -> &HashMap<String, String> {
        &self.properties
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::backend::Backend;
    use iceberg::spec::{NestedField, PrimitiveType, Type};

    fn catalog(dir: &std::path::Path) -> FilesCatalog {
        let stores = Stores::new(crate::upload::S3Settings::default());
        FilesCatalog::new(&format!("file://{}", dir.display()), stores).unwrap()
    }

    fn schema() -> Schema {
        Schema::builder()
            .with_fields(vec![NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into()])
            .build()
            .unwrap()
    }

    #[test]
    fn versions_are_created_once_and_found_past_a_stale_hint() {
        let dir = tempfile::tempdir().unwrap();
        let c = catalog(dir.path());
        let ident = TableIdent::from_strs(["edge", "t"]).unwrap();
        assert!(c.load_table(&ident).unwrap().is_none());
        let (t, created) = c
            .create_table(&ident, &schema(), &PartitionSpec::unpartition_spec(), &SortOrder::unsorted_order())
            .unwrap();
        assert!(created);
        assert!(t.metadata_location.as_deref().unwrap().ends_with("/edge/t/metadata/v1.metadata.json"));
        // A second creator finds the first one's table.
        let (_, created) = c
            .create_table(&ident, &schema(), &PartitionSpec::unpartition_spec(), &SortOrder::unsorted_order())
            .unwrap();
        assert!(!created);

        // Two writers that read v1: the first commit creates v2, the second is a conflict.
        let update = |k: &str| vec![TableUpdate::SetProperties { updates: [(k.to_string(), "1".to_string())].into() }];
        let uuid = t.metadata.uuid();
        let require = vec![TableRequirement::UuidMatch { uuid }];
        assert!(matches!(c.commit(&ident, &require, &update("a")).unwrap(), CommitAnswer::Applied(_)));
        let stale = c.run(c.create_version(&c.table_location(&ident), 2, &t.metadata)).unwrap();
        assert!(!stale, "version 2 exists: a second create must fail");
        // A requirement that no longer holds is a conflict too, and writes nothing.
        let wrong = vec![TableRequirement::UuidMatch { uuid: uuid::Uuid::nil() }];
        assert!(matches!(c.commit(&ident, &wrong, &update("b")).unwrap(), CommitAnswer::Conflict(_)));

        // The hint left behind (a crash between the version and the hint): v2 is still current.
        let meta = dir.path().join("edge/t/metadata");
        std::fs::write(meta.join("version-hint.text"), "1").unwrap();
        let loaded = c.load_table(&ident).unwrap().unwrap();
        assert!(loaded.metadata_location.unwrap().ends_with("v2.metadata.json"));
        assert_eq!(loaded.metadata.properties().get("a").map(String::as_str), Some("1"));
        assert!(!meta.join("v3.metadata.json").exists());
    }
}
