//! The `streaming` capability: incremental output, delivered to the embedder's stream sink
//! while the run goes on, capped in total bytes per run.

use crate::bindings::warden::node::{streaming, types};
use crate::bindings::wit::HostError;
use crate::node::value::Value;
use crate::output::delivery::Delivery;
use crate::policy::limits::HostLimits;
use wasmtime::component::{HasData, Linker};

/// What one streamed chunk costs against the stream cap beyond its value, so empty chunks
/// count too.
pub const CHUNK_OVERHEAD: usize = 32;

/// What `streaming` may touch: the bytes streamed so far, the limits, and the delivery.
pub(crate) struct View<'a> {
    pub streamed_bytes: &'a mut usize,
    pub limits: &'a HostLimits,
    pub delivery: &'a Delivery,
}

struct Streaming;

impl HasData for Streaming {
    type Data<'a> = View<'a>;
}

/// What the store data lends the streaming host functions: their view, and nothing else.
pub(crate) trait StreamingView: Send + 'static {
    fn streaming(&mut self) -> View<'_>;
}

pub(crate) fn link<T: StreamingView>(
    linker: &mut Linker<T>,
    interface: &str,
) -> wasmtime::Result<bool> {
    match interface {
        "warden:node/streaming" => streaming::add_to_linker::<T, Streaming>(linker, T::streaming)?,
        _ => return Ok(false),
    }
    Ok(true)
}

impl streaming::Host for View<'_> {
    fn emit(&mut self, chunk: types::Value) -> Result<(), HostError> {
        let chunk = Value::from(chunk);
        let total = self
            .streamed_bytes
            .saturating_add(chunk.size())
            .saturating_add(CHUNK_OVERHEAD);
        if total > self.limits.stream_bytes {
            return Err(HostError::TooLarge(format!(
                "this run has streamed {} bytes (each chunk counts {CHUNK_OVERHEAD} more than \
                 its value); the host accepts at most {}",
                self.streamed_bytes, self.limits.stream_bytes
            )));
        }
        *self.streamed_bytes = total;
        self.delivery.chunk(chunk);
        Ok(())
    }
}
