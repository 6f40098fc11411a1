//! The `variables-read` and `variables-write` capabilities: the run's variables, given by the
//! embedder and handed back after the run, capped in count, name length and total bytes.

use super::common::check_size;
use crate::bindings::warden::node::{types, variables_read, variables_write};
use crate::bindings::wit::HostError;
use crate::node::value::Value;
use crate::policy::limits::HostLimits;
use std::collections::BTreeMap;
use wasmtime::component::{HasData, Linker};

/// The longest variable name.
pub const MAX_VARIABLE_NAME: usize = 256;
/// The most variables a run holds.
pub const MAX_VARIABLES: usize = 10_000;

/// A run's variables and the bytes of their names and values, kept as they change.
pub(crate) struct Variables {
    pub values: BTreeMap<String, Value>,
    pub bytes: usize,
}

impl Variables {
    pub fn new(values: BTreeMap<String, Value>) -> Self {
        let bytes = size(&values);
        Variables { values, bytes }
    }
}

/// What the variables host functions may touch: the variables and the limits.
pub(crate) struct View<'a> {
    pub variables: &'a mut Variables,
    pub limits: &'a HostLimits,
}

struct VariablesFamily;

impl HasData for VariablesFamily {
    type Data<'a> = View<'a>;
}

/// What the store data lends the variables host functions: their view, and nothing else.
pub(crate) trait VariablesView: Send + 'static {
    fn variables(&mut self) -> View<'_>;
}

pub(crate) fn link<T: VariablesView>(
    linker: &mut Linker<T>,
    interface: &str,
) -> wasmtime::Result<bool> {
    match interface {
        "warden:node/variables-read" => {
            variables_read::add_to_linker::<T, VariablesFamily>(linker, T::variables)?
        }
        "warden:node/variables-write" => {
            variables_write::add_to_linker::<T, VariablesFamily>(linker, T::variables)?
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn validate_name(name: &str) -> Result<(), HostError> {
    if name.is_empty() || name.len() > MAX_VARIABLE_NAME || name.chars().any(char::is_control) {
        return Err(HostError::Invalid(format!(
            "variable names are 1 to {MAX_VARIABLE_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

/// Bytes of names and values of a run's variables.
fn size(variables: &BTreeMap<String, Value>) -> usize {
    variables
        .iter()
        .map(|(name, value)| name.len() + value.size())
        .sum()
}

impl variables_read::Host for View<'_> {
    fn get(&mut self, name: String) -> Result<Option<types::Value>, HostError> {
        validate_name(&name)?;
        Ok(self.variables.values.get(&name).cloned().map(Into::into))
    }

    fn names(&mut self) -> Vec<String> {
        self.variables.values.keys().cloned().collect()
    }
}

impl variables_write::Host for View<'_> {
    fn set(&mut self, name: String, value: types::Value) -> Result<(), HostError> {
        validate_name(&name)?;
        let value = Value::from(value);
        check_size("variable", value.size(), self.limits.variable_bytes)?;
        let variables = &mut *self.variables;
        let replaced = variables
            .values
            .get(&name)
            .map(|old| name.len() + old.size());
        if replaced.is_none() && variables.values.len() >= MAX_VARIABLES {
            return Err(HostError::QuotaExceeded(format!(
                "a run holds at most {MAX_VARIABLES} variables"
            )));
        }
        let total = size(&variables.values) - replaced.unwrap_or(0) + name.len() + value.size();
        if total > self.limits.variables_total_bytes {
            return Err(HostError::QuotaExceeded(format!(
                "the run's variables would take {total} bytes; the host keeps at most {} \
                 (names and values)",
                self.limits.variables_total_bytes
            )));
        }
        variables.values.insert(name, value);
        variables.bytes = total;
        Ok(())
    }
}
