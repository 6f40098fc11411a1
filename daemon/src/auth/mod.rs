//! Authentication and authorization building blocks (issue 12, in progress): the permission
//! bits and the table of what each route needs, and strict verification of the workflow
//! executor's ES256 tokens. The daemon's API still authenticates with API keys
//! (`api::authenticate`); these are wired in next.

pub mod jwt;
pub mod permissions;
pub mod store;

pub use permissions::{Needs, Permissions};
