//! A minimal stderr logger: `LEVEL target: message`, one line each, level from `FRAZIL_LOG`
//! (error, warn, info, debug, trace; default info). Kept in-house so the binary stays small.

use std::io::Write;

struct Stderr {
    level: log::LevelFilter,
}

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        // Other crates' chatter only from debug on.
        m.level() <= self.level && (m.target().starts_with("frazil") || self.level >= log::LevelFilter::Debug)
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
            let _ = writeln!(std::io::stderr().lock(), "{now} {:5} {}: {}", r.level(), r.target(), r.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger once; later calls are ignored.
pub fn init() {
    let level = std::env::var("FRAZIL_LOG").ok().and_then(|l| l.parse().ok()).unwrap_or(log::LevelFilter::Info);
    if log::set_boxed_logger(Box::new(Stderr { level })).is_ok() {
        log::set_max_level(level);
    }
}
