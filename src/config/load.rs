//! From text to the raw config: TOML errors with line numbers and a did-you-mean for misspelt
//! keys, environment overrides, and the permission check on a file that holds a secret.

use std::path::Path;

use crate::{Error, Result};

/// Environment variables starting with this override config keys.
pub const ENV_PREFIX: &str = "FRAZIL__";

pub(super) fn fix_for(message: &str) -> String {
    match did_you_mean(message) {
        Some(near) => format!("did you mean `{near}`? (see the configuration reference in README.md)"),
        None => "correct the key or value; see the configuration reference in README.md".into(),
    }
}

pub(super) fn parse_error(text: &str, e: &toml::de::Error) -> Error {
    let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
    let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
    Error::config(
        guess_key(e.message()).unwrap_or_else(|| "(file)".into()),
        format!("{at}{}", e.message().trim()),
        fix_for(e.message()),
    )
}

/// A config file that holds a secret must not be readable by every user of the machine.
/// (A secret given through the environment is not in the file.)
pub(super) fn check_secret_file(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let table: toml::Table = toml::from_str(text).unwrap_or_default();
    let section = |name: &str| name.split('.').try_fold(&table, |t, k| t.get(k).and_then(toml::Value::as_table));
    let secrets = [
        ("storage.s3", "secret_access_key"),
        ("storage.s3", "session_token"),
        ("schema_registry", "password"),
        ("catalog", "token"),
        ("catalog", "credential"),
        ("kafka", "password"),
    ];
    let found = secrets.into_iter().find(|(s, key)| section(s).is_some_and(|t| t.contains_key(*key)));
    let Some((section, key)) = found else { return Ok(()) };
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
    if mode & 0o004 != 0 {
        return Err(Error::config(
            format!("{section}.{key}"),
            format!("{} holds a secret and every user can read it (mode {:o})", path.display(), mode & 0o777),
            format!(
                "chmod 600 {} (or 640 with frazil's group), or set it through the environment (FRAZIL__{}__{})",
                path.display(),
                section.replace('.', "__").to_ascii_uppercase(),
                key.to_ascii_uppercase()
            ),
        ));
    }
    Ok(())
}

/// toml names the offending field in backquotes ("unknown field `brokrs`"): lift it out for the key.
pub(super) fn guess_key(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// For "unknown field `brokrs`, expected one of `brokers`, `topics`, ...": the expected field
/// closest to the unknown one, if it is close (a typo, not another word).
pub(super) fn did_you_mean(message: &str) -> Option<String> {
    let unknown = guess_key(message)?;
    let (_, expected) = message.split_once("expected")?;
    let candidates = expected.split('`').skip(1).step_by(2);
    let (best, distance) = candidates.map(|c| (c, edit_distance(&unknown, c))).min_by_key(|(_, d)| *d)?;
    (distance <= unknown.len().div_ceil(3).max(1)).then(|| best.to_string())
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
