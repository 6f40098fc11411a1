//! The node's log: records from the `log` interface and lines the node writes to stdout and
//! stderr, capped in volume, handed to the embedder as they come and kept for the outcome.

use std::sync::{Arc, Mutex, PoisonError};

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

/// The log of one run. Clones share it.
#[derive(Clone)]
pub struct RunLog {
    inner: Arc<Mutex<LogState>>,
}

struct LogState {
    records: Vec<LogRecord>,
    bytes: usize,
    cap: usize,
    dropped_bytes: usize,
    sink: Option<LogSink>,
    /// Unfinished lines of stdout and stderr.
    pending: [Vec<u8>; 2],
}

impl RunLog {
    pub fn new(cap: usize, sink: Option<LogSink>) -> Self {
        RunLog {
            inner: Arc::new(Mutex::new(LogState {
                records: Vec::new(),
                bytes: 0,
                cap,
                dropped_bytes: 0,
                sink,
                pending: [Vec::new(), Vec::new()],
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        // A panic while holding the lock cannot leave the log inconsistent: keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, level: Level, source: Source, message: String) {
        self.state().push(level, source, message);
    }

    /// Appends bytes the node wrote to stdout or stderr; complete lines become records.
    pub fn write_stream(&self, source: Source, bytes: &[u8]) {
        let mut state = self.state();
        let index = usize::from(source == Source::Stderr);
        // Past the cap nothing more is kept; do not let the line buffer grow either.
        if state.bytes >= state.cap {
            state.dropped_bytes += bytes.len();
            return;
        }
        state.pending[index].extend_from_slice(bytes);
        while let Some(end) = state.pending[index].iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = state.pending[index].drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            state.push(stream_level(source), source, text);
        }
        let cap = state.cap;
        if state.pending[index].len() > cap {
            let line = std::mem::take(&mut state.pending[index]);
            state.push(
                stream_level(source),
                source,
                String::from_utf8_lossy(&line).into_owned(),
            );
        }
    }

    /// Turns unfinished stdout and stderr lines into records; the run is over.
    pub fn flush(&self) {
        let mut state = self.state();
        for source in [Source::Stdout, Source::Stderr] {
            let index = usize::from(source == Source::Stderr);
            let line = std::mem::take(&mut state.pending[index]);
            if !line.is_empty() {
                state.push(
                    stream_level(source),
                    source,
                    String::from_utf8_lossy(&line).into_owned(),
                );
            }
        }
    }

    pub fn records(&self) -> Vec<LogRecord> {
        self.state().records.clone()
    }

    /// Bytes dropped because the cap was reached.
    pub fn dropped_bytes(&self) -> usize {
        self.state().dropped_bytes
    }
}

fn stream_level(source: Source) -> Level {
    if source == Source::Stderr {
        Level::Warn
    } else {
        Level::Info
    }
}

impl LogState {
    fn push(&mut self, level: Level, source: Source, mut message: String) {
        if self.bytes >= self.cap {
            self.dropped_bytes += message.len();
            return;
        }
        let room = self.cap - self.bytes;
        let mut truncated = false;
        if message.len() > room {
            let mut end = room;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            self.dropped_bytes += message.len() - end;
            message.truncate(end);
            truncated = true;
        }
        self.bytes += message.len();
        self.emit(LogRecord {
            level,
            source,
            message,
        });
        if truncated || self.bytes >= self.cap {
            let notice = format!(
                "log cap of {} bytes reached; further output of this run is dropped",
                self.cap
            );
            self.emit(LogRecord {
                level: Level::Warn,
                source: Source::Host,
                message: notice,
            });
            self.bytes = self.cap;
        }
    }

    fn emit(&mut self, record: LogRecord) {
        if let Some(sink) = &self.sink {
            sink(&record);
        }
        self.records.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_the_cap_holds() {
        let log = RunLog::new(20, None);
        log.write_stream(Source::Stdout, b"hello\nwor");
        log.write_stream(Source::Stdout, b"ld\n");
        log.push(Level::Error, Source::Log, "0123456789abcdef".into());
        log.push(Level::Info, Source::Log, "dropped".into());
        let records = log.records();
        assert_eq!(records[0].message, "hello");
        assert_eq!(records[1].message, "world");
        assert_eq!(records[2].message, "0123456789");
        assert_eq!(records[3].source, Source::Host);
        assert_eq!(records.len(), 4);
        assert_eq!(log.dropped_bytes(), 6 + 7);
    }

    #[test]
    fn a_flood_without_newlines_stays_bounded() {
        let log = RunLog::new(1000, None);
        for _ in 0..10_000 {
            log.write_stream(Source::Stderr, &[b'x'; 100]);
        }
        log.flush();
        let kept: usize = log
            .records()
            .iter()
            .filter(|r| r.source == Source::Stderr)
            .map(|r| r.message.len())
            .sum();
        assert!(kept <= 1000);
        assert!(log.dropped_bytes() >= 1_000_000 - 1000 - 100);
    }
}
