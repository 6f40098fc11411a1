//! The store's resource limiter: memory and table growth, with typed errors naming the limit.

use crate::policy::limits::{LimitKind, Limits};

/// The error a run ends with when the sandbox stops it at a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node hit its {kind} limit")]
pub struct LimitExceeded {
    pub kind: LimitKind,
}

pub(crate) struct Limiter {
    memory_limit: u64,
    /// Bytes of linear memory across every memory of the store.
    memory_total: u64,
    /// The most `memory_total` has been during the run.
    memory_peak: u64,
    table_elements: usize,
    tables: usize,
    memories: usize,
    instances: usize,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Self {
        Limiter {
            memory_limit: limits.memory_bytes,
            memory_total: 0,
            memory_peak: 0,
            table_elements: limits.max_table_elements,
            tables: limits.max_tables as usize,
            memories: limits.max_memories as usize,
            instances: limits.max_instances as usize,
        }
    }
}

impl Limiter {
    /// The most linear memory the run's instances held at once, in bytes.
    pub fn memory_peak(&self) -> u64 {
        self.memory_peak
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_total - (current as u64).min(self.memory_total) + desired as u64;
        if total > self.memory_limit {
            // An error, not `Ok(false)`: a refused grow makes Rust's allocator abort with an
            // `unreachable` trap that would not say which limit was hit.
            return Err(LimitExceeded {
                kind: LimitKind::Memory,
            }
            .into());
        }
        self.memory_total = total;
        self.memory_peak = self.memory_peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(LimitExceeded {
                kind: LimitKind::TableElements,
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memory_is_counted_across_growths() {
        let limits = Limits {
            memory_bytes: 100,
            ..Limits::default()
        };
        let mut limiter = Limiter::new(&limits);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(limiter.memory_growing(60, 100, None).unwrap());
        let error = limiter.memory_growing(100, 101, None).unwrap_err();
        assert_eq!(
            error.downcast_ref::<LimitExceeded>().unwrap().kind,
            LimitKind::Memory
        );
        let error = Limiter::new(&limits)
            .table_growing(0, usize::MAX, None)
            .unwrap_err();
        assert_eq!(
            error.downcast_ref::<LimitExceeded>().unwrap().kind,
            LimitKind::TableElements
        );
    }
}
