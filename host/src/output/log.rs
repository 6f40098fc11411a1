//! The node's log: records from the `log` interface and lines the node writes to stdout and
//! stderr, capped in volume, handed to the embedder as they come and kept for the outcome.
//!
//! Node text is escaped on the way in: control characters (newlines, ANSI escapes, C1
//! controls) and bidirectional overrides are written out as `\n`, `\u{1b}`, …, so a record is
//! always one line that shows what the node wrote instead of obeying it. Every record costs
//! [`RECORD_OVERHEAD`] bytes of the cap on top of its text, so empty records count too.

pub use crate::output::record::{Level, LogRecord, LogSink, Source};

use crate::output::delivery::Delivery;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

/// What one record costs against the log cap beyond its text: about what the host keeps for it.
pub const RECORD_OVERHEAD: usize = 32;

/// The log of one run. Clones share it.
#[derive(Clone)]
pub struct RunLog {
    inner: Arc<Mutex<LogState>>,
}

struct LogState {
    records: Vec<LogRecord>,
    /// Bytes charged against the cap: escaped text plus [`RECORD_OVERHEAD`] per record.
    bytes: usize,
    cap: usize,
    dropped_bytes: usize,
    delivery: Delivery,
    /// Unfinished lines of stdout and stderr.
    pending: [Vec<u8>; 2],
    /// What the host refused the node during the run (the first [`MAX_DENIALS`]), and how
    /// many in all.
    denials: Vec<Denial>,
    denied: u64,
}

/// Denials a run keeps; more are counted, not kept.
pub const MAX_DENIALS: usize = 32;

/// Something the host refused the node during a run: a destination outside its allowlist, a
/// bind or a listen.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Denial {
    /// What the node was using: `http`, `tcp`, `udp`, `dns`, `sockets`.
    pub capability: &'static str,
    pub message: String,
}

impl RunLog {
    /// A log that keeps at most `cap` bytes and calls no sink.
    pub fn new(cap: usize) -> Self {
        Self::delivered(cap, Delivery::none())
    }

    /// A log whose records are also handed to the embedder's log sink through `delivery`.
    pub(crate) fn delivered(cap: usize, delivery: Delivery) -> Self {
        RunLog {
            inner: Arc::new(Mutex::new(LogState {
                records: Vec::new(),
                bytes: 0,
                cap,
                dropped_bytes: 0,
                delivery,
                pending: [Vec::new(), Vec::new()],
                denials: Vec::new(),
                denied: 0,
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LogState> {
        // A panic while holding the lock cannot leave the log inconsistent: keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a record of node text (escaped here).
    pub fn push(&self, level: Level, source: Source, message: &str) {
        self.state().push(level, source, message);
    }

    /// Appends bytes the node wrote to stdout or stderr; complete lines become records. Each
    /// byte is looked at once, so the cost is linear in what the node wrote.
    pub fn write_stream(&self, source: Source, bytes: &[u8]) {
        let mut state = self.state();
        let index = usize::from(source == Source::Stderr);
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n') {
            // Past the cap nothing more is kept; do not let the line buffer grow either.
            if state.full() {
                state.dropped_bytes += rest.len();
                return;
            }
            state.pending[index].extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut state.pending[index]);
            state.push(
                stream_level(source),
                source,
                &String::from_utf8_lossy(&line),
            );
            rest = &rest[end + 1..];
        }
        if state.full() {
            state.dropped_bytes += rest.len();
            return;
        }
        state.pending[index].extend_from_slice(rest);
        // An unfinished line longer than what is left of the cap can only be cut: emit it now
        // rather than hold it.
        if state.pending[index].len() > state.room() {
            let line = std::mem::take(&mut state.pending[index]);
            state.push(
                stream_level(source),
                source,
                &String::from_utf8_lossy(&line),
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
                    &String::from_utf8_lossy(&line),
                );
            }
        }
    }

    /// Records a denial: a warning in the log that says what was refused and how to allow it,
    /// and an entry the embedder reads back with [`RunLog::denials`].
    pub fn deny(&self, capability: &'static str, message: &str) {
        let mut state = self.state();
        state.push(Level::Warn, Source::Host, message);
        state.denied += 1;
        if state.denials.len() < MAX_DENIALS {
            let (message, _) = escape_node_text(message, 1024);
            state.denials.push(Denial {
                capability,
                message,
            });
        }
    }

    /// The denials kept, and how many there were in all.
    pub fn denials(&self) -> (Vec<Denial>, u64) {
        let state = self.state();
        (state.denials.clone(), state.denied)
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

/// Node text as one line that shows what it holds: control characters, bidirectional
/// overrides and line separators written out (`\n`, `\t`, `\u{1b}`), backslashes doubled so an escape cannot be
/// forged, everything else as it is. At most `limit` bytes of output are produced; the second
/// value is how many bytes of `text` they show (less than its length when it was cut).
pub fn escape_node_text(text: &str, limit: usize) -> (String, usize) {
    let mut escaped = String::with_capacity(text.len().min(limit));
    for (offset, character) in text.char_indices() {
        let before = escaped.len();
        if character == '\\' {
            escaped.push_str("\\\\");
        } else {
            push_shown(&mut escaped, character);
        }
        if escaped.len() > limit {
            escaped.truncate(before);
            return (escaped, offset);
        }
    }
    (escaped, text.len())
}

/// Text that may hold a node's words (an error it returned, a name it chose) made safe for a
/// one-line message: control characters and bidirectional overrides written out as in
/// [`escape_node_text`], backslashes left as they are, and at most `limit` bytes kept (`…`
/// marks a cut).
pub fn one_line(text: &str, limit: usize) -> String {
    let mut line = String::with_capacity(text.len().min(limit));
    for character in text.chars() {
        if line.len() >= limit {
            line.push('…');
            break;
        }
        push_shown(&mut line, character);
    }
    line
}

/// Appends `c` as node text shows it: `\n`, `\r`, `\t`, `\u{…}` for the other characters
/// [`is_escaped`] names, anything else as it is.
fn push_shown(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_escaped(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// Characters node text shows as `\u{…}` escapes instead of holding: control characters,
/// bidirectional controls, and the Unicode line and paragraph separators (U+2028, U+2029),
/// which editors, browsers and JavaScript log viewers break lines at.
pub fn is_escaped(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Characters that reorder the text around them on a terminal or a page.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl LogState {
    fn full(&self) -> bool {
        self.bytes >= self.cap
    }

    /// Bytes of text the next record may still hold.
    fn room(&self) -> usize {
        self.cap.saturating_sub(self.bytes + RECORD_OVERHEAD)
    }

    fn push(&mut self, level: Level, source: Source, message: &str) {
        if self.full() {
            self.dropped_bytes += message.len();
            return;
        }
        let (escaped, shown) = escape_node_text(message, self.room());
        let truncated = shown < message.len();
        self.dropped_bytes += message.len() - shown;
        let message = escaped;
        self.bytes += message.len() + RECORD_OVERHEAD;
        self.emit(LogRecord {
            level,
            source,
            message,
        });
        if truncated || self.full() {
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
        self.delivery.log(&record);
        self.records.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_the_cap_holds() {
        let log = RunLog::new(3 * RECORD_OVERHEAD + 20);
        log.write_stream(Source::Stdout, b"hello\nwor");
        log.write_stream(Source::Stdout, b"ld\n");
        log.push(Level::Error, Source::Log, "0123456789abcdef");
        log.push(Level::Info, Source::Log, "dropped");
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
        let log = RunLog::new(1000);
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

    #[test]
    fn empty_records_count_against_the_cap() {
        let cap = 64 * 1024;
        let log = RunLog::new(cap);
        for _ in 0..1_000_000 {
            log.push(Level::Info, Source::Log, "");
        }
        log.write_stream(Source::Stdout, &[b'\n'; 1_000_000]);
        let records = log.records();
        // The cap's worth of empty records, and the notice.
        assert_eq!(records.len(), cap / RECORD_OVERHEAD + 1);
        assert_eq!(records.last().map(|r| r.source), Some(Source::Host));
    }

    #[test]
    fn node_text_is_shown_not_obeyed() {
        let log = RunLog::new(4096);
        log.push(
            Level::Info,
            Source::Log,
            "ok\nwarden: error: fake\u{1b}[2J\r\t\\u{1b}\u{202e}\u{9b}",
        );
        log.write_stream(Source::Stderr, b"a\x1b]0;title\x07b\n");
        let records = log.records();
        assert_eq!(
            records[0].message,
            "ok\\nwarden: error: fake\\u{1b}[2J\\r\\t\\\\u{1b}\\u{202e}\\u{9b}"
        );
        assert_eq!(records[1].message, "a\\u{1b}]0;title\\u{7}b");
        for record in &records {
            assert!(!record.message.chars().any(char::is_control), "{record:?}");
        }
    }

    #[test]
    fn one_line_keeps_messages_on_one_line_and_short() {
        assert_eq!(
            one_line("bad\nwarden: error: forged\u{1b}[0m C:\\path", 100),
            "bad\\nwarden: error: forged\\u{1b}[0m C:\\path"
        );
        assert_eq!(one_line(&"x".repeat(10), 4), "xxxx…");
        assert_eq!(one_line("\u{2066}\u{85}", 100), "\\u{2066}\\u{85}");
    }

    #[test]
    fn escaping_is_cut_at_a_character_and_counts_what_it_shows() {
        let (text, shown) = escape_node_text("ab\u{1b}cd", 4);
        assert_eq!((text.as_str(), shown), ("ab", 2));
        let (text, shown) = escape_node_text("héllo", 3);
        assert_eq!((text.as_str(), shown), ("hé", 3));
        let (text, shown) = escape_node_text("plain", 100);
        assert_eq!((text.as_str(), shown), ("plain", 5));
    }

    #[test]
    fn many_lines_in_one_write_cost_linear_time() {
        // 512 KiB of one-byte lines in one write: splitting that moved the rest of the buffer
        // for every line would move 64 GiB.
        let log = RunLog::new(usize::MAX / 2);
        let bytes = b"x\n".repeat(256 * 1024);
        log.write_stream(Source::Stdout, &bytes);
        assert_eq!(log.records().len(), 256 * 1024);
    }
}
