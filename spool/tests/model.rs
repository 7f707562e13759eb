//! Model-based test, in the spirit of Vector's disk buffer v2 model tests: random action
//! sequences run against the real spool and a plain in-memory model, with named invariants
//! checked after every step (uploads one by one and merged, several files in one object:
//! `mark_uploaded_many`). Crash points are simulated by doing to the directory exactly what
//! an interrupted operation would have left (a renamed-but-unlisted file, an unlinked committed
//! file) and then reopening.
//!
//! 64 cases by default so it runs in seconds; `PROPTEST_CASES=2000 cargo test -p frazil-spool
//! --test model` for a longer soak. Power loss (unsynced data lost, operations cut part way) is
//! `power_model.rs`, on a filesystem model beneath the spool.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use common::{Registration, open, write_tmp};
use frazil_spool::{FileMeta, FileState, PendingCommit, Spool};
use proptest::prelude::*;
use proptest::sample::Index;

#[derive(Debug, Clone)]
enum Action {
    Register(Registration),
    Upload(Index),
    /// Up to `take` Written files of table `table` uploaded as one object (`mark_uploaded_many`).
    UploadMerged {
        table: u8,
        take: u8,
    },
    /// Tables 0 and 1, or (2 and 3) their dead-letter tables.
    BeginCommit {
        table: u8,
    },
    FinishCommit(Index),
    AbandonCommit(Index),
    RemoveCommitted,
    /// Remove the committed files of even (or odd) ids only; the others are kept (for queries).
    RemoveSomeCommitted {
        odd: bool,
    },
    ReadVerified(Index),
    Reopen,
    /// Crash of a register after its rename, before its transaction.
    CrashAfterRename,
    /// Crash of remove_committed after its unlinks, before its transaction.
    CrashAfterUnlink,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => Registration::strategy().prop_map(Action::Register),
        3 => any::<Index>().prop_map(Action::Upload),
        2 => (0..2u8, 2..5u8).prop_map(|(table, take)| Action::UploadMerged { table, take }),
        2 => (0..4u8).prop_map(|table| Action::BeginCommit { table }),
        2 => any::<Index>().prop_map(Action::FinishCommit),
        1 => any::<Index>().prop_map(Action::AbandonCommit),
        1 => Just(Action::RemoveCommitted),
        1 => any::<bool>().prop_map(|odd| Action::RemoveSomeCommitted { odd }),
        1 => any::<Index>().prop_map(Action::ReadVerified),
        1 => Just(Action::Reopen),
        1 => Just(Action::CrashAfterRename),
        1 => Just(Action::CrashAfterUnlink),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum MState {
    Written,
    Uploaded(String),
    Committed { unlinked: bool },
}

struct MFile {
    meta: FileMeta,
    state: MState,
    content: Vec<u8>,
}

#[derive(Default)]
struct Model {
    files: BTreeMap<u64, MFile>,
    pending: BTreeMap<String, PendingCommit>,
    offsets: BTreeMap<(String, i32), i64>,
    cursor: BTreeMap<i32, i64>,
    /// Every (id, meta) ever registered.
    registered: Vec<(u64, FileMeta)>,
    committed: BTreeSet<u64>,
    max_id: u64,
    commits_begun: u64,
    orphans: BTreeSet<PathBuf>,
}

impl Model {
    fn pick(&self, i: &Index, want: impl Fn(&MState) -> bool) -> Option<u64> {
        let ids: Vec<u64> = self.files.iter().filter(|(_, f)| want(&f.state)).map(|(id, _)| *id).collect();
        (!ids.is_empty()).then(|| ids[i.index(ids.len())])
    }
}

fn step(spool: &mut Option<Spool>, m: &mut Model, dir: &Path, a: &Action, n: usize) -> Result<(), TestCaseError> {
    let s = spool.as_ref().unwrap();
    match a {
        Action::Register(r) => {
            let mut metas = Vec::new();
            let mut batch = Vec::new();
            let (p, next) = (i32::from(r.partition), r.metas(&m.cursor)[0].next_offset);
            for fm in r.metas(&m.cursor) {
                let content = format!("step {n}: {fm:?}").into_bytes();
                batch.push((write_tmp(s, &content), fm.clone()));
                metas.push((fm, content));
            }
            let files = s.register_all(batch).unwrap();
            prop_assert_eq!(files.len(), metas.len());
            for (f, (fm, content)) in files.into_iter().zip(metas) {
                prop_assert!(f.id > m.max_id, "ids_increase: {} after {}", f.id, m.max_id);
                m.max_id = f.id;
                m.orphans.remove(&f.path); // a same-id orphan is replaced by the rename
                m.registered.push((f.id, fm.clone()));
                m.files.insert(f.id, MFile { meta: fm, state: MState::Written, content });
            }
            let cur = m.cursor.entry(p).or_insert(next);
            *cur = (*cur).max(next);
            let o = m.offsets.entry(("events".into(), p)).or_insert(next);
            *o = (*o).max(next);
        }
        Action::Upload(i) => {
            if let Some(id) = m.pick(i, |s| *s == MState::Written) {
                let loc = format!("s3://bucket/{id}.parquet");
                s.mark_uploaded(id, &loc).unwrap();
                m.files.get_mut(&id).unwrap().state = MState::Uploaded(loc);
            }
        }
        Action::UploadMerged { table, take } => {
            let t = format!("t{table}");
            let ids: Vec<u64> = m
                .files
                .iter()
                .filter(|(_, f)| f.state == MState::Written && f.meta.table == t)
                .map(|(id, _)| *id)
                .take(usize::from(*take))
                .collect();
            if !ids.is_empty() {
                let loc = format!("s3://bucket/merged-{}.parquet", ids[0]);
                s.mark_uploaded_many(&ids, &loc).unwrap();
                // A repeat with the same location is a no-op.
                s.mark_uploaded_many(&ids, &loc).unwrap();
                for id in ids {
                    m.files.get_mut(&id).unwrap().state = MState::Uploaded(loc.clone());
                }
            }
        }
        Action::BeginCommit { table } => {
            // 0, 1: the tables; 2, 3: their dead-letter tables.
            let table = match table {
                0 | 1 => format!("t{table}"),
                t => format!("t{}__dlq", t - 2),
            };
            let in_pending: BTreeSet<u64> = m.pending.values().flat_map(|p| p.ids.clone()).collect();
            let ids: Vec<u64> = m
                .files
                .iter()
                .filter(|(id, f)| {
                    matches!(f.state, MState::Uploaded(_)) && f.meta.table == table && !in_pending.contains(id)
                })
                .map(|(id, _)| *id)
                .collect();
            if !ids.is_empty() {
                m.commits_begun += 1;
                let pc = PendingCommit { table, commit_id: format!("commit-{}", m.commits_begun), ids };
                s.begin_commit(&pc).unwrap();
                m.pending.insert(pc.commit_id.clone(), pc);
            }
        }
        Action::FinishCommit(i) | Action::AbandonCommit(i) => {
            let keys: Vec<String> = m.pending.keys().cloned().collect();
            if !keys.is_empty() {
                let pc = m.pending.remove(&keys[i.index(keys.len())]).unwrap();
                if matches!(a, Action::FinishCommit(_)) {
                    s.finish_commit(&pc.commit_id).unwrap();
                    for id in pc.ids {
                        m.files.get_mut(&id).unwrap().state = MState::Committed { unlinked: false };
                        m.committed.insert(id);
                    }
                } else {
                    s.abandon_commit(&pc.commit_id).unwrap();
                }
            }
        }
        Action::RemoveCommitted => {
            let before = m.files.len();
            m.files.retain(|_, f| !matches!(f.state, MState::Committed { .. }));
            prop_assert_eq!(s.remove_committed().unwrap(), before - m.files.len());
        }
        Action::RemoveSomeCommitted { odd } => {
            let before = m.files.len();
            let chosen = |id: u64| (id % 2 == 1) == *odd;
            m.files.retain(|id, f| !(matches!(f.state, MState::Committed { .. }) && chosen(*id)));
            prop_assert_eq!(s.remove_committed_where(|f| chosen(f.id)).unwrap(), before - m.files.len());
        }
        Action::ReadVerified(i) => {
            if let Some(id) = m.pick(i, |s| !matches!(s, MState::Committed { unlinked: true })) {
                prop_assert_eq!(&s.read_verified(id).unwrap(), &m.files[&id].content);
            }
        }
        Action::CrashAfterRename => {
            let p = dir.join(format!("data/{:020}.parquet", m.max_id + 1));
            fs::write(&p, b"renamed, never listed").unwrap();
            m.orphans.insert(p);
            write_tmp(s, b"half written");
        }
        Action::CrashAfterUnlink => {
            for (id, f) in m.files.iter_mut() {
                if let MState::Committed { unlinked } = &mut f.state {
                    let _ = fs::remove_file(dir.join(format!("data/{id:020}.parquet")));
                    *unlinked = true;
                }
            }
        }
        Action::Reopen => {
            drop(spool.take());
            let (s, rec) = open(dir);
            let removed: BTreeSet<PathBuf> = rec.orphans_removed.into_iter().collect();
            prop_assert_eq!(&removed, &m.orphans, "orphans_removed_exactly");
            m.orphans.clear();
            prop_assert!(rec.missing.is_empty(), "no_file_reported_missing: {:?}", rec.missing);
            prop_assert_eq!(&rec.pending, &m.pending.values().cloned().collect::<Vec<_>>());
            prop_assert!(fs::read_dir(dir.join("tmp")).unwrap().next().is_none(), "tmp_emptied");
            m.files.retain(|_, f| f.state != MState::Committed { unlinked: true });
            *spool = Some(s);
        }
    }
    Ok(())
}

fn offsets_never_go_backwards(
    seen: &mut BTreeMap<(String, i32), i64>,
    s: &Spool,
    m: &Model,
) -> Result<(), TestCaseError> {
    let now = s.offsets().unwrap();
    for (k, old) in seen.iter() {
        prop_assert!(
            now.get(k).is_some_and(|n| n >= old),
            "offsets_never_go_backwards: {k:?} {old} -> {:?}",
            now.get(k)
        );
    }
    prop_assert_eq!(&now, &m.offsets, "offsets_never_go_backwards: differ from model");
    *seen = now;
    Ok(())
}

fn every_listed_file_exists_and_matches_checksum(s: &Spool, m: &Model) -> Result<(), TestCaseError> {
    for f in s.files().unwrap() {
        if matches!(f.state, FileState::Committed | FileState::Quarantined { .. }) {
            continue;
        }
        let bytes = fs::read(&f.path);
        prop_assert!(bytes.is_ok(), "every_listed_file_exists: {} at {}", f.id, f.path.display());
        let bytes = bytes.unwrap();
        prop_assert_eq!(bytes.len() as u64, f.bytes, "every_listed_file_matches_checksum: size of {}", f.id);
        prop_assert_eq!(crc32c::crc32c(&bytes), f.crc32c, "every_listed_file_matches_checksum: crc of {}", f.id);
        prop_assert_eq!(&bytes, &m.files[&f.id].content, "every_listed_file_matches_checksum: content of {}", f.id);
    }
    Ok(())
}

fn nothing_lost_between_written_and_committed(s: &Spool, m: &Model) -> Result<(), TestCaseError> {
    let live: BTreeMap<u64, _> = s.files().unwrap().into_iter().map(|f| (f.id, f)).collect();
    for (id, fm) in &m.registered {
        let alive = live.get(id).is_some_and(|f| &f.meta == fm && !matches!(f.state, FileState::Quarantined { .. }));
        prop_assert!(alive || m.committed.contains(id), "nothing_lost_between_written_and_committed: file {id} {fm:?}");
    }
    Ok(())
}

fn states_match_model(s: &Spool, m: &Model) -> Result<(), TestCaseError> {
    let got: Vec<(u64, FileState)> = s.files().unwrap().into_iter().map(|f| (f.id, f.state)).collect();
    let want: Vec<(u64, FileState)> = m
        .files
        .iter()
        .map(|(id, f)| {
            (
                *id,
                match &f.state {
                    MState::Written => FileState::Written,
                    MState::Uploaded(l) => FileState::Uploaded { location: l.clone() },
                    MState::Committed { .. } => FileState::Committed,
                },
            )
        })
        .collect();
    prop_assert_eq!(got, want, "states_match_model");
    prop_assert_eq!(
        s.pending_commits().unwrap(),
        m.pending.values().cloned().collect::<Vec<_>>(),
        "pending_matches_model"
    );
    Ok(())
}

fn run(actions: Vec<Action>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Some(open(dir.path()).0);
    let mut m = Model::default();
    let mut seen = BTreeMap::new();
    for (n, a) in actions.iter().enumerate() {
        step(&mut spool, &mut m, dir.path(), a, n)?;
        let s = spool.as_ref().unwrap();
        offsets_never_go_backwards(&mut seen, s, &m)?;
        every_listed_file_exists_and_matches_checksum(s, &m)?;
        nothing_lost_between_written_and_committed(s, &m)?;
        states_match_model(s, &m)?;
    }
    Ok(())
}

fn config() -> ProptestConfig {
    // An explicit `cases` would override proptest's own reading of PROPTEST_CASES.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]
    #[test]
    fn spool_matches_model(actions in proptest::collection::vec(action(), 1..40)) {
        run(actions)?;
    }
}
