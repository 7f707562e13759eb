//! The three sources of an answer, read in the order data flows through the agent: the read state
//! (hot rows, and the list of spool files), then the files opened, then the tables loaded. A row
//! that moves meanwhile is seen twice at most (see `frazil::read::plan`), never missed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;

use frazil::commit::Committer;
use frazil::config::Config;
use frazil::read::{FileEntry, HotPiece, Span};
use frazil::topic::TopicPartition;
use frazil::upload::Stores;
use iceberg::table::Table;

use crate::error::Result;

/// A spool file opened before the tables were loaded: its rows stay readable even if the agent
/// commits it and removes it now.
pub struct OpenFile {
    pub entry: FileEntry,
    pub file: File,
}

/// A table as the catalog has it, with what this agent had committed as of its current snapshot.
pub struct Committed {
    pub table: Table,
    pub snapshot_id: Option<i64>,
    pub offsets: BTreeMap<TopicPartition, i64>,
}

pub struct Sources {
    pub agent_running: bool,
    pub hot: Vec<HotPiece>,
    pub files: Vec<OpenFile>,
    /// Every table the answer can name, with the catalog's table when it has one.
    pub tables: BTreeMap<String, Option<Committed>>,
    /// Why the answer holds local rows alone (`--offline`, or the catalog or store unreachable).
    pub offline: Option<String>,
    /// The names among `tables` that are dead-letter tables.
    pub dead_letter_tables: BTreeSet<String>,
    /// What the spool's quarantined files held: rows no answer can read until they are fetched again.
    pub quarantined: Vec<Span>,
}

/// Reads the read state and opens the files (no network), then loads the tables unless offline.
pub async fn gather(cfg: &Config, offline: bool) -> Result<Sources> {
    let state = frazil::read::gather(&cfg.spool)?;
    let mut files = Vec::new();
    let (readable, quarantined): (Vec<FileEntry>, Vec<FileEntry>) =
        state.files.into_iter().partition(FileEntry::readable);
    for entry in readable {
        match File::open(&entry.path) {
            Ok(file) => files.push(OpenFile { entry, file }),
            // Committed and removed since it was listed: the table, loaded next, has its rows.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(frazil::Error::io(format!("opening spool file {}", entry.path.display()), e).into()),
        }
    }
    let names = table_names(cfg, &state.hot, &files);
    let dead_letter_tables = names
        .iter()
        .map(|t| frazil::config::dead_letter_table_name(&cfg.catalog.dead_letter_table, t))
        .filter(|d| names.contains(d))
        .collect();
    let mut sources = Sources {
        agent_running: state.agent_running,
        hot: state.hot,
        files,
        tables: names.into_iter().map(|n| (n, None)).collect(),
        offline: offline.then(|| "--offline".to_string()),
        dead_letter_tables,
        quarantined: quarantined.into_iter().map(|f| f.span).collect(),
    };
    if !offline && let Err(e) = load_tables(cfg, &mut sources.tables).await {
        sources.tables.values_mut().for_each(|t| *t = None);
        sources.offline = Some(e.to_string());
    }
    Ok(sources)
}

/// The configured topics' tables, every table the agent holds rows for, and their dead-letter tables.
fn table_names(cfg: &Config, hot: &[HotPiece], files: &[OpenFile]) -> BTreeSet<String> {
    let mut names = cfg.configured_tables();
    names.extend(hot.iter().map(|h| h.span.table.clone()));
    names.extend(files.iter().map(|f| f.entry.span.table.clone()));
    let dead: Vec<String> =
        names.iter().map(|t| frazil::config::dead_letter_table_name(&cfg.catalog.dead_letter_table, t)).collect();
    names.extend(dead);
    names
}

/// Loads every table; any failure to reach the catalog, or the object store holding a table's
/// manifests, makes the whole answer local (a partly loaded answer would be neither).
async fn load_tables(cfg: &Config, tables: &mut BTreeMap<String, Option<Committed>>) -> frazil::Result<()> {
    let stores = Stores::new(cfg.s3.clone());
    let committer = Committer::connect(&cfg.catalog, &stores, &cfg.agent_id).await?;
    for (name, slot) in tables.iter_mut() {
        let Some(table) = committer.load(name).await? else { continue };
        let metadata = table.metadata();
        let snapshot = metadata.current_snapshot().cloned();
        if let Some(s) = &snapshot {
            let read = async { table.file_io().new_input(s.manifest_list())?.read().await };
            read.await.map_err(|e| {
                frazil::Error::iceberg(format!("reading {name}'s manifest list from the object store"), e)
            })?;
        }
        // In a consumer group the table's offsets are the group's, whichever member committed.
        let offsets = match &cfg.kafka.group {
            Some(g) => frazil::commit::fence::offsets_as_of_current(metadata, &g.name),
            None => frazil::commit::offsets_as_of_current(metadata, &cfg.agent_id),
        };
        *slot = Some(Committed { snapshot_id: snapshot.map(|s| s.snapshot_id()), offsets, table });
    }
    Ok(())
}
