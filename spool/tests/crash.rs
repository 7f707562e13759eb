//! `kill -9` and power-cut crash tests.
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
//! `power_cut_cycles` runs the same child with its spool on a `frazil-powerfs` mount, a FUSE
//! filesystem that keeps every change volatile until it is fsynced: after each kill the parent
//! cuts the power (throws away everything unsynced; on half the cuts a prefix of the last
//! unsynced write lands, torn at a page boundary), remounts, and checks the same invariants. A
//! `kill -9` alone keeps the page cache; this is what proves each fsync is there. The journal
//! stays on the real disk: it is the record of what the child saw returned.
//!
//! 200 cycles each by default; `FRAZIL_CRASH_CYCLES=5000 cargo test -p frazil-spool --test crash`
//! for a soak (`FRAZIL_POWER_CUTS` for the power cuts), `FRAZIL_CRASH_SEED` to repeat a run's
//! choices (kill timing still varies).

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

const CHILD_ENV: &str = "FRAZIL_CRASH_CHILD";
/// The spool directory the child opens (on the power-cut mount, or beside the journal).
const SPOOL_ENV: &str = "FRAZIL_CRASH_SPOOL";
const TABLE: &str = "db.events";
const TOPIC: &str = "events";
const PARTITIONS: u64 = 3;
/// The child stops registering while this many files wait for upload/commit, bounding data/.
const MAX_LIVE: usize = 24;

/// The two tests of this binary: the same child and checks, killed by SIGKILL alone, or by a
/// power cut of the filesystem the spool is on.
#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Kill,
    PowerCut,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Kill => "kill_dash_nine_cycles",
            Mode::PowerCut => "power_cut_cycles",
        }
    }
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child::run(Path::new(&dir));
        return;
    }
    // Behave like a libtest binary towards `cargo test [filter] -- [--list|--ignored|--skip ..]`.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let modes = [Mode::Kill, Mode::PowerCut];
    if args.iter().any(|a| a == "--list") {
        for m in modes {
            println!("{}: test", m.name());
        }
        return;
    }
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--skip" => skips.extend(it.next().cloned()),
            "--test-threads" | "--format" | "--color" | "-Z" => {
                it.next();
            }
            a if a.starts_with('-') => {}
            a => filters.push(a.to_string()),
        }
    }
    let exact = args.iter().any(|a| a == "--exact");
    let matches = |f: &String, name: &str| if exact { f == name } else { name.contains(f.as_str()) };
    let selected: Vec<Mode> = modes
        .into_iter()
        .filter(|m| filters.is_empty() || filters.iter().any(|f| matches(f, m.name())))
        .filter(|m| !skips.iter().any(|f| matches(f, m.name())))
        .filter(|_| !args.iter().any(|a| a == "--ignored"))
        .collect();
    println!("running {} test(s)", selected.len());
    for m in selected {
        parent::run(m);
        println!("test {} ... ok", m.name());
    }
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
    let seed = tag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
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

#[path = "crash/child.rs"]
mod child;

#[path = "crash/parent.rs"]
mod parent;
