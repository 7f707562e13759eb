use super::*;

fn tp(p: i32) -> TopicPartition {
    ("events".to_string(), p)
}

/// The table after a commit of `next` on top of `base`, as the next reader sees it.
fn after(base: &Recorded, snapshot: i64, next: &BTreeMap<TopicPartition, i64>) -> Recorded {
    let props = group_properties("g", base, next);
    Recorded { tag_snapshot: Some(snapshot), offsets: offsets_under(GROUP_OFFSETS_PREFIX, &props) }
}

#[test]
fn two_commits_from_one_base_the_second_is_fenced() {
    let base = Recorded { tag_snapshot: Some(1), offsets: BTreeMap::from([(tp(0), 100), (tp(1), 40)]) };
    // Both agents started reading partition 0 at 100.
    let a = Claims::from([(tp(0), Some(100))]);
    let b = Claims::from([(tp(0), Some(100))]);
    assert!(fenced(&base, &a).is_empty());
    assert!(fenced(&base, &b).is_empty());
    let landed = after(&base, 2, &BTreeMap::from([(tp(0), 150)]));
    assert_eq!(landed.offsets, BTreeMap::from([(tp(0), 150), (tp(1), 40)]), "other partitions carried over");
    assert_eq!(fenced(&landed, &b), vec![tp(0)]);
    // The winner's claim moves with its commit, so its next commit passes.
    assert!(fenced(&landed, &Claims::from([(tp(0), Some(150))])).is_empty());
}

#[test]
fn a_partition_never_recorded_is_claimed_as_none() {
    let empty = Recorded::default();
    let first = Claims::from([(tp(3), None)]);
    assert!(fenced(&empty, &first).is_empty(), "nothing recorded is what the claim expects");
    assert_eq!(
        fenced(&empty, &Claims::from([(tp(3), Some(0))])),
        vec![tp(3)],
        "a claim of 0 is not a claim of nothing"
    );
    let landed = after(&empty, 7, &BTreeMap::from([(tp(3), 20)]));
    assert_eq!(fenced(&landed, &first), vec![tp(3)], "a second agent that also saw nothing recorded");
}

#[test]
fn disjoint_partitions_never_fence_each_other() {
    let base = Recorded { tag_snapshot: Some(1), offsets: BTreeMap::from([(tp(0), 10), (tp(1), 20)]) };
    let one = after(&base, 2, &BTreeMap::from([(tp(0), 11)]));
    assert!(fenced(&one, &Claims::from([(tp(1), Some(20))])).is_empty());
    let two = after(&one, 3, &BTreeMap::from([(tp(1), 25)]));
    assert_eq!(two.offsets, BTreeMap::from([(tp(0), 11), (tp(1), 25)]));
}

#[test]
fn the_tag_move_asserts_the_fenced_snapshot_and_moves_with_the_data() {
    let snapshot = crate::commit::protocol::tests::snapshot(42);
    let mv = TagMove { tag: group_tag("g"), expected: None };
    let (mut reqs, mut updates) = (vec![], vec![TableUpdate::AddSnapshot { snapshot }]);
    mv.apply(&mut reqs, &mut updates);
    assert!(
        matches!(&reqs[..], [TableRequirement::RefSnapshotIdMatch { r#ref, snapshot_id: None }] if r#ref == "frazil-group-g")
    );
    assert!(
        matches!(updates.last(), Some(TableUpdate::SetSnapshotRef { ref_name, reference }) if ref_name == "frazil-group-g" && reference.snapshot_id == 42 && !reference.is_branch())
    );
    let (mut reqs, mut updates) = (vec![], vec![TableUpdate::RemoveProperties { removals: vec![] }]);
    mv.apply(&mut reqs, &mut updates);
    assert!(reqs.is_empty() && updates.len() == 1, "no snapshot, no tag move");
}
