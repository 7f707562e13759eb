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
                    Intent { partition: n(2) as i32, first: n(3), next: n(4), bytes: n(5) as u64, crc: n(6) as u32 },
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
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
}

/// Reopens the spool after a kill and checks every invariant (see the file's doc).
fn check(root: &Path, dir: &Path, seen: &mut Seen, after: &str) {
    let dir = dir.to_path_buf();
    seen.journal.update(&root.join("journal"), &mut seen.journal_read);
    let j = std::mem::take(&mut seen.journal);
    seen.temp_files_left += list(&dir.join("tmp")).len() as u64;

    let (spool, rec) =
        Spool::open(&dir, SpoolOptions::default()).unwrap_or_else(|e| panic!("reopen_never_fails: {after}: {e}"));
    seen.checks += 1;
    seen.orphans_removed += rec.orphans_removed.len() as u64;
    seen.pending_found += rec.pending.len() as u64;
    assert!(rec.missing.is_empty(), "reopen_never_fails: {after}: files reported missing: {:?}", rec.missing);
    assert!(list(&dir.join("tmp")).is_empty(), "reopen_never_fails: {after}: tmp/ not emptied");

    let files = spool.files().unwrap();
    seen.records_max = seen.records_max.max(files.len());
    let by_id: HashMap<u64, &frazil_spool::SpoolFile> = files.iter().map(|f| (f.id, f)).collect();
    let mut in_data = BTreeSet::new();
    let mut in_quarantine = BTreeSet::new();
    let mut data_bytes = 0;
    let mut tags_landed: HashSet<String> = j.registered.values().cloned().collect();

    for f in &files {
        let ctx = format!("{after}: record {}", f.id);
        // every_record_is_explained: its register was journaled, with these exact contents.
        let tag = String::from_utf8(f.meta.extra.clone()).unwrap();
        let i = j
            .intents
            .get(&tag)
            .unwrap_or_else(|| panic!("every_record_is_explained: {ctx}: tag {tag:?} was never registered"));
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
        assert_eq!((f.bytes, f.crc32c), (i.bytes, i.crc), "every_record_is_explained: {ctx}: size/crc");
        match j.registered.get(&f.id) {
            Some(t) => assert_eq!(t, &tag, "every_record_is_explained: {ctx}: journaled with another tag"),
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
                let finishing = j.finishing.iter().any(|c| j.begun.get(c).is_some_and(|ids| ids.contains(&f.id)));
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
                    let q = fs::read(&f.path)
                        .unwrap_or_else(|e| panic!("nothing_lost: {ctx}: quarantined file {}: {e}", f.path.display()));
                    assert_eq!(crc32c::crc32c(&q), f.crc32c, "nothing_lost: {ctx}: quarantined bytes");
                } else {
                    assert!(f.path.exists(), "nothing_lost: {ctx}: quarantined file gone");
                }
                in_quarantine.insert(f.path.clone());
                continue;
            }
            other => panic!("{ctx}: unknown state {other:?}"),
        }
        // every_listed_file_is_intact
        assert_eq!(f.path.parent().unwrap(), dir.join("data"));
        let got = spool.read_verified(f.id).unwrap_or_else(|e| panic!("every_listed_file_is_intact: {ctx}: {e}"));
        assert!(
            got == content(&tag, i.bytes as usize),
            "every_listed_file_is_intact: {ctx}: bytes differ from what the child wrote"
        );
        in_data.insert(f.path.clone());
        data_bytes += f.bytes;
    }
    assert_eq!(list(&dir.join("data")), in_data, "reopen_never_fails: {after}: data/ holds exactly the listed files");
    let q_files: BTreeSet<PathBuf> =
        list(&dir.join("quarantine")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
    assert_eq!(q_files, in_quarantine, "reopen_never_fails: {after}: quarantine/");
    assert_eq!(spool.usage().unwrap().bytes, data_bytes, "{after}: usage().bytes");

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
        assert!(!j.finished.contains(&p.commit_id), "{after}: finished commit {} still pending", p.commit_id);
        for id in &p.ids {
            assert!(
                matches!(by_id.get(id).map(|f| &f.state), Some(FileState::Uploaded { .. })),
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
        let o = want.entry((TOPIC.to_string(), i.partition)).or_insert(i.next);
        *o = (*o).max(i.next);
    }
    assert_eq!(offsets, want, "offsets_never_go_backwards: {after}: offsets vs journal");
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

pub fn run(mode: Mode) {
    let name = mode.name();
    let cycles = match mode {
        Mode::Kill => env_u64("FRAZIL_CRASH_CYCLES"),
        Mode::PowerCut => env_u64("FRAZIL_POWER_CUTS"),
    }
    .unwrap_or(200);
    let seed = env_u64("FRAZIL_CRASH_SEED")
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    println!("{name}: {cycles} cycles, FRAZIL_CRASH_SEED={seed}");
    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path();
    // Power cuts: the spool lives one level down on the mount, so its own name must be made
    // durable too (open fsyncs its parent).
    let mut power = (mode == Mode::PowerCut).then(|| {
        fs::create_dir(root.join("power")).unwrap();
        frazil_powerfs::PowerFs::mount(&root.join("power"))
            .unwrap_or_else(|e| panic!("{name}: {e} (this test needs /dev/fuse and root)"))
    });
    let spool_dir = match &power {
        Some(p) => p.path().join("spool"),
        None => root.join("spool"),
    };
    let (mut torn, mut cuts_that_lost) = (0u64, 0u64);
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
        File::options().write(true).open(root.join("status")).unwrap().write_at(b"-", 0).unwrap();
        let stderr = File::create(root.join("child.stderr")).unwrap();
        let mut child = child_command(&exe)
            .env(CHILD_ENV, root)
            .env(SPOOL_ENV, &spool_dir)
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
        File::open(root.join("status")).unwrap().read_exact_at(&mut op, 0).unwrap();
        *kills.entry(op_name(op[0])).or_default() += 1;
        if let Some(p) = &mut power {
            let tear = (rng.below(2) == 0).then(|| rng.next());
            let report = p.cut(tear).unwrap_or_else(|e| panic!("{name}: cycle {cycle}: {e}"));
            cuts_that_lost += u64::from(report.lost_anything());
            torn += u64::from(report.torn.is_some_and(|(_, landed, _)| landed > 0));
        }
        if check_after {
            check(root, &spool_dir, &mut seen, &format!("after {name} {cycle} (during {})", op_name(op[0])));
        }
    }

    let journal = &seen.journal;
    let elapsed = started.elapsed();
    println!(
        "{name}: {cycles} kills in {:.1} s ({} after the child's open finished, {} right after spawn), {} reopen checks",
        elapsed.as_secs_f64(),
        kills_after_ready,
        cycles - kills_after_ready,
        seen.checks
    );
    if let Some(p) = &power {
        let stats = p.stats();
        println!(
            "{name}: {cuts_that_lost} of {cycles} cuts threw unsynced changes away, {torn} tore a write; the child and checks made {} file and {} directory fsyncs",
            stats.file_syncs, stats.dir_syncs
        );
        // The filesystem must really forget: cuts that lose nothing would prove nothing.
        assert!(cuts_that_lost * 2 > cycles, "{name}: only {cuts_that_lost} of {cycles} cuts lost anything");
    }
    println!("{name}: kills by operation in progress:");
    for (op, n) in &kills {
        println!("  {op:<18} {n}");
    }
    println!(
        "{name}: {} registers journaled, {} commits finished, {} quarantines; recovery removed {} orphan(s), found {} temp file(s) and {} pending commit(s); at most {} records listed",
        journal.registered.len(),
        journal.finished.len(),
        journal.quarantine_asked.len(),
        seen.orphans_removed,
        seen.temp_files_left,
        seen.pending_found,
        seen.records_max
    );
}

/// The child is this test binary again. Under qemu-user (cross/test.sh) a foreign binary cannot
/// be exec'd directly, so `FRAZIL_RUNNER` (e.g. `qemu-aarch64-static -L /usr/aarch64-linux-gnu`)
/// goes before it; killing the emulator kills the child at the same instant.
fn child_command(exe: &Path) -> Command {
    let runner = std::env::var("FRAZIL_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(exe);
            cmd
        }
        None => Command::new(exe),
    }
}
