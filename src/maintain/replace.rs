//! What merging and compaction share: a `replace` snapshot on `main`, written beside the table's
//! metadata and committed with the assertion that `main` is still the snapshot it was planned on.

use std::collections::HashMap;

use async_compat::Compat;
use iceberg::spec::{
    MAIN_BRANCH, ManifestFile, ManifestListWriter, ManifestWriter, ManifestWriterBuilder, Operation, Snapshot,
    SnapshotReference, SnapshotRetention, Summary, TableMetadata,
};
use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};

use crate::commit::{Committer, Outcome};
use crate::{Error, Result};

/// Writes the manifest list of a snapshot `snapshot_id` on top of `base` and returns the snapshot
/// and the list's path.
pub(super) async fn write_snapshot(
    table: &Table,
    base: &Snapshot,
    snapshot_id: i64,
    manifests: impl Iterator<Item = ManifestFile>,
    summary: Summary,
) -> Result<(Snapshot, String)> {
    let md = table.metadata();
    let seq = md.next_sequence_number();
    let list = format!("{}/metadata/snap-{snapshot_id}-1-{}.avro", md.location(), uuid_v4());
    Compat::new(async {
        let writer = table.file_io().new_output(&list)?.writer().await?;
        let mut w = ManifestListWriter::v2(writer, snapshot_id, Some(base.snapshot_id()), seq);
        w.add_manifests(manifests)?;
        w.close().await
    })
    .await
    .map_err(|e| Error::iceberg(format!("write the manifest list of {}", table.identifier()), e))?;
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(Some(base.snapshot_id()))
        .with_sequence_number(seq)
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .with_manifest_list(list.clone())
        .with_summary(summary)
        .with_schema_id(md.current_schema_id())
        .build();
    Ok((snapshot, list))
}

/// A writer of a new data manifest of partition spec `spec_id` for snapshot `snapshot_id`, at
/// `<location>/metadata/<uuid>-m-<kind>.avro`.
pub(super) fn manifest_writer(table: &Table, spec_id: i32, snapshot_id: i64, kind: &str) -> Result<ManifestWriter> {
    let md = table.metadata();
    let ident = table.identifier();
    let spec = md.partition_spec_by_id(spec_id).ok_or_else(|| Error::Catalog {
        context: format!("{kind} in {ident}"),
        status: None,
        body: format!("a manifest names partition spec {spec_id}, which the table does not have"),
    })?;
    let path = format!("{}/metadata/{}-m-{kind}.avro", md.location(), uuid_v4());
    let output = table.file_io().new_output(&path).map_err(|e| Error::iceberg(format!("write {path}"), e))?;
    let schema = md.current_schema().clone();
    Ok(ManifestWriterBuilder::new(output, Some(snapshot_id), schema, (**spec).clone()).build_v2_data())
}

/// A `replace` summary: the base's `total-*` values, then `props` (which may override them).
pub(super) fn replace_summary(base: &Snapshot, props: impl IntoIterator<Item = (String, String)>) -> Summary {
    let mut out: HashMap<String, String> = base
        .summary()
        .additional_properties
        .iter()
        .filter(|(k, _)| k.starts_with("total-"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.extend(props);
    Summary { operation: Operation::Replace, additional_properties: out }
}

/// Commits `snapshot` as the new head of `main`, requiring the table to be the same table and
/// `main` to be `base` still; marks the table maintained.
pub(super) async fn commit(committer: &Committer, table: &Table, base: i64, snapshot: Snapshot) -> Result<Outcome> {
    commit_moving(committer, table, base, snapshot, None).await
}

/// `commit`, and when `tag` is `(name, at)`: requires tag `name` to be on snapshot `at` and
/// moves it to the new snapshot.
pub(super) async fn commit_moving(
    committer: &Committer,
    table: &Table,
    base: i64,
    snapshot: Snapshot,
    tag: Option<(String, i64)>,
) -> Result<Outcome> {
    let new = snapshot.snapshot_id();
    let mut requirements = vec![
        TableRequirement::UuidMatch { uuid: table.metadata().uuid() },
        TableRequirement::RefSnapshotIdMatch { r#ref: MAIN_BRANCH.to_string(), snapshot_id: Some(base) },
    ];
    let reference = SnapshotReference::new(new, SnapshotRetention::branch(None, None, None));
    let mut updates = vec![
        TableUpdate::AddSnapshot { snapshot },
        TableUpdate::SetSnapshotRef { ref_name: MAIN_BRANCH.to_string(), reference },
        super::maintained_now(),
    ];
    if let Some((name, at)) = tag {
        requirements.push(TableRequirement::RefSnapshotIdMatch { r#ref: name.clone(), snapshot_id: Some(at) });
        let reference = SnapshotReference::new(new, SnapshotRetention::Tag { max_ref_age_ms: None });
        updates.push(TableUpdate::SetSnapshotRef { ref_name: name, reference });
    }
    committer.update(table.identifier(), requirements, updates).await
}

/// Whether a snapshot whose summary has `key` = `id` is on the main branch.
pub(super) fn landed(md: &TableMetadata, key: &str, id: &str) -> bool {
    crate::commit::protocol::ancestors(md).any(|s| s.summary().additional_properties.get(key).is_some_and(|v| v == id))
}

/// A snapshot id the table does not have yet (positive, like iceberg's own).
pub(super) fn new_snapshot_id(md: &TableMetadata) -> i64 {
    loop {
        let id = fastrand::i64(1..i64::MAX);
        if md.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

pub(super) fn uuid_v4() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid()
}

/// A UUIDv5 naming a maintenance step (`kind`) over the table and `parts` (sorted here), so the
/// same step planned again gets the same id.
pub(super) fn step_id<'a>(md: &TableMetadata, kind: &str, parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut parts: Vec<&str> = parts.into_iter().collect();
    parts.sort_unstable();
    let key = format!("frazil-maintenance\n{kind}\n{}\n{}", md.uuid(), parts.join("\n"));
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, key.as_bytes()).to_string()
}

/// Deletes files this pass wrote and no commit references. A failure leaves an orphan, which is
/// only logged: it holds no row of the table, and the orphan sweep removes it later.
pub(super) async fn delete_paths(table: &Table, paths: impl IntoIterator<Item = String>) {
    for p in paths {
        if let Err(e) = Compat::new(table.file_io().delete(&p)).await {
            log::warn!("could not delete {p}, which no snapshot references: {e}");
        }
    }
}
