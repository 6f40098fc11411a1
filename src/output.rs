//! What commands print: results on stdout, the runtime's warnings on stderr.

use std::io::Write;

/// Writes to stdout and flushes; a closed stdout (`warden run … | head`) is not an error worth
/// a panic, so write errors are ignored.
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Prints a warning of the runtime as one line on stderr.
pub(crate) fn print_warning(message: &str) {
    let message = message.replace(['\n', '\r'], " ");
    eprintln!("warden: warning: {message}");
}

/// A `--json` document on stdout, pretty-printed, one newline after it.
pub(crate) fn out_json(document: &serde_json::Value) {
    out(&format!("{document:#}\n"));
}
