//! `frazil-query`: SQL over what a frazil agent holds (hot buffers, spool files) and the Iceberg
//! tables it feeds, every event exactly once by its Kafka offsets, also with the link down.
//! `frazil query` runs this binary; it is packaged apart so the agent carries no query engine.

mod answer;
mod duckdb;
mod error;
mod local;
mod output;
mod serve;
mod sources;

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use datafusion::prelude::SessionContext;

use error::Result;
use output::Format;

/// SQL over a frazil agent's tables: the committed snapshot plus what the agent holds locally.
#[derive(FromArgs)]
struct Args {
    /// the SQL to run; tables go by their names (e.g. `SELECT count(*) FROM events`)
    #[argh(positional)]
    sql: Option<String>,
    /// the agent's configuration file (default /etc/frazil/frazil.toml)
    #[argh(option, default = "PathBuf::from(frazil::config::DEFAULT_PATH)")]
    config: PathBuf,
    /// table (default), csv, json (one object per line) or parquet
    #[argh(option, default = "Format::Table")]
    format: Format,
    /// answer from the agent's local rows alone: do not ask the catalog or the object store
    #[argh(switch)]
    offline: bool,
    /// do not print what the answer covers (on stderr)
    #[argh(switch, short = 'q')]
    quiet: bool,
    /// print instead a view of TABLE for a DuckDB without extensions (read_parquet over the local
    /// files, hot rows written to a temporary Parquet file)
    #[argh(option)]
    duckdb_view: Option<String>,
    /// answer over HTTP on this loopback address instead (POST /query with the SQL): Arrow IPC
    #[argh(option)]
    serve: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    frazil::logging::init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("frazil-query: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let cfg = frazil::config::Config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| error::Error::data("starting the query runtime", e))?;
    if let Some(addr) = args.serve {
        return serve::serve(&cfg, addr, args.offline, &runtime);
    }
    runtime.block_on(async {
        let sources = sources::gather(&cfg, args.offline).await?;
        if let Some(why) = sources.offline.as_deref().filter(|_| !args.offline) {
            log::warn!("the catalog or object store cannot be reached ({why}); answering from local rows only");
        }
        if let Some(table) = &args.duckdb_view {
            let (sql, warnings) = duckdb::view(table, &sources, &std::env::temp_dir()).await?;
            warnings.iter().for_each(|w| log::warn!("{w}"));
            print!("{sql}");
            return Ok(());
        }
        let Some(sql) = &args.sql else {
            return Err(error::Error::data(
                "frazil-query",
                "say what to ask: frazil query \"SELECT ...\" (see --help)",
            ));
        };
        let (offline, running) = (sources.offline.clone(), sources.agent_running);
        let ctx = SessionContext::new();
        let coverage = answer::register(&ctx, sources).await?;
        let answer = ctx.sql(sql).await?.execute_stream().await?;
        output::write(std::io::stdout(), args.format, answer).await?;
        if !args.quiet {
            eprint!("{}", output::coverage(&coverage, offline.as_deref(), running));
        }
        Ok(())
    })
}
