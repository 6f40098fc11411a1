//! A log record: its level, where it came from, its text; and the embedder's sink for them.
//! Both the log and the delivery to the embedder use these.

use std::sync::Arc;

/// How serious a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Where a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Log,
    Stdout,
    Stderr,
    /// The host itself (the truncation notice).
    Host,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogRecord {
    pub level: Level,
    pub source: Source,
    pub message: String,
}

/// Called with each record as the node produces it.
pub type LogSink = Arc<dyn Fn(&LogRecord) + Send + Sync>;
