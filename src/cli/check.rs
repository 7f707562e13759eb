//! `frazil check`: the config is valid (or the load already said which key is wrong); then each
//! part frazil needs is tried for real (the spool directory, the broker, the schema registry
//! when a topic is Avro, the catalog, the object store) and each gets one line saying what works
//! and what does not, with the fix where one is known. Nothing is fetched or committed; the object-store probe writes and removes one small
//! object.

use std::fmt;

use async_compat::Compat;
use bytes::Bytes;

use crate::commit::Committer;
use crate::config::Config;
use crate::logging::mib;
use crate::source::KafkaSource;
use crate::upload::Stores;

/// One thing checked.
#[derive(Debug)]
pub struct Line {
    pub ok: bool,
    pub what: String,
    pub detail: String,
}

/// Every line, in the order checked.
#[derive(Debug)]
pub struct Checked(pub Vec<Line>);

impl Checked {
    pub fn all_ok(&self) -> bool {
        self.0.iter().all(|l| l.ok)
    }
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.0 {
            writeln!(f, "{} {}: {}", if l.ok { "ok  " } else { "FAIL" }, l.what, l.detail)?;
        }
        Ok(())
    }
}

pub fn check(cfg: &Config, config_path: &std::path::Path) -> Checked {
    let mut lines = vec![Line {
        ok: true,
        what: "config".into(),
        detail: format!("{} is valid (agent {})", config_path.display(), cfg.agent_id),
    }];
    lines.push(spool(cfg));
    smol::block_on(async {
        let (broker, topics) = broker(cfg).await;
        lines.push(broker);
        if let Some(r) = &cfg.schema_registry {
            lines.push(registry(r).await);
        }
        let (catalog, location) = catalog(cfg, &topics).await;
        lines.push(catalog);
        if let Some(location) = location {
            lines.push(object_store(cfg, &location).await);
        } else {
            lines.push(Line {
                ok: false,
                what: "object store".into(),
                detail: "not tried: no table or warehouse location is known without the catalog".into(),
            });
        }
    });
    Checked(lines)
}

async fn registry(cfg: &crate::config::RegistryConfig) -> Line {
    let what = "schema registry".to_string();
    let result = match crate::source::registry::Registry::new(cfg) {
        Ok(r) => blocking::unblock(move || r.probe()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(n) => Line { ok: true, what, detail: format!("{} answers ({n} subjects)", cfg.url) },
        Err(e) => Line { ok: false, what, detail: e.to_string() },
    }
}

fn spool(cfg: &Config) -> Line {
    let what = format!("spool {}", cfg.spool.dir.display());
    let opened = crate::spill::open_beside(&cfg.spool);
    let note = |running| if running { " (an agent is running on it)" } else { "" };
    match opened.and_then(|(s, running)| Ok((s.usage()?, note(running)))) {
        Ok((u, note)) => {
            let low = u.below_floor(0);
            Line {
                ok: !low,
                what,
                detail: format!(
                    "{} in use{}, {} free on disk{note}{}",
                    mib(u.bytes),
                    u.max_bytes.map(|m| format!(" of {}", mib(m))).unwrap_or_default(),
                    u.free_disk.map(mib).unwrap_or_else(|| "?".into()),
                    if low { "; below spool.min_free, so fetching would pause: free space or lower it" } else { "" }
                ),
            }
        }
        Err(e) => Line {
            ok: false,
            what,
            detail: format!("{e}; the directory must be creatable and writable by frazil's user"),
        },
    }
}

/// Connects and lists the topics read (by name and pattern); returns them for the catalog check.
async fn broker(cfg: &Config) -> (Line, Vec<String>) {
    let what = format!("broker {}", cfg.kafka.brokers.join(","));
    let found = async {
        let mut source = KafkaSource::connect(&cfg.kafka).await?;
        source.discover().await
    }
    .await;
    match found {
        Ok(tps) => {
            let mut topics: Vec<String> = tps.iter().map(|(t, _)| t.clone()).collect();
            topics.dedup();
            let detail = if topics.is_empty() {
                "reachable; no topic matches kafka.topic_pattern yet".to_string()
            } else {
                format!("reachable; reading {} partitions of {}", tps.len(), topics.join(", "))
            };
            (Line { ok: true, what, detail }, topics)
        }
        Err(e) => (Line { ok: false, what, detail: e.to_string() }, Vec::new()),
    }
}

/// Reads the catalog's config and the tables of `topics`; returns a location to probe the
/// object store at (an existing table's, else the warehouse the catalog advertises).
async fn catalog(cfg: &Config, topics: &[String]) -> (Line, Option<String>) {
    let what = match cfg.catalog.kind {
        crate::config::CatalogKind::Rest => format!("catalog {}", cfg.catalog.uri),
        crate::config::CatalogKind::Filesystem => {
            format!("catalog in {}", cfg.catalog.warehouse.as_deref().unwrap_or_default())
        }
    };
    let committer = match Committer::connect(&cfg.catalog, &Stores::new(cfg.s3.clone()), &cfg.agent_id).await {
        Ok(c) => c,
        Err(e) => return (Line { ok: false, what, detail: e.to_string() }, None),
    };
    let mut names: Vec<String> = topics.iter().map(|t| cfg.table_for(t)).collect();
    names.sort();
    names.dedup();
    let mut exist = Vec::new();
    let mut location = None;
    for name in &names {
        match committer.load(name).await {
            Ok(Some(t)) => {
                location.get_or_insert_with(|| t.metadata().location().to_string());
                exist.push(name.clone());
            }
            Ok(None) => {}
            Err(e) => return (Line { ok: false, what, detail: format!("table {name}: {e}") }, None),
        }
    }
    let location = location.or_else(|| committer.catalog_properties().get("warehouse").cloned()).or_else(|| {
        cfg.catalog.warehouse.clone().filter(|_| cfg.catalog.kind == crate::config::CatalogKind::Filesystem)
    });
    let missing = names.len() - exist.len();
    let detail = format!(
        "reachable; {} of {} tables exist{}",
        exist.len(),
        names.len(),
        if missing > 0 { " (the others are created at their first commit)" } else { "" }
    );
    (Line { ok: true, what, detail }, location)
}

/// Writes, reads back and removes one small object next to the tables.
async fn object_store(cfg: &Config, location: &str) -> Line {
    let url = format!("{}/.frazil-check-{}", location.trim_end_matches('/'), cfg.agent_id);
    let stores = Stores::new(cfg.s3.clone());
    let body = Bytes::from(format!("frazil check by {}\n", cfg.agent_id));
    let probe = Compat::new(async {
        stores.put(&url, body.clone()).await?;
        let back = stores.get(&url).await?;
        stores.delete(&url).await?;
        Ok::<_, crate::Error>(back == body)
    })
    .await;
    match probe {
        Ok(true) => {
            Line { ok: true, what: "object store".into(), detail: format!("wrote, read back and removed {url}") }
        }
        Ok(false) => {
            Line { ok: false, what: "object store".into(), detail: format!("{url} read back different bytes") }
        }
        Err(e) => Line {
            ok: false,
            what: "object store".into(),
            detail: format!("{e}; check [storage.s3] (endpoint, region, credentials, path_style)"),
        },
    }
}
