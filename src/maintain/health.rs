//! How healthy a table is to read: the counts that grow when nobody maintains it. Read from the
//! metadata, the current snapshot's summary and its manifest list (one small read).

use std::fmt;

use async_compat::Compat;
use iceberg::spec::{ManifestContentType, ManifestFile, ManifestList, Snapshot};
use iceberg::table::Table;

use super::LAST_MAINTAINED;
use crate::{Error, Result};

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// Snapshots in the metadata (every one is rewritten into each new metadata file).
    pub snapshots: usize,
    /// Manifests the current snapshot lists: every reader opens each.
    pub data_manifests: usize,
    pub delete_manifests: usize,
    /// Live data files and their bytes, from the current snapshot's summary.
    pub data_files: u64,
    pub data_bytes: u64,
    pub records: u64,
    /// When maintenance last changed the table (RFC 3339), from its properties.
    pub last_maintained: Option<String>,
}

impl Health {
    pub fn mean_file_bytes(&self) -> u64 {
        self.data_bytes.checked_div(self.data_files).unwrap_or(0)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} snapshots, {} data manifests, {} data files of {:.1} KiB on average",
            self.snapshots,
            self.data_manifests,
            self.data_files,
            self.mean_file_bytes() as f64 / 1024.0
        )?;
        if self.delete_manifests > 0 {
            write!(f, ", {} delete manifests", self.delete_manifests)?;
        }
        match &self.last_maintained {
            Some(at) => write!(f, "; last maintained {at}"),
            None => write!(f, "; never maintained"),
        }
    }
}

/// The health of `table` as loaded.
pub async fn health(table: &Table) -> Result<Health> {
    let md = table.metadata();
    let mut h = Health {
        snapshots: md.snapshots().count(),
        last_maintained: md.properties().get(LAST_MAINTAINED).cloned(),
        ..Health::default()
    };
    let Some(current) = md.current_snapshot() else { return Ok(h) };
    let total = |key: &str| current.summary().additional_properties.get(key).and_then(|v| v.parse().ok());
    h.data_files = total("total-data-files").unwrap_or(0);
    h.data_bytes = total("total-files-size").unwrap_or(0);
    h.records = total("total-records").unwrap_or(0);
    for m in manifests_of(table, current).await? {
        match m.content {
            ManifestContentType::Data => h.data_manifests += 1,
            ManifestContentType::Deletes => h.delete_manifests += 1,
        }
    }
    Ok(h)
}

/// The manifests `snapshot` lists.
pub(super) async fn manifests_of(table: &Table, snapshot: &Snapshot) -> Result<Vec<ManifestFile>> {
    let fail = |e| Error::iceberg(format!("read the manifest list of {}", table.identifier()), e);
    let bytes =
        Compat::new(async { table.file_io().new_input(snapshot.manifest_list())?.read().await }).await.map_err(fail)?;
    let list = ManifestList::parse_with_version(&bytes, table.metadata().format_version()).map_err(fail)?;
    Ok(list.consume_entries().into_iter().collect())
}
