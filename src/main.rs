//! The `frazil` command: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use frazil::agent::Agent;
use frazil::config::{Config, DEFAULT_PATH};

/// Exit codes, for cron and systemd wrappers.
mod exit {
    /// Everything taken from Kafka is committed.
    pub const OK: u8 = 0;
    /// Something failed that retrying will not fix.
    pub const FAILURE: u8 = 1;
    /// A link was down: data taken from Kafka is safe in the spool; try again later (EX_TEMPFAIL).
    pub const TRY_LATER: u8 = 75;
    /// Another frazil (`run` or `flush`) has the spool; this one did nothing.
    pub const BUSY: u8 = 73;
    /// The configuration is wrong (EX_CONFIG).
    pub const CONFIG: u8 = 78;
}

/// frazil moves Kafka events into Apache Iceberg tables, exactly once, through a local spool.
#[derive(FromArgs)]
struct Cli {
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Run(Run),
    Flush(Flush),
    Status(StatusCmd),
    Check(CheckCmd),
    Maintain(MaintainCmd),
    Query(#[allow(dead_code)] QueryCmd),
}

/// Maintain the tables once: merge their manifests when there are too many, expire old snapshots
/// (for cron and timers; `run` does it on its own every maintain_interval).
#[derive(FromArgs)]
#[argh(subcommand, name = "maintain")]
struct MaintainCmd {
    /// the configuration file (default /etc/frazil/frazil.toml)
    #[argh(option, default = "PathBuf::from(DEFAULT_PATH)")]
    config: PathBuf,
    /// only this table (repeat for more; default: the configured topics' tables and their dead-letter tables)
    #[argh(option)]
    table: Vec<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// SQL over the tables and what the agent holds now (memory, spool), exactly once, also offline;
/// runs frazil-query (see `frazil query --help` once installed)
#[derive(FromArgs)]
#[argh(subcommand, name = "query")]
struct QueryCmd {
    /// the SQL, then frazil-query's options: --config, --format table|csv|json|parquet, --offline
    #[argh(positional, greedy)]
    _args: Vec<String>,
}

/// Check the configuration and try the spool, broker, catalog and object store, one line each.
#[derive(FromArgs)]
#[argh(subcommand, name = "check")]
struct CheckCmd {
    /// the configuration file (default /etc/frazil/frazil.toml)
    #[argh(option, default = "PathBuf::from(DEFAULT_PATH)")]
    config: PathBuf,
}

/// Show what the spool holds, each table's last commit and each partition's lag (works offline too).
#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
struct StatusCmd {
    /// the configuration file (default /etc/frazil/frazil.toml)
    #[argh(option, default = "PathBuf::from(DEFAULT_PATH)")]
    config: PathBuf,
    /// print JSON
    #[argh(switch)]
    json: bool,
    /// read the spool only: do not ask the broker or the catalog
    #[argh(switch)]
    offline: bool,
}

/// Run continuously: fetch, spool, and commit on an interval until SIGTERM or SIGINT.
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
struct Run {
    /// the configuration file (default /etc/frazil/frazil.toml)
    #[argh(option, default = "PathBuf::from(DEFAULT_PATH)")]
    config: PathBuf,
}

/// Drain every partition to its current end, commit everything, exit (for cron and timers).
#[derive(FromArgs)]
#[argh(subcommand, name = "flush")]
struct Flush {
    /// the configuration file (default /etc/frazil/frazil.toml)
    #[argh(option, default = "PathBuf::from(DEFAULT_PATH)")]
    config: PathBuf,
    /// end cleanly after this long (e.g. 10m): what was taken is committed, the rest waits (exit 75)
    #[argh(option, from_str_fn(duration_arg))]
    max_duration: Option<std::time::Duration>,
}

fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    frazil::config::parse_duration(s).map_err(|e| format!("--max-duration: {e}"))
}

fn main() -> ExitCode {
    // `query` passes every argument through untouched: the options are frazil-query's.
    if std::env::args_os().nth(1).is_some_and(|a| a == "query") {
        let Err(e) = frazil::cli::query::exec_query(std::env::args_os().skip(2));
        eprintln!("frazil: {e}");
        return ExitCode::from(exit::FAILURE);
    }
    frazil::memory::tune();
    let cli: Cli = argh::from_env();
    if cli.version {
        println!("frazil {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    frazil::logging::init();
    let code = match cli.command {
        None => {
            eprintln!("frazil: say what to do: `frazil run`, `frazil flush` (see `frazil --help`)");
            exit::CONFIG
        }
        Some(Command::Run(r)) => execute(&r.config, |agent| agent.run_until(shutdown_signal())),
        Some(Command::Flush(f)) => execute(&f.config, |agent| agent.flush_within(f.max_duration)),
        Some(Command::Status(s)) => show_status(&s),
        Some(Command::Maintain(m)) => maintain(&m),
        Some(Command::Query(_)) => unreachable!("handled before parsing"),
        Some(Command::Check(c)) => match Config::load(&c.config) {
            Ok(cfg) => {
                let checked = frazil::cli::check(&cfg, &c.config);
                print!("{checked}");
                if checked.all_ok() { exit::OK } else { exit::TRY_LATER }
            }
            Err(e) => {
                println!("FAIL config: {e}");
                exit::CONFIG
            }
        },
    };
    ExitCode::from(code)
}

fn maintain(m: &MaintainCmd) -> u8 {
    let result = Config::load(&m.config).and_then(|cfg| frazil::cli::maintain::maintain(&cfg, &m.table));
    match result {
        Ok(reports) if m.json => {
            println!("{}", serde_json::to_string_pretty(&reports).expect("reports serialize"));
            exit::OK
        }
        Ok(reports) => {
            for r in reports {
                match &r.health {
                    Some(_) => println!("{r}"),
                    None => println!("table {}: not in the catalog yet", r.table),
                }
            }
            exit::OK
        }
        Err(e) => failed(&e, Some("nothing is lost, try again later")),
    }
}

fn execute(path: &std::path::Path, go: impl FnOnce(&Agent) -> frazil::Result<frazil::agent::Report>) -> u8 {
    let result = Config::load(path).and_then(Agent::open).and_then(|agent| go(&agent));
    match result {
        Ok(r) => {
            log::info!(
                "done: {} events taken ({} to dead-letter tables), {} files spooled, {} committed in {} commits, {} waiting in the spool",
                r.events,
                r.rejected,
                r.files_spooled,
                r.files_committed,
                r.commits,
                r.pending_files
            );
            if r.pending_files > 0 || r.stopped_early { exit::TRY_LATER } else { exit::OK }
        }
        Err(frazil::Error::Spool(e @ frazil_spool::SpoolError::Locked { .. })) => {
            log::error!(
                "{e}: another `frazil run` or `frazil flush` is using it; this one exits without doing anything"
            );
            exit::BUSY
        }
        Err(e) => failed(&e, Some("data taken from Kafka stays in the spool, run again later")),
    }
}

/// Logs `e` and returns its exit code: a bad configuration, a failure a later run may not meet
/// (`later` says what is left for it; `None`: the command does not tell the two apart), or another.
fn failed(e: &frazil::Error, later: Option<&str>) -> u8 {
    match (e, later) {
        (frazil::Error::Config { .. }, _) => {
            log::error!("{e}");
            exit::CONFIG
        }
        (e, Some(later)) if e.is_transient() => {
            log::error!("{e}; {later}");
            exit::TRY_LATER
        }
        _ => {
            log::error!("{e}");
            exit::FAILURE
        }
    }
}

fn show_status(s: &StatusCmd) -> u8 {
    match Config::load(&s.config).and_then(|c| frazil::cli::status(&c, s.offline)) {
        Ok(st) if s.json => {
            println!("{}", serde_json::to_string_pretty(&st).expect("status serializes"));
            exit::OK
        }
        Ok(st) => {
            print!("{st}");
            exit::OK
        }
        Err(e) => failed(&e, None),
    }
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use async_signal::{Signal, Signals};
    use futures::StreamExt;
    match Signals::new([Signal::Term, Signal::Int]) {
        Ok(mut s) => {
            let sig = s.next().await;
            log::info!("received {sig:?}");
        }
        Err(e) => {
            log::error!("cannot listen for signals ({e}); stop frazil with SIGKILL only after `frazil flush`");
            std::future::pending::<()>().await;
        }
    }
}
