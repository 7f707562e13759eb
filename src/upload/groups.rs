//! Which spool files go into one object: a table's written files in offset order, packed to
//! about the table's target size (small spool files keep a gateway's memory low; readers want
//! objects near the target size).

use frazil_spool::SpoolFile;

/// At most this many spool files merge into one object. A merge holds every input's footer and
/// DataFile, and the output's footer grows by one row group per input, so a backlog of small
/// files (a gateway offline for days, rolling by age) would otherwise set the memory of a drain:
/// 1,112 files of 50 rows in one object peaked at 88 MiB.
const MAX_GROUP_FILES: usize = 128;

/// Packs a table's written spool files (in offset order) into upload groups of about `target`
/// bytes and at most [`MAX_GROUP_FILES`] files; a file at or over the target goes alone.
pub fn upload_groups<K: PartialEq>(
    mut files: Vec<SpoolFile>,
    target: u64,
    schema: impl Fn(&SpoolFile) -> K,
) -> Vec<Vec<SpoolFile>> {
    // In offset order, not spooling order: partitions are fetched concurrently, so their files
    // interleave differently from one run to the next, and a retried upload (after a crash, or
    // with the spool lost and fetched again) must group the same files under the same names to
    // overwrite its first attempt instead of leaving an orphan object.
    files.sort_by(|a, b| {
        (&a.meta.topic, a.meta.partition, a.meta.first_offset).cmp(&(
            &b.meta.topic,
            b.meta.partition,
            b.meta.first_offset,
        ))
    });
    let mut groups: Vec<(K, Vec<SpoolFile>)> = Vec::new();
    let mut size = 0u64;
    for f in files {
        let key = schema(&f);
        match groups.last_mut() {
            // Only files of one schema merge (row groups are copied as they are).
            Some((k, g)) if size + f.bytes <= target && g.len() < MAX_GROUP_FILES && *k == key => {
                size += f.bytes;
                g.push(f);
            }
            _ => {
                size = f.bytes;
                groups.push((key, vec![f]));
            }
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// What files must share to be merged into one object: their Parquet schema (row groups are
/// copied as they are, so field ids and physical types must match: files written before and after
/// a schema grew or a column widened differ), and their partition tuple.
pub fn columns_of(f: &SpoolFile) -> (String, String) {
    let json: serde_json::Value = serde_json::from_slice(&f.meta.extra).unwrap_or_default();
    // An unreadable file gets a group of its own; its upload reports the problem.
    let schema = super::merge::file_schema(&f.path).unwrap_or_else(|e| format!("unreadable {}: {e}", f.id));
    (schema, json["partition"].to_string())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use frazil_spool::FileMeta;

    pub(crate) fn file(id: u64, bytes: u64) -> SpoolFile {
        let meta = FileMeta {
            table: "t".into(),
            topic: "events".into(),
            partition: 0,
            first_offset: id as i64 * 10,
            last_offset: id as i64 * 10 + 9,
            next_offset: id as i64 * 10 + 10,
            rows: 10,
            extra: vec![],
        };
        SpoolFile {
            id,
            meta,
            bytes,
            crc32c: 0,
            state: frazil_spool::FileState::Written,
            path: format!("/s/{id}").into(),
        }
    }

    #[test]
    fn groups_fill_up_to_the_target_in_order() {
        let sizes = [40, 40, 40, 100, 10, 200, 5];
        let groups = upload_groups(sizes.iter().enumerate().map(|(i, &b)| file(i as u64, b)).collect(), 100, |_| ());
        let ids: Vec<Vec<u64>> = groups.iter().map(|g| g.iter().map(|f| f.id).collect()).collect();
        assert_eq!(ids, vec![vec![0, 1], vec![2], vec![3], vec![4], vec![5], vec![6]]);
        assert!(upload_groups(vec![], 100, |_| ()).is_empty());
    }

    #[test]
    fn only_files_of_one_schema_share_a_group() {
        let files: Vec<SpoolFile> = (0..6).map(|i| file(i, 10)).collect();
        // Files 2 and 3 were written after the schema grew.
        let groups = upload_groups(files, 100, |f| f.id == 2 || f.id == 3);
        let ids: Vec<Vec<u64>> = groups.iter().map(|g| g.iter().map(|f| f.id).collect()).collect();
        assert_eq!(ids, vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
    }

    #[test]
    fn groups_hold_a_bounded_number_of_files() {
        let files: Vec<SpoolFile> = (0..MAX_GROUP_FILES as u64 * 2 + 1).map(|i| file(i, 1)).collect();
        let sizes: Vec<usize> = upload_groups(files, u64::MAX, |_| ()).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![MAX_GROUP_FILES, MAX_GROUP_FILES, 1]);
    }

    #[test]
    fn groups_follow_offsets_not_spooling_order() {
        // The same files, spooled in two interleavings of partitions 0 and 1.
        let spooled = |order: &[(u64, i32, i64)]| -> Vec<SpoolFile> {
            order
                .iter()
                .map(|&(id, p, first)| {
                    let mut f = file(id, 40);
                    f.meta.partition = p;
                    f.meta.first_offset = first;
                    f.meta.last_offset = first + 9;
                    f
                })
                .collect()
        };
        let one = spooled(&[(1, 0, 0), (2, 1, 0), (3, 1, 10), (4, 0, 10), (5, 1, 20)]);
        let two = spooled(&[(1, 1, 0), (2, 0, 0), (3, 0, 10), (4, 1, 10), (5, 1, 20)]);
        let names = |files| -> Vec<String> {
            upload_groups(files, 100, |_| ())
                .iter()
                .map(|g| crate::upload::names::merged_url("s3://b/t", "gw", "", "t", g))
                .collect()
        };
        let ranges = |files| -> Vec<Vec<(i32, i64)>> {
            upload_groups(files, 100, |_| ())
                .iter()
                .map(|g| g.iter().map(|f| (f.meta.partition, f.meta.first_offset)).collect())
                .collect()
        };
        assert_eq!(ranges(one.clone()), vec![vec![(0, 0), (0, 10)], vec![(1, 0), (1, 10)], vec![(1, 20)]]);
        assert_eq!(names(one), names(two));
    }
}
