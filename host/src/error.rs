//! The errors of loading, preparing and running a node, each with the exit code the CLI uses.

use crate::node::component::ComponentError;
use crate::node::context::InvalidContext;
use crate::node::info::DescriptionError;
use crate::node::pins::{InputError, OutputError};
use crate::policy::limits::{InvalidLimits, LimitKind};
use crate::policy::preflight::Refusal;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a usable node component.
    #[error(transparent)]
    Component(#[from] ComponentError),
    /// The node asks for more than was granted.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A limit stopped the node.
    #[error("limit hit: {kind}: {detail}; {}", kind.hint())]
    Limit { kind: LimitKind, detail: String },
    /// The node returned an error.
    #[error("the node failed: {0}")]
    NodeFailed(String),
    /// The node trapped (a panic, an `unreachable`, an out-of-bounds access) or called exit.
    #[error("the node trapped: {0}")]
    Trapped(String),
    /// The node returned outputs its pins do not declare.
    #[error("the node returned invalid outputs: {0}")]
    InvalidOutput(#[from] OutputError),
    /// The component describes its nodes beyond the host's bounds (too many, too large,
    /// names twice).
    #[error("the component's node descriptions are refused: {0}")]
    InvalidDescription(#[from] DescriptionError),
    #[error("bad input: {0}")]
    Input(#[from] InputError),
    #[error("the component provides no node `{name}`; it provides: {available}")]
    UnknownNode { name: String, available: String },
    #[error("the component provides {0} nodes; choose one with --node")]
    AmbiguousNode(String),
    #[error(transparent)]
    Context(#[from] InvalidContext),
    /// Limits outside what the runtime can enforce.
    #[error("invalid limits: {0}")]
    InvalidLimits(#[from] InvalidLimits),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// Every sandbox slot of the runtime is in use; try again when a run has finished.
    #[error("the runtime is busy: {0}; retry when a run finishes, or raise its concurrency")]
    Busy(String),
    /// A callback of the embedder (a host function or a log, stream or UI sink) panicked or
    /// blocked past the run's deadline: the embedder's fault, not the node's.
    #[error("{0}; the run was stopped")]
    Callback(#[from] crate::output::delivery::CallbackFailed),
    /// The host cannot set up a sandbox at all (out of memory or address space).
    #[error(
        "cannot set up a sandbox: {0}; the host is short of memory or address space (see `ulimit -v`)"
    )]
    Unavailable(String),
    /// Wasmtime refused something the host set up; this is a bug in warden.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// 2 bad input, 3 capability refused, 4 limit hit, 5 node failed or trapped, 1 internal.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Component(_)
            | Error::Input(_)
            | Error::UnknownNode { .. }
            | Error::AmbiguousNode(_)
            | Error::Context(_)
            | Error::InvalidLimits(_)
            | Error::InvalidDescription(_)
            | Error::Storage(_) => 2,
            Error::Refused(_) => 3,
            Error::Limit { .. } => 4,
            Error::NodeFailed(_) | Error::Trapped(_) | Error::InvalidOutput(_) => 5,
            Error::Internal(_) | Error::Busy(_) | Error::Callback(_) | Error::Unavailable(_) => 1,
        }
    }

    /// The limit that was hit, if this is a limit error.
    pub fn limit(&self) -> Option<LimitKind> {
        match self {
            Error::Limit { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        Error::Internal(error.to_string())
    }
}
