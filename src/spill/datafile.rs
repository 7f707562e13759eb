//! The DataFile codec: each spool file's Iceberg `DataFile` (column metrics, partition tuple),
//! made by the writer that wrote the file, is kept as JSON in the spool index beside it until the
//! file is committed. The upload stage reads it back, pointing at the uploaded object.

use iceberg::spec::{
    DataFile, FormatVersion, StructType, deserialize_data_file_from_json, serialize_data_file_to_json,
};
use iceberg::table::Table;

use crate::{Error, Result};

/// A DataFile as JSON, to keep beside a spool file until it is committed (format v2; the
/// partition tuple typed by `partition_type`, empty for an unpartitioned table).
pub fn to_json(file: DataFile, partition_type: &StructType) -> Result<Vec<u8>> {
    serialize_data_file_to_json(file, partition_type, FormatVersion::V2)
        .map(String::into_bytes)
        .map_err(|e| Error::iceberg("encode data file", e))
}

/// The DataFile kept beside a spool file, now pointing at its uploaded object.
pub fn from_json(json: &[u8], object_url: &str, table: &Table) -> Result<DataFile> {
    let mut value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| Error::encode("the DataFile kept for a spool file", e))?;
    match value.get_mut("file_path") {
        Some(path) => *path = serde_json::Value::String(object_url.to_string()),
        None => return Err(Error::encode("the DataFile kept for a spool file", "no file_path field")),
    }
    let m = table.metadata();
    let partition_type = m.default_partition_type();
    // iceberg reads the partition tuple in the order of the JSON object's keys, and serde_json's
    // map sorts them: write the tuple back in the partition type's order.
    const MARK: &str = "frazil:partition-tuple";
    let tuple = match value.get_mut("partition").map(std::mem::take) {
        Some(serde_json::Value::Object(fields)) => {
            let ordered: Vec<String> = partition_type
                .fields()
                .iter()
                .map(|f| {
                    format!(
                        "{}:{}",
                        serde_json::Value::String(f.name.clone()),
                        fields.get(&f.name).unwrap_or(&serde_json::Value::Null)
                    )
                })
                .collect();
            format!("{{{}}}", ordered.join(","))
        }
        Some(other) => other.to_string(),
        None => "{}".to_string(),
    };
    value["partition"] = serde_json::Value::String(MARK.to_string());
    let text = value.to_string().replacen(&format!("\"{MARK}\""), &tuple, 1);
    let spec = m.default_partition_spec();
    deserialize_data_file_from_json(&text, spec.spec_id(), partition_type, m.current_schema())
        .map_err(|e| Error::iceberg(format!("decode data file for {object_url}"), e))
}
