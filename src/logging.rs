//! A minimal stderr logger, one line per record, kept in-house so the binary stays small.
//! `FRAZIL_LOG` sets the level (error, warn, info, debug, trace; default info) and
//! `FRAZIL_LOG_FORMAT` the shape of a line: `plain` (default, `time LEVEL target: message`) or
//! `json` (`{"ts":..,"level":..,"target":..,"msg":..}`, one object per line, for log shippers).
//! A line about one topic, partition, offset or table carries them as fields too (the `log`
//! crate's key-values: `topic`, `partition`, `offset`, `table`, `commit_id`), so a shipper can
//! filter on them; plain lines have them in the message already.

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
            let mut fields = Fields(Vec::new());
            let _ = r.key_values().visit(&mut fields);
            let text = line(self.format, &now, r.level(), r.target(), &r.args().to_string(), &fields.0);
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }

    fn flush(&self) {}
}

/// A record's key-values, numbers kept as numbers.
struct Fields(Vec<(String, serde_json::Value)>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: log::kv::Key<'kvs>, value: log::kv::Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = match (value.to_i64(), value.to_u64()) {
            (Some(n), _) => serde_json::Value::from(n),
            (None, Some(n)) => serde_json::Value::from(n),
            _ => serde_json::Value::from(value.to_string()),
        };
        self.0.push((key.as_str().to_string(), v));
        Ok(())
    }
}

/// One log line, without its newline. `fields` go into JSON lines only.
pub fn line(
    format: Format,
    ts: &str,
    level: log::Level,
    target: &str,
    msg: &str,
    fields: &[(String, serde_json::Value)],
) -> String {
    match format {
        Format::Plain => format!("{ts} {level:5} {target}: {msg}"),
        Format::Json => {
            let mut o = serde_json::Map::new();
            o.insert("ts".into(), ts.into());
            o.insert("level".into(), level.as_str().into());
            o.insert("target".into(), target.into());
            o.insert("msg".into(), msg.into());
            for (k, v) in fields {
                o.entry(k.clone()).or_insert_with(|| v.clone());
            }
            serde_json::Value::Object(o).to_string()
        }
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

/// Bytes as MiB with one decimal, for log lines and reports.
pub fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_plain_or_one_json_object() {
        let msg = "events/0 offset 7: to dead-letter table events__dlq: invalid \"JSON\"\nsecond line";
        let fields = [
            ("topic".to_string(), serde_json::json!("events")),
            ("offset".to_string(), serde_json::json!(7)),
            ("msg".to_string(), serde_json::json!("not this")),
        ];
        let plain =
            line(Format::Plain, "2026-11-24T10:00:00.000Z", log::Level::Warn, "frazil::agent::fetch", msg, &fields);
        assert_eq!(plain, format!("2026-11-24T10:00:00.000Z WARN  frazil::agent::fetch: {msg}"));
        let json =
            line(Format::Json, "2026-11-24T10:00:00.000Z", log::Level::Warn, "frazil::agent::fetch", msg, &fields);
        assert!(!json.contains('\n'), "one line: {json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (v["level"].as_str(), v["target"].as_str(), v["msg"].as_str()),
            (Some("WARN"), Some("frazil::agent::fetch"), Some(msg))
        );
        // Fields sit beside the message, numbers as numbers; one never replaces a built-in key.
        assert_eq!((v["topic"].as_str(), v["offset"].as_i64()), (Some("events"), Some(7)));
    }
}
