//! The `base` world every node gets: `types`, `log` (the node's own messages) and `context`
//! (the run's identifiers and the time left).

use crate::bindings::warden::node::{context, log, types};
use crate::node::context::RunContext;
use crate::output::log::{Level, RunLog, Source};
use std::time::Instant;
use wasmtime::component::{HasData, Linker};

/// What the base world may touch: the run's log, its context and its deadline.
pub(crate) struct View<'a> {
    pub log: &'a RunLog,
    pub context: &'a RunContext,
    pub deadline: Instant,
}

struct Base;

impl HasData for Base {
    type Data<'a> = View<'a>;
}

/// What the store data lends the base host functions: their view, and nothing else.
pub(crate) trait BaseView: Send + 'static {
    fn base(&mut self) -> View<'_>;
}

pub(crate) fn link<T: BaseView>(linker: &mut Linker<T>, interface: &str) -> wasmtime::Result<bool> {
    match interface {
        "warden:node/types" => types::add_to_linker::<T, Base>(linker, T::base)?,
        "warden:node/log" => log::add_to_linker::<T, Base>(linker, T::base)?,
        "warden:node/context" => context::add_to_linker::<T, Base>(linker, T::base)?,
        _ => return Ok(false),
    }
    Ok(true)
}

impl types::Host for View<'_> {}

impl log::Host for View<'_> {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.log.push(level, Source::Log, &message);
    }
}

impl context::Host for View<'_> {
    fn current(&mut self) -> types::RunContext {
        self.context.into()
    }

    fn remaining_ms(&mut self) -> u64 {
        self.deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64
    }
}
