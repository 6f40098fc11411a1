//! Authentication and authorization: the permission bits and the table of what each route
//! needs, the principal store (users, roles, API keys, PATs), strict verification of the
//! workflow executor's ES256 tokens and of OpenID Connect access tokens, the key sets fetched
//! from JWKS URLs, and the throttle on sources that keep failing.

pub mod fetch;
pub mod jwt;
pub mod keyset;
pub mod oidc;
pub mod permissions;
pub mod store;
pub mod tables;
pub mod throttle;
pub mod verifiers;

pub use permissions::{Needs, Permissions};
