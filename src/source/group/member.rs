//! The membership loop of one agent in a classic consumer group, on its own thread: find the
//! coordinator, join, (as leader) assign with [`super::assign::sticky`], sync, then heartbeat
//! until the group rebalances, and join again. Each assignment goes to the fetcher; leaving the
//! group (LeaveGroup) ends it when the agent stops.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as SubscribedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, MetadataRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use smol::channel::Sender;

use super::Assignment;
use super::assign;
use crate::backoff::Backoff;
use crate::config::{GroupConfig, KafkaConfig};
use crate::source::wire::Conn;
use crate::{Error, Result};

/// Kafka's error codes that the loop acts on.
mod code {
    pub const NONE: i16 = 0;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
}

/// The consumer protocol and the assignor frazil speaks.
const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "frazil-sticky";

pub(super) struct Member<'a> {
    cfg: &'a KafkaConfig,
    group: &'a GroupConfig,
    out: Sender<Assignment>,
    stop: &'a AtomicBool,
    member_id: String,
    /// The partitions last handed to the fetcher (empty when none or lost).
    assigned: BTreeSet<crate::topic::TopicPartition>,
}

/// How a generation ended.
enum Ended {
    /// The agent stops: the member left the group.
    Stopped,
    /// Join again (a rebalance, or the member was dropped).
    Rejoin,
}

impl<'a> Member<'a> {
    pub fn new(cfg: &'a KafkaConfig, group: &'a GroupConfig, out: Sender<Assignment>, stop: &'a AtomicBool) -> Self {
        Member { cfg, group, out, stop, member_id: String::new(), assigned: BTreeSet::new() }
    }

    /// Runs until the agent stops, joining again (with backoff) after any failure.
    pub fn run(&mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        while !self.stopped() {
            match self.session() {
                Ok(()) => return,
                Err(e) => {
                    let delay = backoff.next_delay();
                    log::warn!("group {}: {e}; joining again in {delay:.1?}", self.group.name);
                    self.sleep(delay);
                }
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.out.is_closed()
    }

    /// Sleeps `d`, waking early when the agent stops.
    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopped() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
    }

    /// One connection to the coordinator: generations until the agent stops or the link fails.
    fn session(&mut self) -> Result<()> {
        let mut conn = self.coordinator()?;
        loop {
            match self.generation(&mut conn)? {
                Ended::Stopped => {
                    self.leave(&mut conn);
                    return Ok(());
                }
                Ended::Rejoin => {}
            }
        }
    }

    /// Asks the bootstrap brokers in turn where the group's coordinator is, and connects to it.
    fn coordinator(&self) -> Result<Conn> {
        let mut last = None;
        for broker in &self.cfg.brokers {
            let found = Conn::open(self.cfg, broker).and_then(|mut c| {
                let req = FindCoordinatorRequest::default().with_key(StrBytes::from_string(self.group.name.clone()));
                let a = c.call(&req, 2, Duration::ZERO)?;
                if a.error_code != code::NONE {
                    return Err(self.failed("find the coordinator", a.error_code));
                }
                let addr = format!("{}:{}", a.host.as_str(), a.port);
                if addr == c.addr() { Ok(c) } else { Conn::open(self.cfg, &addr) }
            });
            match found {
                Ok(c) => return Ok(c),
                Err(e @ Error::Config { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| self.failed("find the coordinator", -1)))
    }

    fn failed(&self, what: &str, code: i16) -> Error {
        Error::Source {
            context: format!("group {}: {what}", self.group.name),
            reason: format!("Kafka error code {code}"),
        }
    }

    /// One generation: join, sync, hand the assignment over, heartbeat until it ends.
    fn generation(&mut self, conn: &mut Conn) -> Result<Ended> {
        let joined = self.join(conn)?;
        let leader = joined.leader.as_str() == self.member_id;
        let (plan, counts) = if leader { self.plan(conn, &joined)? } else { (Vec::new(), BTreeMap::new()) };
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.name.clone())))
            .with_generation_id(joined.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_assignments(plan);
        let synced = conn.call(&sync, 3, self.group.session_timeout)?;
        log::debug!(
            "group {}: sync generation {}: error code {}",
            self.group.name,
            joined.generation_id,
            synced.error_code
        );
        match synced.error_code {
            code::NONE => {}
            code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION => return Ok(Ended::Rejoin),
            code::UNKNOWN_MEMBER_ID => {
                self.dropped();
                return Ok(Ended::Rejoin);
            }
            c => return Err(self.failed("sync", c)),
        }
        let partitions = decode_assignment(synced.assignment)?;
        log::info!(
            "group {}: generation {} assigns this agent {} partition(s){}",
            self.group.name,
            joined.generation_id,
            partitions.len(),
            if leader { " (this agent assigned them, as leader)" } else { "" }
        );
        let revoked = self.assigned.difference(&partitions).count();
        self.assigned = partitions.clone();
        let assignment = Assignment { generation: joined.generation_id, member_id: self.member_id.clone(), partitions };
        if self.out.send_blocking(assignment).is_err() {
            return Ok(Ended::Stopped);
        }
        if revoked > 0 {
            // Let go at once: their new owner is given them in the next generation (`assign.rs`).
            log::debug!("group {}: {revoked} partition(s) revoked; joining again to hand them over", self.group.name);
            return Ok(Ended::Rejoin);
        }
        self.heartbeat(conn, joined.generation_id, leader.then_some(counts))
    }

    /// Joins (or rejoins) the group; the coordinator holds the answer until every member has.
    fn join(&mut self, conn: &mut Conn) -> Result<JoinGroupResponse> {
        let topics = self.subscribed(conn)?;
        // Version 1 carries the partitions this member owns, which the sticky assignor keeps.
        let mut owned: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in &self.assigned {
            owned.entry(t.as_str()).or_default().push(*p);
        }
        let owned = owned
            .into_iter()
            .map(|(t, ps)| {
                SubscribedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(ps)
            })
            .collect();
        let mut metadata = BytesMut::new();
        metadata.put_i16(1);
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(topics.into_iter().map(StrBytes::from_string).collect())
            .with_owned_partitions(owned);
        sub.encode(&mut metadata, 1).map_err(|e| self.codec("subscription", e))?;
        let session_ms = self.group.session_timeout.as_millis() as i32;
        loop {
            let req = JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(self.group.name.clone())))
                .with_session_timeout_ms(session_ms)
                .with_rebalance_timeout_ms(session_ms)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str(ASSIGNOR))
                        .with_metadata(metadata.clone().freeze()),
                ]);
            let a = conn.call(&req, 5, self.group.session_timeout)?;
            log::debug!(
                "group {}: join as {:?}: error code {}, generation {}",
                self.group.name,
                self.member_id,
                a.error_code,
                a.generation_id
            );
            match a.error_code {
                code::NONE => {
                    self.member_id = a.member_id.to_string();
                    return Ok(a);
                }
                code::MEMBER_ID_REQUIRED => self.member_id = a.member_id.to_string(),
                code::UNKNOWN_MEMBER_ID => self.dropped(),
                code::REBALANCE_IN_PROGRESS => {}
                code::INCONSISTENT_GROUP_PROTOCOL => {
                    return Err(Error::config(
                        "kafka.group",
                        format!("`{}` is used by consumers of another protocol or assignor", self.group.name),
                        "give frazil's agents a group name of their own",
                    ));
                }
                c => return Err(self.failed("join", c)),
            }
        }
    }

    /// The member was dropped from the group (its session timed out): its partitions are
    /// someone else's now, so the fetcher stops reading them until the next assignment.
    fn dropped(&mut self) {
        self.member_id.clear();
        if !self.assigned.is_empty() {
            log::warn!(
                "group {}: this agent was dropped from the group; it stops reading its partitions and joins again",
                self.group.name
            );
            self.assigned.clear();
            let _ = self.out.send_blocking(Assignment {
                generation: -1,
                member_id: String::new(),
                partitions: BTreeSet::new(),
            });
        }
    }

    /// Heartbeats until the generation ends. The leader also watches the subscribed topics'
    /// partition counts (`counts`) and rejoins when they change, so new partitions get an owner.
    fn heartbeat(&mut self, conn: &mut Conn, generation: i32, counts: Option<BTreeMap<String, i32>>) -> Result<Ended> {
        let mut looked = Instant::now();
        loop {
            self.sleep(self.group.heartbeat_interval);
            if self.stopped() {
                return Ok(Ended::Stopped);
            }
            let req = HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(self.group.name.clone())))
                .with_generation_id(generation)
                .with_member_id(StrBytes::from_string(self.member_id.clone()));
            let answer = conn.call(&req, 3, Duration::ZERO)?.error_code;
            if answer != code::NONE {
                log::debug!("group {}: heartbeat of generation {generation}: error code {answer}", self.group.name);
            }
            match answer {
                code::NONE => {}
                code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION => return Ok(Ended::Rejoin),
                code::UNKNOWN_MEMBER_ID => {
                    self.dropped();
                    return Ok(Ended::Rejoin);
                }
                c @ (code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE | code::COORDINATOR_LOAD_IN_PROGRESS) => {
                    return Err(self.failed("heartbeat (the coordinator moved)", c));
                }
                c => return Err(self.failed("heartbeat", c)),
            }
            if let Some(seen) = &counts
                && looked.elapsed() >= self.cfg.refresh_interval
            {
                looked = Instant::now();
                if &self.partition_counts(conn)? != seen {
                    log::info!("group {}: the subscribed topics' partitions changed; rebalancing", self.group.name);
                    return Ok(Ended::Rejoin);
                }
            }
        }
    }

    /// Leaves the group, so its partitions move at once instead of after the session timeout.
    fn leave(&mut self, conn: &mut Conn) {
        if self.member_id.is_empty() {
            return;
        }
        let req = LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.name.clone())))
            .with_members(vec![
                MemberIdentity::default().with_member_id(StrBytes::from_string(self.member_id.clone())),
            ]);
        match conn.call(&req, 3, Duration::ZERO) {
            Ok(a) if a.error_code == code::NONE => log::info!("group {}: left the group", self.group.name),
            Ok(a) => log::warn!("group {}: leaving: Kafka error code {}", self.group.name, a.error_code),
            Err(e) => log::warn!("group {}: leaving: {e}", self.group.name),
        }
    }

    /// The topics this agent asks the group for: those it reads that `kafka.partitions` does
    /// not fix, named or matching the pattern.
    fn subscribed(&self, conn: &mut Conn) -> Result<BTreeSet<String>> {
        let mut topics: BTreeSet<String> =
            self.cfg.topics.iter().filter(|t| self.cfg.static_partitions(t).is_none()).cloned().collect();
        if self.cfg.topic_pattern.is_some() {
            topics.extend(self.partition_counts(conn)?.into_keys().filter(|t| self.cfg.static_partitions(t).is_none()));
        }
        Ok(topics)
    }

    /// The partition count of every topic this agent reads, from a Metadata request.
    fn partition_counts(&self, conn: &mut Conn) -> Result<BTreeMap<String, i32>> {
        let a = conn.call(&MetadataRequest::default(), 4, Duration::ZERO)?;
        Ok(a.topics
            .into_iter()
            .filter_map(|t| t.name.map(|n| (n.0.to_string(), t.partitions.len() as i32)))
            .filter(|(n, _)| self.cfg.reads(n))
            .collect())
    }

    /// The leader's plan: the range assignment over every member's subscription, encoded.
    fn plan(
        &self,
        conn: &mut Conn,
        joined: &JoinGroupResponse,
    ) -> Result<(Vec<SyncGroupRequestAssignment>, BTreeMap<String, i32>)> {
        let mut subs = BTreeMap::new();
        for m in &joined.members {
            let mut b = m.metadata.clone();
            if b.remaining() < 2 {
                return Err(self.codec("a member's subscription", "empty"));
            }
            let version = b.get_i16().clamp(0, 3);
            let s = ConsumerProtocolSubscription::decode(&mut b, version).map_err(|e| self.codec("subscription", e))?;
            let owned = s
                .owned_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
                .collect();
            let topics = s.topics.iter().map(|t| t.to_string()).collect();
            subs.insert(m.member_id.to_string(), assign::Subscription { topics, owned });
        }
        let counts = self.partition_counts(conn)?;
        let plan = assign::sticky(&subs, &counts);
        let mut out = Vec::with_capacity(plan.len());
        for (member, topics) in plan {
            let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        AssignedTopic::default().with_topic(TopicName(StrBytes::from_string(t))).with_partitions(ps)
                    })
                    .collect(),
            );
            let mut b = BytesMut::new();
            b.put_i16(0);
            a.encode(&mut b, 0).map_err(|e| self.codec("assignment", e))?;
            out.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(b.freeze()),
            );
        }
        Ok((out, counts))
    }

    fn codec(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Source { context: format!("group {}: {what}", self.group.name), reason: e.to_string() }
    }
}

/// The partitions a SyncGroup answer assigns (empty bytes: none).
fn decode_assignment(mut b: Bytes) -> Result<BTreeSet<crate::topic::TopicPartition>> {
    if b.remaining() < 2 {
        return Ok(BTreeSet::new());
    }
    let version = b.get_i16().clamp(0, 3);
    let a = ConsumerProtocolAssignment::decode(&mut b, version)
        .map_err(|e| Error::Source { context: "group assignment".into(), reason: e.to_string() })?;
    Ok(a.assigned_partitions
        .into_iter()
        .flat_map(|t| {
            let topic = t.topic.0.to_string();
            t.partitions.into_iter().map(move |p| (topic.clone(), p))
        })
        .collect())
}
