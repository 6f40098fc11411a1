//! Small helpers several capability families share.

use crate::bindings::wit::HostError;
use std::time::{SystemTime, UNIX_EPOCH};

/// Refuses a value larger than the host accepts.
pub(crate) fn check_size(what: &str, size: usize, cap: usize) -> Result<(), HostError> {
    if size > cap {
        return Err(HostError::TooLarge(format!(
            "the {what} is {size} bytes; the host accepts at most {cap}"
        )));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}
