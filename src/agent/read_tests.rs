//! The read state in-process: a running agent answers on its socket with its hot rows and its
//! files, which together hold every taken offset once; with no agent, the index answers alone.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;

use super::tests::{config, until};
use super::{Agent, Shared};
use crate::decode::META_OFFSET;
use crate::read::{ReadState, gather};
use crate::source::memory::Topics;

/// Every offset of each partition in `state`'s pieces of `table`, from files and hot rows.
fn offsets_by_partition(state: &ReadState, table: &str) -> BTreeMap<i32, Vec<i64>> {
    let mut out: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for s in state.files.iter().map(|f| &f.span).chain(state.hot.iter().map(|h| &h.span)) {
        if s.table == table {
            out.entry(s.partition).or_default().extend(s.first_offset..=s.last_offset);
        }
    }
    out.values_mut().for_each(|v| v.sort_unstable());
    out
}

/// Topic `events` with `n` records in each of its `partitions`.
fn topics_with(partitions: i32, n: i64) -> Topics {
    let topics = Topics::default();
    topics.create("events", partitions);
    for p in 0..partitions {
        for i in 0..n {
            topics.produce("events", p, format!(r#"{{"device":"d{p}","reading":{i}}}"#).as_bytes());
        }
    }
    topics
}

#[test]
fn a_running_agent_serves_its_hot_rows_and_files_which_hold_every_taken_offset_once() {
    let dir = tempfile::tempdir().unwrap();
    // No commit can land (the warehouse is a plain file), so the files stay for the last check.
    std::fs::write(dir.path().join("warehouse"), b"not a directory").unwrap();
    // Small fetches fill files of about 100 rows; what is left stays in memory (no age limit).
    let mut cfg = config(dir.path(), "fetch_max_bytes = \"1KiB\"", "file_max_rows = 100\nfile_max_age = \"1h\"");
    cfg.catalog.commit_interval = std::time::Duration::from_secs(3600);
    let topics = topics_with(2, 230);
    let bad = topics.produce("events", 1, b"{not json");
    let agent = Agent::with_source(cfg.clone(), topics.connect()).unwrap();
    let shared: &Shared = &agent.shared;
    let socket = dir.path().join("spool").join(crate::read::SOCKET);
    let spool = cfg.spool.clone();
    let mut state = None;
    agent
        .run_until(async {
            until("every record is taken", || shared.report.borrow().events == 461).await;
            // The client blocks; the agent answers on this executor meanwhile.
            let spool = spool.clone();
            state = Some(blocking::unblock(move || gather(&spool)).await.unwrap());
        })
        .unwrap();
    let state = state.unwrap();
    assert!(state.agent_running);
    assert!(!socket.exists(), "the socket is removed when the agent stops");
    let by_partition = offsets_by_partition(&state, "events");
    assert_eq!(by_partition[&0], (0..230).collect::<Vec<_>>(), "partition 0: each taken offset once");
    assert_eq!(by_partition[&1], (0..=bad).collect::<Vec<_>>(), "partition 1: each taken offset once");
    assert!(state.files.iter().all(|f| f.state == "written" && f.path.exists()), "{:?}", state.files);
    assert!(state.files.len() >= 4, "{:?}", state.files);

    // The hot rows are the rows themselves, with their offsets.
    let hot: Vec<_> = state.hot.iter().filter(|h| h.span.table == "events").collect();
    assert_eq!(hot.len(), 2, "{:?}", state.hot.iter().map(|h| &h.span).collect::<Vec<_>>());
    for h in hot {
        let offsets: Vec<i64> = h
            .batches
            .iter()
            .flat_map(|b| b.column_by_name(META_OFFSET).unwrap().as_primitive::<Int64Type>().values().to_vec())
            .collect();
        let expected: Vec<i64> =
            (h.span.first_offset..=h.span.last_offset).filter(|o| h.span.partition == 0 || *o != bad).collect();
        assert_eq!(offsets, expected, "partition {}", h.span.partition);
        assert_eq!(h.span.rows, expected.len() as u64);
    }
    let dead: Vec<_> = state.hot.iter().filter(|h| h.span.table == "events__dlq").collect();
    assert_eq!(dead.len(), 1);
    let offsets = dead[0].batches[0].column_by_name("offset").unwrap().as_primitive::<Int64Type>();
    assert_eq!(offsets.values().to_vec(), vec![bad], "the bad record, from memory, with its offset");
    assert_eq!(agent.shared.gauges.reads_served.get(), 1);
    assert!(!agent.shared.gauges.read_pause_max.get().is_zero());
    drop(agent);

    // With no agent running, the index lists the files: the stop spooled the hot rows too.
    let state = gather(&cfg.spool).unwrap();
    assert!(!state.agent_running && state.hot.is_empty());
    assert_eq!(offsets_by_partition(&state, "events")[&0], (0..230).collect::<Vec<_>>());
    assert_eq!(offsets_by_partition(&state, "events")[&1], (0..=bad).collect::<Vec<_>>());
}

#[test]
fn committed_files_kept_for_offline_queries_answer_below_the_committed_offset_only_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "fetch_max_bytes = \"1KiB\"", "file_max_rows = 50");
    cfg.spool.keep_committed = std::time::Duration::from_secs(3600);
    let topics = topics_with(2, 120);
    let r = Agent::with_source(cfg.clone(), topics.connect()).unwrap().flush().unwrap();
    assert_eq!((r.events, r.pending_files), (240, 0), "{r:?}");
    let state = gather(&cfg.spool).unwrap();
    assert!(state.files.iter().all(|f| f.state == "committed" && f.path.exists()), "{:?}", state.files);
    let by_partition = offsets_by_partition(&state, "events");
    assert_eq!(by_partition[&0], (0..120).collect::<Vec<_>>(), "the kept files reach back to offset 0");

    // Online, the table's committed offsets leave nothing to take from them; offline, all of it.
    let pieces: Vec<crate::read::Piece> = state.files.iter().map(|f| f.span.piece()).collect();
    let table = smol::block_on(async_compat::Compat::new(super::tests::load(&cfg, "events"))).unwrap();
    let committed = crate::commit::offsets_as_of_current(table.metadata(), &cfg.agent_id);
    assert_eq!(committed, BTreeMap::from([(("events".to_string(), 0), 120), (("events".to_string(), 1), 120)]));
    assert!(crate::read::plan(&committed, &pieces).keep.iter().all(Option::is_none));
    assert!(crate::read::plan(&BTreeMap::new(), &pieces).keep.iter().all(Option::is_some));

    // Over the byte cap, the oldest kept files go at the next cycle.
    cfg.spool.keep_committed_bytes = 0;
    for p in 0..2 {
        topics.produce("events", p, br#"{"device":"late","reading":-1}"#);
    }
    Agent::with_source(cfg.clone(), topics.connect()).unwrap().flush().unwrap();
    assert!(gather(&cfg.spool).unwrap().files.is_empty(), "a cap of 0 keeps nothing");
}

#[test]
fn a_stale_socket_means_no_agent_and_an_agent_of_another_version_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", "keep_committed = \"1h\"");
    let topics = topics_with(1, 1);
    Agent::with_source(cfg.clone(), topics.connect()).unwrap().flush().unwrap();
    let socket = cfg.spool.dir.join(crate::read::SOCKET);

    // An agent killed with SIGKILL leaves its socket: nobody listens on it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let state = gather(&cfg.spool).unwrap();
    assert!(!state.agent_running && state.files.len() == 1, "{state:?}");

    // Something answering in another version of the protocol.
    std::fs::remove_file(&socket).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let other = std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        let (mut conn, _) = listener.accept().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&conn).read_line(&mut line).unwrap();
        conn.write_all(b"{\"version\":2,\"agent\":\"x\",\"hot\":[],\"files\":[]}\n").unwrap();
    });
    let e = gather(&cfg.spool).unwrap_err().to_string();
    other.join().unwrap();
    assert!(e.contains("version 2") && e.contains(crate::read::SOCKET), "{e}");
}
