//! `frazil maintain`: one maintenance pass over the tables this configuration feeds, for cron and
//! timers (`run` maintains on its own, per `maintain_interval`). It needs no spool and takes no
//! lock, so it runs beside a running agent, on any host with the configuration.

use std::collections::BTreeSet;

use crate::Result;
use crate::commit::Committer;
use crate::config::Config;
use crate::maintain::{self, Report, Tools};
use crate::upload::Stores;

/// The tables a pass covers: `only` when given, else the configured topics' tables and their
/// dead-letter tables (tables found through `topic_pattern` are named with `--table`).
pub fn tables(cfg: &Config, only: &[String]) -> BTreeSet<String> {
    if !only.is_empty() {
        return only.iter().cloned().collect();
    }
    let names = cfg.configured_tables();
    let dead = names.iter().map(|t| crate::config::dead_letter_table_name(&cfg.catalog.dead_letter_table, t));
    names.iter().cloned().chain(dead.collect::<Vec<_>>()).collect()
}

/// Maintains each table once (whatever its `maintain_interval`). A table that does not exist yet
/// is reported with no health; the first failure ends the pass.
pub fn maintain(cfg: &Config, only: &[String]) -> Result<Vec<Report>> {
    smol::block_on(async {
        let stores = Stores::new(cfg.s3.clone());
        let committer = Committer::connect(&cfg.catalog, &stores, &cfg.agent_id).await?;
        let scratch = maintain::scratch_dir(&cfg.spool.dir)?;
        let tools = Tools { committer: &committer, stores: &stores, scratch: &scratch };
        let mut out = Vec::new();
        for name in tables(cfg, only) {
            let (report, _) = maintain::maintain(&tools, &name, &cfg.maintenance(&name)).await?;
            out.push(report);
        }
        Ok(out)
    })
}
