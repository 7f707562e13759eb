//! Consumer-group membership (`kafka.group`): which partitions this agent reads, decided with
//! the other members through Kafka's group coordinator (the classic protocol, a sticky
//! assignor of our own, dynamic membership). rskafka has no group API, so the protocol runs over a connection of our
//! own (`source/wire.rs`, same TLS and SASL) on a thread of its own (`member.rs`): heartbeats never
//! wait behind a long publish on the agent's single-threaded executor. Offsets are not
//! committed to Kafka: they live in the tables, fenced per group (`commit::fence`).

mod assign;
mod member;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use smol::channel::Receiver;

use crate::config::KafkaConfig;
use crate::topic::TopicPartition;

/// One generation's assignment of partitions to this agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The group's generation (`-1`: the agent was dropped from the group and reads nothing).
    pub generation: i32,
    pub member_id: String,
    /// The partitions of the subscribed topics this agent reads (topics `kafka.partitions`
    /// fixes are not in the group).
    pub partitions: BTreeSet<TopicPartition>,
}

/// The membership thread. Dropping it leaves the group.
pub struct Membership {
    assignments: Receiver<Assignment>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Membership {
    /// Joins `kafka.group`, when one is set and some topic is not fixed by `kafka.partitions`.
    pub fn start(cfg: &KafkaConfig) -> Option<Membership> {
        let group = cfg.group.clone()?;
        if cfg.topic_pattern.is_none() && cfg.topics.iter().all(|t| cfg.static_partitions(t).is_some()) {
            return None;
        }
        let (tx, rx) = smol::channel::bounded(4);
        let stop = Arc::new(AtomicBool::new(false));
        let (cfg, flag) = (cfg.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("frazil-group".into())
            .spawn(move || member::Member::new(&cfg, &group, tx, &flag).run())
            .expect("a thread can be started");
        Some(Membership { assignments: rx, stop, thread: Some(thread) })
    }

    /// The assignments, newest last.
    pub fn assignments(&self) -> &Receiver<Assignment> {
        &self.assignments
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.assignments.close();
        // The thread leaves the group at its next heartbeat tick. One held in a JoinGroup (the
        // coordinator answers when the group has rejoined) is not waited for past a few seconds:
        // the coordinator drops it after the session timeout.
        let Some(t) = self.thread.take() else { return };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
}
