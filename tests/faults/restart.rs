//! The catalog restarted under `frazil run`.

use super::*;

/// True while `pid` runs and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// A rustberg this test started again; stopped on drop.
struct Catalog {
    pid: u32,
    child: Option<Child>,
}

impl Catalog {
    /// SIGTERM (a graceful restart), or SIGKILL with `hard`.
    fn stop(&mut self, hard: bool) {
        let _ = Command::new("kill")
            .args([if hard { "-KILL" } else { "-TERM" }, &self.pid.to_string()])
            .status();
        let start = Instant::now();
        while alive(self.pid) && start.elapsed() < Duration::from_secs(20) {
            if let Some(c) = self.child.as_mut() {
                let _ = c.try_wait();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(self.pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// rustberg again, as tests/servers/start.sh starts it (same config file, so the same port and catalog).
    fn start(state: &Path, url: &str) -> Catalog {
        let tools = std::env::var_os("FRAZIL_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/frazil/tools")
            });
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.join("logs/rustberg-restarted.log"))
            .unwrap();
        let mut cmd = Command::new(tools.join("bin/rustberg"));
        cmd.args(["--dev", "--no-auth", "--insecure-http", "--config"])
            .arg(state.join("rustberg.toml"))
            .current_dir(state.join("catalog"))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for v in [
            "RUSTBERG_CONFIG",
            "RUSTBERG_HOST",
            "RUSTBERG_PORT",
            "RUSTBERG_WAREHOUSE",
            "RUSTBERG_CATALOG_URL",
            "RUSTBERG_TENANT_ID",
            "RUSTBERG_TLS_CERT",
            "RUSTBERG_TLS_KEY",
        ] {
            cmd.env_remove(v);
        }
        let child = cmd.spawn().expect("start rustberg");
        let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
        let up = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        assert!(up, "rustberg did not come back on {url}");
        Catalog {
            pid: child.id(),
            child: Some(child),
        }
    }
}

impl Drop for Catalog {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop(false);
        }
    }
}

/// Rows in a table now, as pyiceberg sees them (0 while it cannot be read).
fn rows_now(s: &Servers, table: &str) -> usize {
    let out = Command::new(venv_python())
        .arg(repo().join("tests/check/read_table.py"))
        .args([
            "--catalog",
            s.get("FRAZIL_CATALOG"),
            "--namespace",
            "edge",
            "--table",
            table,
            "--reader",
            "pyiceberg",
        ])
        .args(["--warehouse", s.get("FRAZIL_WAREHOUSE")])
        .args([
            "--s3-endpoint",
            s.get("FRAZIL_S3_ENDPOINT"),
            "--s3-access-key",
            s.get("FRAZIL_S3_ACCESS_KEY"),
        ])
        .args([
            "--s3-secret-key",
            s.get("FRAZIL_S3_SECRET_KEY"),
            "--s3-region",
            s.get("FRAZIL_S3_REGION"),
        ])
        .arg("--out")
        .arg(s.dir.path().join(format!("{table}-poll.jsonl")))
        .output()
        .expect("run read_table.py");
    let summary: Option<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok());
    summary.and_then(|v| v["rows"].as_u64()).unwrap_or(0) as usize
}

#[test]
fn the_catalog_restarted_mid_run() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let url = servers.get("FRAZIL_CATALOG").to_string();
    let state = servers.dir.path().join("servers");
    const TOPIC: &str = "restarts";
    block_on(create_topic(&kafka, TOPIC, 2));
    let config = busy_config(
        &servers,
        "restarts",
        TOPIC,
        "commit_interval = \"1s\"\nrequest_timeout = \"5s\"",
    );
    let log = logs_dir("catalog-restart").join("run.log");
    let mut rng = fastrand::Rng::new();

    let mut run = spawn_frazil("run", &config, &log);
    let mut expected = block_on(produce(&kafka, TOPIC, 2, 0..1_000));
    assert!(
        wait_until(Duration::from_secs(60), || rows_now(&servers, TOPIC)
            == 1_000),
        "first events did not land:\n{}",
        tail(&read_log(&log), 40)
    );

    // The first catalog is the one start.sh started; later ones are ours.
    let mut catalog = Catalog {
        pid: servers.get("FRAZIL_CATALOG_PID").parse().unwrap(),
        child: None,
    };
    let restarts = 4;
    let mut next = 1_000u64;
    let commit_post = format!("ureq::run: POST {url}/");
    let mut how = Vec::new();
    for r in 0..restarts {
        // New events; the catalog goes away while they are committed: on even restarts SIGTERM at
        // a random moment, on odd ones SIGKILL as soon as frazil's log shows its next catalog POST
        // (a commit on the wire), so the catalog dies with the commit applied or not.
        let post = commit_post.clone();
        let mut watch = LogWatch::new(&log, Box::new(move |l| l.contains(&post)));
        let posts = watch.hits();
        expected.extend(block_on(produce(&kafka, TOPIC, 2, next..next + 1_500)));
        next += 1_500;
        let hard = r % 2 == 1;
        if hard {
            let start = Instant::now();
            while watch.hits() == posts {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "no catalog POST seen:\n{}",
                    tail(&read_log(&log), 30)
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            // rustberg takes some tens of ms per commit: the kill lands before or after it applies.
            std::thread::sleep(Duration::from_millis(rng.u64(0..=60)));
            how.push("SIGKILL during a commit POST");
        } else {
            std::thread::sleep(Duration::from_millis(rng.u64(0..2_000)));
            how.push("SIGTERM at a random moment");
        }
        catalog.stop(hard);
        // More while it is down: they wait in the spool.
        expected.extend(block_on(produce(&kafka, TOPIC, 2, next..next + 500)));
        next += 500;
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            run.child().try_wait().unwrap().is_none(),
            "frazil run exited while the catalog was down:\n{}",
            tail(&read_log(&log), 40)
        );
        catalog = Catalog::start(&state, &url);
        let total = expected.len();
        assert!(
            wait_until(Duration::from_secs(90), || rows_now(&servers, TOPIC)
                >= total),
            "restart {r}: events did not land after the catalog came back:\n{}",
            tail(&read_log(&log), 40)
        );
    }
    assert!(
        Command::new("kill")
            .args(["-TERM", &run.child().id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let st = run.wait();
    let text = read_log(&log);
    assert_eq!(
        st.code(),
        Some(0),
        "frazil run after SIGTERM: {}\n{}",
        exit_text(st),
        tail(&text, 40)
    );
    assert_table_exactly(&servers, TOPIC, &expected);
    let summaries = assert_no_commit_twice(&servers, TOPIC);
    assert_eq!(
        offsets_of(&summaries, "test-gateway", TOPIC),
        ends(&expected)
    );
    println!(
        "catalog restarts: {restarts} restarts under `frazil run` ({how:?}), {} events exactly once in {} snapshots; frazil logged {} failed publishes, {} unknown commit outcomes, {} pending commits found landed, {} not",
        expected.len(),
        summaries.len(),
        count(&text, "publish: "),
        count(&text, "outcome unknown"),
        count(&text, "had landed"),
        count(&text, "did not land"),
    );
    drop(catalog);
}
