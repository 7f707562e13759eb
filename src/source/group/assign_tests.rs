use super::*;

fn sub(topics: &[&str], owned: &[(&str, i32)]) -> Subscription {
    Subscription {
        topics: topics.iter().map(|t| t.to_string()).collect(),
        owned: owned.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
    }
}

fn owned_from(plan: &Plan, member: &str) -> Vec<(&'static str, i32)> {
    plan[member].get("events").into_iter().flatten().map(|p| ("events", *p)).collect()
}

/// Checks that no partition of any topic goes to two members, that only subscribed members get
/// one, and that none goes to a member while another one owns it. With `settled` (nothing is
/// owned by a member it does not go to) every partition is assigned and the shares of one topic
/// differ by at most one.
fn check(members: &BTreeMap<String, Subscription>, parts: &BTreeMap<String, i32>, plan: &Plan, settled: bool) {
    assert_eq!(plan.len(), members.len(), "every member is answered");
    for (topic, &n) in parts {
        let mut got: Vec<i32> = plan.values().filter_map(|t| t.get(topic)).flatten().copied().collect();
        got.sort();
        let before = got.len();
        got.dedup();
        assert_eq!(got.len(), before, "{topic}: a partition given twice: {plan:?}");
        let readers: Vec<&String> = members.iter().filter(|(_, s)| s.topics.contains(topic)).map(|(m, _)| m).collect();
        let want: Vec<i32> = if readers.is_empty() { vec![] } else { (0..n).collect() };
        if settled {
            assert_eq!(got, want, "{topic}: each partition once");
            let sizes: Vec<usize> = readers.iter().map(|m| plan[*m].get(topic).map_or(0, Vec::len)).collect();
            if let (Some(lo), Some(hi)) = (sizes.iter().min(), sizes.iter().max()) {
                assert!(hi - lo <= 1, "{topic}: shares {sizes:?}");
            }
        } else {
            assert!(got.iter().all(|p| want.contains(p)), "{topic}: {got:?} beyond {want:?}");
        }
        for (m, t) in plan {
            for p in t.get(topic).into_iter().flatten() {
                let elsewhere = members.iter().any(|(o, s)| o != m && s.owned.contains(&(topic.clone(), *p)));
                assert!(!elsewhere, "{topic}/{p} given to {m} while another member owns it");
            }
        }
        for (m, t) in plan {
            assert!(!t.contains_key(topic) || members[m].topics.contains(topic), "{m} got a topic it does not read");
        }
    }
}

/// Each member of `plan` reports what it was given.
fn report(members: &mut BTreeMap<String, Subscription>, plan: &Plan) {
    for (m, s) in members.iter_mut() {
        s.owned = owned_from(plan, m).iter().map(|(t, p)| (t.to_string(), *p)).collect();
    }
}

#[test]
fn twelve_partitions_among_three_members_then_a_fourth_takes_three_in_two_generations() {
    let parts = BTreeMap::from([("events".to_string(), 12)]);
    let mut members: BTreeMap<String, Subscription> =
        ["b", "c", "d"].iter().map(|m| (m.to_string(), sub(&["events"], &[]))).collect();
    let first = sticky(&members, &parts);
    check(&members, &parts, &first, true);
    assert_eq!(first["b"]["events"], vec![0, 1, 2, 3]);
    // Each reports what it owns; a fourth member, first in id order, joins.
    report(&mut members, &first);
    members.insert("a".into(), sub(&["events"], &[]));
    let second = sticky(&members, &parts);
    check(&members, &parts, &second, false);
    let revoked: usize = ["b", "c", "d"]
        .iter()
        .map(|m| first[*m]["events"].iter().filter(|p| !second[*m]["events"].contains(p)).count())
        .sum();
    assert_eq!(revoked, 3, "only the new member's share is taken away: {second:?}");
    assert!(second["a"].is_empty(), "but not given yet: its owners have not let go");
    // The owners let go and join again: the new member gets what they gave up.
    report(&mut members, &second);
    let third = sticky(&members, &parts);
    check(&members, &parts, &third, true);
    assert_eq!(third["a"]["events"].len(), 3);
    for m in ["b", "c", "d"] {
        assert_eq!(third[m]["events"], second[m]["events"], "{m} keeps the rest");
    }
}

#[test]
fn a_member_that_leaves_hands_only_its_own_partitions_on() {
    let parts = BTreeMap::from([("events".to_string(), 12)]);
    let members: BTreeMap<String, Subscription> = [
        ("a", sub(&["events"], &[("events", 0), ("events", 1), ("events", 2), ("events", 3)])),
        ("c", sub(&["events"], &[("events", 8), ("events", 9), ("events", 10), ("events", 11)])),
    ]
    .into_iter()
    .map(|(m, s)| (m.to_string(), s))
    .collect();
    let plan = sticky(&members, &parts);
    check(&members, &parts, &plan, true);
    assert!([0, 1, 2, 3].iter().all(|p| plan["a"]["events"].contains(p)), "{plan:?}");
    assert!([8, 9, 10, 11].iter().all(|p| plan["c"]["events"].contains(p)), "{plan:?}");
}

#[test]
fn a_partition_two_members_claim_goes_to_neither_until_one_lets_go() {
    let parts = BTreeMap::from([("events".to_string(), 2)]);
    let mut members: BTreeMap<String, Subscription> =
        [("a", sub(&["events"], &[("events", 0)])), ("b", sub(&["events"], &[("events", 0)]))]
            .into_iter()
            .map(|(m, s)| (m.to_string(), s))
            .collect();
    let plan = sticky(&members, &parts);
    check(&members, &parts, &plan, false);
    assert_eq!(plan["b"]["events"], vec![1]);
    assert!(plan["a"].is_empty(), "b still owns 0: {plan:?}");
    report(&mut members, &plan);
    let plan = sticky(&members, &parts);
    check(&members, &parts, &plan, true);
    assert_eq!((plan["a"]["events"].clone(), plan["b"]["events"].clone()), (vec![0], vec![1]));
}

#[test]
fn every_partition_goes_to_exactly_one_subscribed_member_whatever_was_owned() {
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..400 {
        let n_members = rng.usize(1..7);
        let parts = BTreeMap::from([("events".to_string(), rng.i32(0..20)), ("other".to_string(), rng.i32(0..6))]);
        let members: BTreeMap<String, Subscription> = (0..n_members)
            .map(|i| {
                let mut topics = vec!["events"];
                if rng.bool() {
                    topics.push("other");
                }
                // Owned partitions at random, some out of range or of a topic no longer read.
                let owned: Vec<(&str, i32)> = (0..rng.usize(0..8))
                    .map(|_| (if rng.bool() { "events" } else { "other" }, rng.i32(0..24)))
                    .collect();
                (format!("m{i}"), sub(&topics, &owned))
            })
            .collect();
        let mut members = members;
        let plan = sticky(&members, &parts);
        check(&members, &parts, &plan, false);
        // Once the members report what they got, two generations settle it.
        report_all(&mut members, &plan);
        let plan = sticky(&members, &parts);
        check(&members, &parts, &plan, false);
        report_all(&mut members, &plan);
        let plan = sticky(&members, &parts);
        check(&members, &parts, &plan, true);
        let _ = round;
    }
}

/// [`report`] for every topic.
fn report_all(members: &mut BTreeMap<String, Subscription>, plan: &Plan) {
    for (m, s) in members.iter_mut() {
        s.owned = plan[m].iter().flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p))).collect();
    }
}
