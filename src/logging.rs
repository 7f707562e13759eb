//! A minimal stderr logger, one line per record, kept in-house so the binary stays small.
//! `FRAZIL_LOG` sets the level (error, warn, info, debug, trace; default info) and
//! `FRAZIL_LOG_FORMAT` the shape of a line: `plain` (default, `time LEVEL target: message`) or
//! `json` (`{"ts":..,"level":..,"target":..,"msg":..}`, one object per line, for log shippers).

use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Plain,
    Json,
}

struct Stderr {
    level: log::LevelFilter,
    format: Format,
}

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        // Other crates' chatter only from debug on.
        m.level() <= self.level && (m.target().starts_with("frazil") || self.level >= log::LevelFilter::Debug)
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            let text = line(self.format, &now, r.level(), r.target(), &r.args().to_string());
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }

    fn flush(&self) {}
}

/// One log line, without its newline.
pub fn line(format: Format, ts: &str, level: log::Level, target: &str, msg: &str) -> String {
    match format {
        Format::Plain => format!("{ts} {level:5} {target}: {msg}"),
        Format::Json => serde_json::json!({"ts": ts, "level": level.as_str(), "target": target, "msg": msg}).to_string(),
    }
}

/// Installs the logger once; later calls are ignored. An unknown `FRAZIL_LOG_FORMAT` falls back
/// to plain lines, and says so.
pub fn init() {
    let level = std::env::var("FRAZIL_LOG").ok().and_then(|l| l.parse().ok()).unwrap_or(log::LevelFilter::Info);
    let asked = std::env::var("FRAZIL_LOG_FORMAT").ok();
    let format = match asked.as_deref() {
        Some("json") => Format::Json,
        _ => Format::Plain,
    };
    if log::set_boxed_logger(Box::new(Stderr { level, format })).is_ok() {
        log::set_max_level(level);
    }
    if let Some(other) = asked.filter(|f| f != "json" && f != "plain") {
        log::warn!("FRAZIL_LOG_FORMAT={other} is not a log format (plain or json); writing plain lines");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_plain_or_one_json_object() {
        let msg = "events/0 offset 7: to dead-letter table events__dlq: invalid \"JSON\"\nsecond line";
        let plain = line(Format::Plain, "2026-11-24T10:00:00.000Z", log::Level::Warn, "frazil::agent::fetch", msg);
        assert!(plain.starts_with("2026-11-24T10:00:00.000Z WARN  frazil::agent::fetch: events/0"), "{plain}");
        let json = line(Format::Json, "2026-11-24T10:00:00.000Z", log::Level::Warn, "frazil::agent::fetch", msg);
        assert!(!json.contains('\n'), "one line: {json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!((v["level"].as_str(), v["target"].as_str(), v["msg"].as_str()), (Some("WARN"), Some("frazil::agent::fetch"), Some(msg)));
    }
}
