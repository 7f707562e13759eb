//! `frazil status`: what the spool holds (from its index, no network), then per table the last
//! commit the catalog has from this agent, and per partition how far behind the broker's high
//! watermark the agent is. The spool is read beside a running agent (read-only) or, when none runs,
//! opened as a start would open it. Each remote part says when it could not be reached.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use frazil_spool::FileState;
use serde::Serialize;

use crate::Result;
use crate::commit::{self, Committer};
use crate::config::{Config, StartAt};
use crate::logging::mib;
use crate::source::KafkaSource;
use crate::topic::TopicPartition;
use crate::upload::Stores;

#[derive(Debug, Serialize)]
pub struct Status {
    pub agent: String,
    pub spool_dir: String,
    /// True when another process (the running agent) has the spool open and this report was read beside it.
    pub agent_running: bool,
    pub bytes: u64,
    pub max_bytes: Option<u64>,
    pub free_disk: Option<u64>,
    pub min_free: Option<u64>,
    pub written: u64,
    pub uploaded: u64,
    pub committed: u64,
    pub quarantined: Vec<Quarantined>,
    pub pending_commits: Vec<Pending>,
    /// The broker and the catalog: `None` when not checked (`--offline`).
    pub broker: Option<Reach>,
    pub catalog: Option<Reach>,
    pub tables: Vec<TableStatus>,
    pub partitions: Vec<PartitionStatus>,
    /// Group mode: the group, as the running agent reports it.
    pub group: Option<super::group_status::GroupStatus>,
}

#[derive(Debug, Serialize)]
pub struct Reach {
    pub reachable: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Quarantined {
    pub id: u64,
    pub table: String,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Pending {
    pub table: String,
    pub commit_id: String,
    pub files: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct TableStatus {
    pub table: String,
    /// Spool files not yet uploaded, and uploaded but not yet committed, with their bytes.
    pub files_written: u64,
    pub files_uploaded: u64,
    pub bytes: u64,
    pub pending_commit: Option<String>,
    /// From the catalog: `None` if not checked, unreachable, or nothing committed by this agent.
    pub last_commit: Option<LastCommit>,
    /// Whether the catalog has the table (`None` when not checked or unreachable).
    pub exists: Option<bool>,
    /// Rows in the table's dead-letter table, from the catalog, by every agent (`None` when not
    /// checked or unreachable, and for a dead-letter table itself).
    pub dead_letters: Option<DeadLetters>,
    /// The table's columns against its limit: from the spool's record of its schema, else from
    /// the catalog (`None` when neither has it yet).
    pub columns: Option<Columns>,
    /// Snapshots, manifests and data files, and when maintenance last changed the table (`None`
    /// when not checked, unreachable or not in the catalog).
    pub health: Option<crate::maintain::Health>,
}

#[derive(Debug, Serialize)]
pub struct Columns {
    /// User columns, nested fields included (the meta columns are not counted).
    pub count: usize,
    /// `max_columns` of the table.
    pub max: usize,
    /// The table's schema never grows (`schema = "fixed"`).
    pub fixed: bool,
}

impl Columns {
    fn of(cfg: &Config, table: &str, schema: &iceberg::spec::Schema) -> Columns {
        Columns {
            count: crate::decode::guard::column_count(schema),
            max: cfg.limits(table).max_columns,
            fixed: cfg.unknown_keys(table).fixed(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DeadLetters {
    pub table: String,
    pub rows: u64,
}

#[derive(Debug, Serialize)]
pub struct LastCommit {
    pub snapshot_id: i64,
    pub commit_id: Option<String>,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// The next offset to fetch, from the spool index.
    pub spooled: Option<i64>,
    /// The next offset after the last one this agent committed, from the table's snapshots.
    pub committed: Option<i64>,
    /// From the broker (`None` when not checked or unreachable).
    pub high_watermark: Option<i64>,
    /// Records in Kafka not yet in the spool, and not yet in the table.
    pub to_fetch: Option<i64>,
    pub to_commit: Option<i64>,
}

/// Reads the spool, then (unless `offline`) asks the broker and the catalog.
pub fn status(cfg: &Config, offline: bool) -> Result<Status> {
    let mut st = local(cfg)?;
    if !offline {
        smol::block_on(async {
            st.broker = Some(check_broker(cfg, &mut st).await);
            st.catalog = Some(check_catalog(cfg, &mut st).await);
        });
    }
    fill_lag(&mut st);
    Ok(st)
}

/// The spool's side, with no network. The spool is closed again before anything remote is asked,
/// so an agent starting meanwhile is not kept out for long.
fn local(cfg: &Config) -> Result<Status> {
    let (spool, agent_running) = crate::spill::open_beside(&cfg.spool)?;
    let usage = spool.usage()?;
    let counts = spool.status()?;
    let mut tables: BTreeMap<String, TableStatus> = BTreeMap::new();
    for name in cfg.configured_tables() {
        tables.entry(name.clone()).or_insert_with(|| TableStatus { table: name, ..TableStatus::default() });
    }
    let mut quarantined = Vec::new();
    for f in spool.files()? {
        let t = tables
            .entry(f.meta.table.clone())
            .or_insert_with(|| TableStatus { table: f.meta.table.clone(), ..TableStatus::default() });
        match f.state {
            FileState::Written => (t.files_written, t.bytes) = (t.files_written + 1, t.bytes + f.bytes),
            FileState::Uploaded { .. } => (t.files_uploaded, t.bytes) = (t.files_uploaded + 1, t.bytes + f.bytes),
            FileState::Quarantined { reason } => quarantined.push(Quarantined {
                id: f.id,
                table: f.meta.table,
                topic: f.meta.topic,
                partition: f.meta.partition,
                first_offset: f.meta.first_offset,
                last_offset: f.meta.last_offset,
                reason,
            }),
            _ => {}
        }
    }
    let dead_letter_tables: BTreeSet<String> =
        tables.keys().map(|t| crate::config::dead_letter_table_name(&cfg.catalog.dead_letter_table, t)).collect();
    for t in tables.values_mut().filter(|t| !dead_letter_tables.contains(&t.table)) {
        if let Some(schema) = crate::layout::store::schema(&spool, &t.table)? {
            t.columns = Some(Columns::of(cfg, &t.table, &schema));
        }
    }
    let pending_commits: Vec<Pending> = spool
        .pending_commits()?
        .into_iter()
        .map(|p| Pending { table: p.table, commit_id: p.commit_id, files: p.ids.len() })
        .collect();
    for p in &pending_commits {
        if let Some(t) = tables.get_mut(&p.table) {
            t.pending_commit = Some(p.commit_id.clone());
        }
    }
    let partitions = spool
        .offsets()?
        .into_iter()
        .map(|((topic, partition), next)| PartitionStatus {
            topic,
            partition,
            spooled: Some(next),
            committed: None,
            high_watermark: None,
            to_fetch: None,
            to_commit: None,
        })
        .collect();
    Ok(Status {
        agent: cfg.agent_id.clone(),
        spool_dir: cfg.spool.dir.display().to_string(),
        agent_running,
        bytes: usage.bytes,
        max_bytes: usage.max_bytes,
        free_disk: usage.free_disk,
        min_free: usage.min_free_bytes,
        written: counts.written,
        uploaded: counts.uploaded,
        committed: counts.committed,
        quarantined,
        pending_commits,
        broker: None,
        catalog: None,
        tables: tables.into_values().collect(),
        partitions,
        group: super::group_status::group_status(cfg, agent_running),
    })
}

fn partition<'a>(st: &'a mut Status, tp: &TopicPartition) -> &'a mut PartitionStatus {
    let i = match st.partitions.iter().position(|p| p.topic == tp.0 && p.partition == tp.1) {
        Some(i) => i,
        None => {
            st.partitions.push(PartitionStatus {
                topic: tp.0.clone(),
                partition: tp.1,
                spooled: None,
                committed: None,
                high_watermark: None,
                to_fetch: None,
                to_commit: None,
            });
            st.partitions.len() - 1
        }
    };
    &mut st.partitions[i]
}

/// Rows in a table's current snapshot, from its summary (0 with no snapshot).
fn total_records(md: &iceberg::spec::TableMetadata) -> u64 {
    md.current_snapshot()
        .and_then(|s| s.summary().additional_properties.get("total-records").and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn reach(result: Result<()>) -> Reach {
    match result {
        Ok(()) => Reach { reachable: true, error: None },
        Err(e) => Reach { reachable: false, error: Some(e.to_string()) },
    }
}

/// High watermarks of the configured topics' partitions.
async fn check_broker(cfg: &Config, st: &mut Status) -> Reach {
    let result: Result<()> = async {
        let mut source = KafkaSource::connect(&cfg.kafka).await?;
        for tp in source.discover().await? {
            // Topics read by pattern have tables too, also once their files are committed and gone.
            let table = cfg.table_for(&tp.0);
            if !st.tables.iter().any(|t| t.table == table) {
                st.tables.push(TableStatus { table, ..TableStatus::default() });
            }
            let (low, high) = source.watermarks(&tp).await?;
            let p = partition(st, &tp);
            p.high_watermark = Some(high);
            // Where the agent would start on a partition it has never read.
            if p.spooled.is_none() {
                p.to_fetch = Some(match cfg.kafka.start {
                    StartAt::Earliest => high - low,
                    StartAt::Latest => 0,
                });
            }
        }
        Ok(())
    }
    .await;
    reach(result)
}

/// This agent's last commit to each table, and the offsets it committed.
async fn check_catalog(cfg: &Config, st: &mut Status) -> Reach {
    let result: Result<()> = async {
        let committer = Committer::connect(&cfg.catalog, &Stores::new(cfg.s3.clone()), &cfg.agent_id).await?;
        let names: BTreeSet<String> = st.tables.iter().map(|t| t.table.clone()).collect();
        let dead_letter_name = |t: &str| crate::config::dead_letter_table_name(&cfg.catalog.dead_letter_table, t);
        for name in &names {
            if names.iter().any(|n| dead_letter_name(n) == *name) {
                continue;
            }
            let table = dead_letter_name(name);
            let rows = match committer.load(&table).await? {
                Some(dlq) => total_records(dlq.metadata()),
                None => 0,
            };
            st.tables.iter_mut().find(|t| t.table == *name).expect("listed above").dead_letters =
                Some(DeadLetters { table, rows });
        }
        for name in names {
            let table = committer.load(&name).await?;
            let mut committed = BTreeMap::new();
            let t = st.tables.iter_mut().find(|t| t.table == name).expect("listed above");
            t.exists = Some(table.is_some());
            if let Some(table) = &table {
                let md = table.metadata();
                if t.columns.is_none() && t.dead_letters.is_some() {
                    t.columns = Some(Columns::of(cfg, &name, md.current_schema()));
                }
                t.last_commit = commit::last_commit(md, &cfg.agent_id).map(|s| LastCommit {
                    snapshot_id: s.snapshot_id(),
                    commit_id: s.summary().additional_properties.get(commit::protocol::COMMIT_ID).cloned(),
                    // A re-anchored tag's snapshot is newer than the commit it carries.
                    timestamp_ms: s
                        .summary()
                        .additional_properties
                        .get(crate::maintain::COMMITTED_AT)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(s.timestamp_ms()),
                });
                // In a group the table's offsets are the group's, whoever committed them.
                committed = match &cfg.kafka.group {
                    Some(g) => commit::fence::recorded(md, &g.name).offsets,
                    None => commit::committed_offsets(md, &cfg.agent_id),
                };
                // The object store may be down while the catalog answers: no health then.
                t.health = crate::maintain::health(table)
                    .await
                    .inspect_err(|e| log::debug!("status: health of {name}: {e}"))
                    .ok();
            }
            for (tp, next) in committed {
                let p = partition(st, &tp);
                p.committed = Some(p.committed.map_or(next, |c| c.max(next)));
            }
        }
        Ok(())
    }
    .await;
    reach(result)
}

/// What the broker holds beyond the spool and beyond the table.
fn fill_lag(st: &mut Status) {
    for p in &mut st.partitions {
        let Some(high) = p.high_watermark else { continue };
        if let Some(next) = p.spooled.max(p.committed) {
            p.to_fetch = Some((high - next).max(0));
        }
        p.to_commit = p.committed.map(|c| (high - c).max(0));
    }
    st.partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_spool(f)?;
        if let Some(g) = &self.group {
            write!(f, "{g}")?;
        }
        for (what, r) in [("broker", &self.broker), ("catalog", &self.catalog)] {
            match r {
                None => writeln!(f, "{what}: not checked (--offline)")?,
                Some(Reach { reachable: true, .. }) => writeln!(f, "{what}: reachable")?,
                Some(Reach { error, .. }) => writeln!(f, "{what}: NOT reachable: {}", error.as_deref().unwrap_or("?"))?,
            }
        }
        for t in &self.tables {
            write!(f, "{t}")?;
        }
        for p in &self.partitions {
            let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            write!(
                f,
                "{}/{}: spooled up to {}, committed up to {}",
                p.topic,
                p.partition,
                opt(p.spooled),
                opt(p.committed)
            )?;
            match p.high_watermark {
                Some(h) => {
                    writeln!(f, ", high watermark {h}: {} to fetch, {} to commit", opt(p.to_fetch), opt(p.to_commit))?
                }
                None => writeln!(f)?,
            }
        }
        Ok(())
    }
}

impl Status {
    /// The spool's lines: its size and quota, the free disk, its files by state.
    fn fmt_spool(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let running = if self.agent_running { " (read beside the running agent)" } else { "" };
        writeln!(f, "agent {}", self.agent)?;
        writeln!(
            f,
            "spool {}: {} in use{}{running}",
            self.spool_dir,
            mib(self.bytes),
            self.max_bytes.map(|m| format!(" of {}", mib(m))).unwrap_or_default()
        )?;
        if let Some(free) = self.free_disk {
            writeln!(
                f,
                "disk: {} free{}",
                mib(free),
                self.min_free.map(|m| format!(" (fetching pauses below {})", mib(m))).unwrap_or_default()
            )?;
        }
        writeln!(
            f,
            "files: {} written, {} uploaded, {} committed, {} quarantined",
            self.written,
            self.uploaded,
            self.committed,
            self.quarantined.len()
        )?;
        for q in &self.quarantined {
            writeln!(
                f,
                "  quarantined #{}: {} {}/{} offsets {}..={}: {}",
                q.id, q.table, q.topic, q.partition, q.first_offset, q.last_offset, q.reason
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for TableStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self;
        writeln!(
            f,
            "table {}: {} files to upload, {} to commit ({})",
            t.table,
            t.files_written,
            t.files_uploaded,
            mib(t.bytes)
        )?;
        if let Some(p) = &t.pending_commit {
            writeln!(f, "  pending commit {p}: checked against the table's history before anything is retried")?;
        }
        if let Some(c) = &t.columns {
            let fixed = if c.fixed { ", schema fixed" } else { "" };
            writeln!(f, "  columns: {} of at most {} (max_columns){fixed}", c.count, c.max)?;
        }
        if let Some(d) = t.dead_letters.as_ref().filter(|d| d.rows > 0) {
            writeln!(f, "  dead letters: {} in {}", d.rows, d.table)?;
        }
        match (&t.last_commit, t.exists) {
            (Some(c), _) => writeln!(
                f,
                "  last commit: snapshot {} at {} ({})",
                c.snapshot_id,
                when(c.timestamp_ms),
                c.commit_id.as_deref().unwrap_or("no commit id")
            )?,
            (None, Some(true)) => writeln!(f, "  last commit: none by this agent")?,
            (None, Some(false)) => writeln!(f, "  not in the catalog yet (created at the first commit)")?,
            (None, None) => {}
        }
        if let Some(h) = &self.health {
            writeln!(f, "  health: {h}")?;
        }
        Ok(())
    }
}
