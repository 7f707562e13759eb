//! `kill -9` crash test.
//!
//! The test binary re-executes itself as a child (env `FRAZIL_CRASH_CHILD=<dir>`) that drives
//! the spool through every state in a random loop: it writes random-sized files into
//! `temp_path()` and registers them, marks them uploaded, begins, finishes and abandons
//! commits, removes committed files, quarantines a few and reads files back. The parent
//! SIGKILLs it at a random moment (1-40 ms after the child reports that its open finished; on
//! every 8th cycle 0-15 ms after spawn, so kills also land inside `open()`'s recovery, which
//! the cycle before leaves unrepaired), reopens the spool and checks every invariant:
//!
//! - `reopen_never_fails`: open succeeds after every kill (no panic, no crash loop), reports no
//!   missing file, leaves `tmp/` empty and exactly the listed files in `data/`;
//! - `offsets_never_go_backwards`: per partition the stored offset never decreases across kills,
//!   and equals the highest `next_offset` of every register known to have landed;
//! - `every_listed_file_is_intact`: every record not quarantined has its file in `data/`, and
//!   `read_verified` returns exactly the bytes the child wrote;
//! - `nothing_lost`: every register journaled as returned is still listed (Written, Uploaded,
//!   pending or Committed, or Quarantined if the child asked for it) unless journaled as
//!   committed;
//! - `every_record_is_explained`: every record, state and pending commit matches what the
//!   child journaled it was about to do (at most the one register in flight per child run is
//!   listed without its "returned" line).
//!
//! The child's side journal (`<dir>/journal`, fsynced after each write; every line ends in
//! ` .`, so a line cut short by the kill is recognized and ignored):
//!
//! ```text
//! r <tag> <partition> <first> <next> <bytes> <crc>   before register (tag = c<cycle>s<seq>)
//! R <tag> <id>                                       after register returned
//! S <tag> <id> <W|U|C>                               at child start, for every record listed
//!                                                    and not quarantined
//! b <commit> <id,id,..>                              before begin_commit
//! f <commit> / C <commit>                            before / after finish_commit
//! a <commit>                                         before abandon_commit
//! q <id>                                             before quarantine
//! ```
//!
//! 200 cycles by default; `FRAZIL_CRASH_CYCLES=5000 cargo test -p frazil-spool --test crash` for
//! a soak, `FRAZIL_CRASH_SEED` to repeat a run's choices (kill timing still varies).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use frazil_spool::{FileMeta, FileState, PendingCommit, Spool, SpoolOptions};

const NAME: &str = "kill_dash_nine_cycles";
const CHILD_ENV: &str = "FRAZIL_CRASH_CHILD";
const TABLE: &str = "db.events";
const TOPIC: &str = "events";
const PARTITIONS: u64 = 3;
/// The child stops registering while this many files wait for upload/commit, bounding data/.
const MAX_LIVE: usize = 24;

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child::run(Path::new(&dir));
        return;
    }
    // Behave like a libtest binary towards `cargo test [filter] -- [--list|--ignored|...]`.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return;
    }
    let mut filters = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--skip" | "--test-threads" | "--format" | "--color" | "-Z" => {
                it.next();
            }
            a if a.starts_with('-') => {}
            a => filters.push(a.to_string()),
        }
    }
    let exact = args.iter().any(|a| a == "--exact");
    let selected = filters.is_empty()
        || filters.iter().any(|f| {
            if exact {
                f == NAME
            } else {
                NAME.contains(f.as_str())
            }
        });
    if !selected || args.iter().any(|a| a == "--ignored") {
        println!("running 0 tests ({NAME} filtered out)");
        return;
    }
    println!("running 1 test");
    parent::run();
    println!("test {NAME} ... ok");
}

/// SplitMix64: small, seedable, good enough to pick actions and fill files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

/// The bytes of the file with this tag: the parent regenerates them to check what it reads.
/// A 64 KiB pseudo-random block seeded by the tag, repeated with each copy's first 8 bytes set
/// to its index (cheap enough in a debug build for files of a few MiB).
fn content(tag: &str, size: usize) -> Vec<u8> {
    let seed = tag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut r = Rng(seed);
    let block: Vec<u8> = (0..8 << 10).flat_map(|_| r.next().to_le_bytes()).collect();
    let mut v = Vec::with_capacity(size + block.len());
    let mut n = 0u64;
    while v.len() < size {
        let at = v.len();
        v.extend_from_slice(&block);
        v[at..at + 8].copy_from_slice(&n.to_le_bytes());
        n += 1;
    }
    v.truncate(size);
    v
}

fn location(id: u64) -> String {
    format!("s3://bucket/{id}.parquet")
}

fn quarantine_reason(id: u64) -> String {
    format!("crash test {id}")
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The operation the child is in, as one byte in `<dir>/status`.
fn op_name(code: u8) -> &'static str {
    match code {
        b'-' => "process start",
        b'o' => "open (recovery)",
        b's' => "journal snapshot",
        b'i' => "choosing",
        b'g' => "generate content",
        b'w' => "write temp file",
        b'j' => "journal write",
        b'R' => "register",
        b'U' => "mark_uploaded",
        b'B' => "begin_commit",
        b'F' => "finish_commit",
        b'A' => "abandon_commit",
        b'X' => "remove_committed",
        b'Q' => "quarantine",
        b'V' => "read_verified",
        _ => "unknown",
    }
}

mod child {
    use super::*;

    struct Journal(File);

    impl Journal {
        fn line(&mut self, s: String) {
            self.lines(&[s]);
        }
        /// One write and one fsync for all of them.
        fn lines(&mut self, lines: &[String]) {
            let text: String = lines.iter().map(|l| format!("{l} .\n")).collect();
            self.0.write_all(text.as_bytes()).unwrap();
            self.0.sync_data().unwrap();
        }
    }

    struct Child {
        spool: Spool,
        journal: Journal,
        status: File,
        rng: Rng,
        cycle: u64,
        seq: u64,
        parent: u32,
    }

    pub fn run(root: &Path) {
        let status = OpenOptions::new()
            .write(true)
            .open(root.join("status"))
            .unwrap();
        let _ = status.write_at(b"o", 0);
        let (spool, rec) = Spool::open(&root.join("spool"), SpoolOptions::default())
            .unwrap_or_else(|e| panic!("child: open after a kill failed: {e}"));
        let mut journal = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(root.join("journal"))
            .unwrap();
        // A line the last kill cut short: end it, so ours start on a line of their own (the
        // parent ignores it: it lacks the final " .").
        let len = journal.metadata().unwrap().len();
        let mut last = [b'\n'];
        if len > 0 {
            journal.read_exact_at(&mut last, len - 1).unwrap();
        }
        if last[0] != b'\n' {
            journal.write_all(b"\n").unwrap();
        }
        let mut c = Child {
            spool,
            journal: Journal(journal),
            status,
            rng: Rng(env_u64("FRAZIL_CRASH_SEED").unwrap()),
            cycle: env_u64("FRAZIL_CRASH_CYCLE").unwrap(),
            seq: 0,
            parent: std::os::unix::process::parent_id(),
        };
        // Everything listed now is known to the journal from here on, including a register
        // that landed just before the last kill without its "R" line.
        // (Quarantined records were journaled before they could be quarantined.)
        c.op(b's');
        let mut snapshot = Vec::new();
        for f in c.spool.files().unwrap() {
            let st = match f.state {
                FileState::Written => 'W',
                FileState::Uploaded { .. } => 'U',
                FileState::Committed => 'C',
                _ => continue,
            };
            let tag = String::from_utf8(f.meta.extra.clone()).unwrap();
            snapshot.push(format!("S {tag} {} {st}", f.id));
        }
        if !snapshot.is_empty() {
            c.journal.lines(&snapshot);
        }
        println!("ready");
        std::io::stdout().flush().unwrap();
        // Commits begun before the kill: "ask the catalog" (a coin) whether they landed.
        for p in rec.pending {
            if c.rng.below(2) == 0 {
                c.finish(&p.commit_id);
            } else {
                c.abandon(&p.commit_id);
            }
        }
        loop {
            c.step();
        }
    }

    impl Child {
        fn op(&self, code: u8) {
            let _ = self.status.write_at(&[code], 0);
        }

        fn step(&mut self) {
            // The test was interrupted (Ctrl-C, a timeout): do not outlive it.
            if std::os::unix::process::parent_id() != self.parent {
                std::process::exit(3);
            }
            self.op(b'i');
            self.seq += 1;
            let files = self.spool.files().unwrap();
            let pending = self.spool.pending_commits().unwrap();
            let in_pending: HashSet<u64> = pending.iter().flat_map(|p| p.ids.clone()).collect();
            let ids = |want: &dyn Fn(&frazil_spool::SpoolFile) -> bool| -> Vec<u64> {
                files.iter().filter(|f| want(f)).map(|f| f.id).collect()
            };
            let written = ids(&|f| f.state == FileState::Written);
            let free_uploaded = ids(&|f| {
                matches!(f.state, FileState::Uploaded { .. }) && !in_pending.contains(&f.id)
            });
            let committed = ids(&|f| f.state == FileState::Committed);
            let readable = ids(&|f| !matches!(f.state, FileState::Quarantined { .. }));
            let live = files
                .iter()
                .filter(|f| matches!(f.state, FileState::Written | FileState::Uploaded { .. }))
                .count();
            let quarantinable: Vec<u64> = written.iter().chain(&free_uploaded).copied().collect();
            let pending_ids: Vec<&str> = pending.iter().map(|p| p.commit_id.as_str()).collect();

            let choices = [
                (if live < MAX_LIVE { 40 } else { 0 }, 'r'),
                (if written.is_empty() { 0 } else { 20 }, 'u'),
                (if free_uploaded.is_empty() { 0 } else { 10 }, 'b'),
                (if pending.is_empty() { 0 } else { 10 }, 'f'),
                (if pending.is_empty() { 0 } else { 3 }, 'a'),
                (if committed.is_empty() { 0 } else { 8 }, 'x'),
                (if quarantinable.is_empty() { 0 } else { 2 }, 'q'),
                (if readable.is_empty() { 0 } else { 4 }, 'v'),
            ];
            let total: u64 = choices.iter().map(|(w, _)| *w).sum();
            let mut roll = self.rng.below(total);
            let mut action = 'r';
            for (w, a) in choices {
                if roll < w {
                    action = a;
                    break;
                }
                roll -= w;
            }
            match action {
                'r' => self.register(),
                'u' => {
                    let id = self.rng.pick(&written);
                    self.op(b'U');
                    self.spool.mark_uploaded(id, &location(id)).unwrap();
                }
                'b' => {
                    let n = 1 + self.rng.below(4) as usize;
                    let ids: Vec<u64> = free_uploaded.iter().copied().take(n).collect();
                    let commit_id = format!("c{}k{}", self.cycle, self.seq);
                    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
                    self.op(b'j');
                    self.journal
                        .line(format!("b {commit_id} {}", list.join(",")));
                    self.op(b'B');
                    self.spool
                        .begin_commit(&PendingCommit {
                            table: TABLE.into(),
                            commit_id,
                            ids,
                        })
                        .unwrap();
                }
                'f' => {
                    let c = self.rng.pick(&pending_ids).to_string();
                    self.finish(&c);
                }
                'a' => {
                    let c = self.rng.pick(&pending_ids).to_string();
                    self.abandon(&c);
                }
                'x' => {
                    self.op(b'X');
                    self.spool.remove_committed().unwrap();
                }
                'q' => {
                    let id = self.rng.pick(&quarantinable);
                    self.op(b'j');
                    self.journal.line(format!("q {id}"));
                    self.op(b'Q');
                    self.spool.quarantine(id, &quarantine_reason(id)).unwrap();
                }
                _ => {
                    let id = self.rng.pick(&readable);
                    let f = files.iter().find(|f| f.id == id).unwrap();
                    let want = content(
                        std::str::from_utf8(&f.meta.extra).unwrap(),
                        f.bytes as usize,
                    );
                    self.op(b'V');
                    let got = self.spool.read_verified(id).unwrap();
                    assert!(got == want, "child: file {id} read back different bytes");
                }
            }
        }

        fn register(&mut self) {
            let p = self.rng.below(PARTITIONS) as i32;
            let cursor = self
                .spool
                .offsets()
                .unwrap()
                .get(&(TOPIC.to_string(), p))
                .copied()
                .unwrap_or(0);
            // Now and then a replay of events already spooled (as after a crash).
            let back = if self.rng.below(10) == 0 {
                1 + self.rng.below(5) as i64
            } else {
                0
            };
            let first = (cursor - back).max(0);
            let next = first + 1 + self.rng.below(50) as i64;
            let size = match self.rng.below(100) {
                0..5 => 0,
                5..50 => self.rng.below(4 << 10),
                50..85 => (4 << 10) + self.rng.below(252 << 10),
                _ => (256 << 10) + self.rng.below(1792 << 10),
            } as usize;
            let tag = format!("c{}s{}", self.cycle, self.seq);
            self.op(b'g');
            let body = content(&tag, size);
            let crc = crc32c::crc32c(&body);

            self.op(b'w');
            let tmp = self.spool.temp_path();
            let mut f = File::create(&tmp).unwrap();
            for chunk in body.chunks(64 << 10) {
                f.write_all(chunk).unwrap();
            }
            drop(f);
            self.op(b'j');
            self.journal
                .line(format!("r {tag} {p} {first} {next} {size} {crc}"));
            self.op(b'R');
            let meta = FileMeta {
                table: TABLE.into(),
                topic: TOPIC.into(),
                partition: p,
                first_offset: first,
                last_offset: next - 1,
                next_offset: next,
                rows: (next - first) as u64,
                extra: tag.clone().into_bytes(),
            };
            let file = self.spool.register(&tmp, meta).unwrap();
            self.op(b'j');
            self.journal.line(format!("R {tag} {}", file.id));
        }

        fn finish(&mut self, commit_id: &str) {
            self.op(b'j');
            self.journal.line(format!("f {commit_id}"));
            self.op(b'F');
            self.spool.finish_commit(commit_id).unwrap();
            self.op(b'j');
            self.journal.line(format!("C {commit_id}"));
        }

        fn abandon(&mut self, commit_id: &str) {
            self.op(b'j');
            self.journal.line(format!("a {commit_id}"));
            self.op(b'A');
            self.spool.abandon_commit(commit_id).unwrap();
        }
    }
}

mod parent {
    use super::*;

    struct Intent {
        partition: i32,
        first: i64,
        next: i64,
        bytes: u64,
        crc: u32,
    }

    /// What the journal says happened.
    #[derive(Default)]
    struct Journal {
        intents: HashMap<String, Intent>,
        /// The last register attempted by each child run: the only one that may be listed
        /// without its "R" line (killed after register, before the journal write).
        last_intent: HashMap<u64, String>,
        /// id -> tag, from "R" and "S" lines.
        registered: BTreeMap<u64, String>,
        begun: HashMap<String, Vec<u64>>,
        finishing: HashSet<String>,
        finished: HashSet<String>,
        /// Files known to be committed: of finished commits, or seen Committed at a child start.
        committed: HashSet<u64>,
        quarantine_asked: HashSet<u64>,
    }

    fn cycle_of(tag: &str) -> u64 {
        tag[1..tag.find('s').unwrap()].parse().unwrap()
    }

    impl Journal {
        /// Applies the complete lines of `path` from byte `*from` on, and advances `*from`.
        /// The file only grows (by appends), so each check reads only what is new.
        fn update(&mut self, path: &Path, from: &mut usize) {
            let bytes = fs::read(path).unwrap_or_default();
            let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
                return;
            };
            if end < *from {
                return;
            }
            let text = std::str::from_utf8(&bytes[*from..=end]).unwrap();
            *from = end + 1;
            for line in text.lines() {
                // A line without its final " ." was cut by a kill: it never happened.
                if let Some(line) = line.strip_suffix(" .") {
                    self.apply(line);
                }
            }
        }

        fn apply(&mut self, line: &str) {
            let j = self;
            let w: Vec<&str> = line.split(' ').collect();
            let n = |i: usize| -> i64 { w[i].parse().unwrap() };
            match w[0] {
                "r" => {
                    j.last_intent.insert(cycle_of(w[1]), w[1].to_string());
                    j.intents.insert(
                        w[1].to_string(),
                        Intent {
                            partition: n(2) as i32,
                            first: n(3),
                            next: n(4),
                            bytes: n(5) as u64,
                            crc: n(6) as u32,
                        },
                    );
                }
                "R" | "S" => {
                    let id = n(2) as u64;
                    if let Some(old) = j.registered.insert(id, w[1].to_string()) {
                        assert_eq!(old, w[1], "every_record_is_explained: id {id} reused");
                    }
                    if w[0] == "S" && w[3] == "C" {
                        j.committed.insert(id);
                    }
                }
                "b" => {
                    let ids = w[2].split(',').map(|s| s.parse().unwrap()).collect();
                    j.begun.insert(w[1].to_string(), ids);
                }
                "f" => {
                    j.finishing.insert(w[1].to_string());
                }
                "C" => {
                    j.finished.insert(w[1].to_string());
                    let ids = j.begun[w[1]].clone();
                    j.committed.extend(ids);
                }
                "a" => {}
                "q" => {
                    j.quarantine_asked.insert(n(1) as u64);
                }
                other => panic!("journal: unknown line kind {other:?}: {line}"),
            }
        }
    }

    #[derive(Default)]
    pub struct Seen {
        journal: Journal,
        journal_read: usize,
        /// Quarantined files whose bytes were checked already (they never change).
        quarantine_checked: HashSet<u64>,
        offsets: BTreeMap<(String, i32), i64>,
        checks: u64,
        temp_files_left: u64,
        orphans_removed: u64,
        pending_found: u64,
        records_max: usize,
    }

    fn list(dir: &Path) -> BTreeSet<PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// Reopens the spool after a kill and checks every invariant (see the file's doc).
    fn check(root: &Path, seen: &mut Seen, after: &str) {
        let dir = root.join("spool");
        seen.journal
            .update(&root.join("journal"), &mut seen.journal_read);
        let j = std::mem::take(&mut seen.journal);
        seen.temp_files_left += list(&dir.join("tmp")).len() as u64;

        let (spool, rec) = Spool::open(&dir, SpoolOptions::default())
            .unwrap_or_else(|e| panic!("reopen_never_fails: {after}: {e}"));
        seen.checks += 1;
        seen.orphans_removed += rec.orphans_removed.len() as u64;
        seen.pending_found += rec.pending.len() as u64;
        assert!(
            rec.missing.is_empty(),
            "reopen_never_fails: {after}: files reported missing: {:?}",
            rec.missing
        );
        assert!(
            list(&dir.join("tmp")).is_empty(),
            "reopen_never_fails: {after}: tmp/ not emptied"
        );

        let files = spool.files().unwrap();
        seen.records_max = seen.records_max.max(files.len());
        let by_id: HashMap<u64, &frazil_spool::SpoolFile> =
            files.iter().map(|f| (f.id, f)).collect();
        let mut in_data = BTreeSet::new();
        let mut in_quarantine = BTreeSet::new();
        let mut data_bytes = 0;
        let mut tags_landed: HashSet<String> = j.registered.values().cloned().collect();

        for f in &files {
            let ctx = format!("{after}: record {}", f.id);
            // every_record_is_explained: its register was journaled, with these exact contents.
            let tag = String::from_utf8(f.meta.extra.clone()).unwrap();
            let i = j.intents.get(&tag).unwrap_or_else(|| {
                panic!("every_record_is_explained: {ctx}: tag {tag:?} was never registered")
            });
            let want = FileMeta {
                table: TABLE.into(),
                topic: TOPIC.into(),
                partition: i.partition,
                first_offset: i.first,
                last_offset: i.next - 1,
                next_offset: i.next,
                rows: (i.next - i.first) as u64,
                extra: tag.clone().into_bytes(),
            };
            assert_eq!(f.meta, want, "every_record_is_explained: {ctx}: meta");
            assert_eq!(
                (f.bytes, f.crc32c),
                (i.bytes, i.crc),
                "every_record_is_explained: {ctx}: size/crc"
            );
            match j.registered.get(&f.id) {
                Some(t) => assert_eq!(
                    t, &tag,
                    "every_record_is_explained: {ctx}: journaled with another tag"
                ),
                None => assert_eq!(
                    j.last_intent.get(&cycle_of(&tag)),
                    Some(&tag),
                    "every_record_is_explained: {ctx}: listed without an R line, and not the register in flight at a kill"
                ),
            }
            assert!(
                !j.registered.iter().any(|(id, t)| t == &tag && *id != f.id),
                "every_record_is_explained: {ctx}: tag {tag} registered twice"
            );
            tags_landed.insert(tag.clone());
            match &f.state {
                FileState::Written => {}
                FileState::Uploaded { location: l } => {
                    assert_eq!(l, &location(f.id), "every_record_is_explained: {ctx}")
                }
                FileState::Committed => {
                    let finishing = j
                        .finishing
                        .iter()
                        .any(|c| j.begun.get(c).is_some_and(|ids| ids.contains(&f.id)));
                    assert!(
                        j.committed.contains(&f.id) || finishing,
                        "every_record_is_explained: {ctx}: Committed, but no finish_commit was ever asked for it"
                    );
                }
                FileState::Quarantined { reason } => {
                    assert!(
                        j.quarantine_asked.contains(&f.id) && reason == &quarantine_reason(f.id),
                        "every_record_is_explained: {ctx}: quarantined unasked ({reason})"
                    );
                    if seen.quarantine_checked.insert(f.id) {
                        let q = fs::read(&f.path).unwrap_or_else(|e| {
                            panic!(
                                "nothing_lost: {ctx}: quarantined file {}: {e}",
                                f.path.display()
                            )
                        });
                        assert_eq!(
                            crc32c::crc32c(&q),
                            f.crc32c,
                            "nothing_lost: {ctx}: quarantined bytes"
                        );
                    } else {
                        assert!(
                            f.path.exists(),
                            "nothing_lost: {ctx}: quarantined file gone"
                        );
                    }
                    in_quarantine.insert(f.path.clone());
                    continue;
                }
                other => panic!("{ctx}: unknown state {other:?}"),
            }
            // every_listed_file_is_intact
            assert_eq!(f.path.parent().unwrap(), dir.join("data"));
            let got = spool
                .read_verified(f.id)
                .unwrap_or_else(|e| panic!("every_listed_file_is_intact: {ctx}: {e}"));
            assert!(
                got == content(&tag, i.bytes as usize),
                "every_listed_file_is_intact: {ctx}: bytes differ from what the child wrote"
            );
            in_data.insert(f.path.clone());
            data_bytes += f.bytes;
        }
        assert_eq!(
            list(&dir.join("data")),
            in_data,
            "reopen_never_fails: {after}: data/ holds exactly the listed files"
        );
        let q_files: BTreeSet<PathBuf> = list(&dir.join("quarantine"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        assert_eq!(
            q_files, in_quarantine,
            "reopen_never_fails: {after}: quarantine/"
        );
        assert_eq!(
            spool.usage().unwrap().bytes,
            data_bytes,
            "{after}: usage().bytes"
        );

        // nothing_lost
        for (id, tag) in &j.registered {
            assert!(
                by_id.contains_key(id) || j.committed.contains(id),
                "nothing_lost: {after}: file {id} ({tag}) was registered, never committed, and is gone"
            );
        }

        // Pending commits: journaled before they were begun, not finished, files Uploaded.
        for p in spool.pending_commits().unwrap() {
            assert_eq!(
                j.begun.get(&p.commit_id),
                Some(&p.ids),
                "every_record_is_explained: {after}: pending commit {}",
                p.commit_id
            );
            assert!(
                !j.finished.contains(&p.commit_id),
                "{after}: finished commit {} still pending",
                p.commit_id
            );
            for id in &p.ids {
                assert!(
                    matches!(
                        by_id.get(id).map(|f| &f.state),
                        Some(FileState::Uploaded { .. })
                    ),
                    "{after}: file {id} of pending commit {} is not Uploaded",
                    p.commit_id
                );
            }
        }

        // offsets_never_go_backwards, and exactly the highest next offset of what landed.
        let offsets = spool.offsets().unwrap();
        let mut want: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for tag in &tags_landed {
            let i = &j.intents[tag];
            let o = want
                .entry((TOPIC.to_string(), i.partition))
                .or_insert(i.next);
            *o = (*o).max(i.next);
        }
        assert_eq!(
            offsets, want,
            "offsets_never_go_backwards: {after}: offsets vs journal"
        );
        for (k, old) in &seen.offsets {
            assert!(
                offsets.get(k).is_some_and(|n| n >= old),
                "offsets_never_go_backwards: {after}: {k:?} went from {old} to {:?}",
                offsets.get(k)
            );
        }
        seen.offsets = offsets;
        seen.journal = j;
    }

    pub fn run() {
        let cycles = env_u64("FRAZIL_CRASH_CYCLES").unwrap_or(200);
        let seed = env_u64("FRAZIL_CRASH_SEED").unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
        println!("{NAME}: {cycles} cycles, FRAZIL_CRASH_SEED={seed}");
        let root_dir = tempfile::tempdir().unwrap();
        let root = root_dir.path();
        fs::write(root.join("status"), b"-").unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut rng = Rng(seed);
        let mut seen = Seen::default();
        let mut kills: BTreeMap<&str, u64> = BTreeMap::new();
        let mut kills_after_ready = 0;
        let started = Instant::now();

        for cycle in 0..cycles {
            // Every 8th cycle is killed right after spawn, and the cycle before it is not
            // checked, so that the child's own open has a crash to repair when it is killed.
            let early = cycle % 8 == 7;
            let check_after = cycle % 8 != 6 || cycle + 1 == cycles;
            File::options()
                .write(true)
                .open(root.join("status"))
                .unwrap()
                .write_at(b"-", 0)
                .unwrap();
            let stderr = File::create(root.join("child.stderr")).unwrap();
            let mut child = Command::new(&exe)
                .env(CHILD_ENV, root)
                .env("FRAZIL_CRASH_CYCLE", cycle.to_string())
                .env("FRAZIL_CRASH_SEED", rng.next().to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr)
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    if line.is_ok_and(|l| l == "ready") {
                        let _ = tx.send(());
                    }
                }
            });
            let child_stderr = || fs::read_to_string(root.join("child.stderr")).unwrap_or_default();
            if early {
                std::thread::sleep(Duration::from_micros(rng.below(15_000)));
            } else {
                if rx.recv_timeout(Duration::from_secs(30)).is_err() {
                    let _ = child.kill();
                    let status = child.wait().unwrap();
                    panic!(
                        "reopen_never_fails: cycle {cycle}: the child never became ready ({status}): {}",
                        child_stderr()
                    );
                }
                kills_after_ready += 1;
                std::thread::sleep(Duration::from_micros(1_000 + rng.below(39_000)));
            }
            child.kill().unwrap(); // SIGKILL
            let status = child.wait().unwrap();
            assert_eq!(
                status.signal(),
                Some(9),
                "cycle {cycle}: the child exited by itself ({status}): {}",
                child_stderr()
            );
            let mut op = [0u8];
            File::open(root.join("status"))
                .unwrap()
                .read_exact_at(&mut op, 0)
                .unwrap();
            *kills.entry(op_name(op[0])).or_default() += 1;
            if check_after {
                check(
                    root,
                    &mut seen,
                    &format!("after kill {cycle} (during {})", op_name(op[0])),
                );
            }
        }

        let journal = &seen.journal;
        let elapsed = started.elapsed();
        println!(
            "{NAME}: {cycles} kills in {:.1} s ({} after the child's open finished, {} right after spawn), {} reopen checks",
            elapsed.as_secs_f64(),
            kills_after_ready,
            cycles - kills_after_ready,
            seen.checks
        );
        println!("{NAME}: kills by operation in progress:");
        for (op, n) in &kills {
            println!("  {op:<18} {n}");
        }
        println!(
            "{NAME}: {} registers journaled, {} commits finished, {} quarantines; recovery removed {} orphan(s), found {} temp file(s) and {} pending commit(s); at most {} records listed",
            journal.registered.len(),
            journal.finished.len(),
            journal.quarantine_asked.len(),
            seen.orphans_removed,
            seen.temp_files_left,
            seen.pending_found,
            seen.records_max
        );
    }
}
