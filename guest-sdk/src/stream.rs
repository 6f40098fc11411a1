//! Streaming output (feature `streaming`): chunks reach the embedder as they are emitted.

use crate::{HostError, Value};

pub fn emit(chunk: impl Into<Value>) -> Result<(), HostError> {
    crate::streaming::emit(&chunk.into())
}
