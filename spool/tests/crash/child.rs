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
    let status = OpenOptions::new().write(true).open(root.join("status")).unwrap();
    let _ = status.write_at(b"o", 0);
    let dir = std::env::var_os(SPOOL_ENV).map(PathBuf::from).unwrap();
    let (spool, rec) =
        Spool::open(&dir, SpoolOptions::default()).unwrap_or_else(|e| panic!("child: open after a kill failed: {e}"));
    let mut journal = OpenOptions::new().create(true).append(true).read(true).open(root.join("journal")).unwrap();
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
        let free_uploaded = ids(&|f| matches!(f.state, FileState::Uploaded { .. }) && !in_pending.contains(&f.id));
        let committed = ids(&|f| f.state == FileState::Committed);
        let readable = ids(&|f| !matches!(f.state, FileState::Quarantined { .. }));
        let live = files.iter().filter(|f| matches!(f.state, FileState::Written | FileState::Uploaded { .. })).count();
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
                self.journal.line(format!("b {commit_id} {}", list.join(",")));
                self.op(b'B');
                self.spool.begin_commit(&PendingCommit { table: TABLE.into(), commit_id, ids }).unwrap();
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
                let want = content(std::str::from_utf8(&f.meta.extra).unwrap(), f.bytes as usize);
                self.op(b'V');
                let got = self.spool.read_verified(id).unwrap();
                assert!(got == want, "child: file {id} read back different bytes");
            }
        }
    }

    fn register(&mut self) {
        let p = self.rng.below(PARTITIONS) as i32;
        let cursor = self.spool.offsets().unwrap().get(&(TOPIC.to_string(), p)).copied().unwrap_or(0);
        // Now and then a replay of events already spooled (as after a crash).
        let back = if self.rng.below(10) == 0 { 1 + self.rng.below(5) as i64 } else { 0 };
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
        self.journal.line(format!("r {tag} {p} {first} {next} {size} {crc}"));
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
