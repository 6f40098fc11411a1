//! The run's variables (features `variables-read`, `variables-write`).

#[allow(unused_imports)]
use crate::{HostError, Value};

#[cfg(feature = "variables-read")]
pub fn get(name: &str) -> Result<Option<Value>, HostError> {
    crate::variables_read::get(name)
}

#[cfg(feature = "variables-read")]
pub fn names() -> Vec<String> {
    crate::variables_read::names()
}

#[cfg(feature = "variables-write")]
pub fn set(name: &str, value: impl Into<Value>) -> Result<(), HostError> {
    crate::variables_write::set(name, &value.into())
}
