//! Crash points for the fault suite: the instants between an effect outside the process (an
//! object uploaded, a commit applied) and its record in the index, which a random `kill -9` only
//! hits by luck. Compiled in only with the `fault-injection` feature, which this crate turns on
//! for its own tests (the dev-dependency on itself in Cargo.toml); release builds have no hook.
//!
//! `FRAZIL_FAULT=<point>` makes the process abort at that point, the first time it is reached:
//! no destructor runs and nothing more is written, as with `kill -9`.

/// The points, in the order a file passes them.
pub const POINTS: &[&str] = &[
    // A group of spool files is in the object store; the index does not say so yet.
    "after-upload",
    // The pending commit is recorded; the catalog has not been asked.
    "before-commit",
    // The catalog applied the commit; the index still records it as pending.
    "after-commit",
    // Maintenance: compacted files, their manifests and list are written; the catalog has not been asked.
    "compact-before-commit",
    // Maintenance: the catalog applied the compaction; nothing is cleaned up yet.
    "compact-after-commit",
    // Maintenance: merged manifests and their manifest list are written; the catalog has not been asked.
    "merge-before-commit",
    // Maintenance: the catalog applied the merge; nothing is cleaned up yet.
    "merge-after-commit",
    // Maintenance: the catalog applied the expiry; the expired snapshots' files are not deleted yet.
    "expire-after-commit",
    // Maintenance: the orphan sweep listed the objects and chose which to delete; none is deleted yet.
    "orphans-before-delete",
];

#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    debug_assert!(POINTS.contains(&name), "unknown fault point {name}");
    if std::env::var("FRAZIL_FAULT").is_ok_and(|p| p == name) {
        log::error!("fault injection: aborting at {name}");
        std::process::abort();
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}
