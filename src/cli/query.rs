//! `frazil query`: SQL over the agent's tables and what it holds locally. The engine lives in the
//! separate `frazil-query` binary (and package), so the agent carries none; this finds and runs it.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The query binary's name.
pub const QUERY_BINARY: &str = "frazil-query";

/// What to tell someone who has the agent but not the query engine.
pub const HOW_TO_INSTALL: &str = "`frazil query` needs the frazil-query binary beside frazil or on PATH: install the \
     frazil-query package (`apt install ./frazil-query_*.deb` or `dnf install ./frazil-query-*.rpm`), or build it with \
     `cargo install --path query`";

/// `FRAZIL_QUERY_BIN` when set, else `frazil-query` beside `frazil`'s own binary, else the first
/// on `PATH`.
pub fn find_query_binary(own: Option<&Path>, path: Option<OsString>, chosen: Option<OsString>) -> Option<PathBuf> {
    if let Some(bin) = chosen {
        return Some(PathBuf::from(bin));
    }
    let beside = own.and_then(Path::parent).map(|d| d.join(QUERY_BINARY));
    let on_path =
        path.into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).map(|d| d.join(QUERY_BINARY));
    beside.into_iter().chain(on_path).find(|p| p.is_file())
}

/// Replaces this process with `frazil-query args...`; returns only if that failed.
pub fn exec_query(args: impl IntoIterator<Item = OsString>) -> std::result::Result<std::convert::Infallible, String> {
    let own = std::env::current_exe().ok();
    let found = find_query_binary(own.as_deref(), std::env::var_os("PATH"), std::env::var_os("FRAZIL_QUERY_BIN"));
    let Some(binary) = found else {
        return Err(HOW_TO_INSTALL.to_string());
    };
    let e = std::process::Command::new(&binary).args(args).exec();
    Err(format!("running {}: {e}", binary.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_binary_beside_frazil_comes_before_path() {
        let dir = tempfile::tempdir().unwrap();
        let (own_dir, path_dir) = (dir.path().join("bin"), dir.path().join("path"));
        std::fs::create_dir_all(&own_dir).unwrap();
        std::fs::create_dir_all(&path_dir).unwrap();
        let own = own_dir.join("frazil");
        let path = Some(path_dir.clone().into_os_string());
        assert_eq!(find_query_binary(Some(&own), path.clone(), None), None);
        std::fs::write(path_dir.join(QUERY_BINARY), "").unwrap();
        assert_eq!(find_query_binary(Some(&own), path.clone(), None), Some(path_dir.join(QUERY_BINARY)));
        std::fs::write(own_dir.join(QUERY_BINARY), "").unwrap();
        assert_eq!(find_query_binary(Some(&own), path.clone(), None), Some(own_dir.join(QUERY_BINARY)));
        let chosen = dir.path().join("elsewhere");
        assert_eq!(find_query_binary(Some(&own), path, Some(chosen.clone().into())), Some(chosen));
    }
}
