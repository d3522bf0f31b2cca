//! A small stderr logger for the command line: wall-clock time, level, message.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    level: LevelFilter,
    prefix: String,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs() % 86_400;
        let (h, m, s, ms) = (secs / 3600, secs / 60 % 60, secs % 60, now.subsec_millis());
        // One write(2) per line: processes sharing stderr (the two sides of a listener
        // handoff, a journal) must not interleave within a line (stderr is unbuffered).
        let line = format!(
            "{h:02}:{m:02}:{s:02}.{ms:03} {:5} {}{}\n",
            record.level(),
            self.prefix,
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger; the level comes from `GRACERPC_LOG` (error, warn, info, debug, trace),
/// default `info`.
pub fn init(prefix: &str) {
    let level = std::env::var("GRACERPC_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LevelFilter::Info);
    let logger = StderrLogger {
        level,
        prefix: prefix.to_owned(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}
