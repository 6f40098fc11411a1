//! What a run gives back besides its outputs: the log (the node's own messages, its stdout and
//! stderr, the host's warnings), streamed chunks and UI documents, each capped and delivered to
//! the embedder's sinks.

pub(crate) mod delivery;
pub mod log;
pub(crate) mod record;
