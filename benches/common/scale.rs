//! What the benches share: the full run or one quick pass, and the percentiles of sorted
//! latencies. Included by path in benches/suite.rs and benches/extism/src/main.rs (a workspace
//! of its own).

use std::time::Duration;

/// Sizes and durations: the full bench, or one quick pass.
#[derive(Clone, Copy)]
pub struct Scale {
    pub full: bool,
}

impl Scale {
    /// Samples of a measurement.
    pub fn samples(self, full: usize) -> usize {
        if self.full { full } else { 1 }
    }

    pub fn size(self, full: i64, quick: i64) -> i64 {
        if self.full { full } else { quick }
    }

    pub fn duration(self, full: Duration) -> Duration {
        if self.full {
            full
        } else {
            Duration::from_millis(5)
        }
    }
}

/// The `p` percentile (0 to 1) of `sorted`; zero when it is empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub fn median(sorted: &[Duration]) -> Duration {
    percentile(sorted, 0.5)
}
