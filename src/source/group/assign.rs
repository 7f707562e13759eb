//! The assignor, `frazil-sticky`: per topic, the members subscribed to it share its partitions
//! evenly (the first ones, in member-id order, one more when they do not divide evenly), and a
//! member keeps the partitions it owned in the last generation as far as its share allows. A
//! moved partition costs its new owner a claim and a read from the table's offset, and its old
//! owner the rows it had not committed, so few should move.
//!
//! A move takes two generations, as in Kafka's cooperative rebalancing: a partition another
//! member still owns is taken from it but given to no one yet; the old owner, seeing it revoked,
//! stops reading it and joins again at once, and the next generation hands it to its new owner.
//! So two members never read one partition at the same time (the fence would refuse one of them,
//! and its work would be lost). Pure: the leader calls it with what JoinGroup and Metadata said.

use std::collections::{BTreeMap, BTreeSet};

/// Per member id, the partitions of each topic it reads.
pub type Plan = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

/// What a member told the group: the topics it reads and the partitions it owns now.
#[derive(Clone, Debug, Default)]
pub struct Subscription {
    pub topics: BTreeSet<String>,
    pub owned: BTreeSet<(String, i32)>,
}

/// Assigns the partitions of each topic in `partitions` (topic → partition count) among the
/// members subscribed to it. Every member appears in the plan, with nothing when it gets nothing.
pub fn sticky(members: &BTreeMap<String, Subscription>, partitions: &BTreeMap<String, i32>) -> Plan {
    let mut plan: Plan = members.keys().map(|m| (m.clone(), BTreeMap::new())).collect();
    for (topic, &count) in partitions {
        let subscribed: Vec<&String> =
            members.iter().filter(|(_, s)| s.topics.contains(topic)).map(|(m, _)| m).collect();
        if subscribed.is_empty() || count <= 0 {
            continue;
        }
        let owns = |m: &String, p: i32| members[m].owned.contains(&(topic.clone(), p));
        // Shares: `each`, and one more for `extra` members, given to those that own the most
        // (they keep more), ties in member-id order.
        let n = subscribed.len() as i32;
        let (each, extra) = (count / n, count % n);
        let mut by_owned = subscribed.clone();
        by_owned.sort_by_key(|m| std::cmp::Reverse((0..count).filter(|&p| owns(m, p)).count()));
        let share: BTreeMap<&String, i32> =
            by_owned.iter().enumerate().map(|(i, m)| (*m, each + i32::from((i as i32) < extra))).collect();
        let mut taken = vec![false; count as usize];
        let mut got: BTreeMap<&String, Vec<i32>> = BTreeMap::new();
        // First every member keeps what it owns, up to its share (a partition two members claim
        // goes to the first).
        for m in &subscribed {
            for p in (0..count).filter(|&p| owns(m, p)) {
                let mine = got.entry(m).or_default();
                if !taken[p as usize] && (mine.len() as i32) < share[m] {
                    taken[p as usize] = true;
                    mine.push(p);
                }
            }
        }
        // Then the rest fill the shares, in member-id order.
        let mut free = (0..count).filter(|&p| !taken[p as usize]);
        for m in &subscribed {
            let mine = got.entry(m).or_default();
            while (mine.len() as i32) < share[m] {
                mine.push(free.next().expect("the shares add up to the partition count"));
            }
        }
        for (m, mut ps) in got {
            // Not yet: what another member owns waits until it has let go (the next generation).
            // (Also when that member no longer reads the topic: it stops at its next assignment.)
            ps.retain(|&p| !members.keys().any(|o| o != m && owns(o, p)));
            if !ps.is_empty() {
                ps.sort_unstable();
                plan.get_mut(m).expect("every member is in the plan").insert(topic.clone(), ps);
            }
        }
    }
    plan
}

#[cfg(test)]
#[path = "assign_tests.rs"]
mod tests;
