//! `cargo bench -p frazil-spool`: what the spool's durability costs, next to a baseline
//! measured in the same run on the same filesystem.
//!
//! - register throughput: the caller writes the bytes into `temp_path()`, then `register`
//!   (fsync, CRC read, rename, fsync of data/, one durable redb commit) — the whole durable path;
//! - baseline: the same bytes written to a temporary name, fsynced, renamed, directory fsynced,
//!   with no index;
//! - durable index commits per second (`mark_uploaded`, `begin_commit` + `finish_commit`),
//!   against a baseline of small write + fdatasync.
//!
//! Spool and baseline batches alternate, so drift of the disk affects both alike. The files go
//! to a directory under Cargo's target dir (a real disk, not a tmpfs /tmp), or to
//! `FRAZIL_BENCH_DIR` (e.g. the SD card of a gateway). About 30 s, plus cleanup.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use frazil_spool::{FileMeta, FileState, PendingCommit, Spool, SpoolOptions};

/// Rounds of (baseline batch, spool batch), alternating which goes first.
const ROUNDS: usize = 6;
/// Time spent writing per batch: files are written until it is used up.
const BATCH: Duration = Duration::from_millis(500);

fn meta(first: i64) -> FileMeta {
    FileMeta {
        table: "db.events".into(),
        topic: "events".into(),
        partition: 0,
        first_offset: first,
        last_offset: first,
        next_offset: first + 1,
        rows: 1,
        // A realistic Iceberg DataFile as JSON is 1-2 KB.
        extra: vec![b'{'; 1500],
    }
}

fn body(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn fsync_dir(d: &Path) {
    File::open(d).unwrap().sync_all().unwrap();
}

/// Mark every Written file uploaded, commit them and remove them (not timed).
fn drain(spool: &Spool, n: &mut u64) {
    let ids: Vec<u64> =
        spool.files().unwrap().into_iter().filter(|f| f.state == FileState::Written).map(|f| f.id).collect();
    if ids.is_empty() {
        return;
    }
    for &id in &ids {
        spool.mark_uploaded(id, &format!("s3://b/{id}")).unwrap();
    }
    *n += 1;
    let c = format!("drain-{n}");
    spool.begin_commit(&PendingCommit { table: "db.events".into(), commit_id: c.clone(), ids }).unwrap();
    spool.finish_commit(&c).unwrap();
    spool.remove_committed().unwrap();
}

struct Tally {
    files: usize,
    bytes: u64,
    time: Duration,
}

impl Tally {
    fn new() -> Tally {
        Tally { files: 0, bytes: 0, time: Duration::ZERO }
    }
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.time.as_secs_f64()
    }
    fn per_s(&self) -> f64 {
        self.files as f64 / self.time.as_secs_f64()
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported (one run, ~40 s).
    let base_dir: PathBuf = std::env::var_os("FRAZIL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    fs::create_dir_all(&base_dir).unwrap();
    let root = tempfile::tempdir_in(&base_dir).unwrap();
    let (spool, _) = Spool::open(&root.path().join("spool"), SpoolOptions::default()).unwrap();
    let plain = root.path().join("plain");
    let (plain_tmp, plain_data) = (plain.join("tmp"), plain.join("data"));
    fs::create_dir_all(&plain_tmp).unwrap();
    fs::create_dir_all(&plain_data).unwrap();
    fsync_dir(&plain);
    println!("frazil-spool bench in {}", root.path().display());
    println!();
    println!("register: write into temp_path + register (fsync, CRC, rename, fsync dir, redb commit)");
    println!("baseline: write + fsync + rename + fsync dir, no index");
    println!(
        "{:>8} | {:>10} {:>9} | {:>10} {:>9} | {:>8}",
        "size", "spool MB/s", "files/s", "base MB/s", "files/s", "ratio"
    );

    let mut first = 0i64;
    let mut drains = 0u64;
    let mut plain_n = 0u64;
    for (label, size) in [("64 KiB", 64 << 10), ("1 MiB", 1 << 20), ("8 MiB", 8 << 20)] {
        let data = body(size);
        let (mut s, mut b) = (Tally::new(), Tally::new());
        for round in 0..ROUNDS {
            for side in [round % 2, 1 - round % 2] {
                if side == 0 {
                    // Baseline batch.
                    let t = Instant::now();
                    while t.elapsed() < BATCH {
                        plain_n += 1;
                        let tmp = plain_tmp.join(format!("{plain_n}.tmp"));
                        let mut f = File::create(&tmp).unwrap();
                        f.write_all(&data).unwrap();
                        f.sync_all().unwrap();
                        drop(f);
                        fs::rename(&tmp, plain_data.join(format!("{plain_n:020}.parquet"))).unwrap();
                        fsync_dir(&plain_data);
                        b.files += 1;
                    }
                    b.time += t.elapsed();
                    for e in fs::read_dir(&plain_data).unwrap() {
                        fs::remove_file(e.unwrap().path()).unwrap();
                    }
                    fsync_dir(&plain_data);
                } else {
                    // Spool batch.
                    let t = Instant::now();
                    while t.elapsed() < BATCH {
                        let tmp = spool.temp_path();
                        let mut f = File::create(&tmp).unwrap();
                        f.write_all(&data).unwrap();
                        drop(f);
                        spool.register(&tmp, meta(first)).unwrap();
                        first += 1;
                        s.files += 1;
                    }
                    s.time += t.elapsed();
                    drain(&spool, &mut drains);
                }
            }
        }
        s.bytes = (s.files * size) as u64;
        b.bytes = (b.files * size) as u64;
        println!(
            "{label:>8} | {:>10.1} {:>9.1} | {:>10.1} {:>9.1} | {:>7.2}x",
            s.mb_s(),
            s.per_s(),
            b.mb_s(),
            b.per_s(),
            s.mb_s() / b.mb_s()
        );
    }

    // Durable commits. Register a pool of small files first (not timed).
    println!();
    println!("durable index commits (each one redb transaction, Durability::Immediate)");
    let budget = Duration::from_millis(600);
    let (mut up, mut pairs, mut sync) = (Tally::new(), Tally::new(), Tally::new());
    let small = body(1024);
    let probe = plain.join("fsync-probe");
    let pf = File::create(&probe).unwrap();
    for _ in 0..ROUNDS {
        // Baseline: 1 KiB write at the same offset + fdatasync, as small as a commit gets.
        let t = Instant::now();
        while t.elapsed() < budget {
            use std::os::unix::fs::FileExt;
            pf.write_all_at(&small, 0).unwrap();
            pf.sync_data().unwrap();
            sync.files += 1;
        }
        sync.time += t.elapsed();

        let mut ids = Vec::new();
        for _ in 0..400 {
            let tmp = spool.temp_path();
            fs::write(&tmp, &small).unwrap();
            ids.push(spool.register(&tmp, meta(first)).unwrap().id);
            first += 1;
        }
        // mark_uploaded: one commit each.
        let t = Instant::now();
        let mut uploaded = Vec::new();
        for &id in &ids {
            if t.elapsed() >= budget {
                break;
            }
            spool.mark_uploaded(id, &format!("s3://b/{id}")).unwrap();
            uploaded.push(id);
        }
        up.time += t.elapsed();
        up.files += uploaded.len();
        // begin_commit + finish_commit of one file: two commits per pair.
        let t = Instant::now();
        for &id in &uploaded {
            if t.elapsed() >= budget {
                break;
            }
            drains += 1;
            let c = format!("pair-{drains}");
            spool
                .begin_commit(&PendingCommit { table: "db.events".into(), commit_id: c.clone(), ids: vec![id] })
                .unwrap();
            spool.finish_commit(&c).unwrap();
            pairs.files += 2;
        }
        pairs.time += t.elapsed();
        drain(&spool, &mut drains);
        // Uploaded leftovers: commit them too, then remove everything.
        let left: Vec<u64> = spool
            .files()
            .unwrap()
            .into_iter()
            .filter(|f| matches!(f.state, FileState::Uploaded { .. }))
            .map(|f| f.id)
            .collect();
        if !left.is_empty() {
            drains += 1;
            let c = format!("left-{drains}");
            spool.begin_commit(&PendingCommit { table: "db.events".into(), commit_id: c.clone(), ids: left }).unwrap();
            spool.finish_commit(&c).unwrap();
        }
        spool.remove_committed().unwrap();
    }
    let row = |name: &str, t: &Tally| {
        println!(
            "  {name:<36} {:>8.0}/s  {:>7.2} ms each  {:>5.2}x baseline",
            t.per_s(),
            1e3 / t.per_s(),
            t.per_s() / sync.per_s()
        );
    };
    row("mark_uploaded", &up);
    row("begin_commit + finish_commit", &pairs);
    row("baseline: 1 KiB write + fdatasync", &sync);
}
