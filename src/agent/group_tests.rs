//! Group mode in-process: two agents on one executor, both given partition 0 of `events`
//! through `kafka.partitions` and one `kafka.group`. Both read every record; the fence lets
//! exactly one commit each offset, and the other drops its rows and resumes from the table.

use std::collections::BTreeMap;
use std::path::Path;

use async_compat::Compat;

use super::tests::{config, load, table_rows, until};
use super::{Agent, Mode};
use crate::commit::fence;
use crate::config::Config;
use crate::source::memory::Topics;

/// Agent `id` of group `g`, reading partition 0 only, with its own spool and the shared warehouse.
fn member(dir: &Path, id: &str) -> Config {
    let mut cfg = config(dir, "group = \"g\"\npartitions = { events = [0] }", "file_max_rows = 20");
    cfg.agent_id = id.to_string();
    cfg.spool.dir = dir.join(format!("spool-{id}"));
    cfg
}

/// Completes when `rx`'s channel closes: each agent's stop signal.
fn stopped_by(rx: &smol::channel::Receiver<()>) -> impl std::future::Future<Output = ()> + 'static {
    let rx = rx.clone();
    async move {
        let _ = rx.recv().await;
    }
}

fn produce(topics: &Topics, from: i64, to: i64) {
    for i in from..to {
        topics.produce("events", 0, format!(r#"{{"n":{i}}}"#).as_bytes());
    }
}

#[test]
fn two_static_agents_given_one_partition_commit_each_offset_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cfg, b_cfg) = (member(dir.path(), "a"), member(dir.path(), "b"));
    let topics = Topics::default();
    topics.create("events", 2);
    topics.produce("events", 1, br#"{"n":-1}"#); // partition 1 is nobody's
    let a = Agent::with_source(a_cfg.clone(), topics.connect()).unwrap();
    let b = Agent::with_source(b_cfg.clone(), topics.connect()).unwrap();
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let stopped = || stopped_by(&stop_rx);
    let claimed = |agent: &Agent| !agent.shared.claims.borrow().partitions().is_empty();
    let fenced = || a.shared.gauges.fenced_commits.get() + b.shared.gauges.fenced_commits.get();
    let rows = || table_rows(&a_cfg, "events");
    let drive = smol::future::zip(a.drive(Mode::Run, stopped()), b.drive(Mode::Run, stopped()));
    let test = async {
        until("both agents claimed partition 0", || claimed(&a) && claimed(&b)).await;
        // Both claimed it with nothing recorded: whichever commits second is fenced.
        produce(&topics, 0, 200);
        until("200 rows landed", || rows().len() >= 200).await;
        until("a commit was fenced", || fenced() >= 1).await;
        let first = fenced();
        // Both now claim it at the offset the table records: again one of them is fenced.
        produce(&topics, 200, 300);
        until("300 rows landed", || rows().len() >= 300).await;
        until("another commit was fenced", || fenced() > first).await;
        // Let both agents finish what they hold before stopping them.
        smol::Timer::after(std::time::Duration::from_millis(300)).await;
        stop_tx.close();
    };
    let ((ra, rb), ()) = smol::block_on(Compat::new(smol::future::zip(drive, test)));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra.events + rb.events >= 600, "both read every record: {ra:?} {rb:?}");
    assert_eq!(rows(), (0..300).map(|o| (0, o)).collect::<Vec<_>>(), "every offset of partition 0 exactly once");
    let table = smol::block_on(Compat::new(load(&a_cfg, "events"))).unwrap();
    let recorded = fence::recorded(table.metadata(), "g");
    assert_eq!(recorded.offsets, BTreeMap::from([(("events".to_string(), 0), 300)]));
    assert_eq!(recorded.tag_snapshot, table.metadata().current_snapshot().map(|s| s.snapshot_id()));
    // What a query over the table and an agent's spool takes from the table alone.
    assert_eq!(fence::offsets_as_of_current(table.metadata(), "g"), recorded.offsets);
    // The metrics and the status file say what happened.
    for agent in [&a, &b] {
        let fenced = agent.shared.gauges.fenced_commits.get();
        let text = agent.shared.prometheus();
        assert!(text.contains(&format!("frazil_group_fenced_commits_total{{group=\"g\"}} {fenced}\n")), "{text}");
        assert!(text.contains("frazil_group_partitions{group=\"g\"} 1\n"), "{text}");
        let state: super::GroupState =
            serde_json::from_slice(&std::fs::read(agent.shared.spool.dir().join(super::GROUP_STATE)).unwrap()).unwrap();
        assert_eq!((state.group.as_str(), state.fenced_commits), ("g", fenced));
        assert_eq!(state.partitions, vec!["events/0".to_string()], "kafka.partitions gave it partition 0 alone");
    }
    // Whatever a fenced agent had spooled was dropped, not left to commit later.
    for agent in [&a, &b] {
        let left = agent.shared.spool.files().unwrap();
        assert!(left.iter().all(|f| f.state == frazil_spool::FileState::Committed), "{left:?}");
    }
}

/// Agent `id` of group `g` reading `partition` alone, committing every `interval_ms`.
fn member_of(dir: &Path, id: &str, partition: i32, interval_ms: u64) -> Config {
    let mut cfg =
        config(dir, &format!("group = \"g\"\npartitions = {{ events = [{partition}] }}"), "file_max_rows = 20");
    cfg.agent_id = id.to_string();
    cfg.spool.dir = dir.join(format!("spool-{id}"));
    cfg.catalog.commit_interval = std::time::Duration::from_millis(interval_ms);
    cfg
}

/// Every commit of a group moves the group's tag, so members on disjoint partitions still
/// conflict. A member that commits less often than another keeps landing its commits: each retry
/// is fenced against the table as it is after the backoff. Fenced against the table loaded before
/// the wait, the retry found the other member's newer commit every time and the cycle gave up.
#[test]
fn a_member_committing_less_often_is_not_starved_by_one_committing_often() {
    let dir = tempfile::tempdir().unwrap();
    let (slow_cfg, fast_cfg) = (member_of(dir.path(), "slow", 0, 200), member_of(dir.path(), "fast", 1, 50));
    let topics = Topics::default();
    topics.create("events", 2);
    let slow = Agent::with_source(slow_cfg.clone(), topics.connect()).unwrap();
    let fast = Agent::with_source(fast_cfg.clone(), topics.connect()).unwrap();
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let stopped = || stopped_by(&stop_rx);
    let produced = std::cell::Cell::new(0i64);
    let conflicts = || slow.shared.gauges.commit_conflicts.get();
    let drive = smol::future::zip(slow.drive(Mode::Run, stopped()), fast.drive(Mode::Run, stopped()));
    let test = async {
        // Until the slow member has retried through several conflicts (or 20 s went by).
        let start = std::time::Instant::now();
        while conflicts() < 4 && start.elapsed() < std::time::Duration::from_secs(20) {
            let n = produced.get();
            for p in 0..2 {
                for i in n..n + 5 {
                    topics.produce("events", p, format!(r#"{{"n":{i}}}"#).as_bytes());
                }
            }
            produced.set(n + 5);
            smol::Timer::after(std::time::Duration::from_millis(20)).await;
        }
        let n = produced.get();
        let caught_up = |a: &Agent, p: i32| {
            let at = a.shared.gauges.positions.borrow().get(&("events".to_string(), p)).map(|(next, _)| *next);
            let s = a.shared.spool.status().unwrap();
            at == Some(n) && s.written + s.uploaded == 0
        };
        until("both members committed all they read", || caught_up(&slow, 0) && caught_up(&fast, 1)).await;
        stop_tx.close();
    };
    let ((rs, rf), ()) = smol::block_on(Compat::new(smol::future::zip(drive, test)));
    let (rs, rf) = (rs.unwrap(), rf.unwrap());
    let n = produced.get();
    assert!(conflicts() >= 4, "the members' commits did conflict: {} conflicts, {rs:?}", conflicts());
    assert_eq!(
        slow.shared.gauges.publish_failures.get(),
        0,
        "no publish of the slow member failed: {rs:?}, last error {:?}",
        slow.shared.gauges.last_error.borrow()
    );
    let fenced = slow.shared.gauges.fenced_commits.get() + fast.shared.gauges.fenced_commits.get();
    assert_eq!(fenced, 0, "disjoint partitions never fence each other");
    let want: Vec<(i32, i64)> = (0..2).flat_map(|p| (0..n).map(move |o| (p, o))).collect();
    assert_eq!(table_rows(&slow_cfg, "events"), want, "every offset exactly once: {rs:?} {rf:?}");
    let text = slow.shared.prometheus();
    assert!(text.contains(&format!("frazil_commit_conflicts_total {}\n", conflicts())), "{text}");
}
