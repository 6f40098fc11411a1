//! Resource limits: what a node may consume, with the three presets.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub(crate) const KIB: u64 = 1024;
pub(crate) const MIB: u64 = 1024 * KIB;
pub(crate) const GIB: u64 = 1024 * MIB;

/// Limits the sandbox enforces on one run. Every field is enforced; see `docs/capabilities.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory, summed over all memories of the instance.
    pub memory_bytes: u64,
    /// Fuel (roughly, wasm instructions); `None` turns fuel metering off for the run.
    pub fuel: Option<u64>,
    /// Wall-clock time for one call, from instantiation to the node's return.
    pub timeout: Duration,
    /// Bytes of native stack wasm code may use.
    pub wasm_stack_bytes: usize,
    pub max_tables: u32,
    pub max_table_elements: usize,
    pub max_memories: u32,
    pub max_instances: u32,
    /// Host-side caps on what crosses the boundary.
    pub host: HostLimits,
}

/// Caps the host applies to data a node sends or receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLimits {
    /// Total bytes of the inputs of one run.
    pub input_bytes: usize,
    /// Total bytes of the outputs of one run.
    pub output_bytes: usize,
    /// Bytes of log (including captured stdout and stderr) kept per run; the rest is dropped.
    pub log_bytes: usize,
    /// Bytes streamed per run.
    pub stream_bytes: usize,
    /// Bytes of one stored value (storage and cache).
    pub storage_value_bytes: usize,
    /// Bytes (keys and values) one storage partition may hold.
    pub storage_quota_bytes: u64,
    /// Bytes of one variable's value.
    pub variable_bytes: usize,
    /// Bytes of all of a run's variables together, names and values.
    pub variables_total_bytes: usize,
    /// Bytes of all UI documents one run renders.
    pub ui_bytes: usize,
    /// WebSocket connections one run may hold open at once.
    pub connections: usize,
    /// Bytes a node instance's private directory (`allow_wasi`) may hold.
    pub files_bytes: u64,
    /// Entries of the run's resource table: every socket, stream, pollable and connection a
    /// node holds is one or more, so this bounds the descriptors a run can hold open.
    pub resources: usize,
    /// Bytes of one HTTP request body a node sends.
    pub http_request_bytes: usize,
    /// Bytes of one HTTP response body a node receives.
    pub http_response_bytes: usize,
}

/// The named presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Preset {
    #[default]
    Default,
    Restrictive,
    Permissive,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Default, Preset::Restrictive, Preset::Permissive];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Default => "default",
            Preset::Restrictive => "restrictive",
            Preset::Permissive => "permissive",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset `{0}`; use default, restrictive or permissive")]
pub struct UnknownPreset(pub String);

impl FromStr for Preset {
    type Err = UnknownPreset;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|preset| preset.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownPreset(text.to_string()))
    }
}

impl Limits {
    pub fn preset(preset: Preset) -> Self {
        match preset {
            Preset::Default => Self::default_preset(),
            Preset::Restrictive => Self::restrictive(),
            Preset::Permissive => Self::permissive(),
        }
    }

    pub fn default_preset() -> Self {
        Limits {
            memory_bytes: 64 * MIB,
            fuel: Some(10_000_000_000),
            timeout: Duration::from_secs(30),
            wasm_stack_bytes: 512 * KIB as usize,
            max_tables: 16,
            max_table_elements: 100_000,
            max_memories: 8,
            max_instances: 64,
            host: HostLimits::default(),
        }
    }

    pub fn restrictive() -> Self {
        Limits {
            memory_bytes: 16 * MIB,
            fuel: Some(1_000_000_000),
            timeout: Duration::from_secs(10),
            wasm_stack_bytes: 256 * KIB as usize,
            max_tables: 8,
            max_table_elements: 10_000,
            max_memories: 4,
            max_instances: 32,
            host: HostLimits {
                input_bytes: MIB as usize,
                output_bytes: MIB as usize,
                log_bytes: 256 * KIB as usize,
                stream_bytes: 4 * MIB as usize,
                storage_value_bytes: 256 * KIB as usize,
                storage_quota_bytes: 16 * MIB,
                variable_bytes: 256 * KIB as usize,
                variables_total_bytes: MIB as usize,
                ui_bytes: 256 * KIB as usize,
                connections: 4,
                files_bytes: 16 * MIB,
                resources: 256,
                http_request_bytes: MIB as usize,
                http_response_bytes: 4 * MIB as usize,
            },
        }
    }

    pub fn permissive() -> Self {
        Limits {
            memory_bytes: 4 * GIB,
            fuel: Some(100_000_000_000),
            timeout: Duration::from_secs(300),
            wasm_stack_bytes: 2 * MIB as usize,
            max_tables: 64,
            max_table_elements: 1_000_000,
            max_memories: 32,
            max_instances: 256,
            host: HostLimits {
                input_bytes: 256 * MIB as usize,
                output_bytes: 256 * MIB as usize,
                log_bytes: 16 * MIB as usize,
                stream_bytes: 1024 * MIB as usize,
                storage_value_bytes: 64 * MIB as usize,
                storage_quota_bytes: 4 * GIB,
                variable_bytes: 64 * MIB as usize,
                variables_total_bytes: 256 * MIB as usize,
                ui_bytes: 16 * MIB as usize,
                connections: 64,
                files_bytes: 4 * GIB,
                resources: 4096,
                http_request_bytes: 64 * MIB as usize,
                http_response_bytes: 256 * MIB as usize,
            },
        }
    }
}

/// The longest timeout a run may have: one day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The smallest and largest wasm stack a runtime accepts.
pub const STACK_RANGE: std::ops::RangeInclusive<usize> = (64 * KIB as usize)..=(8 * MIB as usize);

/// Limits the runtime cannot enforce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidLimits {
    #[error("memory {0} bytes is over the 4 GiB a wasm32 node can address")]
    Memory(u64),
    #[error("the wasm stack must be between 64 KiB and 8 MiB, not {0} bytes")]
    Stack(usize),
    #[error("the timeout must be longer than zero")]
    ZeroTimeout,
    #[error("the timeout {0:?} is over the longest a run may take (24h)")]
    Timeout(Duration),
    #[error("{name} {value} is over the most the runtime supports ({max})")]
    Count {
        name: &'static str,
        value: usize,
        max: usize,
    },
}

impl Limits {
    /// Checks the limits are ones the runtime can enforce: the sandbox's pools are sized for
    /// the permissive preset, so nothing may exceed it (memory 4 GiB, the wasm32 maximum), and
    /// the stack must be within [`STACK_RANGE`].
    pub fn validate(&self) -> Result<(), InvalidLimits> {
        let ceiling = Limits::permissive();
        if self.memory_bytes > ceiling.memory_bytes {
            return Err(InvalidLimits::Memory(self.memory_bytes));
        }
        if !STACK_RANGE.contains(&self.wasm_stack_bytes) {
            return Err(InvalidLimits::Stack(self.wasm_stack_bytes));
        }
        if self.timeout.is_zero() {
            return Err(InvalidLimits::ZeroTimeout);
        }
        if self.timeout > MAX_TIMEOUT {
            return Err(InvalidLimits::Timeout(self.timeout));
        }
        let counts = [
            (
                "tables",
                self.max_tables as usize,
                ceiling.max_tables as usize,
            ),
            (
                "memories",
                self.max_memories as usize,
                ceiling.max_memories as usize,
            ),
            (
                "instances",
                self.max_instances as usize,
                ceiling.max_instances as usize,
            ),
            (
                "table elements",
                self.max_table_elements,
                ceiling.max_table_elements,
            ),
        ];
        for (name, value, max) in counts {
            if value > max {
                return Err(InvalidLimits::Count { name, value, max });
            }
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::default_preset()
    }
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            input_bytes: 16 * MIB as usize,
            output_bytes: 16 * MIB as usize,
            log_bytes: MIB as usize,
            stream_bytes: 64 * MIB as usize,
            storage_value_bytes: 4 * MIB as usize,
            storage_quota_bytes: 256 * MIB,
            variable_bytes: 4 * MIB as usize,
            variables_total_bytes: 16 * MIB as usize,
            ui_bytes: MIB as usize,
            connections: 16,
            files_bytes: 256 * MIB,
            resources: 1024,
            http_request_bytes: 16 * MIB as usize,
            http_response_bytes: 32 * MIB as usize,
        }
    }
}

/// Which limit ended a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Memory,
    Fuel,
    Timeout,
    Stack,
    Tables,
    TableElements,
    Memories,
    Instances,
    InputSize,
    OutputSize,
    /// The byte quota of the node's private directory (`allow_wasi`).
    Files,
    /// The entries of the run's resource table: sockets, streams, connections held at once.
    Resources,
}

impl LimitKind {
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Memory => "memory",
            LimitKind::Fuel => "fuel",
            LimitKind::Timeout => "timeout",
            LimitKind::Stack => "stack",
            LimitKind::Tables => "tables",
            LimitKind::TableElements => "table elements",
            LimitKind::Memories => "memories",
            LimitKind::Instances => "instances",
            LimitKind::InputSize => "input size",
            LimitKind::OutputSize => "output size",
            LimitKind::Files => "files",
            LimitKind::Resources => "resources",
        }
    }

    /// What to change to allow more.
    pub fn hint(self) -> &'static str {
        match self {
            LimitKind::Memory => "raise it with --memory or a larger --preset",
            LimitKind::Fuel => "raise it with --fuel or a larger --preset",
            LimitKind::Timeout => "raise it with --timeout or a larger --preset",
            LimitKind::Stack => {
                "the node recursed too deeply; a larger --preset allows a deeper stack"
            }
            LimitKind::Tables
            | LimitKind::TableElements
            | LimitKind::Memories
            | LimitKind::Instances => "a larger --preset allows more",
            LimitKind::InputSize => "send smaller inputs or use a larger --preset",
            LimitKind::OutputSize => {
                "the node produced more output than the host accepts; a larger --preset allows more"
            }
            LimitKind::Files => "remove files from the node's directory, or use a larger --preset",
            LimitKind::Resources => {
                "the node held too many sockets, streams or connections at once; a larger \
                 --preset allows more"
            }
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_hold_the_documented_numbers() {
        let default = Limits::preset(Preset::Default);
        assert_eq!(default.memory_bytes, 64 * MIB);
        assert_eq!(default.fuel, Some(10_000_000_000));
        assert_eq!(default.timeout, Duration::from_secs(30));
        let restrictive = Limits::preset(Preset::Restrictive);
        assert_eq!(restrictive.memory_bytes, 16 * MIB);
        assert_eq!(restrictive.fuel, Some(1_000_000_000));
        assert_eq!(restrictive.timeout, Duration::from_secs(10));
        let permissive = Limits::preset(Preset::Permissive);
        assert_eq!(permissive.memory_bytes, 4 * GIB);
        assert_eq!(permissive.fuel, Some(100_000_000_000));
        assert_eq!(permissive.timeout, Duration::from_secs(300));
        assert!(restrictive.wasm_stack_bytes < default.wasm_stack_bytes);
        assert!(default.wasm_stack_bytes < permissive.wasm_stack_bytes);
        assert!(
            restrictive.max_instances < default.max_instances
                && default.max_instances < permissive.max_instances
        );
        assert!(restrictive.max_table_elements < default.max_table_elements);
        assert!(default.max_table_elements < permissive.max_table_elements);
    }

    #[test]
    fn presets_are_valid_and_nonsense_is_not() {
        for preset in Preset::ALL {
            assert_eq!(Limits::preset(preset).validate(), Ok(()));
        }
        let nonsense = [
            Limits {
                memory_bytes: 5 * GIB,
                ..Limits::default()
            },
            Limits {
                wasm_stack_bytes: 1024,
                ..Limits::default()
            },
            Limits {
                timeout: Duration::ZERO,
                ..Limits::default()
            },
            Limits {
                max_instances: 10_000,
                ..Limits::default()
            },
            Limits {
                timeout: Duration::from_secs(u64::MAX),
                ..Limits::default()
            },
        ];
        for limits in nonsense {
            assert!(limits.validate().is_err(), "{limits:?}");
        }
    }

    #[test]
    fn presets_parse() {
        assert_eq!("Restrictive".parse::<Preset>(), Ok(Preset::Restrictive));
        assert!("lenient".parse::<Preset>().is_err());
    }
}
